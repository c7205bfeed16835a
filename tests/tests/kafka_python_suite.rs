//! kafka-python's own integration suite, from its source distribution on
//! PyPI, against a running strata broker through the suite's
//! external-broker settings. Every test that cannot pass is listed with
//! its reason in `tests/python/kafka_python_suite/expected.json`; any
//! other failure fails this test. The README reports the counts.
//!
//! Skipped when kafka-python, pytest or the source distribution (fetched
//! from PyPI) is missing, unless STRATA_REQUIRE_TOOLS=1.

use std::process::Command;

use strata_tests::tools::{have_python_module, python_script, require_tools};
use strata_tests::{BrokerProc, free_port};

/// The installed kafka-python's version.
fn kafka_python_version() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import kafka; print(kafka.__version__)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Fetches the source distribution of kafka-python `version` into `dir`.
fn fetch_sdist(version: &str, dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let ok = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--no-binary", ":all:"])
        .arg(format!("kafka-python=={version}"))
        .arg("-d")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return None;
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_integration_suite() {
    let have = have_python_module("kafka")
        && have_python_module("pytest")
        && have_python_module("pytest_timeout");
    if !have {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let version = kafka_python_version().expect("kafka-python version");
    let Some(sdist) = fetch_sdist(&version, tmp.path()) else {
        assert!(
            !require_tools(),
            "cannot fetch kafka-python {version}'s source distribution"
        );
        return;
    };
    let kafka = format!("127.0.0.1:{}", free_port());
    // The suite's own fixture runs Kafka with ACLs off unless a test adds
    // them for itself; its ACL test leaves none behind.
    let broker = BrokerProc::start(
        &tmp.path().join("data"),
        &["--kafka-listen", &kafka, "--authorization", "off"],
    )
    .await;
    let work = tmp.path().join("suite");
    std::fs::create_dir_all(&work).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(python_script("kafka_python_suite/run.py"))
            .arg(&sdist)
            .arg(&kafka)
            .arg(&work)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "kafka-python's suite: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        broker.log_tail(30)
    );
    assert!(stdout.contains("kafka-python suite:"), "{stdout}");
    assert!(!broker.has_died());
}
