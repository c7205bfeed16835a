#!/usr/bin/env bash
# Consumer-group rebalances (issue 13's benchmark): 8 `strata consume
# --group` members over a 64-partition topic on one broker, under a steady
# produce load. Measured from the members' assignment events (stderr, JSON,
# wall-clock ms): for each of EVENTS rounds, SIGKILL one member and start a
# new one; the death takes until every partition is owned again (session
# timeout included), the join until the newcomer owns its share. Each
# member's records are stamped as they arrive (partition, ms): the dip of a
# join is how far the records/s of the partitions that keep their owner
# fall in the 3 s after the join below the 3 s before (the lowest 500 ms
# window of each).
#
#   benches/scripts/groups.sh [OUT_DIR]      # EVENTS=20 SESSION_MS=3000
#
# Needs release binaries (cargo build --release -p strata-broker -p strata-cli).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-groups}
DATA=${STRATA_BENCH_DIR:-target/bench-data}
EVENTS=${EVENTS:-20}
SESSION_MS=${SESSION_MS:-3000}
MEMBERS=8
PARTS=64
BIN=target/release
B=127.0.0.1:19800
rm -rf "$OUT" "$DATA" && mkdir -p "$OUT" "$DATA"
"$BIN/stratad" --data-dir "$DATA/node" --listen $B --peer-listen 127.0.0.1:19801 \
  --http-listen 127.0.0.1:19802 --kafka-listen off --log-level warn >"$OUT/stratad.log" 2>&1 &
BROKER=$!
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  kill "$BROKER" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 1 100); do "$BIN/strata" --brokers $B topic list >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/strata" --brokers $B topic create g --partitions $PARTS >/dev/null
# A steady load (about 2,000 records/s) the members keep consuming.
"$BIN/strata" --brokers $B bench produce g --duration 100000 --rate 2000 --record-size 100 \
  --output json >/dev/null 2>&1 &
PIDS+=($!)
n=0
STAMP='import json, sys, time
out = open(sys.argv[1], "w")
for line in sys.stdin:
    try:
        p = json.loads(line)["partition"]
    except (ValueError, KeyError):
        continue
    out.write("%d %d\n" % (p, time.time() * 1000))'
member() {
  n=$((n + 1))
  "$BIN/strata" --brokers $B consume g --group bench --format json --session-timeout "$SESSION_MS" \
    2>"$OUT/member-$n.events" > >(python3 -c "$STAMP" "$OUT/member-$n.times") &
  PIDS+=($!)
  MEMBER_PID[$n]=$!
}
declare -A MEMBER_PID
for _ in $(seq 1 $MEMBERS); do member; done
sleep 8
: >"$OUT/rounds"
for e in $(seq 1 "$EVENTS"); do
  # The oldest live member dies.
  victim=$((e))
  kill -9 "${MEMBER_PID[$victim]}"
  echo "kill $victim $(date +%s%3N)" >>"$OUT/rounds"
  sleep $(( (SESSION_MS / 1000) + 3 ))
  member
  echo "join $n $(date +%s%3N)" >>"$OUT/rounds"
  sleep 4
done
# Stop the members so that every stamp is written.
for p in "${MEMBER_PID[@]}"; do kill "$p" 2>/dev/null || true; done
sleep 2
python3 - "$OUT" "$MEMBERS" "$PARTS" <<'PY'
import json, os, statistics, sys
out, members, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
events = {}  # member -> [(at, kind, [partitions])]
for f in os.listdir(out):
    if f.startswith("member-") and f.endswith(".events"):
        m = int(f[7:-7])
        evs = []
        for line in open(os.path.join(out, f)):
            try:
                j = json.loads(line)
            except ValueError:
                continue
            evs.append((j["at_ms"], j["event"], [int(p.rsplit("/", 1)[1]) for p in j["partitions"]]))
        events[m] = evs
rounds = [l.split() for l in open(os.path.join(out, "rounds"))]
killed = {}
def owners_at(t):
    own = {}
    for m, evs in events.items():
        if m in killed and killed[m] <= t:
            continue
        held = set()
        for at, kind, ps in evs:
            if at > t:
                break
            for p in ps:
                (held.add if kind == "assigned" else held.discard)(p)
        for p in held:
            own[p] = m
    return own
deaths, joins = [], []
for kind, m, at in rounds:
    m, at = int(m), int(at)
    if kind == "kill":
        killed[m] = at
        times = sorted({a for evs in events.values() for a, k, _ in evs if a > at})
        done = next((t for t in times if len(owners_at(t)) == parts), None)
        if done:
            deaths.append(done - at)
    else:
        share = parts // members
        evs = events.get(m, [])
        held, done = set(), None
        for a, k, ps in evs:
            for p in ps:
                (held.add if k == "assigned" else held.discard)(p)
            if len(held) >= share:
                done = a
                break
        if done:
            joins.append(done - at)
# The dip of each join, over the partitions whose owner did not change.
stamps = {}  # partition -> sorted arrival times
for f in os.listdir(out):
    if f.startswith("member-") and f.endswith(".times"):
        for line in open(os.path.join(out, f)):
            p, t = line.split()
            stamps.setdefault(int(p), []).append(int(t))
for v in stamps.values():
    v.sort()
import bisect
def count(parts, a, b):
    return sum(bisect.bisect_left(stamps.get(p, []), b) - bisect.bisect_left(stamps.get(p, []), a) for p in parts)
dips = []
killed = {}
for kind, m, at in rounds:
    m, at = int(m), int(at)
    if kind == "kill":
        killed[m] = at
        continue
    before, after = owners_at(at - 1), owners_at(at + 3000)
    kept = [p for p, o in before.items() if after.get(p) == o]
    if not kept:
        continue
    def lowest(a):
        return min(count(kept, t, t + 500) for t in range(a, a + 2501, 100))
    base = lowest(at - 3000)
    if base <= 0:
        continue
    dips.append(max(0.0, 1 - lowest(at) / base) * 100)
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
for name, v in (("death", deaths), ("join", joins)):
    if v:
        print(f"{name}: n={len(v)} p50 {q(v, .5)} ms p99 {q(v, .99)} ms max {max(v)} ms")
    else:
        print(f"{name}: no complete events")
if dips:
    print(f"join dip of kept partitions (lowest 500 ms window, 3 s after vs 3 s before): n={len(dips)} "
          f"p50 {q(dips, .5):.0f}% p99 {q(dips, .99):.0f}% max {max(dips):.0f}%")
PY
