#!/usr/bin/env bash
# strata against its peers on this machine, in one run, alternating system
# by system within each round, with the disk and loopback limits of the
# same run. 1 KiB records, one producer, one partition (one stream):
#
#   W1  produce BYTES, no fsync (strata --fsync never; NATS's default)
#   W4  consume what W1 wrote, from the start
#   W3  produce BYTES with an fsync per batch (strata --fsync always;
#       Iggy with IGGY_ENFORCE_FSYNC; NATS 2.9 has no per-write fsync)
#   RF3 produce BYTES acknowledged after replication, three servers on this
#       machine (strata acks=all RF3; NATS JetStream R3; Iggy only with
#       IGGY_CLUSTER_CMD, see below)
#
#   benches/scripts/peers.sh [OUT_DIR]
#   RUNS=3 BYTES=1GB IGGY_DIR=/path/to/iggy/target/release benches/scripts/peers.sh
#
# Needs release strata binaries (cargo build --release -p strata-broker
# -p strata-cli), fio, iperf3, Debian's nats-server and libnats-dev (the C
# client the NATS loader is built on). Apache Iggy is run when IGGY_DIR
# holds a built `iggy-server` and `iggy-bench` (Iggy is not packaged on
# Debian, crates.io or PyPI); IGGY_PRODUCE_ARGS and IGGY_CONSUME_ARGS
# override the iggy-bench arguments, and IGGY_CLUSTER_CMD (a command that
# starts a 3-replica cluster and prints the bench's arguments) adds RF3.
# Every figure is one JSON line in OUT_DIR/summary.jsonl; the table at the
# end gives the median and range per system and the ratio to strata.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/lib.sh
OUT=${1:-target/bench-peers}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
RUNS=${RUNS:-3}
BYTES=${BYTES:-1GB}
BIN=target/release
NATS_LOAD=target/nats_load
mkdir -p "$OUT"
: >"$OUT/summary.jsonl"
PIDS=()

bytes_of() { python3 -c "import re,sys;m=re.fullmatch(r'(\d+)(GB|MB|)',sys.argv[1]);print(int(m[1])*{'GB':10**9,'MB':10**6,'':1}[m[2]])" "$1"; }
NBYTES=$(bytes_of "$BYTES")

stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  rm -rf "$DATA"
  sync
}
trap stop_all EXIT

# record SYSTEM WORKLOAD RUN JSON: one summary line.
record() {
  python3 - "$@" >>"$OUT/summary.jsonl" <<'PY'
import json, sys
system, workload, run, raw = sys.argv[1:5]
j = json.loads(raw)
print(json.dumps({"system": system, "workload": workload, "run": int(run),
                  "mb_per_sec": j["mb_per_sec"], "p99_ms": (j.get("latency_ms") or {}).get("p99")}))
PY
  echo "$1 $2 #$3: $4"
}

wait_port() { # host:port
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  exit 1
}

# ---- strata
strata_single() { # fsync
  rm -rf "$DATA" && mkdir -p "$DATA"
  "$BIN/stratad" --data-dir "$DATA/strata" --listen 127.0.0.1:19500 --http-listen 127.0.0.1:19520 \
    --kafka-listen off --fsync "$1" --log-level warn >>"$OUT/stratad.log" 2>&1 &
  PIDS=($!)
  for _ in $(seq 1 100); do
    "$BIN/strata" --brokers 127.0.0.1:19500 topic list >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$BIN/strata" --brokers 127.0.0.1:19500 topic create bench --partitions 1 --replication-factor 1 >/dev/null
}
strata_w1_w4() { # run
  strata_single never
  record strata w1 "$1" "$("$BIN/strata" --brokers 127.0.0.1:19500 bench produce bench --bytes "$BYTES" \
    --record-size 1024 --output json)"
  record strata w4 "$1" "$("$BIN/strata" --brokers 127.0.0.1:19500 bench consume bench --bytes "$BYTES" \
    --record-size 1024 --output json)"
  stop_all
}
strata_w3() { # run
  strata_single always
  record strata w3 "$1" "$("$BIN/strata" --brokers 127.0.0.1:19500 bench produce bench --bytes "$BYTES" \
    --record-size 1024 --output json)"
  stop_all
}
strata_rf3() { # run
  local brokers=$STRATA_CLUSTER_BROKERS
  start_strata_cluster "$BIN" "$DATA" "$OUT/stratad.log"
  "$BIN/strata" --brokers "$brokers" topic create bench --partitions 1 --replication-factor 3 >/dev/null
  record strata rf3 "$1" "$("$BIN/strata" --brokers "$brokers" bench produce bench --bytes "$BYTES" \
    --record-size 1024 --acks all --output json)"
  stop_all
}

