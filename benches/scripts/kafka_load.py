"""Load generator for the Kafka listener, on confluent-kafka (librdkafka).

  kafka_load.py produce BOOTSTRAP TOPIC RECORDS SIZE COMPRESSION
      one producer, acks=all, idempotent, linger 5 ms, 1 MiB batches (the
      strata bench defaults); prints one JSON line: MB/s (10^6 bytes of
      values), records/s, send→ack p50/p99/p99.9 ms
  kafka_load.py consume BOOTSTRAP TOPIC RECORDS
      reads RECORDS from the start of partition 0; prints MB/s, records/s

Values are text that compresses about as well as JSON events (half of each
value random, half repeated), so compressed runs measure real codecs.
"""

import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def values(size, n=256):
    out = []
    for i in range(n):
        rnd = os.urandom(size // 4).hex()
        out.append((rnd + ('{"event":"page_view","user":%06d}' % i) * size)[:size].encode())
    return out


def quantile(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * (len(v) - 1)))]


def produce(bootstrap, topic, n, size, compression):
    lat = []
    errors = []

    def done(err, msg):
        if err is not None:
            errors.append(err)
        else:
            lat.append(msg.latency())

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.size": 1 << 20,
            "compression.type": compression,
            "queue.buffering.max.kbytes": 1 << 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    vals = values(size)
    start = time.time()
    for i in range(n):
        while True:
            try:
                p.produce(topic, vals[i & 255], partition=0, on_delivery=done)
                break
            except BufferError:
                p.poll(0.005)
        if i & 1023 == 0:
            p.poll(0)
    p.flush(300)
    took = time.time() - start
    if errors or len(lat) != n:
        print(json.dumps({"error": str(errors[:1]), "acked": len(lat)}))
        sys.exit(1)
    ms = [x * 1000 for x in lat]
    print(
        json.dumps(
            {
                "path": "kafka",
                "op": "produce",
                "compression": compression,
                "mb_s": round(n * size / took / 1e6, 1),
                "records_s": round(n / took),
                "p50_ms": round(quantile(ms, 0.5), 2),
                "p99_ms": round(quantile(ms, 0.99), 2),
                "p999_ms": round(quantile(ms, 0.999), 2),
            }
        )
    )


def consume(bootstrap, topic, n):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 16 << 20,
            "queued.max.messages.kbytes": 1 << 20,
        }
    )
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    size = 0
    start = time.time()
    while got < n:
        for m in c.consume(num_messages=10000, timeout=1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                print(json.dumps({"error": str(m.error())}))
                sys.exit(1)
            got += 1
            size += len(m.value())
    took = time.time() - start
    c.close()
    print(
        json.dumps(
            {
                "path": "kafka",
                "op": "consume",
                "mb_s": round(size / took / 1e6, 1),
                "records_s": round(got / took),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        consume(sys.argv[2], sys.argv[3], int(sys.argv[4]))
