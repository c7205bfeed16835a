#!/usr/bin/env bash
# Single-node benchmark runs (BENCHMARKS.md W1-W4 plus the 5 GB variants)
# with the disk and loopback limits measured in the same run.
#
#   benches/scripts/single-node.sh [OUT_DIR]
#
# Needs release binaries (cargo build --release -p strata-broker -p strata-cli)
# and fio + iperf3 (apt-get install -y fio iperf3). Each run starts a fresh
# broker on a fresh data directory; every figure comes from
# `strata bench ... --output json` and is printed as one JSON line.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-results}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
RUNS=${RUNS:-3}
PORT=19500
BIN=target/release
mkdir -p "$OUT"

start_broker() {
  rm -rf "$DATA" && mkdir -p "$DATA"
  "$BIN/stratad" --data-dir "$DATA/node" --listen 127.0.0.1:$PORT --fsync "$1" --log-level warn \
    >"$OUT/stratad.log" 2>&1 &
  BROKER=$!
  for _ in $(seq 1 100); do
    "$BIN/strata" --brokers 127.0.0.1:$PORT topic list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "broker did not start" >&2; exit 1
}
stop_broker() { kill -TERM "$BROKER"; wait "$BROKER" || true; rm -rf "$DATA"; sync; }
strata() { "$BIN/strata" --brokers 127.0.0.1:$PORT "$@"; }

echo "== limits"
fio --name=w --filename="$DATA.fio" --rw=write --bs=1M --size=1G --ioengine=psync --fdatasync=1 \
  --output-format=json >"$OUT/fio.json"
rm -f "$DATA.fio"
python3 -c "import json;j=json.load(open('$OUT/fio.json'));print('fio seq 1MiB+fdatasync MB/s', round(j['jobs'][0]['write']['bw_bytes']/1e6,1))"
iperf3 -s -1 -p 19599 >/dev/null 2>&1 & sleep 0.5
iperf3 -c 127.0.0.1 -p 19599 -t 5 -J >"$OUT/iperf3.json"
python3 -c "import json;j=json.load(open('$OUT/iperf3.json'));print('iperf3 loopback MB/s', round(j['end']['sum_received']['bits_per_second']/8e6,1))"

run() { # name fsync bytes
  local name=$1 fsync=$2 bytes=$3
  for i in $(seq 1 "$RUNS"); do
    start_broker "$fsync"
    strata topic create bench --partitions 1 --replication-factor 1 >/dev/null
    strata bench produce bench --bytes "$bytes" --record-size 1024 --output json >"$OUT/$name-produce-$i.json"
    echo "$name produce #$i: $(cat "$OUT/$name-produce-$i.json")"
    if [ "$fsync" = never ]; then
      [ "$bytes" = 5GB ] && sync && echo 3 >/proc/sys/vm/drop_caches || true
      strata bench consume bench --bytes "$bytes" --record-size 1024 --output json >"$OUT/$name-consume-$i.json"
      echo "$name consume #$i: $(cat "$OUT/$name-consume-$i.json")"
    fi
    stop_broker
  done
}
run w1 never 1GB
run w3 always 1GB
run w2 never 5GB
run w3-5gb always 5GB
