//! Principals and ACLs against a real TLS cluster: certificate principals
//! (common name) and a bearer token from the token file; a superuser from
//! the config; per-topic write/read/describe ACLs enforced on produce,
//! consume, listing and describing; refusals carry UNAUTHORIZED, change no
//! data, and are written to the audit log; ACL changes through the CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use strata_client::{
    Admin, ClientConfig, ClientTls, Consumer, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, StartOffset,
};
use strata_proto::v1::*;
use strata_tests::{Cluster, ClusterOpts, client_tls, run_cli, tls_broker_flags, tls_gen};

fn cli_ok(args: &[&str]) -> String {
    let o = run_cli("127.0.0.1:1", args, None);
    assert!(
        o.status.success(),
        "strata {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A CA with a broker certificate and an `admin` client in `base/ca`, and
/// client certificates for `names` signed by it in `base/NAME`.
fn material(base: &Path, names: &[&str]) -> PathBuf {
    let ca = tls_gen(&base.join("ca"), &["--client-name", "admin"]);
    let s = |p: PathBuf| p.display().to_string();
    let (cert, key) = (s(ca.join("ca.pem")), s(ca.join("ca-key.pem")));
    for n in names {
        tls_gen(
            &base.join(n),
            &["--client-name", n, "--ca", &cert, "--ca-key", &key],
        );
    }
    ca
}

fn as_client(c: &Cluster, tls: ClientTls) -> ClientConfig {
    let mut cfg = c.client_config();
    cfg.tls = Some(tls);
    cfg.retries = 2;
    cfg
}

fn acl(principal: &str, topic: &str, op: AclOperation) -> Acl {
    Acl {
        principal: principal.into(),
        resource: AclResource::Topic as i32,
        resource_name: topic.into(),
        pattern: AclPattern::Literal as i32,
        operation: op as i32,
        permission: AclPermission::Allow as i32,
    }
}

async fn try_produce(cfg: ClientConfig, topic: &str, n: usize) -> Result<(), String> {
    let producer = Producer::new(cfg, ProducerConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut acks = Vec::new();
    for i in 0..n {
        let rec = ProducerRecord::new(topic, format!("r{i}")).partition(0);
        acks.push(producer.send(rec).await.map_err(|e| e.to_string())?);
    }
    producer.flush().await.map_err(|e| e.to_string())?;
    for a in acks {
        a.await.map_err(|e| e.to_string())?;
    }
    let _ = producer.close().await;
    Ok(())
}

async fn try_consume(cfg: ClientConfig, topic: &str, n: usize) -> Result<usize, String> {
    let mut consumer = Consumer::new(cfg, ConsumerConfig::default()).map_err(|e| e.to_string())?;
    consumer
        .assign(topic, 0, StartOffset::Earliest)
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = consumer.records();
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(_))) => got += 1,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("stream ended".into()),
            Err(_) => return Err(format!("stalled after {got} records")),
        }
    }
    Ok(got)
}

