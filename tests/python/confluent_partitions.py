"""confluent-kafka's AdminClient grows a topic and looks offsets up.

Usage: confluent_partitions.py BOOTSTRAP TOPIC

TOPIC has 4 partitions and RF 3 on entry. CreatePartitions: a dry run to
10 changes nothing; a shrink to 3 is refused with INVALID_PARTITIONS; the
topic grows to 6 (placed by the broker), then to 7 on named brokers 1, 2
and 3; every partition then has a leader and takes a record that is read
back. ListOffsets: earliest, latest and max timestamp of a partition with
known timestamps. Exits non-zero with one line on the first mismatch.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, OffsetSpec


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def partitions(admin, topic):
    md = admin.list_topics(topic, timeout=10)
    t = md.topics[topic]
    if t.error is not None:
        fail(f"metadata of {topic}: {t.error}")
    return t.partitions


def grow(admin, topic, count, assignment=None, dry=False):
    new = (NewPartitions(topic, count) if assignment is None
           else NewPartitions(topic, count, replica_assignment=assignment))
    futures = admin.create_partitions(
        [new],
        validate_only=dry,
        request_timeout=30,
    )
    return futures[topic].result(timeout=30)


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if len(partitions(admin, topic)) != 4:
        fail(f"{topic} does not start with 4 partitions")

    grow(admin, topic, 10, dry=True)
    if len(partitions(admin, topic)) != 4:
        fail("a dry run changed the topic")
    try:
        grow(admin, topic, 3)
        fail("a shrink was accepted")
    except KafkaException as e:
        if e.args[0].code() != KafkaError.INVALID_PARTITIONS:
            fail(f"a shrink failed with {e}")

    grow(admin, topic, 6)
    grow(admin, topic, 7, assignment=[[3, 1, 2]])
    deadline = time.time() + 30
    while True:
        parts = partitions(admin, topic)
        if len(parts) == 7 and all(p.leader >= 0 for p in parts.values()):
            break
        if time.time() > deadline:
            fail(f"not 7 led partitions: {[(p.id, p.leader) for p in parts.values()]}")
        time.sleep(0.2)
    if sorted(parts[6].replicas) != [1, 2, 3]:
        fail(f"partition 6 is on {parts[6].replicas}")

    # One record per partition, read back from each.
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    errors = []
    for i in range(7):
        p.produce(topic, value=f"p{i}".encode(), partition=i, timestamp=1_000 + i * 10,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    if p.flush(30) != 0 or errors:
        fail(f"produce to the grown topic: {errors}")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "grow-check",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, i, 0) for i in range(7)])
    seen = {}
    deadline = time.time() + 30
    while len(seen) < 7 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen[m.partition()] = m.value().decode()
    c.close()
    if seen != {i: f"p{i}" for i in range(7)}:
        fail(f"read back {seen}")

    # ListOffsets, max timestamp included (v7), on partition 6: a second
    # record with an older timestamp than the first.
    p.produce(topic, value=b"older", partition=6, timestamp=500)
    p.flush(30)
    tp = TopicPartition(topic, 6)
    got = {}
    for name, spec in [("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest()),
                       ("max", OffsetSpec.max_timestamp())]:
        r = admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(timeout=30)
        got[name] = (r.offset, r.timestamp)
    if got["earliest"][0] != 0 or got["latest"][0] != 2 or got["max"] != (0, 1_060):
        fail(f"list offsets: {got}")
    print("ok")


if __name__ == "__main__":
    main()
