//! Batch compression end to end: for each of Kafka's codecs, 10,000 records
//! produced through the `Producer` come back byte for byte through the
//! `Consumer`, and the batches the broker serves and stores are the
//! compressed ones the producer sent (codec bits set, far fewer bytes than
//! uncompressed). Batches in the formats other Kafka clients write (xerial
//! snappy, multi-member gzip) are accepted too; a compressed batch whose
//! body does not decompress is refused as corrupt.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use strata_client::{
    Admin, ClientConfig, Compression, Consumer, ConsumerConfig, ConsumerRecord, Producer,
    ProducerConfig, ProducerRecord, StartOffset,
};
use strata_proto::batch::{self, BatchBuilder, BatchIter, Codec, HEADER_LEN};
use strata_proto::v1::{Acks, FetchPartition, FetchRequest, ProduceRequest};
use strata_tests::{BrokerProc, error_code, read_partition_batches};

const N: usize = 10_000;
const BASE_TS: i64 = 1_700_000_000_000;

fn cfg(b: &BrokerProc) -> ClientConfig {
    ClientConfig::new([b.addr.to_string()])
}

/// Record `i`: JSON-ish (compressible) values, some null keys and values,
/// headers with and without values.
fn record(topic: &str, i: usize) -> ProducerRecord {
    let key = (!i.is_multiple_of(5)).then(|| Bytes::from(format!("key-{}", i % 100)));
    let value = (!i.is_multiple_of(11)).then(|| {
        Bytes::from(format!(
            "{{\"id\":{i},\"user\":\"user-{}\",\"event\":\"page_view\",\"path\":\"/products/{}\",\"ok\":true}}",
            i % 97,
            i % 13
        ))
    });
    let mut headers = vec![("seq".to_string(), Some(Bytes::from(i.to_string())))];
    if i.is_multiple_of(3) {
        headers.push(("none".to_string(), None));
    }
    ProducerRecord {
        topic: topic.into(),
        partition: Some(0),
        key,
        value,
        headers,
        timestamp: Some(BASE_TS + i as i64),
    }
}

async fn consume_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::with_capacity(n);
    let mut stream = consumer.records();
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap_or_else(|_| panic!("consumer stalled after {} records", out.len()))
            .expect("stream open")
            .expect("record");
        out.push(r);
    }
    out
}

/// Every batch of `topic`/0 as served by a raw fetch from offset 0.
async fn fetched_batches(broker: &BrokerProc, topic: &str, n: usize) -> Vec<Bytes> {
    let mut api = broker.data().await;
    let mut out = Vec::new();
    let mut offset = 0i64;
    while offset < n as i64 {
        let r = api
            .fetch(FetchRequest {
                max_wait_ms: 1_000,
                min_bytes: 1,
                max_bytes: 8 << 20,
                partitions: vec![FetchPartition {
                    topic: topic.into(),
                    partition: 0,
                    offset,
                    max_bytes: 0,
                }],
            })
            .await
            .expect("fetch")
            .into_inner();
        let part = &r.partitions[0];
        assert!(part.error.is_none(), "{:?}", part.error);
        for item in BatchIter::new(part.records.clone()) {
            let (h, b) = item.expect("fetched batch");
            if h.next_offset() <= offset {
                continue;
            }
            offset = h.next_offset();
            out.push(b);
        }
    }
    out
}

/// The stored data batches of `topic`/0 (without the Raft log's control
/// batches).
fn stored_batches(broker: &BrokerProc, topic: &str) -> Vec<Vec<u8>> {
    read_partition_batches(&broker.data_dir, topic, 0)
        .into_iter()
        .filter(|b| !batch::parse_header(b).expect("header").is_control())
        .collect()
}

