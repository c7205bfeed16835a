//! The Kafka listener against PyPI's Kafka clients (`tests/python/*.py`):
//! confluent-kafka (librdkafka 2.x) produces idempotently at acks=all,
//! reads every record back exactly once and in order, commits offsets with
//! metadata and administers topics; three members of a classic group
//! (eager and cooperative-sticky) share a 12-partition topic through a
//! member leaving and a static member's restart; aiokafka (the older,
//! non-flexible versions) produces, consumes and resumes a group.
//!
//! Skipped when the Python package is missing, unless
//! STRATA_REQUIRE_TOOLS=1 (set by `.ci/run`, which installs it).

use std::path::PathBuf;
use std::process::Command;

use strata_tests::{BrokerProc, free_port};

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

fn have_module(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("STRATA_REQUIRE_TOOLS").is_err(),
            "STRATA_REQUIRE_TOOLS is set but the Python module {module} is missing"
        );
        eprintln!("python module {module} missing: skipped");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_produces_consumes_commits_and_administers() {
    if !have_module("confluent_kafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script("confluent_basic.py"))
            .arg(&kafka)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\nbroker: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail(20)
    );
    // What the Kafka client committed shows in strata's own CLI.
    let out = broker.cli(&["group", "describe", "cf-readers"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cf-orders"), "describe: {text}");
}

async fn run_groups(strategy: &'static str) {
    if !have_module("confluent_kafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    let k = kafka.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script("confluent_groups.py"))
            .arg(&k)
            .arg(strategy)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\nbroker: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail(30)
    );
    // strata's CLI shows the Kafka group: classic protocol, its members.
    let out = broker.cli(
        &[
            "--output",
            "json",
            "group",
            "describe",
            &format!("g-{strategy}"),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let protocol = if strategy == "consumer" {
        "\"protocol\":\"consumer\""
    } else {
        "\"protocol\":\"classic\""
    };
    assert!(text.contains(protocol), "describe: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_eager_group_shares_partitions() {
    run_groups("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_cooperative_group_moves_only_what_must_move() {
    run_groups("cooperative-sticky").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiokafka_produces_consumes_and_resumes_a_group() {
    if !have_module("aiokafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    let k = kafka.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script("aiokafka_basic.py"))
            .arg(&k)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\nbroker: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_consumer_protocol_group_shares_partitions() {
    run_groups("consumer").await;
}
