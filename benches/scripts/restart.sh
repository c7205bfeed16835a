#!/usr/bin/env bash
# Broker restart time (issue: restart under 10 s at 10 GB in 1,000
# partitions): one broker is filled, then restarted after a clean stop
# (SIGTERM) and after a crash (SIGKILL), each with the page cache dropped
# first, so that what is timed is reading the data directory from disk.
#
#   benches/scripts/restart.sh [OUT_DIR]
#   BYTES=2GB PARTITIONS=100 benches/scripts/restart.sh    # smaller
#   COMPARE=/tmp/stratad-old benches/scripts/restart.sh    # and another build
#
# Needs release binaries (cargo build --release -p strata-broker -p strata-cli),
# fio, and root (drop_caches). Time is from starting `stratad` to its
# `/ready` answering 200: every replica open and led, its whole log applied.
# Records are 1 KiB in batches of BATCH bytes (default 1 MiB: the client
# spends more CPU per batch with 1,000 partitions than the broker does, so
# smaller batches make the fill, not the restart, the slow part).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/lib.sh
OUT=${1:-target/bench-results}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
BYTES=${BYTES:-10GB}
PARTITIONS=${PARTITIONS:-1000}
RUNS=${RUNS:-3}
BATCH=${BATCH:-1048576}
PORT=19700
HTTP=127.0.0.1:19702
BIN=target/release
mkdir -p "$OUT"

STRATAD=${STRATAD:-$BIN/stratad}
# COMPARE=/path/to/another/stratad: each round restarts the same data with
# both builds, alternating.
BUILDS=("$STRATAD" ${COMPARE:+"$COMPARE"})
LOG="$OUT/stratad-restart.log"
touch "$LOG"
opened_lines() { grep -c "opened replicas" "$LOG" || true; }
start_broker() { # [binary]
  OPENED_BEFORE=$(opened_lines)
  "${1:-$STRATAD}" --data-dir "$DATA/node" --listen 127.0.0.1:$PORT --http-listen $HTTP \
    --peer-listen 127.0.0.1:19701 --kafka-listen off --fsync never \
    --log-level warn,strata_broker::broker::replicas=info >>"$LOG" 2>&1 &
  BROKER=$!
}
# `/ready` answers after 10 s even while replicas are still opening (the
# broker then serves what is open), so the broker's own report of opening
# every replica is waited for too: "ready X s, replicas opened in Y s".
restart_time() {
  local ready
  ready=$(wait_ready)
  for _ in $(seq 1 6000); do
    [ "$(opened_lines)" -gt "$OPENED_BEFORE" ] && break
    sleep 0.1
  done
  echo "ready $ready s, replicas opened in $(grep "opened replicas" "$LOG" | tail -1 |
    sed 's/\x1b\[[0-9;]*m//g' | sed -E 's/.*elapsed_ms=([0-9]+).*/\1/' |
    awk '{printf "%.3f", $1/1000}') s"
}
# Seconds from now until /ready answers.
wait_ready() { seconds_until_ready "$HTTP"; }
strata() { "$BIN/strata" --brokers 127.0.0.1:$PORT "$@"; }
cold() { sync; echo 3 >/proc/sys/vm/drop_caches; }

echo "== limits"
fio --name=r --filename="$DATA.fio" --rw=read --bs=1M --size=1G --ioengine=psync --direct=1 \
  --output-format=json >"$OUT/fio-read.json"
rm -f "$DATA.fio"
python3 -c "import json;j=json.load(open('$OUT/fio-read.json'));print('fio seq read 1MiB direct MB/s', round(j['jobs'][0]['read']['bw_bytes']/1e6,1))"

echo "== fill: $BYTES in $PARTITIONS partitions"
rm -rf "$DATA" && mkdir -p "$DATA"
start_broker
wait_ready >/dev/null
strata topic create restart --partitions "$PARTITIONS" --replication-factor 1 >/dev/null
strata bench produce restart --bytes "$BYTES" --record-size 1024 --batch-size "$BATCH" --acks all \
  --output json >"$OUT/restart-fill.json"
echo "fill: $(cat "$OUT/restart-fill.json")"
du -sh "$DATA/node" | sed 's/^/data: /'

# A crash right after the fill: the recovery checkpoints lag the data.
kill -KILL "$BROKER"; wait "$BROKER" 2>/dev/null || true
cold; start_broker
echo "crash after fill: $(restart_time)"
for i in $(seq 1 "$RUNS"); do
  for b in "${BUILDS[@]}"; do
    kill -TERM "$BROKER"; wait "$BROKER" || true
    cold; start_broker "$b"
    echo "clean #$i $b: $(restart_time)"
    kill -KILL "$BROKER"; wait "$BROKER" 2>/dev/null || true
    cold; start_broker "$b"
    echo "crash (idle) #$i $b: $(restart_time)"
  done
done
kill -TERM "$BROKER"; wait "$BROKER" || true
rm -rf "$DATA"
