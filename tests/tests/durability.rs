//! Crash safety of a single broker: SIGKILL in the middle of a stream of
//! `acks=all` produces under `fsync=always`, restart, and every acknowledged
//! record is there exactly once, in order, at its acknowledged offset.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use strata_proto::batch::{self, BatchBuilder, BatchIter};
use strata_proto::v1::*;
use strata_tests::BrokerProc;
use tokio::sync::mpsc;

const PARTITIONS: u32 = 3;

/// A batch of `n` records whose values are "p{partition}-{seq}".
fn numbered(partition: u32, first: u64, n: u64) -> Bytes {
    let mut b = BatchBuilder::new(0);
    for s in first..first + n {
        b.push(
            0,
            None,
            Some(format!("p{partition}-{s:08}").as_bytes()),
            &[],
        );
    }
    b.finish()
}

async fn read_all(broker: &BrokerProc, topic: &str, partition: u32) -> Vec<(i64, String)> {
    let mut api = broker.data().await;
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let r = api
            .fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 4 << 20,
                partitions: vec![FetchPartition {
                    topic: topic.into(),
                    partition,
                    offset,
                    max_bytes: 0,
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let p = &r.partitions[0];
        assert!(p.error.is_none(), "{:?}", p.error);
        if p.records.is_empty() {
            return out;
        }
        for b in BatchIter::new(p.records.clone()) {
            let (_, bytes) = b.unwrap();
            for r in batch::records(&bytes).unwrap() {
                let r = r.unwrap();
                if r.offset >= offset {
                    out.push((
                        r.offset,
                        String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                    ));
                }
            }
        }
        offset = out.last().map_or(offset, |(o, _)| o + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_acks_all_fsync_always_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = BrokerProc::start(&tmp.path().join("data"), &["--fsync", "always"]).await;
    let mut admin = broker.admin().await;
    admin
        .create_topic(CreateTopicRequest {
            name: "durable".into(),
            partitions: PARTITIONS,
            replication_factor: 1,
            configs: [("segment.bytes".to_string(), "65536".to_string())].into(),
        })
        .await
        .unwrap();

    // Producer: a pipelined stream; remember what was acknowledged.
    let mut api = broker.data().await;
    let (tx, rx) = mpsc::channel::<ProduceRequest>(64);
    let mut responses = api
        .produce_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let sender = tokio::spawn(async move {
        let mut sent: BTreeMap<u64, (u32, u64, u64)> = BTreeMap::new();
        let mut next = [0u64; PARTITIONS as usize];
        for cid in 0..100_000u64 {
            let p = (cid % u64::from(PARTITIONS)) as u32;
            let n = 1 + cid % 7;
            let req = ProduceRequest {
                topic: "durable".into(),
                partition: p,
                acks: Acks::All as i32,
                records: numbered(p, next[p as usize], n),
                timeout_ms: 10_000,
                correlation_id: cid,
            };
            sent.insert(cid, (p, next[p as usize], n));
            next[p as usize] += n;
            if tx.send(req).await.is_err() {
                break;
            }
        }
        sent
    });
    let mut acked: Vec<(u64, i64)> = Vec::new();
    let mut killed = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), responses.next()).await {
            Ok(Some(Ok(r))) => {
                assert!(r.error.is_none(), "{:?}", r.error);
                acked.push((r.correlation_id, r.base_offset));
                if acked.len() == 3_000 && !killed {
                    broker.kill();
                    killed = true;
                }
            }
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => panic!("stream stalled"),
        }
    }
    assert!(killed, "broker was killed mid-stream");
    let sent = sender.await.unwrap();
    assert!(acked.len() >= 3_000);

    broker.restart().await;
    let mut seen = HashSet::new();
    let mut stored: Vec<BTreeMap<i64, String>> = Vec::new();
    for p in 0..PARTITIONS {
        let records = read_all(&broker, "durable", p).await;
        // Offsets are dense from 0 and values appear in send order, once.
        for (i, (o, v)) in records.iter().enumerate() {
            assert_eq!(*o, i as i64, "offsets are dense");
            assert!(seen.insert(v.clone()), "duplicate record {v}");
            assert_eq!(*v, format!("p{p}-{i:08}"), "order within partition {p}");
        }
        stored.push(records.into_iter().collect());
    }
    for (cid, base) in &acked {
        let (p, first, n) = sent[cid];
        for k in 0..n {
            let v = stored[p as usize].get(&(base + k as i64));
            assert_eq!(
                v,
                Some(&format!("p{p}-{:08}", first + k)),
                "acknowledged record lost"
            );
        }
    }
    // The broker still appends after the crash, at the right offset.
    let mut api = broker.data().await;
    let end = stored[0].len() as i64;
    let r = api
        .produce(ProduceRequest {
            topic: "durable".into(),
            partition: 0,
            acks: Acks::All as i32,
            records: numbered(0, end as u64, 1),
            timeout_ms: 0,
            correlation_id: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.base_offset, end);
}
