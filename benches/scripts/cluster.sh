#!/usr/bin/env bash
# Three-broker benchmark runs (BENCHMARKS.md W5-W8) on this machine, with the
# disk and loopback limits measured in the same run.
#
#   benches/scripts/cluster.sh [OUT_DIR]      # W5, W5s, W6, W7
#   ONLY=w7 benches/scripts/cluster.sh        # failover only (root: namespaces)
#   ONLY=w7 W7_KINDS="stop isolate" ...       # some fault kinds only
#   W7_LOG_LEVEL=info ONLY=w7 ...             # brokers log elections (w7-events.txt
#                                             # has each fault's times to match)
#   ONLY=w8 benches/scripts/cluster.sh        # 10,000 idle partitions
#   ONLY=tls benches/scripts/cluster.sh       # W5 with and without TLS
#   ONLY=stages benches/scripts/cluster.sh    # produce latency per stage at
#                                             # 20k and 100k records/s
#
# Needs release binaries (cargo build --release -p strata-broker -p strata-cli),
# fio and iperf3. Brokers and load generator share the machine and talk over
# 127.0.0.1. Every throughput/latency figure comes from
# `strata bench ... --output json`; failover times are measured here from the
# SIGKILL to the first acknowledged produce on the new leader.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-results}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
RUNS=${RUNS:-3}
KILLS=${KILLS:-20}
FSYNC=${FSYNC:-never}
BIN=${STRATA_BIN:-target/release}
mkdir -p "$OUT"
IC="1=127.0.0.1:19611,2=127.0.0.1:19612,3=127.0.0.1:19613"
BROKERS=127.0.0.1:19601,127.0.0.1:19602,127.0.0.1:19603
declare -A PID
NODE_TLS=()
CLI_TLS=()

start_node() { # id
  local n=$1
  "$BIN/stratad" --node-id "$1" --data-dir "$DATA/n$1" --listen "127.0.0.1:1960$1" \
    --peer-listen "127.0.0.1:1961$1" --http-listen "127.0.0.1:1962$1" --kafka-listen off --initial-cluster "$IC" --fsync "$FSYNC" --log-level "${LOG_LEVEL:-warn}" \
    --retention-check-interval 2s "${NODE_TLS[@]}" \
    >>"$OUT/stratad-$1.log" 2>&1 &
  PID[$n]=$!
}
strata() { "$BIN/strata" --brokers "$BROKERS" "${CLI_TLS[@]}" "$@"; }
HTTP_ADDRS="127.0.0.1:19621 127.0.0.1:19622 127.0.0.1:19623"
# Every broker answers /ready (caught up with the controller, replicas
# open), and the cluster reports every partition led and in sync: a broker
# that restarted is back in its groups before the next fault.
all_ready() {
  local a
  for a in $HTTP_ADDRS; do curl -sf -o /dev/null "http://$a/ready" || return 1; done
}
wait_ready() {
  for _ in $(seq 1 "${READY_TRIES:-300}"); do
    all_ready && strata cluster status --output json 2>/dev/null |
      python3 -c 'import json,sys;j=json.load(sys.stdin);sys.exit(0 if all(b["alive"] for b in j["brokers"]) and len(j["brokers"])==3 and j["under_replicated_partitions"]==0 and j["leaderless_partitions"]==0 else 1)' 2>/dev/null &&
      return 0
    sleep 0.2
  done
  echo "cluster did not become healthy" >&2; exit 1
}
start_cluster() {
  local n
  rm -rf "$DATA" && mkdir -p "$DATA"
  for n in 1 2 3; do start_node $n; done
  wait_ready
}
stop_cluster() {
  local n
  for n in 1 2 3; do kill -TERM "${PID[$n]}" 2>/dev/null || true; done
  wait || true
  rm -rf "$DATA"
}
leader_of() { # topic partition
  local j
  for _ in $(seq 1 100); do
    j=$(strata topic describe "$1" --output json 2>/dev/null) &&
      python3 -c "import json,sys;l=json.loads(sys.argv[1])['partitions'][$2]['leader'];assert l>0;print(l)" "$j" 2>/dev/null &&
      return 0
    sleep 0.1
  done
  echo "no leader for $1-$2" >&2; exit 1
}

