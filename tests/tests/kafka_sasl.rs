//! SASL on the Kafka listener (`--kafka-sasl required`): users created
//! with `strata user create`, PLAIN and SCRAM-SHA-256/512 with
//! confluent-kafka, refusals (wrong password, unknown user, no SASL), the
//! same ACLs judging a SASL principal as any other, and Kafka's ACL APIs on
//! the one ACL store (`strata acl list` shows what they created).
//!
//! Skipped when confluent-kafka is missing, unless STRATA_REQUIRE_TOOLS=1.

use strata_tests::tools::{have_python_module, run_python_ok};
use strata_tests::{BrokerProc, free_port};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "strata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_users_authenticate_and_acls_judge_them() {
    if !have_python_module("confluent_kafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let broker = BrokerProc::start(
        &tmp.path().join("data"),
        &[
            "--kafka-listen",
            &kafka,
            "--kafka-sasl",
            "required",
            "--superusers",
            "anonymous,root",
        ],
    )
    .await;
    for (user, pw) in [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("root", "root-pw"),
    ] {
        ok(&broker.cli(
            &["user", "create", user, "--password-stdin"],
            Some(format!("{pw}\n").as_bytes()),
        ));
    }
    let listed = ok(&broker.cli(&["user", "list"], None));
    assert!(
        listed.contains("alice") && listed.contains("SCRAM-SHA-512"),
        "{listed}"
    );
    ok(&broker.cli(
        &[
            "topic",
            "create",
            "sasl-t",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
        None,
    ));
    for op in ["write", "read"] {
        ok(&broker.cli(
            &[
                "acl",
                "add",
                "--principal",
                "alice",
                "--topic",
                "sasl-t",
                "--operation",
                op,
            ],
            None,
        ));
    }
    ok(&broker.cli(
        &[
            "acl",
            "add",
            "--principal",
            "alice",
            "--group",
            "sasl-g",
            "--operation",
            "read",
        ],
        None,
    ));
    run_python_ok("confluent_sasl.py", vec![kafka.clone()], || {
        broker.log_tail(30)
    })
    .await;
    // The ACL a Kafka client created (and deleted) went through strata's
    // store: it is gone again, and alice's are still there.
    let acls = ok(&broker.cli(&["acl", "list"], None));
    assert!(acls.contains("alice") && !acls.contains("audit"), "{acls}");
    // Deleting a user: it can no longer authenticate (checked by a
    // refused SCRAM login).
    ok(&broker.cli(&["user", "delete", "bob"], None));
    let listed = ok(&broker.cli(&["user", "list"], None));
    assert!(!listed.contains("bob"), "{listed}");
}
