//! The Kafka listener against PyPI's Kafka clients (`tests/python/*.py`):
//! confluent-kafka (librdkafka 2.x) produces idempotently at acks=all,
//! reads every record back exactly once and in order, commits offsets with
//! metadata and administers topics; three members of a classic group
//! (eager and cooperative-sticky) share a 12-partition topic through a
//! member leaving and a static member's restart; aiokafka (the older,
//! non-flexible versions) and kafka-python 3.x each produce, consume and
//! resume a group.
//!
//! Skipped when the Python package is missing, unless
//! STRATA_REQUIRE_TOOLS=1 (set by `.ci/run`, which installs it).

use strata_tests::tools::{have_python_module, run_python_ok};
use strata_tests::{BrokerProc, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_produces_consumes_commits_and_administers() {
    if !have_python_module("confluent_kafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    run_python_ok("confluent_basic.py", vec![kafka.clone()], || {
        broker.log_tail(20)
    })
    .await;
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
    if !have_python_module("confluent_kafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    run_python_ok(
        "confluent_groups.py",
        vec![kafka.clone(), strategy.to_string()],
        || broker.log_tail(30),
    )
    .await;
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
    if !have_python_module("aiokafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    run_python_ok("aiokafka_basic.py", vec![kafka.clone()], || {
        broker.log_tail(30)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_consumer_protocol_group_shares_partitions() {
    run_groups("consumer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_produces_consumes_and_resumes_a_group() {
    if !have_python_module("kafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(&tmp.path().join("data"), &["--kafka-listen", &kafka]).await;
    run_python_ok("kafka_python_basic.py", vec![kafka.clone()], || {
        broker.log_tail(30)
    })
    .await;
}
