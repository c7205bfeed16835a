#!/usr/bin/env bash
# W1 (single-node produce, fsync=never, 1 GB) and W5 (RF3 acks=all, 6
# partitions, 1 GB) for two builds, alternating run by run in one session,
# with the disk and loopback limits of the same run. For checking that a
# change (a refactor, a dependency bump) costs nothing.
#
#   benches/scripts/compare.sh BEFORE_BIN_DIR AFTER_BIN_DIR [OUT_DIR]
#
# Each BIN_DIR holds release `stratad` and `strata` binaries (for example a
# copy of target/release from each commit). Needs fio and iperf3.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/lib.sh
A=$1
B=$2
OUT=${3:-target/bench-compare}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
RUNS=${RUNS:-3}
mkdir -p "$OUT"
BROKERS=$STRATA_CLUSTER_BROKERS
PIDS=()

stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
  PIDS=()
  rm -rf "$DATA"
  sync
}
trap stop_all EXIT

w1() { # bin_dir out_json
  rm -rf "$DATA" && mkdir -p "$DATA"
  "$1/stratad" --data-dir "$DATA/node" --listen 127.0.0.1:19500 --http-listen 127.0.0.1:19520 --kafka-listen off --fsync never --log-level warn \
    >>"$OUT/stratad.log" 2>&1 &
  PIDS=($!)
  for _ in $(seq 1 100); do
    "$1/strata" --brokers 127.0.0.1:19500 topic list >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$1/strata" --brokers 127.0.0.1:19500 topic create bench --partitions 1 --replication-factor 1 >/dev/null
  "$1/strata" --brokers 127.0.0.1:19500 bench produce bench --bytes 1GB --record-size 1024 \
    --output json >"$2"
  stop_all
}

w5() { # bin_dir out_json
  start_strata_cluster "$1" "$DATA" "$OUT/stratad.log"
  "$1/strata" --brokers "$BROKERS" topic create bench --partitions 6 --replication-factor 3 >/dev/null
  "$1/strata" --brokers "$BROKERS" bench produce bench --bytes 1GB --record-size 1024 --acks all \
    --output json >"$2"
  stop_all
}

echo "== limits"
command -v fio >/dev/null && command -v iperf3 >/dev/null || { echo "needs fio and iperf3 (apt-get install -y fio iperf3)" >&2; exit 1; }
measure_limits "$OUT"

for i in $(seq 1 "$RUNS"); do
  for side in before after; do
    bin=$A
    [ "$side" = after ] && bin=$B
    w1 "$bin" "$OUT/w1-$side-$i.json"
    echo "w1 $side #$i: $(cat "$OUT/w1-$side-$i.json")"
    w5 "$bin" "$OUT/w5-$side-$i.json"
    echo "w5 $side #$i: $(cat "$OUT/w5-$side-$i.json")"
  done
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
for w in ("w1", "w5"):
    for side in ("before", "after"):
        rs = [json.load(open(f"{out}/{w}-{side}-{i}.json")) for i in range(1, runs + 1)]
        mb = [r["mb_per_sec"] for r in rs]
        lat = sorted(rs, key=lambda r: r["mb_per_sec"])[len(rs) // 2]
        print(f"{w} {side}: median {statistics.median(mb):.0f} MB/s ({min(mb):.0f}-{max(mb):.0f}), "
              f"p50/p99/p99.9 of the median run {lat['latency_ms']['p50']}/{lat['latency_ms']['p99']}/{lat['latency_ms']['p999']} ms")
PY