# ---- NATS JetStream (file storage)
nats_w1_w4() { # run
  rm -rf "$DATA" && mkdir -p "$DATA"
  nats-server -a 127.0.0.1 -p 19800 -js -sd "$DATA/nats" >>"$OUT/nats.log" 2>&1 &
  PIDS=($!)
  wait_port 127.0.0.1:19800
  record nats w1 "$1" "$("$NATS_LOAD" produce nats://127.0.0.1:19800 bench 1 "$NBYTES" 1024)"
  record nats w4 "$1" "$("$NATS_LOAD" consume nats://127.0.0.1:19800 bench "$NBYTES" 1024)"
  stop_all
}
nats_rf3() { # run
  local n routes=nats://127.0.0.1:19811,nats://127.0.0.1:19812,nats://127.0.0.1:19813
  rm -rf "$DATA" && mkdir -p "$DATA"
  for n in 1 2 3; do
    nats-server -n "nats$n" -a 127.0.0.1 -p "1980$n" -js -sd "$DATA/nats$n" --cluster_name bench \
      --cluster "nats://127.0.0.1:1981$n" --routes "$routes" >>"$OUT/nats.log" 2>&1 &
    PIDS+=($!)
  done
  for n in 1 2 3; do wait_port "127.0.0.1:1980$n"; done
  record nats rf3 "$1" "$("$NATS_LOAD" produce nats://127.0.0.1:19801 bench 3 "$NBYTES" 1024)"
  stop_all
}

# ---- Apache Iggy (only with IGGY_DIR)
# iggy-bench prints its own summary; the producer's or consumer's
# "Throughput: ... MB/s" figure is taken from it.
iggy_figure() { # log_file
  python3 - "$1" <<'PY'
import json, re, sys
text = open(sys.argv[1], errors="replace").read()
mb = [float(x) for x in re.findall(r"([0-9]+(?:\.[0-9]+)?)\s*MB/s", text)]
if not mb:
    sys.exit(f"no MB/s figure in {sys.argv[1]}")
p99 = re.findall(r"p99[^0-9]*([0-9]+(?:\.[0-9]+)?)\s*ms", text)
print(json.dumps({"mb_per_sec": mb[-1], "latency_ms": {"p99": float(p99[-1]) if p99 else None}}))
PY
}
iggy_run() { # run workload fsync(true|false) bench-args...
  local run=$1 w=$2 fsync=$3
  shift 3
  rm -rf "$DATA" && mkdir -p "$DATA"
  IGGY_SYSTEM_PATH="$DATA/iggy" IGGY_TCP_ADDRESS=127.0.0.1:8090 \
    IGGY_SYSTEM_PARTITION_ENFORCE_FSYNC=$fsync "$IGGY_DIR/iggy-server" >>"$OUT/iggy.log" 2>&1 &
  PIDS=($!)
  wait_port 127.0.0.1:8090
  "$IGGY_DIR/iggy-bench" "$@" >"$OUT/iggy-$w-$run.log" 2>&1
  record iggy "$w" "$run" "$(iggy_figure "$OUT/iggy-$w-$run.log")"
  stop_all
}
IGGY_PRODUCE_ARGS=${IGGY_PRODUCE_ARGS:---total-data $BYTES --message-size 1024 --messages-per-batch 1000 pinned-producer --producers 1 --streams 1 tcp}
IGGY_CONSUME_ARGS=${IGGY_CONSUME_ARGS:---total-data $BYTES --message-size 1024 --messages-per-batch 1000 pinned-consumer --consumers 1 --streams 1 tcp}
iggy_all() { # run
  # shellcheck disable=SC2086
  iggy_run "$1" w1 false $IGGY_PRODUCE_ARGS
  # shellcheck disable=SC2086
  iggy_run "$1" w3 true $IGGY_PRODUCE_ARGS
  if [ -n "${IGGY_CLUSTER_CMD:-}" ]; then
    local args
    args=$($IGGY_CLUSTER_CMD)
    # shellcheck disable=SC2086
    "$IGGY_DIR/iggy-bench" $args >"$OUT/iggy-rf3-$1.log" 2>&1
    record iggy rf3 "$1" "$(iggy_figure "$OUT/iggy-rf3-$1.log")"
  fi
}

echo "== limits"
for tool in fio iperf3 nats-server cc; do
  command -v $tool >/dev/null || { echo "needs $tool (apt-get install -y fio iperf3 nats-server libnats-dev gcc)" >&2; exit 1; }
done
cc -O2 -o "$NATS_LOAD" benches/scripts/nats_load.c -lnats
measure_limits "$OUT"
[ -n "${IGGY_DIR:-}" ] || echo "(IGGY_DIR not set: Apache Iggy is left out)"

for i in $(seq 1 "$RUNS"); do
  strata_w1_w4 "$i"
  nats_w1_w4 "$i"
  [ -n "${IGGY_DIR:-}" ] && iggy_all "$i"
  strata_w3 "$i"
  strata_rf3 "$i"
  nats_rf3 "$i"
done

python3 - "$OUT/summary.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
systems = [s for s in ("strata", "iggy", "nats") if any(r["system"] == s for r in rows)]
print("| workload | " + " | ".join(systems) + " |")
print("|---|" + "---|" * len(systems))
for w in ("w1", "w4", "w3", "rf3"):
    med = {}
    cells = []
    for s in systems:
        mb = [r["mb_per_sec"] for r in rows if r["system"] == s and r["workload"] == w]
        if not mb:
            cells.append("—")
            continue
        med[s] = statistics.median(mb)
        cells.append(f"{med[s]:.0f} ({min(mb):.0f}–{max(mb):.0f}) MB/s")
    if "strata" in med:
        cells = [c + (f", strata ×{med['strata'] / med[s]:.2f}" if s != "strata" and s in med else "")
                 for s, c in zip(systems, cells)]
    print(f"| {w} | " + " | ".join(cells) + " |")
PY
