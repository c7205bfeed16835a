#!/usr/bin/env bash
# Tiered-storage benchmarks (issue: cold reads and offload overhead), one
# broker, against the file store and a local S3-protocol server:
#   cold read      consume from offset 0 after offload, broker restarted
#                  (empty chunk cache) and the OS page cache dropped
#   cold fetch     first-record latency of 200 seeks spread over the log,
#                  each one cold (strata bench fetch)
#   offload cost   produce 2 GB with remote.storage.enable=true (uploads
#                  running during the run) vs false, alternating, per store
#
#   benches/scripts/tier.sh [OUT_DIR]
#   STORES=s3 ONLY=produce RUNS=3 CAP=100000000 benches/scripts/tier.sh
#
# Needs release binaries: cargo build --release -p strata-broker -p strata-cli
# -p strata-tests --bins (strata-s3-server comes from strata-tests). Root for
# drop_caches. Every figure comes from `strata bench ... --output json`.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-results/tier}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
RUNS=${RUNS:-3}
BYTES=${BYTES:-2GB}
PORT=19700
S3PORT=19710
BIN=target/release
mkdir -p "$OUT"
DATA=$(realpath -m "$DATA")

strata() { "$BIN/strata" --brokers 127.0.0.1:$PORT "$@"; }
store_flags() { # file|s3
  if [ "$1" = file ]; then
    echo "--object-store file://$DATA/objects"
  else
    echo "--object-store s3://bench/strata --s3-endpoint http://127.0.0.1:$S3PORT --s3-region us-east-1 \
      --s3-access-key-id strata-test-key --s3-secret-access-key strata-test-secret"
  fi
}
start_s3() {
  mkdir -p "$DATA/s3"
  "$BIN/strata-s3-server" "$DATA/s3" bench 127.0.0.1:$S3PORT >"$OUT/s3.log" 2>&1 &
  S3=$!
  sleep 0.5
}
start_broker() { # store [extra flags...]
  local store=$1; shift
  # shellcheck disable=SC2046
  "$BIN/stratad" --data-dir "$DATA/node" --listen 127.0.0.1:$PORT --log-level warn \
    --http-listen 127.0.0.1:$((PORT + 1)) --kafka-listen off --peer-listen 127.0.0.1:$((PORT + 2)) \
    --tier-upload-interval 200ms --retention-check-interval 1s $(store_flags "$store") "$@" \
    >>"$OUT/stratad.log" 2>&1 &
  BROKER=$!
  for _ in $(seq 1 100); do
    strata topic list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "broker did not start" >&2; exit 1
}
stop_broker() { kill -TERM "$BROKER"; wait "$BROKER" || true; }
wipe() { rm -rf "$DATA"; mkdir -p "$DATA"; sync; }
# Waits until only the active segment is local (everything sealed offloaded).
wait_offloaded() {
  for _ in $(seq 1 600); do
    if strata topic describe "$1" --output json | python3 -c '
import json,sys
p=json.load(sys.stdin)["partitions"][0]
sys.exit(0 if p["segments"]==1 and p["remote_end_offset"]==p["local_start_offset"]>0 else 1)'; then
      return 0
    fi
    sleep 0.5
  done
  echo "offload did not finish" >&2; exit 1
}
cold() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

for store in ${STORES:-file s3}; do
  [ "${ONLY:-}" = produce ] && break
  for i in $(seq 1 "$RUNS"); do
    wipe
    [ "$store" = s3 ] && start_s3
    start_broker "$store"
    strata topic create cold --partitions 1 --replication-factor 1 \
      --config remote.storage.enable=true --config segment.bytes=134217728 \
      --config retention.local.bytes=1 >/dev/null
    strata bench produce cold --bytes "$BYTES" --record-size 1024 --output json >"$OUT/$store-load-$i.json"
    wait_offloaded cold
    stop_broker; cold; start_broker "$store"
    strata bench consume cold --output json >"$OUT/$store-cold-read-$i.json"
    echo "$store cold read #$i: $(cat "$OUT/$store-cold-read-$i.json")"
    stop_broker; cold; start_broker "$store"
    strata bench fetch cold --records 200 --output json >"$OUT/$store-cold-fetch-$i.json"
    echo "$store cold fetch #$i: $(cat "$OUT/$store-cold-fetch-$i.json")"
    stop_broker
    [ "$store" = s3 ] && { kill "$S3"; wait "$S3" || true; }
  done
done

# Produce with and without offload, alternating, against both stores:
# off = remote.storage.enable=false; on = uploads at full speed;
# capped = uploads capped at CAP bytes/s (--tier-upload-bytes-per-sec).
CAP=${CAP:-100000000}
for store in ${STORES:-file s3}; do
  for i in $(seq 1 "$RUNS"); do
    for mode in off on capped; do
      wipe
      [ "$store" = s3 ] && start_s3
      if [ "$mode" = capped ]; then
        start_broker "$store" --tier-upload-bytes-per-sec "$CAP"
      else
        start_broker "$store"
      fi
      remote=true; [ "$mode" = off ] && remote=false
      strata topic create w --partitions 1 --replication-factor 1 \
        --config remote.storage.enable=$remote --config segment.bytes=67108864 \
        --config retention.local.bytes=1 >/dev/null
      strata bench produce w --bytes 2GB --record-size 1024 --output json \
        >"$OUT/$store-produce-$mode-$i.json"
      echo "$store produce offload=$mode #$i: $(cat "$OUT/$store-produce-$mode-$i.json")"
      curl -s "http://127.0.0.1:$((PORT + 1))/metrics" | grep -E '^strata_tier_uploaded_bytes_total' || true
      stop_broker
      [ "$store" = s3 ] && { kill "$S3"; wait "$S3" || true; }
    done
  done
done
wipe
