//! The container deployment end to end with the real Docker engine: the
//! image built from this workspace's binaries over the local base image,
//! the three-broker compose cluster with its S3 object store, driven from
//! the host through the published ports. Under continuous acks=all
//! produce: a broker container killed and started again, one cut off the
//! network and reconnected, and a rolling restart; then every acknowledged
//! record must be there exactly once, in order.
//!
//! Needs `docker` (with compose) and root for the base image; without
//! them the test says so and passes, unless STRATA_REQUIRE_DOCKER=1 (set
//! by `.ci/run`), which makes a missing engine a failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use strata_tests::{ProduceLoad, bin, check_acked, consume_earliest, free_port, http_get, run_cli};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A compose project, taken down with its volumes when dropped.
struct Project {
    name: String,
    env: Vec<(String, String)>,
    client: Vec<SocketAddr>,
    http: Vec<u16>,
}

impl Project {
    fn compose(&self) -> Command {
        let mut c = strata_tests::compose_command().expect("compose");
        c.args(["-p", &self.name, "-f"])
            .arg(workspace().join("deploy/docker-compose.yml"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// The id of the container of service `svc`.
    fn container(&self, svc: &str) -> String {
        let id = ok(self.compose().args(["ps", "-q", svc]));
        let id = id.trim().to_owned();
        assert!(!id.is_empty(), "no container for {svc}");
        id
    }

    fn brokers(&self) -> String {
        self.client
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn cli(&self, args: &[&str]) -> Output {
        run_cli(&self.brokers(), args, None)
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(
            &run(self.compose().args(["logs", "--no-color", "--tail", "40"])).stdout,
        )
        .into_owned()
    }

    /// Waits until broker `i` (0-based) answers /ready with 200.
    async fn wait_ready(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if http_status(self.http[i], "/ready").await == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker {} not ready in {timeout:?}:\n{}",
                i + 1,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Waits until the cluster reports every broker alive and no
    /// under-replicated or leaderless partition.
    async fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.cli(&["cluster", "status", "--output", "json"]);
            if o.status.success() {
                let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                let alive = j["brokers"]
                    .as_array()
                    .is_some_and(|b| b.len() == 3 && b.iter().all(|b| b["alive"] == true));
                if alive && j["under_replicated_partitions"] == 0 && j["leaderless_partitions"] == 0
                {
                    return;
                }
            }
            let last = if o.status.success() {
                String::from_utf8_lossy(&o.stdout).into_owned()
            } else {
                String::from_utf8_lossy(&o.stderr).into_owned()
            };
            assert!(
                Instant::now() < deadline,
                "cluster not healthy in {timeout:?}: {last}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self
            .compose()
            .args(["down", "--volumes", "--remove-orphans", "--timeout", "5"])
            .output();
    }
}

/// The sum over brokers of `series` on their /metrics (unreachable
/// brokers count 0).
async fn metric_sum(ports: &[u16], series: &str) -> f64 {
    let mut sum = 0.0;
    for &port in ports {
        if let Some(body) = http_body(port, "/metrics").await {
            sum += body
                .lines()
                .find_map(|l| {
                    l.strip_prefix(series)?
                        .strip_prefix(' ')?
                        .parse::<f64>()
                        .ok()
                })
                .unwrap_or(0.0);
        }
    }
    sum
}

async fn http_body(port: u16, path: &str) -> Option<String> {
    http_get(&format!("127.0.0.1:{port}"), path)
        .await
        .map(|(_, body)| body)
}

/// Waits until `f` holds for the under-replicated sum over `ports`.
async fn wait_under_replicated(ports: &[u16], f: impl Fn(f64) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = metric_sum(ports, "strata_under_replicated_partitions").await;
        if f(n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "under-replicated partitions {what}: still {n}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(&format!("127.0.0.1:{port}"), path)
        .await
        .map(|(status, _)| status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_cluster_survives_container_faults() {
    if strata_tests::compose_command().is_none() {
        assert!(
            std::env::var("STRATA_REQUIRE_DOCKER").is_err(),
            "STRATA_REQUIRE_DOCKER is set but docker (with compose) is not available"
        );
        eprintln!("SKIPPED: docker with compose is not available");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The image from the binaries this test run built.
    let image = "strata:ci";
    let profile = bin("stratad")
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .expect("profile dir");
    ok(Command::new(workspace().join("deploy/build-image.sh")).args([image, &profile]));

    let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let http: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut env = vec![
        ("STRATA_IMAGE".to_string(), image.to_string()),
        ("STRATA_FSYNC".to_string(), "always".to_string()),
    ];
    for i in 0..3 {
        env.push((format!("STRATA_PORT_{}", i + 1), client[i].to_string()));
        env.push((format!("STRATA_HTTP_PORT_{}", i + 1), http[i].to_string()));
    }
    let p = Project {
        name: format!("strata-ci-{}", std::process::id()),
        env,
        client: client
            .iter()
            .map(|port| format!("127.0.0.1:{port}").parse().expect("addr"))
            .collect(),
        http,
    };
    ok(p.compose().args(["up", "-d"]));
    for i in 0..3 {
        p.wait_ready(i, Duration::from_secs(90)).await;
    }
    p.wait_healthy(Duration::from_secs(60)).await;

    // The host's CLI against the published ports.
    let o = p.cli(&[
        "topic",
        "create",
        "events",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: String = (0..100).map(|i| format!("hello-{i}\n")).collect();
    let o = run_cli(
        &p.brokers(),
        &["produce", "events", "--partition", "1"],
        Some(lines.as_bytes()),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = p.cli(&[
        "consume",
        "events",
        "--partition",
        "1",
        "--offset",
        "earliest",
        "--count",
        "100",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        lines,
        "consumed what was produced"
    );

    // Faults under continuous acks=all produce.
    let o = p.cli(&[
        "topic",
        "create",
        "load",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    p.wait_healthy(Duration::from_secs(60)).await;
    let brokers: Vec<(u64, SocketAddr)> = (1..=3u64).zip(p.client.iter().copied()).collect();
    let load = ProduceLoad::start(brokers, "load", 3);
    assert!(
        load.wait_progress(50, Duration::from_secs(30)).await,
        "no produce progress"
    );

    // Metrics through the published ports parse as OpenMetrics.
    let body = http_body(p.http[0], "/metrics").await.expect("/metrics");
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.openmetrics.parser import \
             text_string_to_metric_families as p\nprint(len(list(p(sys.stdin.read()))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3");
    assert!(
        parsed.status.success(),
        "/metrics is not OpenMetrics: {}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    assert_eq!(
        metric_sum(&p.http, "strata_under_replicated_partitions").await,
        0.0
    );

    eprintln!("docker kill broker2, then start it again");
    ok(Command::new("docker").args(["kill", &p.container("broker2")]));
    // The survivors report under-replicated partitions ...
    let survivors = [p.http[0], p.http[2]];
    wait_under_replicated(&survivors, |n| n > 0.0, "did not rise after the kill").await;
    ok(Command::new("docker").args(["start", &p.container("broker2")]));
    p.wait_ready(1, Duration::from_secs(90)).await;
    p.wait_healthy(Duration::from_secs(90)).await;
    // ... and none once it is back.
    wait_under_replicated(&p.http, |n| n == 0.0, "did not fall after the restart").await;
    assert!(
        load.wait_progress(20, Duration::from_secs(30)).await,
        "produce stalled after the kill"
    );

    eprintln!("cut broker3 off the network, then reconnect it");
    let net = format!("{}_strata", p.name);
    ok(Command::new("docker").args(["network", "disconnect", &net, &p.container("broker3")]));
    tokio::time::sleep(Duration::from_secs(5)).await;
    ok(Command::new("docker").args(["network", "connect", &net, &p.container("broker3")]));
    p.wait_healthy(Duration::from_secs(90)).await;
    assert!(
        load.wait_progress(20, Duration::from_secs(30)).await,
        "produce stalled after the cut"
    );

    eprintln!("rolling restart");
    let o = Command::new(workspace().join("deploy/rolling-restart.sh"))
        .env("STRATA_BROKERS", p.brokers())
        .env("STRATA_CLI", bin("strata"))
        .args([
            &p.container("broker1"),
            &format!("127.0.0.1:{}", p.http[0]),
            &p.container("broker2"),
            &format!("127.0.0.1:{}", p.http[1]),
            &p.container("broker3"),
            &format!("127.0.0.1:{}", p.http[2]),
        ])
        .output()
        .expect("rolling restart");
    assert!(
        o.status.success(),
        "rolling restart failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    p.wait_healthy(Duration::from_secs(90)).await;
    assert!(
        load.wait_progress(20, Duration::from_secs(30)).await,
        "produce stalled after the restart"
    );
    let report = load.stop().await;

    // Every acknowledged record exactly once, in order, per partition.
    let cfg = strata_client::ClientConfig::new(p.client.iter().map(SocketAddr::to_string));
    for part in 0..3u32 {
        let o = p.cli(&["topic", "describe", "load", "--output", "json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("describe json");
        let hw = j["partitions"][part as usize]["high_watermark"]
            .as_i64()
            .expect("hw");
        let log = consume_earliest(cfg.clone(), "load", part, hw as usize).await;
        check_acked(part, &log, &report.acked[part as usize]);
        eprintln!(
            "partition {part}: {} records, {} acknowledged",
            log.len(),
            report.acked[part as usize].len()
        );
    }
}
