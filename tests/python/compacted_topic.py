"""A compacted topic through Kafka clients: confluent-kafka (librdkafka)
creates it, writes and deletes keys and reads the latest values back once
the broker has cleaned; kafka-python reads the same compacted log.

Usage: compacted_topic.py BOOTSTRAP

- AdminClient: cleanup.policy=compact with small segments is accepted and
  described back; an invalid cleanup.policy and a negative lag are refused
  with INVALID_CONFIG.
- An idempotent producer writes 50,000 updates over 500 keys, then
  tombstones 50 of them; a record without a key is refused with
  INVALID_RECORD and nothing of it is stored.
- Once cleaned, a consumer reading from the beginning gets exactly one
  record per live key, with its latest value, offsets increasing; the
  tombstoned keys are gone after delete.retention.ms. kafka-python reads the
  same. Exits non-zero with one line on the first mismatch.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

TOPIC = "cf-profiles"
KEYS = 500
UPDATES = 50_000
DELETED = 50


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def create(admin, name, config):
    fut = admin.create_topics([NewTopic(name, 1, 1, config=config)])[name]
    try:
        fut.result(timeout=30)
        return None
    except KafkaException as e:
        return e.args[0]


def read_all(bootstrap):
    """Every record from the beginning to the high watermark: (offset, key, value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compacted-readers",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        c.assign([TopicPartition(TOPIC, 0, 0)])
        out = []
        deadline = time.time() + 30
        while time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                fail(f"consume error: {m.error()}")
            out.append((m.offset(), m.key().decode(), m.value()))
        fail("no end of partition within 30 s")
    finally:
        c.close()


def main():
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for bad in ({"cleanup.policy": "shred"}, {"cleanup.policy": "compact", "min.compaction.lag.ms": "-1"}):
        err = create(admin, "cf-bad", bad)
        if err is None or err.code() != KafkaError.INVALID_CONFIG:
            fail(f"{bad}: expected INVALID_CONFIG, got {err}")
    err = create(
        admin,
        TOPIC,
        {
            "cleanup.policy": "compact",
            "segment.bytes": "262144",
            "segment.ms": "1500",
            "max.compaction.lag.ms": "2000",
            "delete.retention.ms": "1000",
        },
    )
    if err is not None:
        fail(f"create: {err}")
    res = ConfigResource(ResourceType.TOPIC, TOPIC)
    described = admin.describe_configs([res])[res].result(timeout=30)
    if described["cleanup.policy"].value != "compact":
        fail(f"cleanup.policy described as {described['cleanup.policy'].value}")

    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    latest = {}
    for i in range(UPDATES):
        key = f"user-{i % KEYS:04}"
        value = f"{i:08}".encode()
        latest[key] = value
        p.produce(TOPIC, key=key.encode(), value=value, on_delivery=on_delivery)
        if i % 1000 == 0:
            p.poll(0)
    for k in range(DELETED):
        key = f"user-{k:04}"
        latest[key] = None
        p.produce(TOPIC, key=key.encode(), value=None, on_delivery=on_delivery)
    if p.flush(60) != 0:
        fail("producer did not flush")
    if errors:
        fail(f"delivery errors: {errors[:3]}")

    # A record without a key: refused, not stored.
    keyless = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0})
    keyless.produce(TOPIC, value=b"no key", on_delivery=on_delivery)
    keyless.flush(30)
    if len(errors) != 1 or errors[0].code() != KafkaError.INVALID_RECORD:
        fail(f"a keyless record: expected INVALID_RECORD, got {errors}")

    live = {k: v for k, v in latest.items() if v is not None}
    deadline = time.time() + 90
    while True:
        got = read_all(bootstrap)
        if len(got) == len(live):
            break
        if time.time() > deadline:
            fail(f"still {len(got)} records for {len(live)} live keys")
        time.sleep(1)
    offsets = [o for o, _, _ in got]
    if offsets != sorted(set(offsets)):
        fail("offsets do not increase")
    read = {k: v for _, k, v in got}
    if read != live:
        missing = [k for k in live if read.get(k) != live[k]][:3]
        fail(f"latest values differ, e.g. {missing}")

    # kafka-python reads the same compacted log (empty batches and offset
    # gaps included).
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    kc = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    kc.assign([KTP(TOPIC, 0)])
    kc.seek_to_beginning()
    kp = [(m.offset, m.key.decode(), m.value) for m in kc]
    kc.close()
    if kp != got:
        fail(f"kafka-python read {len(kp)} records, librdkafka {len(got)}")
    print(f"ok: {UPDATES + DELETED} updates read back as {len(got)} records")


if __name__ == "__main__":
    main()
