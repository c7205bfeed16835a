//! The deployment files hold up offline: the Kubernetes manifests validate
//! strictly against the Kubernetes API schemas (`kubernetes-validate`,
//! from PyPI), say what the broker needs (stable identities, probes on the
//! health endpoints, a disruption budget), and a broken manifest is caught;
//! the compose file parses (`docker compose config`).
//!
//! Without the tools the checks say so and pass, unless
//! STRATA_REQUIRE_TOOLS=1 (set by `.ci/run`).

use std::path::PathBuf;
use std::process::Command;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .join("deploy")
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy().join("k8s"))
        .expect("deploy/k8s")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn tool_missing(what: &str) {
    assert!(
        std::env::var("STRATA_REQUIRE_TOOLS").is_err(),
        "STRATA_REQUIRE_TOOLS is set but {what} is not available"
    );
    eprintln!("SKIPPED: {what} is not available");
}

#[test]
fn kubernetes_manifests_validate() {
    let validator = || {
        let mut c = Command::new("python3");
        c.args(["-m", "kubernetes_validate", "--strict", "--quiet"]);
        c
    };
    let present = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        return tool_missing("kubernetes-validate (pip install kubernetes-validate)");
    }
    let files = manifests();
    assert!(files.len() >= 4, "manifests: {files:?}");
    let o = validator()
        .args(&files)
        .output()
        .expect("kubernetes-validate");
    assert!(
        o.status.success(),
        "manifests do not validate:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // The validator does catch mistakes: a misspelt field fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    let text = std::fs::read_to_string(deploy().join("k8s/statefulset.yaml")).expect("read");
    std::fs::write(&bad, text.replace("serviceName:", "serviceNme:")).expect("write");
    let o = validator().arg(&bad).output().expect("kubernetes-validate");
    assert!(!o.status.success(), "a misspelt field passed validation");

    // What the broker needs, checked on the parsed documents.
    let check = r#"
import sys, yaml
docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
kinds = {d["kind"]: d for d in docs}
sts = kinds["StatefulSet"]["spec"]
c = sts["template"]["spec"]["containers"][0]
assert sts["replicas"] == 3, "three brokers"
assert sts["volumeClaimTemplates"], "a volume per broker"
assert c["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness on /ready"
assert c["livenessProbe"]["httpGet"]["path"] == "/health", "liveness on /health"
assert {p["containerPort"] for p in c["ports"]} == {9292, 9293, 9294}, "ports"
assert "STRATA_NODE_ID" in " ".join(c["args"]), "node id from the ordinal"
svcs = [d for d in docs if d["kind"] == "Service"]
assert any(s["spec"].get("clusterIP") == "None" and s["metadata"]["name"] == sts["serviceName"]
           for s in svcs), "headless peer service"
assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1, "one broker at a time"
assert "STRATA_INITIAL_CLUSTER" in kinds["ConfigMap"]["data"], "initial cluster"
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(check)
        .args(&files)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "manifest checks failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn compose_file_parses() {
    let Some(mut compose) = strata_tests::compose_command() else {
        return tool_missing("docker with compose");
    };
    let o = compose
        .arg("-f")
        .arg(deploy().join("docker-compose.yml"))
        .args(["config", "--quiet"])
        .output()
        .expect("docker compose config");
    assert!(
        o.status.success(),
        "docker-compose.yml: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // With the TLS override: every broker gets the TLS settings.
    let Some(mut compose) = strata_tests::compose_command() else {
        return;
    };
    let o = compose
        .arg("-f")
        .arg(deploy().join("docker-compose.yml"))
        .arg("-f")
        .arg(deploy().join("docker-compose.tls.yml"))
        .arg("config")
        .output()
        .expect("docker compose config");
    let merged = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(merged.matches("STRATA_TLS_CERT").count(), 3, "{merged}");
    assert_eq!(
        merged.matches("STRATA_INITIAL_CLUSTER").count(),
        3,
        "{merged}"
    );
}