# A broker keeps a descriptor and three maps per hosted replica (the active
# segment and its two indexes): 100,000 replicas need more than the
# defaults (as Kafka's do). Raised where the caller may (root).
ulimit -n 1048576 2>/dev/null || ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(id -u)" = 0 ] && [ "$(cat /proc/sys/vm/max_map_count)" -lt 1048576 ]; then
  sysctl -qw vm.max_map_count=1048576 || true
fi
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

if [ "${ONLY:-}" = w8 ]; then
  # A fresh ext4 (with a journal, as a broker's data disk would have) unless
  # W8_FRESH_FS=0. On an aged ext4 without a journal, allocating an inode
  # right after a previous run deleted ~100,000 files scans every recently
  # deleted inode, which makes creating 10,000 partitions (7 files each) take
  # minutes on its own.
  if [ "${W8_FRESH_FS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
    IMG=$(mktemp "${TMPDIR:-/var/tmp}/strata-w8.XXXXXX")
    MNT=$(mktemp -d)
    # Three brokers' replicas, each a directory and up to 7 files.
    W8_INODES=$(( ${W8_PARTITIONS:-10000} * 3 * 8 + 100000 ))
    W8_GB=$(( 8 + ${W8_PARTITIONS:-10000} / 5000 ))
    truncate -s "${W8_GB}G" "$IMG" && mkfs.ext4 -q -F -N "$W8_INODES" "$IMG" && mount -o loop "$IMG" "$MNT"
    trap 'umount "$MNT" 2>/dev/null; rm -f "$IMG"; rmdir "$MNT"' EXIT
    DATA="$MNT/data"
    echo "data on a fresh ext4 image ($IMG)"
  fi
  echo "== W8: ${W8_PARTITIONS:-10000} RF3 partitions, idle"
  # Creating 100,000 partitions takes longer than the other waits allow.
  READY_TRIES=3000
  start_cluster
  T0=$(date +%s.%N)
  strata topic create scale --partitions "${W8_PARTITIONS:-10000}" --replication-factor 3 \
    --config segment.bytes=1048576 >/dev/null
  wait_ready
  T1=$(date +%s.%N)
  python3 -c "print('w8 creation until every partition has a leader and full ISR: %.1f s' % ($T1-$T0))"
  sleep "${W8_SETTLE:-20}"
  declare -A C0
  for i in 1 2 3; do C0[$i]=$(cpu_ticks "${PID[$i]}"); done
  sleep "${W8_SECS:-30}"
  HZ=$(getconf CLK_TCK)
  for i in 1 2 3; do
    C1=$(cpu_ticks "${PID[$i]}")
    python3 -c "print('w8 broker $i idle CPU: %.1f%% of a core' % (100.0*($C1-${C0[$i]})/$HZ/${W8_SECS:-30}))"
  done
  # Resident memory split into the heap (anonymous) and the mapped pages of
  # segment and index files (page cache the kernel can reclaim and share).
  for i in 1 2 3; do
    read -r RSS ANON FILE <<<"$(awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f+=$2} /^RssShmem/{f+=$2} END{print r, a, f}' "/proc/${PID[$i]}/status")"
    python3 -c "n=${W8_PARTITIONS:-10000}; print('w8 broker $i resident memory: %.0f MiB, %.1f KiB per hosted replica (heap %.1f KiB, mapped files %.1f KiB)' % ($RSS/1024, $RSS/n, $ANON/n, $FILE/n))"
  done
  stop_cluster
  exit 0
fi

if [ "${ONLY:-}" = stages ]; then
  # Where the time of a replicated produce goes: RF3 acks=all, 6 partitions,
  # default client settings, at fixed rates (STAGE_RATES, records/s of
  # 1 KiB); the brokers' strata_produce_stage_seconds histograms are
  # scraped before and after each run and their difference summarized.
  start_cluster
  strata topic create bench --partitions 6 --replication-factor 3 >/dev/null
  scrape() { for a in $HTTP_ADDRS; do curl -sf "http://$a/metrics"; done >"$1"; }
  # Client settings alternate within each round: STAGE_MODES lists
  # name=flags entries (flags comma-separated), the default client first.
  read -r -a MODES <<<"${STAGE_MODES:-default= linger=--no-idle-send}"
  for rate in ${STAGE_RATES:-20000 100000}; do
    for i in $(seq 1 "$RUNS"); do
     for entry in "${MODES[@]}"; do
      mode=${entry%%=*}
      IFS=, read -r -a flags <<<"${entry#*=}"
      base="$OUT/stages-$rate-$mode-$i"
      scrape "$base.before"
      strata bench produce bench --duration "${STAGE_SECS:-30}" --rate "$rate" --record-size 1024 \
        --acks all "${flags[@]}" --output json >"$base.json"
      scrape "$base.after"
      printf '%s %s #%s: ' "$rate" "$mode" "$i"
      python3 - "$base" <<'PY'
import json, re, sys
base = sys.argv[1]
def buckets(path):
    out = {}
    for m in re.finditer(r'strata_produce_stage_seconds_bucket\{le="([^"]+)",stage="([^"]+)"\} (\S+)|'
                         r'strata_produce_stage_seconds_bucket\{stage="([^"]+)",le="([^"]+)"\} (\S+)',
                         open(path).read()):
        le, stage, v = (m[1], m[2], m[3]) if m[1] else (m[5], m[4], m[6])
        le = float("inf") if le == "+Inf" else float(le)
        out.setdefault(stage, {}).setdefault(le, 0.0)
        out[stage][le] += float(v)
    return out
before, after = buckets(base + ".before"), buckets(base + ".after")
def quantile(cum, q):
    total = cum[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in cum:
        if n >= q * total:
            if le == float("inf"):
                return prev_le
            frac = (q * total - prev_n) / max(n - prev_n, 1e-9)
            return prev_le + (le - prev_le) * frac
        prev_le, prev_n = le, n
    return prev_le
j = json.load(open(base + ".json"))
l = j["latency_ms"]
line = [f"{j['mb_per_sec']} MB/s; send->ack p50/p99/p99.9/max {l['p50']}/{l['p99']}/{l['p999']}/{l['max']} ms; broker stages p50/p99 ms:"]
for stage in ("check", "queue", "append", "replicate", "respond"):
    a, b = after.get(stage, {}), before.get(stage, {})
    cum = sorted((le, a[le] - b.get(le, 0.0)) for le in a)
    if not cum or cum[-1][1] <= 0:
        continue
    line.append(f"{stage} {quantile(cum, 0.5) * 1e3:.2f}/{quantile(cum, 0.99) * 1e3:.2f}")
print(" ".join(line))
PY
     done
    done
  done
  stop_cluster
  exit 0
fi

if [ "${ONLY:-}" = tls ]; then
  # W5 with and without TLS (mutual TLS between brokers and for the client),
  # alternating in the same run.
  T="$OUT/tls"
  "$BIN/strata" tls gen --out "$T" --hosts 127.0.0.1,localhost >/dev/null
  for i in $(seq 1 "$RUNS"); do
    for mode in plain tls; do
      if [ "$mode" = tls ]; then
        NODE_TLS=(--tls-cert "$T/broker.pem" --tls-key "$T/broker-key.pem" --tls-ca "$T/ca.pem" --tls-client-auth required)
        CLI_TLS=(--tls-ca "$T/ca.pem" --tls-cert "$T/client.pem" --tls-key "$T/client-key.pem")
      else
        NODE_TLS=()
        CLI_TLS=()
      fi
      start_cluster
      strata topic create bench --partitions 6 --replication-factor 3 >/dev/null
      strata bench produce bench --bytes "${W5_BYTES:-1GB}" --record-size 1024 --acks all --output json \
        >"$OUT/w5-$mode-$i.json"
      echo "w5 $mode #$i: $(cat "$OUT/w5-$mode-$i.json")"
      stop_cluster
    done
  done
  python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
med = {}
for mode in ("plain", "tls"):
    v = [json.load(open(f"{out}/w5-{mode}-{i}.json"))["mb_per_sec"] for i in range(1, runs + 1)]
    med[mode] = statistics.median(v)
    print(f"w5 {mode}: median {med[mode]:.1f} MB/s ({min(v):.1f}-{max(v):.1f})")
print(f"TLS costs {100 * (1 - med['tls'] / med['plain']):.1f}% of throughput")
PY
  exit 0
fi

echo "== limits"
fio --name=w --filename="$OUT/fio.tmp" --rw=write --bs=1M --size=1G --ioengine=psync --fdatasync=1 \
  --output-format=json >"$OUT/fio.json" 2>/dev/null && rm -f "$OUT/fio.tmp" &&
  python3 -c "import json;j=json.load(open('$OUT/fio.json'));print('fio write+fdatasync MB/s', round(j['jobs'][0]['write']['bw_bytes']/1e6,1))"
iperf3 -s -1 -p 19699 >/dev/null 2>&1 & sleep 0.5
iperf3 -c 127.0.0.1 -p 19699 -t 5 -J >"$OUT/iperf3.json"
python3 -c "import json;j=json.load(open('$OUT/iperf3.json'));print('iperf3 loopback MB/s', round(j['end']['sum_received']['bits_per_second']/8e6,1))"

if [ "${ONLY:-}" != w7 ]; then
echo "== W5: RF3 acks=all produce, 6 partitions, max rate (fsync=$FSYNC)"
for i in $(seq 1 "$RUNS"); do
  start_cluster
  strata topic create bench --partitions 6 --replication-factor 3 >/dev/null
  strata bench produce bench --bytes "${W5_BYTES:-1GB}" --record-size 1024 --acks all --output json \
    >"$OUT/w5-$i.json"
  echo "w5 #$i: $(cat "$OUT/w5-$i.json")"
  stop_cluster
done
# A 1 GB run fits in the page cache; the rate W6 halves is the one the
# cluster sustains for a minute (dirty-page writeback included). A minute at
# that rate is ~65 GB over three brokers: retention keeps ~1 GiB per replica.
BOUNDED="--config retention.bytes=1073741824 --config segment.bytes=268435456"
echo "== W5s: as W5, sustained for ${W5S_SECS:-60}s"
for i in $(seq 1 "$RUNS"); do
  start_cluster
  strata topic create bench --partitions 6 --replication-factor 3 $BOUNDED >/dev/null
  strata bench produce bench --duration "${W5S_SECS:-60}" --record-size 1024 --acks all --warmup 2 \
    --output json >"$OUT/w5s-$i.json"
  echo "w5s #$i: $(cat "$OUT/w5s-$i.json")"
  stop_cluster
done
MAX=$(python3 -c "import json,statistics;print(int(statistics.median(json.load(open('$OUT/w5s-%d.json'%i))['records_per_sec'] for i in range(1,$RUNS+1))))")
HALF=$((MAX / 2))

echo "== W6: RF3 acks=all at half the max rate ($HALF records/s), ${W6_SECS:-60}s"
for i in $(seq 1 "$RUNS"); do
  start_cluster
  strata topic create bench --partitions 6 --replication-factor 3 $BOUNDED >/dev/null
  strata bench produce bench --duration "${W6_SECS:-60}" --rate "$HALF" --record-size 1024 \
    --acks all --warmup 2 --output json >"$OUT/w6-$i.json"
  echo "w6 #$i: $(cat "$OUT/w6-$i.json")"
  stop_cluster
done

fi

echo "== W7: failover, $KILLS faults of each kind (SIGKILL, SIGSTOP, isolation) of the leader"
# The brokers run in network namespaces (one each, on a bridge; the CLI
# talks to them from this namespace) so that a leader can be cut off from
# its peers while clients still reach it. Needs root.
NS=sw7n; BR=sw7br; NET=10.251.77
setup_netns() {
  local i
  ip link add "$BR" type bridge && ip addr add "$NET.1/24" dev "$BR" && ip link set "$BR" up
  # Bridged frames pass the root FORWARD chain, whose policy Docker sets to
  # DROP: let the brokers' traffic through.
  iptables -I FORWARD -i "$BR" -o "$BR" -j ACCEPT -m comment --comment strata-w7
  for i in 1 2 3; do
    ip netns add "$NS$i"
    ip link add "${NS}h$i" type veth peer name eth0 netns "$NS$i"
    ip link set "${NS}h$i" master "$BR" up
    ip -n "$NS$i" addr add "$NET.1$i/24" dev eth0
    ip -n "$NS$i" link set eth0 up
    ip -n "$NS$i" link set lo up
  done
}
teardown_netns() {
  local i
  for i in 1 2 3; do ip netns del "$NS$i" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
  while iptables -D FORWARD -i "$BR" -o "$BR" -j ACCEPT -m comment --comment strata-w7 2>/dev/null; do :; done
}
teardown_netns
setup_netns
trap teardown_netns EXIT
IC="1=$NET.11:9293,2=$NET.12:9293,3=$NET.13:9293"
BROKERS="$NET.11:9292,$NET.12:9292,$NET.13:9292"
HTTP_ADDRS="$NET.11:9294 $NET.12:9294 $NET.13:9294"
start_node() { # id
  local n=$1
  ip netns exec "$NS$n" "$BIN/stratad" --node-id "$n" --data-dir "$DATA/n$n" --listen "$NET.1$n:9292" \
    --peer-listen "$NET.1$n:9293" --http-listen "$NET.1$n:9294" --kafka-listen off --initial-cluster "$IC" --fsync "$FSYNC" \
    --log-level "${W7_LOG_LEVEL:-warn}" --retention-check-interval 2s >>"$OUT/stratad-$n.log" 2>&1 &
  PID[$n]=$!
}
isolate() { # id: drop its traffic to and from the other brokers (not the clients)
  local j
  for j in 1 2 3; do
    [ "$j" = "$1" ] && continue
    ip netns exec "$NS$1" iptables -I INPUT -s "$NET.1$j" -j DROP
    ip netns exec "$NS$1" iptables -I OUTPUT -d "$NET.1$j" -j DROP
  done
}
heal() { ip netns exec "$NS$1" iptables -F; }
start_cluster
strata topic create fo --partitions 1 --replication-factor 3 >/dev/null
for kind in ${W7_KINDS:-kill stop isolate}; do
  : >"$OUT/w7-$kind.txt"
  for k in $(seq 1 "$KILLS"); do
    L=$(leader_of fo 0)
    T0=$(date +%s.%N)
    case $kind in
      kill) kill -KILL "${PID[$L]}" ;;
      stop) kill -STOP "${PID[$L]}" ;;
      isolate) isolate "$L" ;;
    esac
    tries=1
    until echo "$kind$k" | strata produce fo --partition 0 --acks all >/dev/null 2>>"$OUT/w7-cli.log"; do
      tries=$((tries + 1))
    done
    T1=$(date +%s.%N)
    python3 -c "print(round($T1-$T0,3))" | tee -a "$OUT/w7-$kind.txt"
    echo "$kind $k leader=$L t0=$T0 t1=$T1 cli_tries=$tries" >>"$OUT/w7-events.txt"
    case $kind in
      kill) wait "${PID[$L]}" 2>/dev/null || true; start_node "$L" ;;
      stop) kill -CONT "${PID[$L]}" ;;
      isolate) heal "$L" ;;
    esac
    wait_ready
  done
done
python3 - "$OUT" ${W7_KINDS:-kill stop isolate} <<'PY'
import sys
for kind in sys.argv[2:]:
    v = sorted(float(x) for x in open(f"{sys.argv[1]}/w7-{kind}.txt") if x.strip())
    q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
    print(f"w7 {kind}: {len(v)} faults, first acknowledgement after p50 {q(0.5):.3f}s p99 {q(0.99):.3f}s max {v[-1]:.3f}s")
PY
stop_cluster
