//! `GET /metrics`: OpenMetrics text that a Prometheus parser accepts, with
//! request counters and latency histograms that follow the traffic, fsync
//! latency and per-partition Raft state.

use std::time::Duration;

use strata_tests::{BrokerProc, consume_earliest, free_port, http_get_with_head, produce_acked};

fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// Parses with the Python client's OpenMetrics parser (PyPI
/// `prometheus_client`); returns the metric family names.
fn parse_openmetrics(body: &str) -> Option<Vec<String>> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    print(f.name)
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(body.as_bytes()).ok()?;
    let o = child.wait_with_output().ok()?;
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("No module named") {
        assert!(
            std::env::var("STRATA_REQUIRE_TOOLS").is_err(),
            "STRATA_REQUIRE_TOOLS is set but prometheus_client is not installed"
        );
        eprintln!("SKIPPED: the OpenMetrics parse (pip install prometheus_client)");
        return None;
    }
    assert!(o.status.success(), "not valid OpenMetrics: {err}");
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(
        &dir.path().join("node"),
        &["--http-listen", &http, "--fsync", "always"],
    )
    .await;
    let out = broker.cli(
        &[
            "topic",
            "create",
            "m",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = strata_client::ClientConfig::new([broker.addr.to_string()]);
    let values: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    produce_acked(cfg.clone(), "m", 0, &values).await;
    consume_earliest(cfg, "m", 0, 100).await;
    // A group that read 10 records and committed: 90 behind.
    let out = broker.cli(
        &[
            "consume", "m", "--group", "g", "--offset", "earliest", "--count", "10",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, head, body) = http_get_with_head(&http, "/metrics")
        .await
        .expect("/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "one EOF, at the end");
    assert_eq!(body.matches("# EOF").count(), 1);
    assert_eq!(
        value(&body, r#"strata_produced_records_total{topic="m"}"#),
        Some(100.0)
    );
    assert!(value(&body, r#"strata_produced_bytes_total{topic="m"}"#).is_some_and(|b| b > 200.0));
    assert!(value(&body, r#"strata_fetched_bytes_total{topic="m"}"#).is_some_and(|b| b > 200.0));
    assert!(
        value(
            &body,
            r#"strata_request_duration_seconds_count{api="produce"}"#
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        value(&body, "strata_fsync_duration_seconds_count").is_some_and(|n| n >= 1.0),
        "fsync=always syncs"
    );
    // Every acknowledged produce passed every stage (one leader: the local
    // log holds a batch before it commits).
    let produces = value(
        &body,
        r#"strata_request_duration_seconds_count{api="produce"}"#,
    );
    for stage in ["check", "queue", "append", "replicate", "respond"] {
        let series = format!(r#"strata_produce_stage_seconds_count{{stage="{stage}"}}"#);
        assert_eq!(value(&body, &series), produces, "{series}");
    }
    assert_eq!(
        value(
            &body,
            r#"strata_partition_high_watermark{topic="m",partition="0"}"#
        ),
        Some(100.0)
    );
    assert!(
        value(
            &body,
            r#"strata_partition_raft_term{topic="m",partition="0"}"#
        )
        .is_some_and(|t| t >= 1.0)
    );
    assert_eq!(
        value(&body, "strata_under_replicated_partitions"),
        Some(0.0)
    );
    assert_eq!(value(&body, "strata_broker_ready"), Some(1.0));
    // Every series the Grafana dashboard queries exists.
    let dash: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/strata.json"),
        )
        .expect("deploy/grafana/strata.json"),
    )
    .expect("dashboard json");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 20, "dashboard queries: {}", exprs.len());
    for e in &exprs {
        for name in series_names(e) {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                body.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name} ({e}), which /metrics does not have"
            );
        }
    }
    if let Some(families) = parse_openmetrics(&body) {
        for f in [
            "strata_requests",
            "strata_request_duration_seconds",
            "strata_fsync_duration_seconds",
            "strata_partition_raft_term",
            "strata_under_replicated_partitions",
            "strata_tier_upload_backlog_bytes",
        ] {
            assert!(
                families.iter().any(|n| n == f),
                "{f} missing from {families:?}"
            );
        }
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            m.values().for_each(|x| collect_exprs(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

/// The `strata_*` identifiers of a PromQL expression.
fn series_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("strata_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}
