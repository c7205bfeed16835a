# Shared by the benchmark scripts (sourced, not run).

# start_strata_cluster BIN_DIR DATA_DIR LOG_FILE: starts three brokers on
# 127.0.0.1:19601-19603 (peers 19611-19613, HTTP 19621-19623) with
# fsync=never, appends their pids to PIDS, and waits until all three are
# alive and every partition has a leader.
STRATA_CLUSTER_BROKERS=127.0.0.1:19601,127.0.0.1:19602,127.0.0.1:19603
start_strata_cluster() {
  local bin=$1 data=$2 log=$3 n ok=0
  local ic="1=127.0.0.1:19611,2=127.0.0.1:19612,3=127.0.0.1:19613"
  rm -rf "$data" && mkdir -p "$data"
  for n in 1 2 3; do
    "$bin/stratad" --node-id $n --data-dir "$data/n$n" --listen "127.0.0.1:1960$n" \
      --peer-listen "127.0.0.1:1961$n" --http-listen "127.0.0.1:1962$n" --kafka-listen off \
      --initial-cluster "$ic" --fsync never --log-level warn >>"$log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 1 300); do
    "$bin/strata" --brokers "$STRATA_CLUSTER_BROKERS" cluster status --output json 2>/dev/null |
      python3 -c 'import json,sys;j=json.load(sys.stdin);sys.exit(0 if len(j["brokers"])==3 and all(b["alive"] for b in j["brokers"]) and j["leaderless_partitions"]==0 else 1)' 2>/dev/null &&
      { ok=1; break; }
    sleep 0.2
  done
  [ "$ok" = 1 ] || { echo "strata cluster did not become healthy (see $log)" >&2; exit 1; }
}
