//! Data-path semantics over raw gRPC: long-poll fetch, subscribe streams,
//! idempotent retries, acks modes and the fetch size cap.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use strata_proto::batch::{BatchBuilder, BatchIter};
use strata_proto::v1::*;
use strata_tests::{BrokerProc, error_code};

fn batch(n: usize, size: usize) -> Bytes {
    let mut b = BatchBuilder::new(5);
    for _ in 0..n {
        b.push(5, None, Some(&vec![b'v'; size]), &[]);
    }
    b.finish()
}

fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let mut b = BatchBuilder::new(5);
    b.set_producer(pid, epoch, seq);
    for i in 0..n {
        b.push(5, None, Some(format!("{seq}-{i}").as_bytes()), &[]);
    }
    b.finish()
}

fn produce(records: Bytes, acks: Acks) -> ProduceRequest {
    ProduceRequest {
        topic: "t".into(),
        partition: 0,
        acks: acks as i32,
        records,
        timeout_ms: 0,
        correlation_id: 0,
    }
}

fn fetch(offset: i64, wait_ms: u32, min_bytes: u32, max_bytes: u32) -> FetchRequest {
    FetchRequest {
        max_wait_ms: wait_ms,
        min_bytes,
        max_bytes,
        partitions: vec![FetchPartition {
            topic: "t".into(),
            partition: 0,
            offset,
            max_bytes: 0,
        }],
    }
}

async fn setup(tmp: &tempfile::TempDir) -> BrokerProc {
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let mut admin = broker.admin().await;
    admin
        .create_topic(CreateTopicRequest {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
        })
        .await
        .unwrap();
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_and_subscribe_wake_on_new_data() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = setup(&tmp).await;
    let mut api = broker.data().await;

    // Nothing there: the fetch waits its full max_wait.
    let t = Instant::now();
    let r = api
        .fetch(fetch(0, 300, 1, 1 << 20))
        .await
        .unwrap()
        .into_inner();
    assert!(r.partitions[0].records.is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );

    // A waiting fetch returns as soon as data arrives.
    let mut waiter = broker.data().await;
    let pending = tokio::spawn(async move {
        let t = Instant::now();
        let r = waiter
            .fetch(fetch(0, 10_000, 1, 1 << 20))
            .await
            .unwrap()
            .into_inner();
        (t.elapsed(), r)
    });
    let mut sub = api
        .subscribe(SubscribeRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.produce(produce(batch(3, 10), Acks::All)).await.unwrap();
    let (waited, r) = pending.await.unwrap();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(BatchIter::new(r.partitions[0].records.clone()).count(), 1);
    assert_eq!(r.partitions[0].high_watermark, 3);

    let first = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (h, _) = BatchIter::new(first.records).next().unwrap().unwrap();
    assert_eq!((h.base_offset, h.records_count), (0, 3));
    api.produce(produce(batch(2, 10), Acks::Leader))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (h, _) = BatchIter::new(second.records).next().unwrap().unwrap();
    assert_eq!((h.base_offset, h.records_count), (3, 2));

    // acks=none answers without offsets but still appends.
    let r = api
        .produce(produce(batch(1, 10), Acks::None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.base_offset, -1);
    let third = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        BatchIter::new(third.records)
            .next()
            .unwrap()
            .unwrap()
            .0
            .base_offset,
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_whole_batches_within_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = setup(&tmp).await;
    let mut api = broker.data().await;
    for _ in 0..10 {
        api.produce(produce(batch(10, 100), Acks::All))
            .await
            .unwrap();
    }
    let one = batch(10, 100).len();
    // A cap of 2.5 batches returns two whole batches.
    let r = api
        .fetch(fetch(0, 0, 0, (one * 5 / 2) as u32))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.partitions[0].records.len(), 2 * one);
    // The first batch comes whole even past the cap, so consumers progress.
    let r = api.fetch(fetch(15, 0, 0, 10)).await.unwrap().into_inner();
    let (h, _) = BatchIter::new(r.partitions[0].records.clone())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(h.base_offset, 10, "the batch holding offset 15");
    assert_eq!(r.partitions[0].records.len(), one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_are_not_duplicated() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = setup(&tmp).await;
    let mut api = broker.data().await;
    let pid = api
        .init_producer_id(InitProducerIdRequest {})
        .await
        .unwrap()
        .into_inner();
    let other = api
        .init_producer_id(InitProducerIdRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_ne!(pid.producer_id, other.producer_id);
    let (id, ep) = (pid.producer_id, pid.producer_epoch as i16);

    let a = api
        .produce(produce(idempotent(id, ep, 0, 4), Acks::All))
        .await
        .unwrap()
        .into_inner();
    let b = api
        .produce(produce(idempotent(id, ep, 4, 4), Acks::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((a.base_offset, b.base_offset), (0, 4));
    // A retry of the first batch gets its original offsets back.
    let again = api
        .produce(produce(idempotent(id, ep, 0, 4), Acks::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.base_offset, again.last_offset), (0, 3));
    // A gap is refused.
    let st = api
        .produce(produce(idempotent(id, ep, 20, 1), Acks::All))
        .await
        .unwrap_err();
    assert_eq!(error_code(&st), "OUT_OF_ORDER_SEQUENCE");

    // Producer state survives a crash: the retry is still recognized.
    broker.restart().await;
    let mut api = broker.data().await;
    let again = api
        .produce(produce(idempotent(id, ep, 4, 4), Acks::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.base_offset, 4);
    let next = api
        .produce(produce(idempotent(id, ep, 8, 1), Acks::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.base_offset, 8);
    // Ids handed out after the restart are new.
    let later = api
        .init_producer_id(InitProducerIdRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(later.producer_id > other.producer_id);

    // A clean stop writes the table out and a restart reads it back
    // instead of scanning the log: the retry is still recognized.
    assert!(broker.terminate().success());
    let snapshots = files_named(&broker.data_dir, "producer-state");
    assert!(!snapshots.is_empty(), "no producer-state written at stop");
    broker.restart().await;
    let mut api = broker.data().await;
    let again = api
        .produce(produce(idempotent(id, ep, 8, 1), Acks::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.base_offset, 8, "retry after a clean restart");
    let next = api
        .produce(produce(idempotent(id, ep, 9, 2), Acks::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.base_offset, 9);
}

/// Every file called `name` under `dir`.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_named(&p, name));
        } else if e.file_name() == name {
            out.push(p);
        }
    }
    out
}
