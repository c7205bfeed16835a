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

# measure_limits OUT_DIR: the disk (fio, 1 MiB writes with an fdatasync
# each) and loopback (iperf3) limits of this run, printed and kept as JSON.
measure_limits() {
  local out=$1
  fio --name=w --filename="$out/fio.tmp" --rw=write --bs=1M --size=1G --ioengine=psync --fdatasync=1 \
    --output-format=json >"$out/fio.json" 2>/dev/null && rm -f "$out/fio.tmp"
  python3 -c "import json,sys;j=json.load(open(sys.argv[1]));print('fio 1MiB writes+fdatasync MB/s', round(j['jobs'][0]['write']['bw_bytes']/1e6,1))" "$out/fio.json"
  iperf3 -s -1 -p 19699 >/dev/null 2>&1 &
  sleep 0.5
  iperf3 -c 127.0.0.1 -p 19699 -t 5 -J >"$out/iperf3.json"
  python3 -c "import json,sys;j=json.load(open(sys.argv[1]));print('iperf3 loopback MB/s', round(j['end']['sum_received']['bits_per_second']/8e6,1))" "$out/iperf3.json"
}

# seconds_until_ready HOST:PORT [TIMEOUT_S]: prints the seconds until the
# broker's HTTP `/ready` answers 200 (fails after TIMEOUT_S, default 600).
seconds_until_ready() {
  python3 - "$1" "${2:-600}" <<'PY'
import sys, time, urllib.request
t0, limit = time.monotonic(), float(sys.argv[2])
while time.monotonic() - t0 < limit:
    try:
        with urllib.request.urlopen(f"http://{sys.argv[1]}/ready", timeout=1) as r:
            if r.status == 200:
                print(round(time.monotonic() - t0, 3))
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.02)
sys.exit(f"broker not ready after {sys.argv[2]} s")
PY
}
