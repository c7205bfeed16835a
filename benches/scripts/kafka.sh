#!/usr/bin/env bash
# The Kafka listener against the gRPC path, in one run on one broker:
# 1 KiB records, one producer, one partition, acks=all, fsync never.
#   - gRPC: `strata bench produce` / `strata bench consume`
#   - Kafka: benches/scripts/kafka_load.py (confluent-kafka, librdkafka),
#     uncompressed and with lz4 and zstd
# Each line is one JSON result; the broker's CPU seconds per GB of values
# (utime+stime from /proc) are printed next to each produce run.
#
#   benches/scripts/kafka.sh [OUT_DIR]        # RECORDS=300000
#
# Needs release binaries (cargo build --release -p strata-broker -p strata-cli)
# and `pip install confluent-kafka`.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-kafka}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
RECORDS=${RECORDS:-300000}
BIN=target/release
G=127.0.0.1:19700
K=127.0.0.1:19709
mkdir -p "$OUT"
start_broker() {
  rm -rf "$DATA" && mkdir -p "$DATA"
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

start_broker
"$BIN/strata" --brokers $G topic create g --partitions 1 --replication-factor 1 >/dev/null
c0=$(cpu)
"$BIN/strata" --brokers $G bench produce g --records "$RECORDS" --record-size 1024 --partitions 0 --output json
per_gb "$c0" "$(cpu)"
"$BIN/strata" --brokers $G bench consume g --records "$RECORDS" --record-size 1024 --partitions 0 --output json
for z in none lz4 zstd; do
  "$BIN/strata" --brokers $G topic create "k-$z" --partitions 1 --replication-factor 1 >/dev/null
  c0=$(cpu)
  python3 benches/scripts/kafka_load.py produce $K "k-$z" "$RECORDS" 1024 "$z"
  per_gb "$c0" "$(cpu)"
  if [ "$z" = none ]; then
    python3 benches/scripts/kafka_load.py consume $K "k-$z" "$RECORDS"
  fi
done
stop_broker
