"""kafka-python 3.x (pure Python, negotiates each API from the specs)
against a strata broker's Kafka listener.

Usage: kafka_python_basic.py BOOTSTRAP

The admin client creates a 2-partition topic; a producer at acks=all
writes 2,000 keyed records; a plain consumer reads them back in order; a
group consumer reads them all and commits, and a second one of the group
resumes from the commit; the admin client lists the group and its
committed offsets; OffsetDelete is refused while a member consumes the
topic and then deletes one partition's offset; the admin client deletes
the topic. Exits non-zero with one line on the first mismatch.
"""

import sys
import time

import kafka.errors as Errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

N = 2000
TOPIC = "kp-events"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def read(consumer, n, timeout=30):
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        for _, msgs in consumer.poll(timeout_ms=500).items():
            got.extend(msgs)
    return got


def main():
    bootstrap = sys.argv[1]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    sent = {}
    futures = [
        (i, producer.send(TOPIC, key=f"k{i}".encode(), value=f"v{i}".encode()))
        for i in range(N)
    ]
    producer.flush(30)
    for i, f in futures:
        md = f.get(timeout=30)
        sent[(md.partition, md.offset)] = f"v{i}".encode()
    producer.close()

    plain = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    plain.assign([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
    plain.seek_to_beginning()
    got = read(plain, N)
    plain.close()
    if len(got) != N:
        fail(f"plain consumer read {len(got)} of {N}")
    last = {}
    for m in got:
        if sent.get((m.partition, m.offset)) != m.value:
            fail(f"record {(m.partition, m.offset)} differs")
        if last.get(m.partition, -1) >= m.offset:
            fail("out of order")
        last[m.partition] = m.offset

    group = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="kp-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    got = read(group, N)
    if len(got) != N:
        fail(f"group consumer read {len(got)} of {N}")
    group.commit()
    group.close()
    again = KafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, group_id="kp-group", auto_offset_reset="earliest"
    )
    leftover = read(again, 1, timeout=5)
    again.close()
    if leftover:
        fail(f"the group did not resume from its commit: {len(leftover)} records again")

    listed = admin.list_groups()
    if "kp-group" not in str(listed):
        fail(f"list_groups: {listed}")
    offsets = admin.list_group_offsets("kp-group")
    # {TopicPartition: OffsetAndMetadata}, nested under the group id in
    # newer releases.
    if offsets and all(isinstance(v, dict) for v in offsets.values()):
        offsets = {tp: o for per in offsets.values() for tp, o in per.items()}
    if sum(o.offset for o in offsets.values()) != N:
        fail(f"committed offsets: {offsets}")

    # OffsetDelete: refused while a member consumes the topic, then done;
    # an unknown group is refused as a whole.
    tp0, tp1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    live = KafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, group_id="kp-group", auto_offset_reset="earliest"
    )
    deadline = time.time() + 30
    while not live.assignment() and time.time() < deadline:
        live.poll(timeout_ms=200)
    if not live.assignment():
        fail("the live member got no partitions")
    r = admin.delete_group_offsets("kp-group", [tp0])
    if r.get(tp0) is not Errors.GroupSubscribedToTopicError:
        fail(f"offsets of a consumed topic deleted: {r}")
    live.close()
    r = admin.delete_group_offsets("kp-group", [tp0])
    if r.get(tp0) is not Errors.NoError:
        fail(f"delete_group_offsets: {r}")
    left = admin.list_group_offsets("kp-group")
    if left and all(isinstance(v, dict) for v in left.values()):
        left = {tp: o for per in left.values() for tp, o in per.items()}
    if set(left) != {tp1}:
        fail(f"offsets after the delete: {left}")
    try:
        admin.delete_group_offsets("kp-nobody", [tp0])
        fail("an unknown group's offsets were deleted")
    except Errors.GroupIdNotFoundError:
        pass

    admin.delete_topics([TOPIC])
    admin.close()
    print(f"ok: {N} records")


if __name__ == "__main__":
    main()