fn codec_of(batch: &[u8]) -> Codec {
    batch::parse_header(batch)
        .expect("header")
        .compression()
        .expect("known codec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_ten_thousand_records() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let admin = Admin::new(cfg(&broker)).unwrap();
    let mut plain_bytes = 0usize;
    for compression in Compression::ALL {
        let topic = format!("c-{compression}");
        admin
            .create_topic(&topic, 1, 1, Default::default())
            .await
            .unwrap();
        let producer = Producer::new(
            cfg(&broker),
            ProducerConfig {
                compression,
                idle_send: false,
                linger: Duration::from_millis(20),
                batch_size: 64 * 1024,
                ..ProducerConfig::default()
            },
        )
        .await
        .unwrap();
        let mut acks = Vec::with_capacity(N);
        for i in 0..N {
            acks.push(producer.send(record(&topic, i)).await.unwrap());
        }
        producer.flush().await.unwrap();
        for (i, a) in acks.into_iter().enumerate() {
            assert_eq!(a.await.unwrap().offset, i as i64, "{compression}");
        }
        producer.close().await.unwrap();

        // Byte for byte back through the consumer.
        let mut consumer = Consumer::new(cfg(&broker), ConsumerConfig::default()).unwrap();
        consumer
            .assign(&topic, 0, StartOffset::Earliest)
            .await
            .unwrap();
        let got = consume_n(&mut consumer, N).await;
        for (i, r) in got.iter().enumerate() {
            let want = record(&topic, i);
            assert_eq!(r.offset, i as i64, "{compression}");
            assert_eq!(r.timestamp, BASE_TS + i as i64, "{compression} #{i}");
            assert_eq!(r.key, want.key, "{compression} #{i}");
            assert_eq!(r.value, want.value, "{compression} #{i}");
            assert_eq!(r.headers, want.headers, "{compression} #{i}");
        }
        drop(consumer);

        // The broker serves and stores the batches as compressed.
        let codec = compression.codec();
        let fetched = fetched_batches(&broker, &topic, N).await;
        assert!(
            fetched.len() > 1,
            "{compression}: {} batches",
            fetched.len()
        );
        assert!(
            fetched.iter().all(|b| codec_of(b) == codec),
            "{compression}: a fetched batch has another codec"
        );
        let wire: usize = fetched.iter().map(Bytes::len).sum();
        let stored = stored_batches(&broker, &topic);
        assert_eq!(stored.len(), fetched.len(), "{compression}");
        assert!(stored.iter().all(|b| codec_of(b) == codec), "{compression}");
        let on_disk: usize = stored.iter().map(Vec::len).sum();
        assert_eq!(on_disk, wire, "{compression}");
        if compression == Compression::None {
            plain_bytes = wire;
        } else {
            assert!(
                wire * 3 < plain_bytes,
                "{compression}: {wire} bytes, uncompressed {plain_bytes}"
            );
        }
        eprintln!("{compression}: {wire} bytes in {} batches", fetched.len());
    }
}

/// A batch of `records` values with the records section replaced by
/// `body` under `codec`, the length and CRC fixed up.
fn batch_with_body(records: &[Vec<u8>], codec: Codec, body: impl Fn(&[u8]) -> Vec<u8>) -> Bytes {
    let mut b = BatchBuilder::new(BASE_TS);
    for (i, v) in records.iter().enumerate() {
        b.push(BASE_TS + i as i64, Some(b"k"), Some(v), &[]);
    }
    let plain = b.finish();
    let mut m = plain[..HEADER_LEN].to_vec();
    m.extend_from_slice(&body(&plain[HEADER_LEN..]));
    let len = (m.len() - batch::LOG_OVERHEAD) as i32;
    m[8..12].copy_from_slice(&len.to_be_bytes());
    m[33..35].copy_from_slice(&i16::from(codec.id()).to_be_bytes());
    let crc = batch::compute_crc(&m);
    m[29..33].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(m)
}

/// The Java client's xerial snappy framing, 32 KiB input blocks.
fn xerial(data: &[u8]) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\x00".to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for chunk in data.chunks(32 * 1024) {
        let block = batch::compress(Codec::Snappy, chunk);
        out.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&block);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_other_kafka_clients_are_stored_and_corrupt_ones_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let admin = Admin::new(cfg(&broker)).unwrap();
    admin
        .create_topic("t", 1, 1, Default::default())
        .await
        .unwrap();
    let mut api = broker.data().await;
    let produce = |records: Bytes| ProduceRequest {
        topic: "t".into(),
        partition: 0,
        acks: Acks::All as i32,
        records,
        timeout_ms: 0,
        correlation_id: 0,
    };
    let values: Vec<Vec<u8>> = (0..2_000)
        .map(|i| format!("value {i} ").repeat(8).into_bytes())
        .collect();
    let (first, second) = values.split_at(1_000);
    let xerial_batch = batch_with_body(first, Codec::Snappy, xerial);
    let gzip_members = batch_with_body(second, Codec::Gzip, |area| {
        let (a, z) = area.split_at(area.len() / 2);
        [
            batch::compress(Codec::Gzip, a),
            batch::compress(Codec::Gzip, z),
        ]
        .concat()
    });
    for b in [xerial_batch, gzip_members] {
        api.produce(produce(b)).await.unwrap();
    }

    // Corrupt bodies (with good CRCs) and a bomb are refused; nothing of
    // them is appended.
    let truncated = batch_with_body(first, Codec::Zstd, |area| {
        let z = batch::compress(Codec::Zstd, area);
        z[..z.len() - 8].to_vec()
    });
    let garbage = batch_with_body(first, Codec::Lz4, |_| vec![0x5a; 100]);
    let bomb = batch_with_body(&[b"x".to_vec()], Codec::Zstd, |_| {
        batch::compress(Codec::Zstd, &vec![0u8; 300 << 20])
    });
    for (what, b) in [
        ("truncated", truncated),
        ("garbage", garbage),
        ("bomb", bomb),
    ] {
        let st = api.produce(produce(b)).await.unwrap_err();
        assert_eq!(error_code(&st), "CORRUPT_BATCH", "{what}: {st:?}");
    }

    let mut consumer = Consumer::new(cfg(&broker), ConsumerConfig::default()).unwrap();
    consumer
        .assign("t", 0, StartOffset::Earliest)
        .await
        .unwrap();
    let got = consume_n(&mut consumer, values.len()).await;
    for (i, (r, v)) in got.iter().zip(&values).enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.value.as_deref(), Some(&v[..]), "#{i}");
    }
    let stored = stored_batches(&broker, "t");
    let codecs: Vec<Codec> = stored.iter().map(|b| codec_of(b)).collect();
    assert_eq!(codecs, vec![Codec::Snappy, Codec::Gzip]);
}
