"""confluent-kafka (librdkafka) against a strata broker's Kafka listener.

Usage: confluent_basic.py BOOTSTRAP

AdminClient creates a topic of 3 partitions; an idempotent producer at
acks=all writes 30,000 keyed records with headers; a consumer with
assigned partitions reads every record back exactly once and in order per
partition, commits offsets with metadata and reads them back; the
AdminClient lists and describes groups, describes the topic and deletes a
topic. Exits non-zero with one
line on the first mismatch.
"""

import sys
import time

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

N = 30_000
TOPIC = "cf-orders"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def c_watermarks(bootstrap, topic, partition):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def main():
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(TOPIC, num_partitions=3, replication_factor=1)])
    for t, f in fs.items():
        f.result(timeout=30)
    md = admin.list_topics(timeout=10)
    if TOPIC not in md.topics or len(md.topics[TOPIC].partitions) != 3:
        fail(f"metadata: {md.topics}")

    acked = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    for i in range(N):
        p.produce(
            TOPIC,
            key=f"k{i % 97}".encode(),
            value=f"v{i}".encode(),
            headers=[("seq", str(i).encode())],
            on_delivery=on_delivery,
        )
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(60) != 0:
        fail("producer did not flush")
    if errors:
        fail(f"delivery errors: {errors[:3]}")
    if len(acked) != N:
        fail(f"{len(acked)} acked of {N}")

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "cf-readers",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(TOPIC, i, 0) for i in range(3)])
    seen = {}
    last = {}
    deadline = time.time() + 60
    while len(seen) < N and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consume error: {m.error()}")
        key = (m.partition(), m.offset())
        if key in seen:
            fail(f"duplicate {key}")
        if last.get(m.partition(), -1) >= m.offset():
            fail(f"out of order on partition {m.partition()}")
        last[m.partition()] = m.offset()
        hdrs = dict(m.headers() or [])
        if acked.get(key) != (m.key(), m.value()):
            fail(f"record {key} differs: {acked.get(key)} vs {(m.key(), m.value())}")
        if hdrs.get("seq") != m.value()[1:]:
            fail(f"header of {key}: {hdrs}")
        seen[key] = True
    if len(seen) != N:
        fail(f"read {len(seen)} of {N}")

    offsets = [
        TopicPartition(TOPIC, i, last[i] + 1, metadata="checkpoint-42" if i == 0 else "")
        for i in range(3)
    ]
    c.commit(offsets=offsets, asynchronous=False)
    got = c.committed([TopicPartition(TOPIC, i) for i in range(3)], timeout=10)
    for tp in got:
        if tp.offset != last[tp.partition] + 1:
            fail(f"committed {tp}")
    if got[0].metadata != "checkpoint-42":
        fail(f"metadata did not round-trip: {got[0].metadata!r}")
    c.close()

    # Configs: every config with its value and source; an incremental set
    # shows as the topic's own; a delete goes back to the default.
    res = ConfigResource(ResourceType.TOPIC, TOPIC)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    if "retention.ms" not in configs or configs["retention.ms"].is_default is not True:
        fail(f"describe_configs: {configs.get('retention.ms')}")
    alter = ConfigResource(
        ResourceType.TOPIC,
        TOPIC,
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([alter])[alter].result(timeout=10)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    if configs["retention.ms"].value != "3600000" or configs["retention.ms"].is_default:
        fail(f"after alter: {configs['retention.ms']}")
    bad = ConfigResource(
        ResourceType.TOPIC,
        TOPIC,
        incremental_configs=[
            ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    try:
        admin.incremental_alter_configs([bad])[bad].result(timeout=10)
        fail("an unknown config was accepted")
    except Exception as e:  # KafkaException with INVALID_CONFIG
        if "INVALID_CONFIG" not in str(e) and "nvalid" not in str(e):
            fail(f"unknown config refused with {e}")

    # DeleteRecords moves the log start; DescribeCluster names the broker.
    deleted = admin.delete_records([TopicPartition(TOPIC, 0, 10)])
    for tp, f in deleted.items():
        low = f.result(timeout=10)
        if low.low_watermark != 10:
            fail(f"delete_records low watermark {low.low_watermark}")
    lo, hi = c_watermarks(bootstrap, TOPIC, 0)
    if lo != 10:
        fail(f"low watermark after delete_records: {lo}")
    cluster = admin.describe_cluster().result(timeout=10)
    if len(cluster.nodes) != 1 or not cluster.cluster_id:
        fail(f"describe_cluster: {cluster}")

    # Transactions do not exist yet: a transactional producer is told so at
    # once (a fatal error), instead of retrying until its timeout.
    t0 = time.time()
    txn = Producer({"bootstrap.servers": bootstrap, "transactional.id": "cf-txn"})
    try:
        txn.init_transactions(20)
        fail("a transactional producer initialized")
    except KafkaException as e:
        err = e.args[0]
        if not err.fatal() or "not supported" not in err.str() or time.time() - t0 > 10:
            fail(f"transactions refused with {err} after {time.time() - t0:.1f} s")

    listed = admin.list_consumer_groups().result(timeout=10)
    ids = [g.group_id for g in listed.valid]
    if "cf-readers" not in ids or listed.errors:
        fail(f"groups: {ids} errors: {listed.errors}")
    # Describing the group (it only commits: no members) and the topic.
    desc = admin.describe_consumer_groups(["cf-readers"])["cf-readers"].result(timeout=10)
    if desc.group_id != "cf-readers" or desc.members:
        fail(f"describe_consumer_groups: {desc}")
    topic = admin.describe_topics(TopicCollection([TOPIC]))[TOPIC].result(timeout=10)
    if topic.name != TOPIC or len(topic.partitions) != 3 or any(
        p.leader is None or len(p.replicas) != 1 for p in topic.partitions
    ):
        fail(f"describe_topics: {topic}")
    # Deleting a topic (a scratch one: the group's offsets stay for strata
    # to show).
    for t, f in admin.create_topics([NewTopic("cf-scratch", 2, 1)]).items():
        f.result(timeout=30)
    for t, f in admin.delete_topics(["cf-scratch"]).items():
        f.result(timeout=30)
    if "cf-scratch" in admin.list_topics(timeout=10).topics:
        fail("cf-scratch still listed after delete")
    print(f"ok: {N} records, 3 partitions")


if __name__ == "__main__":
    main()
