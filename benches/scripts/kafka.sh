#!/usr/bin/env bash
# The Kafka listener against the gRPC path, in one run on one broker:
# 1 KiB records, one producer, one partition, acks=all, fsync never.
#   - gRPC: `strata bench produce` / `strata bench consume`
#   - Kafka: benches/scripts/rdkafka_load.c (C on librdkafka, the library
#     behind kcat and confluent-kafka), uncompressed and with lz4 and zstd
# Both clients use 1 MiB batches, linger 5 ms, 5 batches in flight and a
# 64 MiB buffer. Every workload gets a fresh broker and data directory
# after `sync` and a drop of the page cache (when writable), and the
# order of the gRPC and Kafka workloads alternates between runs: on this
# VM, writeback of the previous workload's pages otherwise slows the next
# one by half. Each line is one JSON result; the broker's CPU seconds per
# GB of values (utime+stime from /proc) follow each produce run.
#
#   benches/scripts/kafka.sh [OUT_DIR]        # RECORDS=300000 RUNS=3
#
# The limits of the same run come first: fio (1 MiB writes, fdatasync
# each) and iperf3 over loopback. Needs release binaries (cargo build
# --release -p strata-broker -p strata-cli) and librdkafka's headers
# (`apt-get install librdkafka-dev`); the load generator is compiled here.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-kafka}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
RECORDS=${RECORDS:-300000}
RUNS=${RUNS:-3}
BIN=target/release
G=127.0.0.1:19700
K=127.0.0.1:19709
mkdir -p "$OUT"
LOAD=target/rdkafka_load
cc -O2 -o "$LOAD" benches/scripts/rdkafka_load.c -lrdkafka
settle() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
start_broker() {
  rm -rf "$DATA" && mkdir -p "$DATA"
  settle
  "$BIN/stratad" --data-dir "$DATA/node" --listen $G --peer-listen 127.0.0.1:19701 \
    --http-listen 127.0.0.1:19702 --kafka-listen $K --fsync never --log-level warn \
    >"$OUT/stratad.log" 2>&1 &
  BROKER=$!
  for _ in $(seq 1 100); do
    "$BIN/strata" --brokers $G topic list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "broker did not start" >&2; exit 1
}
stop_broker() { kill -TERM "$BROKER"; wait "$BROKER" || true; rm -rf "$DATA"; }
cpu() { awk '{print $14 + $15}' "/proc/$BROKER/stat"; }
per_gb() { # ticks_before ticks_after
  python3 -c "import os;print('broker CPU s/GB:', round(($2-$1)/os.sysconf('SC_CLK_TCK')/($RECORDS*1024/1e9),2))"
}
trap 'kill "$BROKER" 2>/dev/null || true' EXIT

grpc() {
  start_broker
  "$BIN/strata" --brokers $G topic create g --partitions 1 --replication-factor 1 >/dev/null
  local c0; c0=$(cpu)
  "$BIN/strata" --brokers $G bench produce g --records "$RECORDS" --record-size 1024 --partitions 0 --no-idle-send --output json
  per_gb "$c0" "$(cpu)"
  "$BIN/strata" --brokers $G bench consume g --records "$RECORDS" --record-size 1024 --partitions 0 --output json
  stop_broker
}
kafka() { # compression
  start_broker
  "$BIN/strata" --brokers $G topic create k --partitions 1 --replication-factor 1 >/dev/null
  local c0; c0=$(cpu)
  "$LOAD" produce $K k "$RECORDS" 1024 "$1"
  per_gb "$c0" "$(cpu)"
  if [ "$1" = none ]; then
    "$LOAD" consume $K k "$RECORDS"
  fi
  stop_broker
}

echo "== limits"
fio --name=w --filename="$OUT/fio.tmp" --rw=write --bs=1M --size=1G --ioengine=psync --fdatasync=1 \
  --output-format=json >"$OUT/fio.json" 2>/dev/null && rm -f "$OUT/fio.tmp" &&
  python3 -c "import json;j=json.load(open('$OUT/fio.json'));print('fio write+fdatasync MB/s', round(j['jobs'][0]['write']['bw_bytes']/1e6,1))"
iperf3 -s -1 -p 19799 >/dev/null 2>&1 & sleep 0.5
iperf3 -c 127.0.0.1 -p 19799 -t 5 -J >"$OUT/iperf3.json"
python3 -c "import json;j=json.load(open('$OUT/iperf3.json'));print('iperf3 loopback MB/s', round(j['end']['sum_received']['bits_per_second']/8e6,1))"

for run in $(seq 1 "$RUNS"); do
  echo "== run $run of $RUNS"
  if [ $((run % 2)) = 1 ]; then
    grpc; kafka none
  else
    kafka none; grpc
  fi
  kafka lz4
  kafka zstd
done
