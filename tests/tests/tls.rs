//! TLS with real handshakes against real `stratad` processes: a TLS-only
//! 3-broker cluster whose brokers talk mutual TLS; clients that are refused
//! (plaintext, wrong CA, a certificate from another CA, none, expired) with
//! no effect on stored data; a broker with a certificate from another CA
//! cannot join; certificate files replaced on disk apply to new
//! connections while an open stream keeps going.
//!
//! Certificates come from `strata tls gen`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_client::{Admin, ClientConfig, ClientTls, Consumer, ConsumerConfig, StartOffset};
use strata_proto::v1::{AddBrokerRequest, HelloRequest};
use strata_tests::{
    Cluster, ClusterOpts, client_tls, consume_earliest, describe_status, produce_acked, run_cli,
    tls_broker_flags, tls_gen,
};

/// CLI arguments of a client with `dir`'s material.
fn cli_tls(dir: &Path) -> Vec<String> {
    let p = |n: &str| dir.join(n).display().to_string();
    vec![
        "--tls-ca".into(),
        p("ca.pem"),
        "--tls-cert".into(),
        p("client.pem"),
        "--tls-key".into(),
        p("client-key.pem"),
    ]
}

async fn consume(cfg: ClientConfig, topic: &str, partition: u32, n: usize) -> Vec<String> {
    consume_earliest(cfg, topic, partition, n)
        .await
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// A client configuration for the cluster with other TLS settings.
fn with_tls(c: &Cluster, tls: Option<ClientTls>) -> ClientConfig {
    let mut cfg = c.client_config();
    cfg.tls = tls;
    cfg.retries = 1;
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

/// Listing topics must fail for a refused client; returns the error text.
async fn refused(c: &Cluster, what: &str, tls: Option<ClientTls>) -> String {
    let admin = Admin::new(with_tls(c, tls)).expect("admin");
    match admin.list_topics(false).await {
        Ok(t) => panic!("{what}: a refused client listed topics: {t:?}"),
        Err(e) => {
            let msg = format!("{e}");
            eprintln!("{what}: refused: {msg}");
            msg
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_and_refused_clients() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = tls_gen(&tmp.path().join("a"), &[]);
    let other = tls_gen(&tmp.path().join("b"), &[]);
    let good_ca = good.join("ca.pem").display().to_string();
    let good_ca_key = good.join("ca-key.pem").display().to_string();
    let expired = tls_gen(
        &tmp.path().join("expired"),
        &[
            "--ca",
            &good_ca,
            "--ca-key",
            &good_ca_key,
            "--not-after",
            "2001-01-01",
        ],
    );
    let opts = ClusterOpts {
        extra: tls_broker_flags(&good, "required"),
        client_tls: Some(client_tls(&good, Some(&good))),
        ..Default::default()
    };
    let c = Cluster::start(3, opts).await;
    c.create_in_sync("secure", 2, 3).await;

    let values: Vec<String> = (0..100).map(|i| format!("secret-{i:03}")).collect();
    let offsets = produce_acked(c.client_config(), "secure", 0, &values).await;
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>(), "offsets over TLS");
    assert_eq!(
        consume(c.client_config(), "secure", 0, values.len()).await,
        values,
        "records consumed over TLS"
    );
    let hw_before = c.high_watermarks("secure").await;

    // The CLI with the client's material works.
    let mut args = cli_tls(&good);
    args.extend(["topic".into(), "list".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run_cli(&c.bootstrap(), &args, None);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("secure"),
        "CLI over mutual TLS: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Refused: plaintext, wrong CA, a certificate of another CA, none,
    // an expired one.
    refused(&c, "plaintext client", None).await;
    let msg = refused(
        &c,
        "client trusting another CA",
        Some(client_tls(&other, Some(&good))),
    )
    .await;
    assert!(
        msg.to_lowercase().contains("certificate"),
        "a client that cannot verify the broker should say so: {msg}"
    );
    refused(
        &c,
        "client certificate from another CA",
        Some(client_tls(&good, Some(&other))),
    )
    .await;
    refused(&c, "no client certificate", Some(client_tls(&good, None))).await;
    refused(
        &c,
        "expired client certificate",
        Some(client_tls(&good, Some(&expired))),
    )
    .await;

    // The brokers say why they refused each handshake.
    let logs: String = c.ids().iter().map(|i| c.get(*i).log()).collect();
    for why in ["certificate expired", "peer sent no certificates"] {
        assert!(
            logs.contains(why),
            "no broker logged a handshake refused for '{why}'"
        );
    }
    assert!(
        logs.contains("UnknownIssuer") || logs.contains("BadSignature"),
        "no broker logged the refusal of a certificate from another CA"
    );

    // The CLI refuses with one line and a non-zero exit.
    let o = run_cli(&c.bootstrap(), &["topic", "list"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.trim().lines().count() == 1,
        "plaintext CLI against a TLS cluster: status {:?}, stderr {err}",
        o.status
    );

    // A client certificate signed by the right CA does not open the peer
    // listener: only brokers may use it.
    let peer = tonic::transport::Endpoint::from_shared(format!("https://{}", c.peer_addr(1)))
        .expect("endpoint")
        .tls_config(strata_tests::tonic_tls(&client_tls(&good, Some(&good))))
        .expect("tls")
        .connect()
        .await
        .expect("a CA-signed client certificate passes the handshake");
    let hello = strata_proto::v1::peer_client::PeerClient::new(peer)
        .hello(HelloRequest {
            node_id: 9,
            cluster: String::new(),
            peer_addr: String::new(),
        })
        .await;
    match hello {
        Ok(r) => panic!("a client used the peer listener: {r:?}"),
        Err(st) => assert_eq!(
            strata_tests::error_code(&st),
            "UNAUTHORIZED",
            "peer listener refusal: {st:?}"
        ),
    }

    // Nothing changed.
    assert_eq!(c.high_watermarks("secure").await, hw_before);
    assert_eq!(
        consume(c.client_config(), "secure", 0, values.len()).await,
        values
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_with_certificate_of_another_ca_cannot_join() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = tls_gen(&tmp.path().join("a"), &[]);
    let other = tls_gen(&tmp.path().join("b"), &[]);
    let opts = ClusterOpts {
        extra: tls_broker_flags(&good, "required"),
        client_tls: Some(client_tls(&good, Some(&good))),
        ..Default::default()
    };
    let mut c = Cluster::start(3, opts).await;
    c.create_in_sync("kept", 1, 3).await;
    let values: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    produce_acked(c.client_config(), "kept", 0, &values).await;

    // Trusts the right CA, but its own certificate is signed by another.
    let mut flags = tls_broker_flags(&good, "required");
    flags[1] = other.join("broker.pem").display().to_string();
    flags[3] = other.join("broker-key.pem").display().to_string();
    let id = c.spawn_joiner(&flags);
    let peer_addr = c.peer_addr(id).to_string();
    let added = c
        .admin_retry(Duration::from_secs(15), |mut a| {
            let peer_addr = peer_addr.clone();
            async move { a.add_broker(AddBrokerRequest { id, peer_addr }).await }
        })
        .await;
    if let Err(st) = &added {
        eprintln!("add broker {id}: {}", describe_status(st));
    }
    // Give it time to try.
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        if let Some(s) = c.cluster_status().await {
            assert!(
                !s.brokers.iter().any(|b| b.id == id && b.alive),
                "broker {id} with a foreign certificate is alive: {s:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let logs: String = [1u64, 2, 3].iter().map(|i| c.get(*i).log()).collect();
    assert!(
        logs.contains("TLS handshake refused"),
        "the brokers should log the refused handshakes of broker {id}"
    );
    // The cluster still serves its data.
    c.wait_all_in_sync("kept", Duration::from_secs(10)).await;
    assert_eq!(
        consume(c.client_config(), "kept", 0, values.len()).await,
        values
    );
}

/// The certificate a TLS server at `addr` presents to a new connection.
async fn served_certificate(addr: std::net::SocketAddr, dir: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("ca cert")).expect("root");
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("client.pem"))
        .expect("client cert")
        .collect::<Result<_, _>>()
        .expect("client certs");
    let key = PrivateKeyDer::from_pem_file(dir.join("client-key.pem")).expect("client key");
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("client config");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server certificate")
        .to_vec()
}

fn pem_der(path: PathBuf) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_without_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let live = tls_gen(&tmp.path().join("live"), &[]);
    let ca = live.join("ca.pem").display().to_string();
    let ca_key = live.join("ca-key.pem").display().to_string();
    let next = tls_gen(
        &tmp.path().join("next"),
        &["--ca", &ca, "--ca-key", &ca_key],
    );
    let opts = ClusterOpts {
        extra: tls_broker_flags(&live, "required"),
        client_tls: Some(client_tls(&live, Some(&live))),
        ..Default::default()
    };
    let c = Cluster::start(3, opts).await;
    c.create_in_sync("rot", 1, 3).await;
    let addr = c.client_addr(1);
    let old_cert = pem_der(live.join("broker.pem"));
    assert_eq!(served_certificate(addr, &live).await, old_cert);

    // A consumer streaming over a connection opened before the rotation.
    let mut consumer =
        Consumer::new(c.client_config(), ConsumerConfig::default()).expect("consumer");
    consumer
        .assign("rot", 0, StartOffset::Earliest)
        .await
        .expect("assign");
    let mut stream = consumer.records();
    let first: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
    produce_acked(c.client_config(), "rot", 0, &first).await;
    let mut got = Vec::new();
    while got.len() < first.len() {
        let r = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("records before rotation")
            .expect("stream open")
            .expect("record");
        got.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
    }

    // Replace the files in place (each by an atomic rename).
    for (from, to) in [
        ("broker.pem", "broker.pem"),
        ("broker-key.pem", "broker-key.pem"),
    ] {
        let tmp_path = live.join(format!("{to}.new"));
        std::fs::copy(next.join(from), &tmp_path).expect("copy");
        std::fs::rename(&tmp_path, live.join(to)).expect("rename");
    }
    let new_cert = pem_der(live.join("broker.pem"));
    assert_ne!(new_cert, old_cert);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_certificate(addr, &live).await == new_cert {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still get the old certificate 10 s after rotation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The old connection keeps streaming.
    let second: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    produce_acked(c.client_config(), "rot", 0, &second).await;
    while got.len() < first.len() + second.len() {
        let r = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("records after rotation on the old stream")
            .expect("stream open")
            .expect("record");
        got.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
    }
    assert_eq!(got, [first, second].concat());
}

/// A GET over HTTPS (trusting `dir`'s CA, no client certificate): status
/// code and body.
async fn https_get(addr: std::net::SocketAddr, dir: &Path, path: &str) -> (u16, String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("ca cert")).expect("root");
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Offered as curl does: the listener must pick HTTP/1.1, which it speaks.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .expect("handshake");
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN of the HTTP listener"
    );
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut resp)).await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_over_tls() {
    use strata_tests::{BrokerProc, free_port, tonic_tls};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = tls_gen(&tmp.path().join("a"), &[]);
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut flags = tls_broker_flags(&m, "required");
    flags.extend([
        "--peer-listen".to_string(),
        format!("127.0.0.1:{}", free_port()),
        "--http-listen".to_string(),
        http.to_string(),
    ]);
    let addr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut b = BrokerProc::with_addr(addr, &tmp.path().join("data"), flags);
    b.set_client_tls(Some(tonic_tls(&client_tls(&m, Some(&m)))));
    b.spawn();
    b.wait_ready().await;

    // Probes need no client certificate even when the client listener does.
    assert_eq!(https_get(http, &m, "/health").await, (200, "ok\n".into()));
    assert_eq!(https_get(http, &m, "/ready").await, (200, "ready\n".into()));
    assert_eq!(https_get(http, &m, "/metricz").await.0, 404);

    // Plaintext HTTP against the TLS listener gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(http).await.expect("connect");
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut resp)).await;
    assert!(
        !resp.starts_with(b"HTTP/"),
        "plaintext request answered: {:?}",
        String::from_utf8_lossy(&resp)
    );
    assert!(b.terminate().success());
}
