//! The Kafka listener in a 3-broker cluster: every broker advertises its
//! own Kafka address; an idempotent confluent-kafka producer at acks=all
//! keeps producing across a SIGKILL (and restart) of a partition's
//! leader, and every acknowledged record is read back exactly once, at
//! its acknowledged offset, in order per partition.
//!
//! Skipped when confluent-kafka is missing, unless STRATA_REQUIRE_TOOLS=1.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use strata_tests::{Cluster, ClusterOpts};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/confluent_failover.py")
}

fn have_confluent() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("STRATA_REQUIRE_TOOLS").is_err(),
            "STRATA_REQUIRE_TOOLS is set but confluent_kafka is missing"
        );
        eprintln!("confluent_kafka missing: skipped");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_survives_a_leader_kill() {
    if !have_confluent() {
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
        .arg(script())
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
        .arg(script())
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
