//! The Kafka listener against kcat (Debian's, librdkafka 2.0.2): cluster
//! metadata, 100,000 records with keys and headers through `-P` and back
//! through `-C` (and again with each of `-z gzip|snappy|lz4|zstd`), the
//! same records read by `strata consume` and the other way round, offsets
//! by timestamp (`-Q`), acks=0, and hostile frames on
//! the Kafka port that close only their own connection.
//!
//! Skipped when kcat is missing, unless STRATA_REQUIRE_TOOLS=1 (set by
//! `.ci/run`, which installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use strata_tests::tools::{have_kcat, run_with_input};
use strata_tests::{BrokerProc, free_port};

/// Runs kcat with `args`, feeding `stdin`; returns stdout, asserting success.
fn kcat(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run_with_input("kcat", args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        err.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

async fn kafka_broker(dir: &std::path::Path) -> (BrokerProc, String) {
    let kafka = format!("127.0.0.1:{}", free_port());
    let b = BrokerProc::start(dir, &["--kafka-listen", &kafka]).await;
    (b, kafka)
}

fn records(n: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{i}"),
                format!("{tag}-value-{i}-{}", "x".repeat(i % 50)),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_round_trips_and_strata_reads_the_same_records() {
    if !have_kcat() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (broker, kafka) = kafka_broker(&tmp.path().join("data")).await;

    // -L: the broker with its Kafka address; no topic yet.
    let meta = kcat(&["-b", &kafka, "-L"], None);
    assert!(
        meta.contains(&format!("broker 1 at {kafka}")),
        "metadata: {meta}"
    );

    // -P: 100,000 records with keys and headers (the topic is auto-created).
    let sent = records(100_000, "kcat");
    let input: String = sent.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
    kcat(
        &[
            "-b",
            &kafka,
            "-P",
            "-t",
            "events",
            "-K",
            "\t",
            "-H",
            "source=kcat",
            "-H",
            "empty=",
        ],
        Some(input.as_bytes()),
    );
    let meta = kcat(&["-b", &kafka, "-L", "-t", "events"], None);
    assert!(meta.contains("partition 0, leader 1"), "metadata: {meta}");

    // -C: every record back, in order, with its key and headers.
    let out = kcat(
        &[
            "-b",
            &kafka,
            "-C",
            "-t",
            "events",
            "-e",
            "-q",
            "-f",
            "%k\t%s\t%h\n",
        ],
        None,
    );
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), sent.len());
    for (line, (k, v)) in got.iter().zip(&sent) {
        assert_eq!(*line, format!("{k}\t{v}\tsource=kcat,empty="));
    }

    // A fetch that starts inside a batch gets that batch whole; kcat skips
    // what it did not ask for.
    let out = kcat(
        &[
            "-b", &kafka, "-C", "-t", "events", "-o", "54321", "-c", "3", "-q", "-f", "%o %k\n",
        ],
        None,
    );
    assert_eq!(out, "54321 key-54321\n54322 key-54322\n54323 key-54323\n");

    // strata's own CLI reads what kcat wrote, byte for byte.
    let out = broker.cli(
        &[
            "consume", "events", "--offset", "99998", "--count", "2", "--format", "json",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["key"], "key-99998");
    assert_eq!(lines[0]["value"], sent[99_998].1);
    assert_eq!(lines[0]["headers"]["source"], "kcat");
    assert_eq!(lines[0]["headers"]["empty"], "");
    assert_eq!(lines[1]["offset"], 99_999);

    // And kcat reads what strata wrote.
    let out = broker.cli(
        &[
            "topic",
            "create",
            "from-strata",
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
    let out = broker.cli(
        &["produce", "from-strata", "--key-separator", ":"],
        Some(b"a:alpha\nb:beta\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kcat(
        &[
            "-b",
            &kafka,
            "-C",
            "-t",
            "from-strata",
            "-e",
            "-q",
            "-f",
            "%k=%s@%o\n",
        ],
        None,
    );
    assert_eq!(out, "a=alpha@0\nb=beta@1\n");

    // acks=0: no answer is sent, the records still land.
    kcat(
        &["-b", &kafka, "-P", "-t", "fire", "-X", "acks=0", "-K", ":"],
        Some(b"k1:v1\nk2:v2\nk3:v3\n"),
    );
    let mut got = String::new();
    for _ in 0..50 {
        got = kcat(
            &[
                "-b", &kafka, "-C", "-t", "fire", "-e", "-q", "-f", "%k=%s\n",
            ],
            None,
        );
        if got.lines().count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, "k1=v1\nk2=v2\nk3=v3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_finds_offsets_by_timestamp() {
    if !have_kcat() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_broker, kafka) = kafka_broker(&tmp.path().join("data")).await;
    let first: String = (0..100).map(|i| format!("early-{i}\n")).collect();
    kcat(&["-b", &kafka, "-P", "-t", "times"], Some(first.as_bytes()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let boundary = strata_client::now_ms();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second: String = (0..50).map(|i| format!("late-{i}\n")).collect();
    kcat(
        &["-b", &kafka, "-P", "-t", "times"],
        Some(second.as_bytes()),
    );
    let out = kcat(
        &["-b", &kafka, "-Q", "-t", &format!("times:0:{boundary}")],
        None,
    );
    assert!(out.contains("offset 100"), "-Q: {out}");
    // A time after the last record: no such record (-1), as Kafka answers.
    let later = boundary + 3_600_000;
    let out = kcat(
        &["-b", &kafka, "-Q", "-t", &format!("times:0:{later}")],
        None,
    );
    assert!(out.contains("offset -1"), "-Q: {out}");
}

/// Sends `bytes` on a fresh connection; true if the broker closed it (EOF
/// or reset) without answering.
fn closed_without_answer(kafka: &str, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(kafka).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A request header v1: api key, version, correlation id, client id.
fn header(api: i16, version: i16, correlation: i32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&api.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&correlation.to_be_bytes());
    h.extend_from_slice(&4i16.to_be_bytes());
    h.extend_from_slice(b"test");
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection() {
    if !have_kcat() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut broker, kafka) = kafka_broker(&tmp.path().join("data")).await;
    kcat(
        &["-b", &kafka, "-P", "-t", "keep", "-K", ":"],
        Some(b"a:1\nb:2\n"),
    );

    // A frame length over the limit, a negative one, a truncated frame.
    assert!(closed_without_answer(&kafka, &i32::MAX.to_be_bytes()));
    assert!(closed_without_answer(&kafka, &(-1i32).to_be_bytes()));
    assert!(closed_without_answer(&kafka, &[0, 0, 0, 40, 0, 18]));
    // Shorter than a request header.
    assert!(closed_without_answer(&kafka, &frame(&[0, 3, 0])));
    // An unknown API key, and a version the broker does not serve.
    assert!(closed_without_answer(&kafka, &frame(&header(999, 0, 1))));
    assert!(closed_without_answer(&kafka, &frame(&header(3, 99, 1))));
    // Metadata v1 claiming 2^31-1 topics in a 20-byte frame.
    let mut huge = header(3, 1, 7);
    huge.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(closed_without_answer(&kafka, &frame(&huge)));
    // A negative string length inside the body.
    let mut neg = header(3, 1, 8);
    neg.extend_from_slice(&1i32.to_be_bytes());
    neg.extend_from_slice(&(-7i16).to_be_bytes());
    assert!(closed_without_answer(&kafka, &frame(&neg)));

    // ApiVersions of an unknown version: a v0 answer with
    // UNSUPPORTED_VERSION (35) and the supported list (KIP-511).
    let mut s = TcpStream::connect(&kafka).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&frame(&header(18, 77, 42))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(i32::from_be_bytes(body[0..4].try_into().unwrap()), 42);
    assert_eq!(i16::from_be_bytes(body[4..6].try_into().unwrap()), 35);
    let apis = i32::from_be_bytes(body[6..10].try_into().unwrap());
    assert!(apis >= 10, "{apis} APIs listed");

    // The broker kept serving, and the data is unchanged.
    assert!(!broker.has_died(), "{}", broker.log_tail(20));
    let out = kcat(
        &[
            "-b", &kafka, "-C", "-t", "keep", "-e", "-q", "-f", "%k=%s\n",
        ],
        None,
    );
    assert_eq!(out, "a=1\nb=2\n");
    assert!(broker.panic_line().is_none());
    broker.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_compressed_batches_are_stored_as_sent_and_read_back() {
    if !have_kcat() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (broker, kafka) = kafka_broker(&tmp.path().join("data")).await;
    const N: usize = 100_000;
    let sent = records(N, "z");
    let input: String = sent.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("z-{codec}");
        let header = format!("codec={codec}");
        kcat(
            &[
                "-b", &kafka, "-P", "-t", &topic, "-z", codec, "-K", "\t", "-H", &header,
            ],
            Some(input.as_bytes()),
        );
        let out = kcat(
            &[
                "-b",
                &kafka,
                "-C",
                "-t",
                &topic,
                "-e",
                "-q",
                "-f",
                "%k\t%s\t%h\n",
            ],
            None,
        );
        let want: String = sent
            .iter()
            .map(|(k, v)| format!("{k}\t{v}\t{header}\n"))
            .collect();
        assert!(out == want, "{codec}: the records read back differ");
        // strata's client decodes the stored (still compressed) batches.
        let last = (N - 1).to_string();
        let out = broker.cli(
            &[
                "consume", &topic, "--offset", &last, "--count", "1", "--format", "json",
            ],
            None,
        );
        let line: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(line["value"], sent[N - 1].1, "{codec}");
    }
}

/// A `kcat -G` balanced consumer printing `partition offset` lines.
fn group_consumer(kafka: &str, group: &str, topic: &str) -> std::process::Child {
    Command::new("kcat")
        .args([
            "-b",
            kafka,
            "-G",
            group,
            topic,
            "-q",
            "-u",
            "-f",
            "%p %o\n",
            "-X",
            "auto.offset.reset=earliest",
            "-X",
            "session.timeout.ms=6000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kcat -G")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_group_consumers_share_the_partitions() {
    if !have_kcat() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (broker, kafka) = kafka_broker(&tmp.path().join("data")).await;
    let out = broker.cli(
        &[
            "topic",
            "create",
            "shared",
            "--partitions",
            "4",
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
    let mut a = group_consumer(&kafka, "kcat-group", "shared");
    let mut b = group_consumer(&kafka, "kcat-group", "shared");
    // Both members in, the group stable.
    let mut stable = false;
    for _ in 0..150 {
        let out = broker.cli(
            &["--output", "json", "group", "describe", "kcat-group"],
            None,
        );
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if v["state"] == "Stable" && v["members"].as_array().is_some_and(|m| m.len() == 2) {
                stable = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(stable, "the group did not become stable with two members");
    let input: String = (0..4000).map(|i| format!("k{i}:v{i}\n")).collect();
    kcat(
        &["-b", &kafka, "-P", "-t", "shared", "-K", ":"],
        Some(input.as_bytes()),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = a.kill();
    let _ = b.kill();
    let read = |c: std::process::Child| -> Vec<(u32, i64)> {
        let out = c.wait_with_output().expect("kcat output");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (p, o) = l.split_once(' ')?;
                Some((p.parse().ok()?, o.parse().ok()?))
            })
            .collect()
    };
    let (ra, rb) = (read(a), read(b));
    let parts = |r: &[(u32, i64)]| {
        r.iter()
            .map(|(p, _)| *p)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(!ra.is_empty() && !rb.is_empty(), "both members read");
    assert!(
        parts(&ra).is_disjoint(&parts(&rb)),
        "a partition was read by both: {:?} {:?}",
        parts(&ra),
        parts(&rb)
    );
    let mut all: Vec<(u32, i64)> = ra.into_iter().chain(rb).collect();
    all.sort_unstable();
    let n = all.len();
    all.dedup();
    assert_eq!(n, all.len(), "duplicates");
    assert_eq!(n, 4000, "every record read once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_over_tls_with_client_certificates() {
    if !have_kcat() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tls = strata_tests::tls_gen(&tmp.path().join("tls"), &[]);
    let kafka = format!("127.0.0.1:{}", free_port());
    let mut flags = strata_tests::tls_broker_flags(&tls, "required");
    flags.extend(["--kafka-listen".to_string(), kafka.clone()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut broker = BrokerProc::with_addr(
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        &tmp.path().join("data"),
        [
            flags,
            vec!["--peer-listen", &format!("127.0.0.1:{}", free_port())],
        ]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect(),
    );
    broker.set_client_tls(Some(strata_tests::tonic_tls(&strata_tests::client_tls(
        &tls,
        Some(&tls),
    ))));
    broker.spawn();
    broker.wait_ready().await;
    let path = |n: &str| tls.join(n).display().to_string();
    let ssl = [
        "-X".to_string(),
        "security.protocol=SSL".to_string(),
        "-X".to_string(),
        format!("ssl.ca.location={}", path("ca.pem")),
    ];
    let cert = [
        "-X".to_string(),
        format!("ssl.certificate.location={}", path("client.pem")),
        "-X".to_string(),
        format!("ssl.key.location={}", path("client-key.pem")),
    ];
    let with = |extra: &[&str], certs: bool| -> Vec<String> {
        let mut v: Vec<String> = vec!["-b".into(), kafka.clone()];
        v.extend(ssl.iter().cloned());
        if certs {
            v.extend(cert.iter().cloned());
        }
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = with(&["-L"], true);
    let meta = kcat(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(meta.contains(&format!("broker 1 at {kafka}")), "{meta}");
    let args = with(&["-P", "-t", "secure", "-K", ":"], true);
    kcat(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(b"a:1\nb:2\n"),
    );
    let args = with(&["-C", "-t", "secure", "-e", "-q", "-f", "%k=%s\n"], true);
    let out = kcat(&args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(out, "a=1\nb=2\n");
    // Without a client certificate the handshake is refused.
    let args = with(&["-L", "-m", "3"], false);
    let out = run_with_input(
        "kcat",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        None,
    );
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
    // Plaintext on the TLS listener gets nothing either.
    let out = run_with_input("kcat", &["-b", &kafka, "-L", "-m", "3"], None);
    assert!(!out.status.success(), "a plaintext client got in");
}
