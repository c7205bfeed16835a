//! The Rust client against a real broker: 100,000 records produced through
//! the `Producer` come back identical and in order per partition through
//! the `Consumer`; a group resumes where it committed, across a broker
//! crash; timestamps position a consumer.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use strata_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    StartOffset,
};
use strata_tests::BrokerProc;

const N: usize = 100_000;

fn cfg(b: &BrokerProc) -> ClientConfig {
    ClientConfig::new([b.addr.to_string()])
}

async fn consume_n(consumer: &mut Consumer, n: usize) -> Vec<strata_client::ConsumerRecord> {
    let mut out = Vec::with_capacity(n);
    let mut stream = consumer.records();
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("records keep coming")
            .expect("stream open")
            .expect("record");
        out.push(r);
    }
    out
}

/// A broker with one topic, an admin client and a producer.
async fn setup(topic: &str, partitions: u32) -> (tempfile::TempDir, BrokerProc, Admin, Producer) {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let admin = Admin::new(cfg(&broker)).unwrap();
    admin
        .create_topic(topic, partitions, 1, Default::default())
        .await
        .unwrap();
    let producer = Producer::new(cfg(&broker), ProducerConfig::default())
        .await
        .unwrap();
    (tmp, broker, admin, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_records_round_trip_in_order() {
    let (_tmp, broker, _admin, producer) = setup("events", 4).await;
    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let rec = ProducerRecord::new("events", format!("value-{i:06}"))
            .key(format!("key-{}", i % 1000))
            .header("n", i.to_string());
        futures.push(producer.send(rec).await.unwrap());
    }
    producer.flush().await.unwrap();
    // Where each record went, by partition, in send order.
    let mut sent: HashMap<u32, Vec<(i64, usize)>> = HashMap::new();
    for (i, f) in futures.into_iter().enumerate() {
        let m = f.await.unwrap();
        assert_eq!(
            m.partition,
            strata_client::key_partition(format!("key-{}", i % 1000).as_bytes(), 4)
        );
        sent.entry(m.partition).or_default().push((m.offset, i));
    }
    for (p, v) in &sent {
        // Offsets follow send order within a partition, without gaps.
        for (k, (o, _)) in v.iter().enumerate() {
            assert_eq!(*o, k as i64, "partition {p}");
        }
    }

    let mut consumer = Consumer::new(cfg(&broker), ConsumerConfig::default()).unwrap();
    consumer
        .assign_topic("events", StartOffset::Earliest)
        .await
        .unwrap();
    let got = consume_n(&mut consumer, N).await;
    let mut next: HashMap<u32, usize> = HashMap::new();
    for r in &got {
        let k = next.entry(r.partition).or_default();
        let (offset, i) = sent[&r.partition][*k];
        *k += 1;
        assert_eq!(r.offset, offset, "in order per partition");
        assert_eq!(r.value.as_deref(), Some(format!("value-{i:06}").as_bytes()));
        assert_eq!(
            r.key.as_deref(),
            Some(format!("key-{}", i % 1000).as_bytes())
        );
        assert_eq!(r.headers[0].1.as_deref(), Some(i.to_string().as_bytes()));
    }
    assert_eq!(next.values().sum::<usize>(), N);
    producer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_resumes_where_it_committed_after_a_crash() {
    let (_tmp, mut broker, admin, producer) = setup("jobs", 1).await;
    let mut acks = Vec::new();
    for i in 0..100 {
        acks.push(
            producer
                .send(ProducerRecord::new("jobs", format!("job-{i}")))
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    for a in acks {
        a.await.unwrap();
    }

    let group = ConsumerConfig {
        group: Some("workers".into()),
        ..Default::default()
    };
    let mut consumer = Consumer::new(cfg(&broker), group.clone()).unwrap();
    consumer
        .assign("jobs", 0, StartOffset::Committed)
        .await
        .unwrap();
    let first = consume_n(&mut consumer, 30).await;
    assert_eq!(first[0].offset, 0, "nothing committed: from the earliest");
    consumer.seek("jobs", 0, 30).unwrap();
    consumer.commit().await.unwrap();
    assert_eq!(consumer.committed("jobs", 0).await.unwrap(), Some(30));
    drop(consumer);

    broker.restart().await; // SIGKILL + start
    let mut consumer = Consumer::new(cfg(&broker), group).unwrap();
    consumer
        .assign("jobs", 0, StartOffset::Committed)
        .await
        .unwrap();
    let rest = consume_n(&mut consumer, 70).await;
    assert_eq!(rest[0].offset, 30, "resumed at the committed offset");
    assert_eq!(rest[0].value.as_deref(), Some(&b"job-30"[..]));
    assert_eq!(rest.last().unwrap().offset, 99);
    let lag = admin.describe_group("workers").await.unwrap();
    assert_eq!(lag.partitions[0].committed_offset, 30);
    assert_eq!(lag.partitions[0].lag, 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_starts_at_a_timestamp() {
    let (_tmp, broker, _admin, producer) = setup("ticks", 1).await;
    let mut acks = Vec::new();
    for i in 0..1000i64 {
        acks.push(
            producer
                .send(ProducerRecord::new("ticks", format!("t{i}")).timestamp(1_000_000 + i * 10))
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    for a in acks {
        a.await.unwrap();
    }
    let mut consumer = Consumer::new(cfg(&broker), ConsumerConfig::default()).unwrap();
    let pos = consumer
        .assign("ticks", 0, StartOffset::Timestamp(1_000_000 + 4_995))
        .await
        .unwrap();
    assert_eq!(pos, 500);
    let r = consume_n(&mut consumer, 1).await;
    assert_eq!((r[0].offset, r[0].timestamp), (500, 1_005_000));
}

/// Batches closed by the linger timer race batches closed by `send` when
/// they fill: with no linger and batches of two records, both close
/// batches of one partition all the time. Every record must still land in
/// send order, at dense offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linger_and_full_batches_keep_send_order() {
    const RECORDS: usize = 50_000;
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let admin = Admin::new(cfg(&broker)).unwrap();
    admin
        .create_topic("race", 1, 1, Default::default())
        .await
        .unwrap();
    let producer = Producer::new(
        cfg(&broker),
        ProducerConfig {
            linger: Duration::ZERO,
            idle_send: false,
            batch_size: strata_proto::batch::HEADER_LEN + 40,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut futures = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        futures.push(
            producer
                .send(ProducerRecord::new("race", format!("{i:08}")))
                .await
                .unwrap(),
        );
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    producer.flush().await.unwrap();
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().offset, i as i64, "record {i}");
    }
    producer.close().await.unwrap();
}

/// With `idle_send` (the default), a record on a partition with nothing in
/// flight leaves at once (a 30 s linger never runs out here), later records
/// follow as earlier batches complete, and send order holds.
#[tokio::test]
async fn idle_send_does_not_wait_for_the_linger() {
    const RECORDS: usize = 2_000;
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let admin = Admin::new(cfg(&broker)).unwrap();
    admin
        .create_topic("idle", 2, 1, Default::default())
        .await
        .unwrap();
    let producer = Producer::new(
        cfg(&broker),
        ProducerConfig {
            linger: Duration::from_secs(30),
            busy_linger: Duration::from_secs(30),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let first = producer
        .send(ProducerRecord::new("idle", "alone").partition(1))
        .await
        .unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("acknowledged without waiting for the linger")
        .unwrap();
    assert_eq!(acked.offset, 0);
    let mut futures = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        futures.push(
            producer
                .send(ProducerRecord::new("idle", format!("{i:08}")).partition(0))
                .await
                .unwrap(),
        );
        if i % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // No flush: every batch leaves because the one before it completed.
    for (i, f) in futures.into_iter().enumerate() {
        let r = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .unwrap_or_else(|_| panic!("record {i} waited for the linger"))
            .unwrap();
        assert_eq!(r.offset, i as i64, "record {i}");
    }
    producer.close().await.unwrap();
}
