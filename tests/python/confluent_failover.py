"""An idempotent confluent-kafka producer across a partition leader's
SIGKILL (the test kills and restarts the broker while this runs).

Usage:
  confluent_failover.py produce BOOTSTRAP TOPIC N ACKED_FILE
      writes N records (value = sequence number) at acks=all, about 2,000/s,
      and the acknowledged ones as "partition offset seq" lines
  confluent_failover.py verify BOOTSTRAP TOPIC ACKED_FILE
      reads every partition to its end: every acknowledged record is there
      exactly once, at its acknowledged offset, in order per partition
Exits non-zero with one line on the first violation.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def produce(bootstrap, topic, n, acked_file):
    acked, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked.append((msg.partition(), msg.offset(), int(msg.value())))

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 120000,
        }
    )
    start = time.time()
    for i in range(n):
        p.produce(topic, key=str(i).encode(), value=str(i).encode(), on_delivery=on_delivery)
        p.poll(0)
        # About 2,000 records/s, so that the failover falls mid-stream.
        ahead = i / 2000.0 - (time.time() - start)
        if ahead > 0:
            time.sleep(ahead)
    left = p.flush(120)
    with open(acked_file, "w") as f:
        for part, off, seq in acked:
            f.write(f"{part} {off} {seq}\n")
    if left or errors:
        fail(f"{left} undelivered, errors: {errors[:3]}")
    if len(acked) != n:
        fail(f"{len(acked)} acknowledged of {n}")
    print(f"ok: {n} acknowledged in {time.time() - start:.1f} s")


def verify(bootstrap, topic, acked_file):
    acked = {}
    for line in open(acked_file):
        part, off, seq = map(int, line.split())
        acked[(part, off)] = seq
    parts = sorted({p for p, _ in acked})
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "verify",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    seen, last, eof = {}, {}, set()
    deadline = time.time() + 60
    while len(eof) < len(parts) and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            fail(f"consume error: {m.error()}")
        seq = int(m.value())
        if seq in seen:
            fail(f"record {seq} stored twice ({seen[seq]} and {(m.partition(), m.offset())})")
        seen[seq] = (m.partition(), m.offset())
        if last.get(m.partition(), -1) >= m.offset():
            fail(f"offsets out of order on partition {m.partition()}")
        last[m.partition()] = m.offset()
    c.close()
    for (part, off), seq in acked.items():
        if seen.get(seq) != (part, off):
            fail(f"acknowledged record {seq} at {part}/{off} read as {seen.get(seq)}")
    print(f"ok: {len(acked)} acknowledged records, each once, in order")


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        verify(sys.argv[2], sys.argv[3], sys.argv[4])
