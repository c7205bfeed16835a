#!/usr/bin/env bash
# Log compaction figures (README, "Compaction"): the cleaner's throughput
# on a compacted topic of 1 KiB records whose keys are 10 % of its records,
# and what cleaning at the default I/O cap costs a producer running beside
# it (throughput unthrottled, and p50/p99/p99.9 at a fixed rate).
#
#   benches/scripts/compaction.sh [OUT_DIR]
#   BYTES=1GB benches/scripts/compaction.sh        # a smaller dirty log
#   ROUNDS=5 benches/scripts/compaction.sh         # more idle/cleaning rounds
#
# Needs release binaries (cargo build --release -p strata-broker -p
# strata-cli) and fio. The dirty log is written with the cleaner off, then
# the broker restarts with it on:
# - throughput: with no cap, bytes of dirty log cleaned over the summed
#   pass time (`strata_cleaner_pass_duration_seconds`);
# - impact: the same produce runs on an idle broker and while the cleaner
#   works through the same dirty log at its default cap (64 MiB/s), runs
#   alternating.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-results}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
BYTES=${BYTES:-2GB}
PRODUCE=${PRODUCE:-1GB}
RATE=${RATE:-50000}
ROUNDS=${ROUNDS:-2}
BIN=target/release
PORT=19800
HTTP=127.0.0.1:19802
mkdir -p "$OUT"
LOG="$OUT/stratad-compaction.log"
: >"$LOG"

strata() { "$BIN/strata" --brokers 127.0.0.1:$PORT "$@"; }
start_broker() { # extra flags
  "$BIN/stratad" --data-dir "$DATA/node" --listen 127.0.0.1:$PORT --http-listen $HTTP \
    --peer-listen 127.0.0.1:19801 --kafka-listen off --fsync never --log-level warn \
    --log-cleaner-backoff 200ms --retention-check-interval 200ms "$@" >>"$LOG" 2>&1 &
  BROKER=$!
  for _ in $(seq 1 600); do
    curl -sf "http://$HTTP/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "broker not ready (see $LOG)" >&2
  exit 1
}
stop_broker() { kill -TERM "$BROKER"; wait "$BROKER" || true; }
metric() { # name: its value summed over series
  curl -sf "http://$HTTP/metrics" | awk -v m="$1" '$1 == m || index($1, m"{") == 1 {s += $2} END {printf "%.0f", s}'
}
metric_f() {
  curl -sf "http://$HTTP/metrics" | awk -v m="$1" '$1 == m {printf "%.3f", $2}'
}
dirty() { # the compacted partition's dirty ratio
  strata --output json topic describe state |
    python3 -c 'import json,sys;p=json.load(sys.stdin)["partitions"][0];c=p.get("cleaner") or {};print(c.get("dirty_ratio",1))'
}
wait_clean() {
  for _ in $(seq 1 6000); do
    python3 -c "import sys;sys.exit(0 if float('$(dirty)') == 0 else 1)" && return 0
    sleep 0.2
  done
  echo "never cleaned (see $LOG)" >&2
  exit 1
}
# A dirty compacted log of BYTES, written with the cleaner off; leaves the
# broker stopped.
fill_dirty() {
  rm -rf "$DATA" && mkdir -p "$DATA"
  start_broker --log-cleaner-threads 0
  strata topic create state --partitions 1 --replication-factor 1 \
    --config cleanup.policy=compact --config segment.bytes=134217728 >/dev/null
  strata topic create events --partitions 1 --replication-factor 1 >/dev/null
  local records
  records=$(python3 -c "import re;s='$BYTES';n=float(re.match(r'[0-9.]+',s).group());u=s[len(re.match(r'[0-9.]+',s).group()):].upper();print(int(n*{'GB':1e9,'MB':1e6,'GIB':2**30,'MIB':2**20,'':1}[u]/1024))")
  strata bench produce state --bytes "$BYTES" --record-size 1024 --keys $((records / 10)) \
    --output json >"$OUT/compaction-fill.json"
  # The last segment seals, so that all of it is cleanable.
  strata topic alter state --config segment.ms=1 >/dev/null
  sleep 1
  stop_broker
}

echo "== limits"
fio --name=w --filename="$OUT/fio.tmp" --rw=write --bs=1M --size=1G --ioengine=psync \
  --output-format=json >"$OUT/fio.json" 2>/dev/null && rm -f "$OUT/fio.tmp"
python3 -c "import json,sys;j=json.load(open(sys.argv[1]));print('fio 1MiB writes MB/s', round(j['jobs'][0]['write']['bw_bytes']/1e6,1))" "$OUT/fio.json"

echo "== cleaner throughput: $BYTES, 1 KiB records, keys 10 % of records, no cap"
fill_dirty
start_broker --log-cleaner-io-bytes-per-sec 0
before=$(strata --output json topic describe state | python3 -c 'import json,sys;print(json.load(sys.stdin)["partitions"][0]["size_bytes"])')
wait_clean
after=$(strata --output json topic describe state | python3 -c 'import json,sys;print(json.load(sys.stdin)["partitions"][0]["size_bytes"])')
secs=$(metric_f strata_cleaner_pass_duration_seconds_sum)
passes=$(metric strata_cleaner_passes_total)
python3 -c "print(f'cleaned {$before/1e6:.0f} MB to {$after/1e6:.0f} MB in {$passes} passes, {$secs} s: {$before/1e6/$secs:.0f} MB/s')"
stop_broker

run_produce() { # label extra-bench-args
  local label=$1
  shift
  strata bench produce events --bytes "$PRODUCE" --record-size 1024 "$@" --output json >"$OUT/compaction-$label.json"
  python3 -c "import json;j=json.load(open('$OUT/compaction-$label.json'));l=j['latency_ms'];print(f\"$label: {j['mb_per_sec']:.0f} MB/s, p50 {l['p50']:.1f} p99 {l['p99']:.1f} p99.9 {l['p999']:.1f} ms\")"
}
echo "== produce beside the cleaner (default cap), $PRODUCE of 1 KiB records"
for round in $(seq 1 "$ROUNDS"); do
  for mode in idle cleaning; do
    fill_dirty
    if [ "$mode" = idle ]; then
      start_broker --log-cleaner-threads 0
    else
      start_broker
      sleep 1
    fi
    run_produce "$mode-max-$round"
    run_produce "$mode-rate-$round" --rate "$RATE"
    # Still dirty at the end: the pass ran through both produces.
    echo "  dirty ratio after: $(dirty)"
    stop_broker
  done
done
rm -rf "$DATA"
