//! The `strata` CLI against a real broker: topic administration with JSON
//! output, 100,000 records through `strata produce` and back through
//! `strata consume`, group resume, and one-line errors with exit codes.

use std::process::Output;

use serde_json::Value;
use strata_tests::{BrokerProc, run_cli};

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "strata failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A failed command: exit `code`, exactly one line on stderr naming `what`.
fn fails(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if code == 1 {
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    }
    assert!(err.contains(what), "{what} not in: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_produce_consume_and_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    ok(&broker.cli(
        &[
            "topic",
            "create",
            "lines",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    ));
    ok(&broker.cli(
        &[
            "topic",
            "create",
            "multi",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=60000",
        ],
        None,
    ));
    let list = ok(&broker.cli(&["topic", "list", "--output", "json"], None));
    assert!(list.contains("lines") && list.contains("multi"), "{list}");
    assert!(
        !list.contains("__consumer_offsets"),
        "internal topics hidden: {list}"
    );

    // 100,000 lines in, the same 100,000 lines out, in order.
    let input: String = (0..100_000).map(|i| format!("line-{i:06}\n")).collect();
    ok(&broker.cli(&["produce", "lines"], Some(input.as_bytes())));
    let out = ok(&broker.cli(
        &[
            "consume", "lines", "--offset", "earliest", "--count", "100000",
        ],
        None,
    ));
    assert_eq!(out, input);

    let desc: Value = serde_json::from_str(&ok(
        &broker.cli(&["topic", "describe", "lines", "--output", "json"], None)
    ))
    .unwrap();
    assert_eq!(desc["name"], "lines");
    let p0 = &desc["partitions"][0];
    assert_eq!(p0["partition"], 0);
    assert_eq!(p0["high_watermark"], 100_000);
    assert_eq!(p0["log_end_offset"], 100_000);
    assert_eq!(p0["log_start_offset"], 0);
    assert_eq!(p0["leader"], 1);
    assert_eq!(p0["replicas"], serde_json::json!([1]));
    assert_eq!(p0["isr"], serde_json::json!([1]));
    assert!(p0["remote_start_offset"].is_null());
    assert!(desc["config"]["retention.ms"].is_string());

    // Keys and JSON output.
    ok(&broker.cli(
        &["produce", "multi", "--key-separator", ":"],
        Some(b"a:1\nb:2\nc:3\na:4\n"),
    ));
    let out = ok(&broker.cli(
        &[
            "consume", "multi", "--offset", "earliest", "--count", "4", "--format", "json",
        ],
        None,
    ));
    let recs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 4);
    for r in &recs {
        for k in [
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "headers",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
    }
    let a: Vec<&Value> = recs.iter().filter(|r| r["key"] == "a").collect();
    assert_eq!(a.len(), 2);
    assert_eq!(
        a[0]["partition"], a[1]["partition"],
        "same key, same partition"
    );

    // A group resumes from its committed offset.
    let first = ok(&broker.cli(
        &["consume", "lines", "--group", "g1", "--count", "10"],
        None,
    ));
    assert_eq!(first.lines().next(), Some("line-000000"));
    let next = ok(&broker.cli(&["consume", "lines", "--group", "g1", "--count", "5"], None));
    assert_eq!(next.lines().next(), Some("line-000010"));
    let g: Value = serde_json::from_str(&ok(
        &broker.cli(&["group", "describe", "g1", "--output", "json"], None)
    ))
    .unwrap();
    assert!(g.to_string().contains("15"), "{g}");
    ok(&broker.cli(
        &[
            "group",
            "reset-offsets",
            "g1",
            "--topic",
            "lines",
            "--to",
            "earliest",
        ],
        None,
    ));
    let again = ok(&broker.cli(&["consume", "lines", "--group", "g1", "--count", "1"], None));
    assert_eq!(again.trim(), "line-000000");

    ok(&broker.cli(
        &["topic", "alter", "multi", "--config", "retention.ms=1000"],
        None,
    ));
    ok(&broker.cli(&["topic", "delete", "multi"], None));
    let list = ok(&broker.cli(&["topic", "list"], None));
    assert!(!list.contains("multi"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_with_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    fails(
        &broker.cli(
            &[
                "topic",
                "create",
                "bad name",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
            ],
            None,
        ),
        1,
        "INVALID_TOPIC",
    );
    fails(
        &broker.cli(
            &[
                "topic",
                "create",
                "zero",
                "--partitions",
                "0",
                "--replication-factor",
                "1",
            ],
            None,
        ),
        1,
        "INVALID_PARTITIONS",
    );
    fails(
        &broker.cli(
            &[
                "topic",
                "create",
                "rf",
                "--partitions",
                "1",
                "--replication-factor",
                "5",
            ],
            None,
        ),
        1,
        "INVALID_REPLICATION_FACTOR",
    );
    fails(
        &broker.cli(
            &[
                "topic",
                "create",
                "cfg",
                "--partitions",
                "1",
                "--replication-factor",
                "1",
                "--config",
                "retention.ms=x",
            ],
            None,
        ),
        1,
        "INVALID_CONFIG",
    );
    fails(
        &broker.cli(&["topic", "describe", "missing"], None),
        1,
        "UNKNOWN_TOPIC",
    );
    fails(
        &broker.cli(&["produce", "missing"], Some(b"x\n")),
        1,
        "UNKNOWN_TOPIC",
    );
    ok(&broker.cli(
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    ));
    fails(
        &broker.cli(&["consume", "t", "--partition", "4", "--count", "1"], None),
        1,
        "UNKNOWN_PARTITION",
    );
    fails(
        &broker.cli(&["consume", "t", "--offset", "50", "--count", "1"], None),
        1,
        "OFFSET_OUT_OF_RANGE",
    );
    // Bad usage exits 2.
    fails(&broker.cli(&["topic", "frobnicate"], None), 2, "");
    fails(
        &broker.cli(&["consume", "t", "--offset", "sideways"], None),
        2,
        "",
    );
    // No broker there: exit 1, one line.
    let port = strata_tests::free_port();
    fails(
        &run_cli(&format!("127.0.0.1:{port}"), &["topic", "list"], None),
        1,
        "error",
    );
    assert!(!broker.log().contains("panicked"));
}
