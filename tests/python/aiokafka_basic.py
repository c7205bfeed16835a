"""aiokafka (asyncio, the protocol's older non-flexible versions) against
a strata broker's Kafka listener.

Usage: aiokafka_basic.py BOOTSTRAP

An idempotent producer writes 2,000 keyed records to a 2-partition
topic; a plain consumer reads them back in order; a consumer in a group
reads them all, commits, and a second consumer of the group resumes from
the commit. Exits non-zero with one line on the first mismatch.
"""

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

N = 2000
TOPIC = "aio-events"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


async def read_all(consumer, n, timeout=30):
    got = []
    deadline = asyncio.get_event_loop().time() + timeout
    while len(got) < n and asyncio.get_event_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for _, msgs in batch.items():
            got.extend(msgs)
    return got


async def main():
    bootstrap = sys.argv[1]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])
    await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    sent = {}
    for i in range(N):
        md = await producer.send_and_wait(TOPIC, key=f"k{i}".encode(), value=f"v{i}".encode())
        sent[(md.partition, md.offset)] = f"v{i}".encode()
    await producer.stop()

    plain = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await plain.start()
    plain.assign([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
    await plain.seek_to_beginning()
    got = await read_all(plain, N)
    await plain.stop()
    if len(got) != N:
        fail(f"plain consumer read {len(got)} of {N}")
    last = {}
    for m in got:
        if sent.get((m.partition, m.offset)) != m.value:
            fail(f"record {(m.partition, m.offset)} differs")
        if last.get(m.partition, -1) >= m.offset:
            fail("out of order")
        last[m.partition] = m.offset

    group = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="aio-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await group.start()
    got = await read_all(group, N)
    if len(got) != N:
        fail(f"group consumer read {len(got)} of {N}")
    await group.commit()
    await group.stop()

    again = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="aio-group",
        auto_offset_reset="earliest",
    )
    await again.start()
    leftover = await read_all(again, 1, timeout=4)
    await again.stop()
    if leftover:
        fail(f"the group did not resume from its commit: {len(leftover)} records again")
    print(f"ok: {N} records")


if __name__ == "__main__":
    asyncio.run(main())