fn unauthorized(what: &str, r: Result<impl std::fmt::Debug, String>) {
    match r {
        Ok(v) => panic!("{what}: allowed ({v:?}) without an ACL"),
        Err(e) => assert!(
            e.contains("UNAUTHORIZED"),
            "{what}: expected UNAUTHORIZED, got {e}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_enforced_per_principal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = material(tmp.path(), &["alice", "bob"]);
    let hash = cli_ok(&["acl", "hash-token", "carol-secret"]);
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, format!("# name:sha256\ncarol:{}\n", hash.trim())).expect("tokens");
    let p = |n: &str| ca.join(n).display().to_string();
    let mut extra = tls_broker_flags(&ca, "optional");
    extra.extend([
        "--superusers".into(),
        "admin".into(),
        "--token-file".into(),
        tokens.display().to_string(),
    ]);
    let opts = ClusterOpts {
        extra,
        client_tls: Some(client_tls(&ca, Some(&ca))),
        ..Default::default()
    };
    let c = Cluster::start(3, opts).await;
    c.create_in_sync("orders", 1, 3).await;
    c.create_in_sync("audit", 1, 3).await;

    let alice = as_client(&c, client_tls(&ca, Some(&tmp.path().join("alice"))));
    let bob = as_client(&c, client_tls(&ca, Some(&tmp.path().join("bob"))));
    let admin = Admin::new(c.client_config()).expect("admin");

    // Before any ACL (authorization auto): everyone may.
    let w = Admin::new(alice.clone())
        .expect("admin")
        .who_am_i()
        .await
        .expect("whoami");
    assert_eq!(w.principal, "alice");
    assert!(!w.authorization, "no ACL yet: authorization is off");
    try_produce(alice.clone(), "orders", 5)
        .await
        .expect("alice before ACLs");

    admin
        .create_acls(vec![
            acl("alice", "orders", AclOperation::Write),
            acl("bob", "orders", AclOperation::Read),
        ])
        .await
        .expect("create ACLs");
    wait_acls_everywhere(&c, 2).await;
    let listed = admin.list_acls(None).await.expect("list ACLs");
    assert_eq!(listed.len(), 2, "ACLs: {listed:?}");
    let w = Admin::new(bob.clone())
        .expect("admin")
        .who_am_i()
        .await
        .expect("whoami");
    assert_eq!(w.principal, "bob");
    assert!(w.authorization, "ACLs exist: authorization is on");

    let hw_before = c.high_watermarks("orders").await;
    try_produce(alice.clone(), "orders", 5)
        .await
        .expect("alice may write");
    unauthorized("bob producing", try_produce(bob.clone(), "orders", 1).await);
    unauthorized(
        "alice producing to audit",
        try_produce(alice.clone(), "audit", 1).await,
    );
    assert_eq!(
        try_consume(bob.clone(), "orders", 10)
            .await
            .expect("bob may read"),
        10
    );
    unauthorized(
        "alice consuming",
        try_consume(alice.clone(), "orders", 1).await,
    );

    // Describe: bob sees orders (read implies describe), not audit.
    let bob_admin = Admin::new(bob.clone()).expect("admin");
    let names: Vec<String> = bob_admin
        .list_topics(false)
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["orders".to_string()], "topics bob may describe");
    unauthorized(
        "bob describing audit",
        bob_admin
            .describe_topic("audit")
            .await
            .map_err(|e| e.to_string()),
    );
    unauthorized(
        "bob adding an ACL",
        bob_admin
            .create_acls(vec![acl("bob", "audit", AclOperation::All)])
            .await
            .map_err(|e| e.to_string()),
    );

    // A token principal (no certificate): nothing allowed yet; an unknown
    // token is anonymous.
    let carol = {
        let mut cfg = as_client(&c, client_tls(&ca, None));
        cfg.token = Some("carol-secret".into());
        cfg
    };
    let carol_admin = Admin::new(carol).expect("admin");
    assert_eq!(
        carol_admin.who_am_i().await.expect("whoami").principal,
        "carol"
    );
    let topics = carol_admin.list_topics(false).await.expect("list");
    assert!(topics.is_empty(), "carol may describe nothing: {topics:?}");
    let mut stranger = as_client(&c, client_tls(&ca, None));
    stranger.token = Some("wrong".into());
    let who = Admin::new(stranger)
        .expect("admin")
        .who_am_i()
        .await
        .expect("whoami");
    assert_eq!(who.principal, "anonymous", "an unknown token is anonymous");
    let o = run_cli(
        &c.bootstrap(),
        &[
            "--tls-ca",
            &p("ca.pem"),
            "--token",
            "carol-secret",
            "acl",
            "whoami",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("carol"),
        "CLI with a token: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The CLI: alice cannot list ACLs (one line, exit 1); admin removes one.
    let alice_dir = tmp.path().join("alice");
    let a = |n: &str| alice_dir.join(n).display().to_string();
    let o = run_cli(
        &c.bootstrap(),
        &[
            "--tls-ca",
            &p("ca.pem"),
            "--tls-cert",
            &a("client.pem"),
            "--tls-key",
            &a("client-key.pem"),
            "acl",
            "list",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "alice listing ACLs: {err}");
    assert!(
        err.contains("UNAUTHORIZED") && err.trim().lines().count() == 1,
        "{err}"
    );
    let admin_flags = [
        "--tls-ca".to_string(),
        p("ca.pem"),
        "--tls-cert".into(),
        p("client.pem"),
        "--tls-key".into(),
        p("client-key.pem"),
    ];
    let run_admin = |extra: &[&str]| {
        let mut args: Vec<&str> = admin_flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        run_cli(&c.bootstrap(), &args, None)
    };
    let o = run_admin(&[
        "acl",
        "remove",
        "--principal",
        "bob",
        "--topic",
        "orders",
        "--operation",
        "read",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_acls_everywhere(&c, 1).await;
    let o = run_admin(&["acl", "list", "--output", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    unauthorized(
        "bob consuming after removal",
        try_consume(bob.clone(), "orders", 1).await,
    );

    // Refusals changed nothing, and were audited.
    let hw = c.high_watermarks("orders").await;
    assert_eq!(hw[0], hw_before[0] + 5, "only alice's 5 records were added");
    let logs = strip_ansi(&c.ids().iter().map(|i| c.get(*i).log()).collect::<String>());
    assert!(
        logs.contains("denied") && logs.contains("principal=bob"),
        "denials are audited with the principal"
    );
    assert!(logs.contains("ACL change"), "ACL changes are audited");
}

/// Waits until every broker has applied exactly `n` ACLs (the metadata
/// reaches each broker through the controller log, not all at once).
async fn wait_acls_everywhere(c: &Cluster, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for id in c.ids() {
        loop {
            let got = c
                .get(id)
                .admin()
                .await
                .list_acls(ListAclsRequest::default())
                .await
                .map(|r| r.into_inner().acls.len());
            if got.as_ref().ok() == Some(&n) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker {id} has {got:?} ACLs, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Log text without terminal colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
