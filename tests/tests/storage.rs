//! Storage behaviour through a real broker: retention deletes old segments
//! (files and offsets), DeleteRecords moves the log start, and offsets are
//! found by timestamp.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::BatchBuilder;
use strata_proto::v1::*;
use strata_tests::BrokerProc;

fn stamped(first_ts: i64, n: usize, size: usize) -> Bytes {
    let mut b = BatchBuilder::new(first_ts);
    for i in 0..n {
        b.push(first_ts + i as i64, None, Some(&vec![b'r'; size]), &[]);
    }
    b.finish()
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: topic.into(),
        partition: 0,
        acks: Acks::All as i32,
        records,
        timeout_ms: 0,
        correlation_id: 0,
    }
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let broker = BrokerProc::start(&data, &["--retention-check-interval", "100ms"]).await;
    let mut admin = broker.admin().await;
    let mut api = broker.data().await;
    let cfg = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    admin
        .create_topic(CreateTopicRequest {
            name: "by-size".into(),
            partitions: 1,
            replication_factor: 1,
            configs: cfg(&[("segment.bytes", "8192"), ("retention.bytes", "20000")]),
        })
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    admin
        .create_topic(CreateTopicRequest {
            name: "by-time".into(),
            partitions: 1,
            replication_factor: 1,
            configs: cfg(&[("segment.bytes", "8192"), ("retention.ms", "60000")]),
        })
        .await
        .unwrap();
    for i in 0..100 {
        api.produce(produce("by-size", stamped(now, 10, 90)))
            .await
            .unwrap();
        // Old records first, then fresh ones.
        let ts = if i < 80 { now - 3_600_000 } else { now };
        api.produce(produce("by-time", stamped(ts, 10, 90)))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = admin
            .describe_topic(DescribeTopicRequest {
                name: "by-size".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let time = admin
            .describe_topic(DescribeTopicRequest {
                name: "by-time".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let (s, t) = (&size.partitions[0], &time.partitions[0]);
        if s.size_bytes <= 20_000 + 8192 && t.log_start_offset > 0 {
            assert!(s.log_start_offset > 0);
            assert_eq!(s.high_watermark, 1000);
            // Only segments whose newest record is older than retention.ms go.
            assert!(
                t.log_start_offset <= 800,
                "fresh records were deleted: start {}",
                t.log_start_offset
            );
            assert!(
                t.log_start_offset >= 600,
                "old segments remain: start {}",
                t.log_start_offset
            );
            assert_eq!(segment_files(&data.join("by-size-0")) as u32, s.segments);
            // Reading below the start is out of range; the start is readable.
            let r = api
                .fetch(FetchRequest {
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: 1 << 20,
                    partitions: vec![
                        FetchPartition {
                            topic: "by-size".into(),
                            partition: 0,
                            offset: 0,
                            max_bytes: 0,
                        },
                        FetchPartition {
                            topic: "by-size".into(),
                            partition: 0,
                            offset: s.log_start_offset,
                            max_bytes: 0,
                        },
                    ],
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.partitions[0].error.as_ref().unwrap().code,
                ErrorCode::OffsetOutOfRange as i32
            );
            assert!(!r.partitions[1].records.is_empty());
            let e = api
                .list_offsets(ListOffsetsRequest {
                    topic: "by-size".into(),
                    partition: 0,
                    spec: OffsetSpec::Earliest as i32,
                    timestamp: 0,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(e.offset, s.log_start_offset);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run: {s:?} {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // DeleteRecords moves the start by hand.
    let r = admin
        .delete_records(DeleteRecordsRequest {
            topic: "by-time".into(),
            partition: 0,
            offset: 995,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.log_start_offset, 995);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_by_timestamp() {
    let tmp = tempfile::tempdir().unwrap();
    let mut broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let mut admin = broker.admin().await;
    admin
        .create_topic(CreateTopicRequest {
            name: "times".into(),
            partitions: 1,
            replication_factor: 1,
            configs: [("segment.bytes".to_string(), "4096".to_string())].into(),
        })
        .await
        .unwrap();
    let mut api = broker.data().await;
    // Batch i holds 10 records stamped 10_000 + 100 i + j.
    for i in 0..50i64 {
        api.produce(produce("times", stamped(10_000 + 100 * i, 10, 50)))
            .await
            .unwrap();
    }
    let lookup = |ts: i64| ListOffsetsRequest {
        topic: "times".into(),
        partition: 0,
        spec: OffsetSpec::Timestamp as i32,
        timestamp: ts,
    };
    for _ in 0..2 {
        let mut api = broker.data().await;
        for (ts, want_offset, want_ts) in [
            (0, 0, 10_000),
            (10_000, 0, 10_000),
            (10_005, 5, 10_005),
            (10_010, 10, 10_100),
            (12_305, 235, 12_305),
            (12_345, 240, 12_400),
            (14_909, 499, 14_909),
        ] {
            let r = api.list_offsets(lookup(ts)).await.unwrap().into_inner();
            assert_eq!(
                (r.offset, r.timestamp),
                (want_offset, want_ts),
                "lookup {ts}"
            );
        }
        let r = api.list_offsets(lookup(99_999)).await.unwrap().into_inner();
        assert_eq!(
            (r.offset, r.timestamp),
            (500, -1),
            "past the end: the latest offset"
        );
        // The time indexes survive a crash (they are rebuilt if needed).
        broker.restart().await;
    }
}
