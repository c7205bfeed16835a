//! Bad input over raw gRPC: every case gets its stable error code, the
//! broker keeps serving, and no stored byte changes.

use bytes::Bytes;
use strata_proto::batch::BatchBuilder;
use strata_proto::v1::*;
use strata_tests::{BrokerProc, error_code, snapshot_files};

fn batch(n: usize, size: usize) -> Bytes {
    let mut b = BatchBuilder::new(1_000);
    for i in 0..n {
        b.push(1_000 + i as i64, None, Some(&vec![b'x'; size]), &[]);
    }
    b.finish()
}

fn produce_req(topic: &str, partition: u32, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        topic: topic.into(),
        partition,
        acks: Acks::All as i32,
        records,
        timeout_ms: 0,
        correlation_id: 1,
    }
}

fn create(name: &str, partitions: u32, rf: u32, configs: &[(&str, &str)]) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor: rf,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_stable_codes_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Garbage in the data directory before the first start.
    std::fs::create_dir_all(data.join("not-a-partition")).unwrap();
    std::fs::write(data.join("not-a-partition/junk.log"), b"\x00\x01garbage").unwrap();
    std::fs::write(data.join("garbage.bin"), vec![0xAB; 4096]).unwrap();
    let broker = BrokerProc::start(&data, &[]).await;
    let mut admin = broker.admin().await;
    let mut api = broker.data().await;
    let mut groups = broker.groups().await;

    admin
        .create_topic(create("good", 2, 1, &[("max.message.bytes", "4096")]))
        .await
        .unwrap();
    let ok = api
        .produce(produce_req("good", 0, batch(10, 100)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.base_offset, ok.last_offset), (0, 9));
    let fetch_all = || FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        partitions: vec![FetchPartition {
            topic: "good".into(),
            partition: 0,
            offset: 0,
            max_bytes: 0,
        }],
    };
    let before_records = api
        .fetch(fetch_all())
        .await
        .unwrap()
        .into_inner()
        .partitions[0]
        .records
        .clone();
    let before_files = snapshot_files(&data.join("good-0"));

    let admin_cases: Vec<(CreateTopicRequest, &str)> = vec![
        (create("bad name!", 1, 1, &[]), "INVALID_TOPIC"),
        (create("", 1, 1, &[]), "INVALID_TOPIC"),
        (create("__internal", 1, 1, &[]), "INVALID_TOPIC"),
        (create(&"x".repeat(300), 1, 1, &[]), "INVALID_TOPIC"),
        (create("zero", 0, 1, &[]), "INVALID_PARTITIONS"),
        (create("good", 1, 1, &[]), "TOPIC_EXISTS"),
        (
            create("cfg", 1, 1, &[("retention.ms", "soon")]),
            "INVALID_CONFIG",
        ),
        (
            create("cfg", 1, 1, &[("no.such.key", "1")]),
            "INVALID_CONFIG",
        ),
        (
            create("cfg", 1, 1, &[("fsync", "sometimes")]),
            "INVALID_CONFIG",
        ),
        (create("rf", 1, 3, &[]), "INVALID_REPLICATION_FACTOR"),
    ];
    for (req, code) in admin_cases {
        let name = req.name.clone();
        let st = admin.create_topic(req).await.unwrap_err();
        assert_eq!(error_code(&st), code, "create {name}: {st:?}");
        assert!(!st.message().is_empty());
    }
    let st = admin
        .alter_topic_config(AlterTopicConfigRequest {
            name: "good".into(),
            set: [("retention.bytes".to_string(), "-7".to_string())].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&st), "INVALID_CONFIG");
    let st = admin
        .delete_topic(DeleteTopicRequest {
            name: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&st), "UNKNOWN_TOPIC");

    // Produce: unknown topic/partition, corrupt and oversized batches.
    let good = batch(3, 10);
    let mut bad_crc = good.to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xFF;
    let mut lying_long = good.to_vec();
    lying_long[8..12].copy_from_slice(&(good.len() as i32 + 100).to_be_bytes());
    let mut lying_short = good.to_vec();
    lying_short[8..12].copy_from_slice(&(good.len() as i32 - 40).to_be_bytes());
    let mut bad_magic = good.to_vec();
    bad_magic[28] = 7;
    let produce_cases: Vec<(ProduceRequest, &str)> = vec![
        (produce_req("missing", 0, good.clone()), "UNKNOWN_TOPIC"),
        (produce_req("good", 7, good.clone()), "UNKNOWN_PARTITION"),
        (
            produce_req("good", 0, Bytes::from(bad_crc)),
            "CORRUPT_BATCH",
        ),
        (
            produce_req("good", 0, Bytes::from(lying_long)),
            "CORRUPT_BATCH",
        ),
        (
            produce_req("good", 0, Bytes::from(lying_short)),
            "CORRUPT_BATCH",
        ),
        (
            produce_req("good", 0, Bytes::from(bad_magic)),
            "CORRUPT_BATCH",
        ),
        (
            produce_req("good", 0, Bytes::from_static(b"definitely not a batch")),
            "CORRUPT_BATCH",
        ),
        (produce_req("good", 0, Bytes::new()), "CORRUPT_BATCH"),
        (produce_req("good", 0, batch(10, 1000)), "BATCH_TOO_LARGE"),
        (
            produce_req("__consumer_offsets", 0, good.clone()),
            "INVALID_TOPIC",
        ),
        (
            ProduceRequest {
                acks: 99,
                ..produce_req("good", 0, good.clone())
            },
            "INVALID_REQUEST",
        ),
    ];
    for (req, code) in produce_cases {
        let st = api.produce(req).await.unwrap_err();
        assert_eq!(error_code(&st), code, "{st:?}");
    }

    // Reads out of range.
    let r = api
        .fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1024,
            partitions: vec![
                FetchPartition {
                    topic: "good".into(),
                    partition: 0,
                    offset: 1000,
                    max_bytes: 0,
                },
                FetchPartition {
                    topic: "good".into(),
                    partition: 0,
                    offset: -5,
                    max_bytes: 0,
                },
                FetchPartition {
                    topic: "missing".into(),
                    partition: 0,
                    offset: 0,
                    max_bytes: 0,
                },
                FetchPartition {
                    topic: "good".into(),
                    partition: 9,
                    offset: 0,
                    max_bytes: 0,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = r
        .partitions
        .iter()
        .map(|p| p.error.as_ref().map_or(0, |e| e.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::OffsetOutOfRange as i32,
            ErrorCode::OffsetOutOfRange as i32,
            ErrorCode::UnknownTopic as i32,
            ErrorCode::UnknownPartition as i32
        ]
    );
    let st = api
        .subscribe(SubscribeRequest {
            topic: "good".into(),
            partition: 0,
            offset: 11,
            max_bytes: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&st), "OFFSET_OUT_OF_RANGE");
    let st = api
        .list_offsets(ListOffsetsRequest {
            topic: "good".into(),
            partition: 3,
            spec: 0,
            timestamp: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&st), "UNKNOWN_PARTITION");
    let st = admin
        .delete_records(DeleteRecordsRequest {
            topic: "good".into(),
            partition: 0,
            offset: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&st), "OFFSET_OUT_OF_RANGE");

    // Groups.
    let commit = |group: &str, topic: &str, offset: i64| OffsetCommitRequest {
        group: group.into(),
        offsets: vec![TopicPartitionOffset {
            topic: topic.into(),
            partition: 0,
            offset,
            metadata: String::new(),
        }],
        ..Default::default()
    };
    for (req, code) in [
        (commit("", "good", 1), "INVALID_GROUP"),
        (commit("g", "missing", 1), "UNKNOWN_TOPIC"),
        (commit("g", "good", -3), "INVALID_REQUEST"),
    ] {
        let st = groups.offset_commit(req).await.unwrap_err();
        assert_eq!(error_code(&st), code, "{st:?}");
    }
    let st = groups
        .describe_group(DescribeGroupRequest {
            group: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error_code(&st), "UNKNOWN_GROUP");

    // Nothing stored changed and the broker still serves the same data.
    assert_eq!(snapshot_files(&data.join("good-0")), before_files);
    let after = api
        .fetch(fetch_all())
        .await
        .unwrap()
        .into_inner()
        .partitions[0]
        .records
        .clone();
    assert_eq!(after, before_records);
    assert_eq!(
        std::fs::read(data.join("garbage.bin")).unwrap(),
        vec![0xAB; 4096]
    );
    assert_eq!(
        std::fs::read(data.join("not-a-partition/junk.log")).unwrap(),
        b"\x00\x01garbage"
    );
    let ok = api
        .produce(produce_req("good", 0, batch(1, 10)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.base_offset, 10);
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_clean_and_data_dir_is_exclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut broker = BrokerProc::start(&data, &[]).await;
    let mut admin = broker.admin().await;
    admin.create_topic(create("t", 1, 1, &[])).await.unwrap();
    let mut api = broker.data().await;
    api.produce(produce_req("t", 0, batch(5, 10)))
        .await
        .unwrap();

    // A second broker on the same directory refuses to start.
    let port = strata_tests::free_port();
    let out = std::process::Command::new(strata_tests::bin("stratad"))
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--peer-listen")
        .arg(format!("127.0.0.1:{}", strata_tests::free_port()))
        .arg("--http-listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another stratad"), "{err}");

    let status = broker.terminate();
    assert!(status.success(), "SIGTERM exit: {status}");
    // A clean stop leaves a recovery point: restart needs no repair.
    broker.restart().await;
    assert!(!broker.log().contains("recovered a damaged log tail"));
    let mut api = broker.data().await;
    let r = api
        .produce(produce_req("t", 0, batch(1, 10)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.base_offset, 5);
}
