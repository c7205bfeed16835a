#!/usr/bin/env bash
# The controller's metadata log under many metadata changes, with state
# snapshots off (every entry kept and replayed at start, as before they
# existed) and on (the default --metadata-snapshot-entries): the change
# rate, the metadata log's size, and the restart time after a crash
# (SIGKILL, page cache dropped) with the changes in the log.
#
#   benches/scripts/metadata.sh [OUT_DIR]
#   CHANGES=1000000 BYTES=10GB PARTITIONS=1000 benches/scripts/metadata.sh
#
# With BYTES, that much data (1 KiB records in 1 MiB batches) is produced
# into PARTITIONS partitions first, so that the restart opens them too.
# Needs release binaries (cargo build --release -p strata-broker -p strata-cli),
# the load tool (cargo build --release -p strata-tests --bin strata-metadata-load),
# and root (drop_caches). Every change is an AlterTopicConfig of one topic
# from CLIENTS concurrent clients; restart time is from starting `stratad`
# to `/ready` answering 200 and the broker's report that every replica is
# open (as in restart.sh), with the last change read back after.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/lib.sh
OUT=${1:-target/bench-results}
DATA=${STRATA_BENCH_DIR:-target/bench-data}/metadata
CHANGES=${CHANGES:-100000}
CLIENTS=${CLIENTS:-16}
BYTES=${BYTES:-}
PARTITIONS=${PARTITIONS:-1000}
RUNS=${RUNS:-3}
PORT=19720
HTTP=127.0.0.1:19722
BIN=target/release
LOAD=${LOAD:-$BIN/strata-metadata-load}
mkdir -p "$OUT"
LOG="$OUT/stratad-metadata.log"
: >"$LOG"

opened_lines() { grep -c "opened replicas" "$LOG" || true; }
start_broker() { # extra flags...
  OPENED_BEFORE=$(opened_lines)
  "$BIN/stratad" --data-dir "$DATA" --listen 127.0.0.1:$PORT --http-listen $HTTP \
    --peer-listen 127.0.0.1:19721 --kafka-listen off --fsync never \
    --log-level warn,strata_broker::broker::replicas=info "$@" >>"$LOG" 2>&1 &
  BROKER=$!
}
# Sets RESTART_SECS: from starting the broker to it serving with every
# replica open.
restart_broker() { # extra flags...
  local t0
  t0=$(date +%s%N)
  start_broker "$@"
  wait_ready >/dev/null
  for _ in $(seq 1 9000); do
    [ "$(opened_lines)" -gt "$OPENED_BEFORE" ] && break
    sleep 0.05
  done
  RESTART_SECS=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.2f", ns / 1e9 }')
}
wait_ready() { seconds_until_ready "$HTTP" 900; }
metric() { # name
  python3 - "$HTTP" "$1" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
print(next((l.split()[1] for l in body.splitlines() if l.startswith(sys.argv[2] + " ")), "-"))
PY
}
strata() { "$BIN/strata" --brokers 127.0.0.1:$PORT "$@"; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }

echo "== limits"
measure_limits "$OUT"

for mode in off on; do
  case $mode in
    off) FLAGS=(--metadata-snapshot-entries 100000000) ;;
    on) FLAGS=() ;;
  esac
  echo "== snapshots $mode: $CHANGES changes from $CLIENTS clients"
  rm -rf "$DATA" && mkdir -p "$DATA"
  start_broker "${FLAGS[@]}"
  wait_ready >/dev/null
  strata topic create meta --partitions 1 --replication-factor 1 >/dev/null
  if [ -n "$BYTES" ]; then
    strata topic create data --partitions "$PARTITIONS" --replication-factor 1 >/dev/null
    strata bench produce data --bytes "$BYTES" --record-size 1024 --batch-size 1048576 \
      --acks all --output json >"$OUT/metadata-fill-$mode.json"
    echo "fill: $(du -sh "$DATA" | cut -f1) in $PARTITIONS partitions"
  fi
  "$LOAD" "http://127.0.0.1:$PORT" meta "$CHANGES" "$CLIENTS"
  echo "metadata log bytes $(metric strata_metadata_log_bytes)," \
    "snapshot bytes $(metric strata_metadata_snapshot_bytes)," \
    "files $(du -sh "$DATA/__cluster_metadata-0" | cut -f1)"
  want=$((1000 + CHANGES - 1))
  for i in $(seq 1 "$RUNS"); do
    kill -KILL "$BROKER"; wait "$BROKER" 2>/dev/null || true
    cold
    restart_broker "${FLAGS[@]}"
    got=$(strata topic describe meta --output json |
      python3 -c 'import json,sys;print(json.load(sys.stdin)["config"]["segment.ms"])')
    [ "$got" = "$want" ] || { echo "after restart segment.ms=$got, not $want" >&2; exit 1; }
    echo "restart after SIGKILL #$i: serving in $RESTART_SECS s"
  done
  kill -TERM "$BROKER"; wait "$BROKER" || true
done
rm -rf "$DATA"
