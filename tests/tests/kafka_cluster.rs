//! The Kafka listener in a 3-broker cluster: every broker advertises its
//! own Kafka address; an idempotent confluent-kafka producer at acks=all
//! keeps producing across a SIGKILL (and restart) of a partition's
//! leader, and every acknowledged record is read back exactly once, at
//! its acknowledged offset, in order per partition; three-member groups
//! (classic and the consumer protocol) share a 12-partition topic across
//! the death of their coordinator's broker.
//!
//! Skipped when confluent-kafka is missing, unless STRATA_REQUIRE_TOOLS=1.

use std::process::Command;
use std::time::Duration;

use strata_tests::tools::{have_python_module, python_script};
use strata_tests::{Cluster, ClusterOpts};

/// Kafka's offsets partition of a group (Java `String.hashCode`).
fn shard_for(group: &str, n: u32) -> u32 {
    let mut h: i32 = 0;
    for c in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(c));
    }
    h.unsigned_abs() % n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_survives_a_leader_kill() {
    if !have_python_module("confluent_kafka") {
        return;
    }
    let mut c = Cluster::start(
        3,
        ClusterOpts {
            kafka: true,
            ..Default::default()
        },
    )
    .await;
    c.create_in_sync("fo", 3, 3).await;
    let bootstrap = c.kafka_bootstrap();
    // Metadata through any broker names all three Kafka addresses.
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys; from confluent_kafka.admin import AdminClient; \
             md = AdminClient({'bootstrap.servers': sys.argv[1]}).list_topics(timeout=10); \
             print(sorted(f'{b.host}:{b.port}' for b in md.brokers.values()))",
        ])
        .arg(bootstrap.split(',').next().unwrap())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    for addr in bootstrap.split(',') {
        assert!(listed.contains(addr), "{addr} not in {listed}");
    }

    let acked = c.dir().join("acked.txt");
    let mut producer = Command::new("python3")
        .arg(python_script("confluent_failover.py"))
        .args(["produce", &bootstrap, "fo", "20000"])
        .arg(&acked)
        .spawn()
        .expect("python3");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let leader = c.wait_leader("fo", 0, Duration::from_secs(10)).await;
    c.kill(leader);
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.restart(leader).await;
    let status = tokio::task::spawn_blocking(move || producer.wait().expect("wait"))
        .await
        .unwrap();
    assert!(status.success(), "the producer failed");
    let out = Command::new("python3")
        .arg(python_script("confluent_failover.py"))
        .args(["verify", &bootstrap, "fo"])
        .arg(&acked)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    c.assert_not_broken();
}

async fn group_across_coordinator_death(strategy: &str) {
    if !have_python_module("confluent_kafka") {
        return;
    }
    let mut c = Cluster::start(
        3,
        ClusterOpts {
            kafka: true,
            extra: vec!["--offsets-partitions".into(), "3".into()],
            ..Default::default()
        },
    )
    .await;
    let topic = format!("work-{strategy}");
    c.create_in_sync(&topic, 12, 3).await;
    let ready = c.dir().join("ready");
    let killed = c.dir().join("killed");
    let mut members = Command::new("python3")
        .arg(python_script("confluent_group_failover.py"))
        .args([&c.kafka_bootstrap(), strategy, &topic])
        .arg(&ready)
        .arg(&killed)
        .spawn()
        .expect("python3");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the members never settled"
        );
        if let Ok(Some(s)) = members.try_wait() {
            panic!("the members exited early: {s}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shard = shard_for(&format!("fo-{strategy}"), 3);
    let coordinator = c
        .wait_leader("__consumer_offsets", shard, Duration::from_secs(30))
        .await;
    c.kill(coordinator);
    std::fs::write(&killed, b"").unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.restart(coordinator).await;
    let status = tokio::task::spawn_blocking(move || members.wait().expect("wait"))
        .await
        .unwrap();
    assert!(
        status.success(),
        "the group failed across the coordinator's death"
    );
    c.assert_not_broken();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_group_survives_its_coordinators_death() {
    group_across_coordinator_death("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_group_survives_its_coordinators_death() {
    group_across_coordinator_death("consumer").await;
}

/// `strata topic alter --partitions` and Kafka's CreatePartitions grow a
/// topic on every broker; shrinking is refused with a stable code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_added_through_the_cli_and_kafka() {
    if !have_python_module("confluent_kafka") {
        return;
    }
    let c = Cluster::start(
        3,
        ClusterOpts {
            kafka: true,
            ..Default::default()
        },
    )
    .await;
    c.create_in_sync("grow", 2, 3).await;
    let brokers = c.bootstrap();
    let out = strata_tests::run_cli(
        &brokers,
        &[
            "--output",
            "json",
            "topic",
            "alter",
            "grow",
            "--partitions",
            "4",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "alter: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(4));
    let out = strata_tests::run_cli(
        &brokers,
        &["topic", "alter", "grow", "--partitions", "3"],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("INVALID_PARTITIONS"), "{err}");
    // Every broker leads or follows the new partitions.
    c.wait_all_in_sync("grow", Duration::from_secs(30)).await;

    let bootstrap = c.kafka_bootstrap();
    strata_tests::tools::run_python_ok(
        "confluent_partitions.py",
        vec![bootstrap, "grow".into()],
        String::new,
    )
    .await;
    let t = c.describe("grow").await.expect("described");
    assert_eq!(t.partitions.len(), 7);
    c.assert_not_broken();
}
