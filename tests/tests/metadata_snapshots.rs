//! Snapshots of the controller's metadata state through real brokers:
//! thousands of metadata changes leave a bounded metadata log and a
//! snapshot; a restart loads the snapshot and replays only what follows;
//! a broker that was down while the log before the leader's snapshot went
//! catches up by installing the snapshot, and a wiped broker rebuilds its
//! whole metadata from one.

use std::path::Path;
use std::time::Duration;

use strata_proto::v1::*;
use strata_tests::{BrokerProc, Cluster, ClusterOpts};

/// Bytes of the metadata log's batches (the active segment's file is
/// preallocated, so file sizes say nothing).
fn metadata_log_bytes(data_dir: &Path) -> u64 {
    strata_tests::read_partition_batches(data_dir, "__cluster_metadata", 0)
        .iter()
        .map(|b| b.len() as u64)
        .sum()
}

fn has_snapshot(data_dir: &Path) -> bool {
    data_dir
        .join("__cluster_metadata-0")
        .join("state-snapshot")
        .exists()
}

/// `n` metadata changes: config alterations of `topic`, from `tasks`
/// concurrent clients; the last value of `retention.ms` is `n - 1 + 1000`.
async fn alter_many(endpoint: String, topic: &str, n: u64, tasks: u64) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (endpoint, topic) = (endpoint.clone(), topic.to_string());
        handles.push(tokio::spawn(async move {
            let mut admin = strata_proto::v1::admin_client::AdminClient::connect(endpoint)
                .await
                .expect("connect");
            let mut i = t;
            while i < n {
                // The last change is made alone, after the others.
                if i + 1 < n {
                    admin
                        .alter_topic_config(AlterTopicConfigRequest {
                            name: topic.clone(),
                            set: [("segment.ms".to_string(), (1000 + i).to_string())].into(),
                        })
                        .await
                        .expect("alter");
                }
                i += tasks;
            }
        }));
    }
    for h in handles {
        h.await.expect("alter task");
    }
    let mut admin = strata_proto::v1::admin_client::AdminClient::connect(endpoint)
        .await
        .expect("connect");
    admin
        .alter_topic_config(AlterTopicConfigRequest {
            name: topic.into(),
            set: [("segment.ms".to_string(), (1000 + n - 1).to_string())].into(),
        })
        .await
        .expect("last alter");
}

async fn segment_ms(
    admin: &mut strata_proto::v1::admin_client::AdminClient<tonic::transport::Channel>,
    topic: &str,
) -> String {
    admin
        .describe_topic(DescribeTopicRequest { name: topic.into() })
        .await
        .expect("describe")
        .into_inner()
        .config["segment.ms"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_metadata_changes_keep_the_metadata_log_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let http = format!("127.0.0.1:{}", strata_tests::free_port());
    let mut broker = BrokerProc::start(
        &data,
        &["--metadata-snapshot-entries", "500", "--http-listen", &http],
    )
    .await;
    broker
        .admin()
        .await
        .create_topic(CreateTopicRequest {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Default::default(),
        })
        .await
        .expect("create");
    alter_many(broker.endpoint(), "t", 6_000, 8).await;
    assert!(has_snapshot(&data), "a snapshot was taken");
    // 6,000 changes of some 200 bytes each; the log keeps only what
    // follows the last snapshot.
    let bytes = metadata_log_bytes(&data);
    assert!(bytes < 400 << 10, "metadata log of {bytes} bytes");
    assert!(bytes > 0);
    assert!(broker.log().contains("took a state snapshot"));
    // Metrics tell the snapshot's size, index and age, and the log's size.
    let gauge = async |name: &str| -> i64 {
        let (_, body) = strata_tests::http_get(&http, "/metrics")
            .await
            .expect("metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics"))
    };
    assert!(gauge("strata_metadata_snapshot_bytes").await > 0);
    assert!(gauge("strata_metadata_snapshot_index").await >= 5_500);
    assert!((0..60).contains(&gauge("strata_metadata_snapshot_age_seconds").await));
    let log_bytes = gauge("strata_metadata_log_bytes").await;
    assert!(log_bytes > 0 && log_bytes < 400 << 10, "{log_bytes}");
    // A restart (crash) loads the snapshot and replays the rest.
    broker.kill();
    broker.restart().await;
    assert_eq!(segment_ms(&mut broker.admin().await, "t").await, "6999");
    assert!((0..120).contains(&gauge("strata_metadata_snapshot_age_seconds").await));
    // The topic still works.
    let out = broker.cli(&["topic", "describe", "t"], None);
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_behind_the_metadata_log_start_installs_the_snapshot() {
    let mut c = Cluster::start(
        3,
        ClusterOpts {
            extra: vec!["--metadata-snapshot-entries".into(), "300".into()],
            ..Default::default()
        },
    )
    .await;
    c.create_in_sync("t", 3, 3).await;
    // Broker 3 is down through 3,000 metadata changes: every live broker
    // snapshots and drops the log before its snapshot.
    c.kill(3);
    let via = c
        .ids()
        .into_iter()
        .find(|i| *i != 3)
        .expect("a live broker");
    let endpoint = format!("http://{}", c.client_addr(via));
    alter_many(endpoint, "t", 3_000, 8).await;
    for id in [1, 2] {
        assert!(has_snapshot(&c.data_dir(id)), "broker {id} took a snapshot");
    }
    c.restart(3).await;
    let mut admin3 = strata_proto::v1::admin_client::AdminClient::connect(format!(
        "http://{}",
        c.client_addr(3)
    ))
    .await
    .expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if segment_ms(&mut admin3, "t").await == "3999" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broker 3 did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        c.get(3)
            .log()
            .contains("installed the metadata state from a snapshot"),
        "broker 3 caught up from a snapshot:\n{}",
        c.get(3).log_tail(30)
    );
    assert!(has_snapshot(&c.data_dir(3)));
    // A wiped broker rebuilds its metadata from a snapshot too, and hosts
    // its replicas again.
    c.wipe(2);
    c.restart(2).await;
    c.wait_all_in_sync("t", Duration::from_secs(90)).await;
    c.assert_not_broken();
}
