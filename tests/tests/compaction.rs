//! Compacted topics (`cleanup.policy=compact`) through real brokers: a
//! million updates over ten thousand keys read back as one record per live
//! key; SIGKILL in the middle of cleaning passes leaves the log as before
//! or after a pass; three replicas compacting under produce load and
//! leader kills agree on every key, and a wiped follower converges; and
//! what a compacted topic refuses (keyless records, bad settings).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::{self, BatchBuilder, BatchIter};
use strata_proto::v1::broker_client::BrokerClient;
use strata_proto::v1::*;

use strata_tests::{
    BrokerProc, Cluster, ClusterOpts, error_code, free_port, http_get, read_partition_batches,
};
use tonic::transport::Channel;

/// One record as read back: offset, key, value (`None` = tombstone).
type Read = (i64, String, Option<String>);

/// Flags that make the cleaner and the time-based roll prompt.
const PROMPT: &[&str] = &[
    "--retention-check-interval",
    "200ms",
    "--log-cleaner-backoff",
    "200ms",
];

fn compacted(extra: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    let mut c: std::collections::HashMap<String, String> = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "1048576"),
        ("segment.ms", "2000"),
        ("delete.retention.ms", "2000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        c.insert(k.to_string(), v.to_string());
    }
    c
}

async fn create(
    admin_addr: &BrokerProc,
    topic: &str,
    cfg: std::collections::HashMap<String, String>,
) {
    admin_addr
        .admin()
        .await
        .create_topic(CreateTopicRequest {
            name: topic.into(),
            partitions: 1,
            replication_factor: 1,
            configs: cfg,
        })
        .await
        .expect("create topic");
}

/// The value of update `seq` of a key: its sequence number, padded.
fn value_of(seq: usize) -> String {
    format!("{seq:012}-{}", "v".repeat(50))
}

fn seq_of(value: &str) -> usize {
    value[..12].parse().expect("a value written by this test")
}

/// Produces `updates` (key, value; `None` deletes) with the client's
/// producer at acks=all, waiting for every acknowledgement. Returns how
/// many were acknowledged (all, or the call panics when `must` is set).
async fn produce(
    cfg: strata_client::ClientConfig,
    topic: &str,
    updates: impl Iterator<Item = (String, Option<String>)>,
    must: bool,
) -> Vec<(String, Option<String>)> {
    let producer = strata_client::Producer::new(cfg, strata_client::ProducerConfig::default())
        .await
        .expect("producer");
    let mut acked = Vec::new();
    let mut pending = Vec::new();
    let mut updates = updates.peekable();
    while updates.peek().is_some() {
        for (k, v) in updates.by_ref().take(20_000) {
            let mut rec = strata_client::ProducerRecord::new(topic, Bytes::new())
                .key(k.clone())
                .partition(0);
            rec.value = v.clone().map(Bytes::from);
            match producer.send(rec).await {
                Ok(ack) => pending.push(((k, v), ack)),
                Err(_) if !must => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        for (kv, ack) in pending.drain(..) {
            match ack.await {
                Ok(_) => acked.push(kv),
                Err(_) if !must => {}
                Err(e) => panic!("not acknowledged: {e}"),
            }
        }
    }
    let _ = producer.close().await;
    acked
}

/// Every record of partition 0 from offset 0 to the high watermark, read
/// with plain fetches; offsets as the batches give them.
async fn read_from_start(api: &mut BrokerClient<Channel>, topic: &str) -> Vec<Read> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    loop {
        let r = api
            .fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 4 << 20,
                partitions: vec![FetchPartition {
                    topic: topic.into(),
                    partition: 0,
                    offset,
                    max_bytes: 4 << 20,
                }],
            })
            .await
            .expect("fetch")
            .into_inner();
        let p = &r.partitions[0];
        assert!(
            p.error.as_ref().is_none_or(|e| e.code == 0),
            "fetch: {:?}",
            p.error
        );
        let mut next = offset;
        for item in BatchIter::new(p.records.clone()) {
            let (h, b) = item.expect("an intact batch");
            next = next.max(h.next_offset());
            if h.is_control() {
                continue;
            }
            for rec in batch::records(&b).expect("records") {
                let rec = rec.expect("a record");
                if rec.offset < offset {
                    continue;
                }
                let s = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
                out.push((rec.offset, s(rec.key).expect("a key"), s(rec.value)));
            }
        }
        if next <= offset || next >= p.high_watermark {
            return out;
        }
        offset = next;
    }
}

/// The latest value per key of what was acknowledged, in order.
fn latest(acked: &[(String, Option<String>)]) -> BTreeMap<String, Option<String>> {
    acked.iter().cloned().collect()
}

/// Checks what a log reads as: offsets strictly increase; per key, values
/// come in the order they were written; the last one per key is at least
/// the latest acknowledged (a later unacknowledged write may have landed).
/// Returns the last value per key.
fn check_reads(
    reads: &[Read],
    expect: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, Option<String>> {
    assert!(
        reads.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets strictly increase"
    );
    let mut last: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (_, k, v) in reads {
        if let (Some(Some(prev)), Some(now)) = (last.get(k), v) {
            assert!(seq_of(prev) < seq_of(now), "key {k}: {prev} then {now}");
        }
        last.insert(k.clone(), v.clone());
    }
    for (k, v) in expect {
        match (v, last.get(k)) {
            (Some(want), Some(Some(got))) => {
                assert!(
                    seq_of(got) >= seq_of(want),
                    "key {k}: read {got}, acknowledged {want}"
                )
            }
            (Some(want), got) => panic!("key {k}: acknowledged {want}, read {got:?}"),
            // A deleted key reads as its tombstone, or not at all.
            (None, Some(Some(got))) => panic!("key {k} was deleted but reads {got}"),
            (None, _) => {}
        }
    }
    last
}

async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_updates_leave_one_record_per_live_key() {
    let tmp = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let mut flags = PROMPT.to_vec();
    flags.extend([
        "--log-cleaner-io-bytes-per-sec",
        "0",
        "--http-listen",
        &http,
    ]);
    let broker = BrokerProc::start(&tmp.path().join("data"), &flags).await;
    // A record waits at most 3 s to be cleaned, whatever the dirty ratio.
    create(
        &broker,
        "profiles",
        compacted(&[("max.compaction.lag.ms", "3000")]),
    )
    .await;
    let cfg = strata_client::ClientConfig::new(vec![broker.endpoint()]);
    const KEYS: usize = 10_000;
    const UPDATES: usize = 1_000_000;
    let updates = (0..UPDATES).map(|i| (format!("user-{:05}", i % KEYS), Some(value_of(i))));
    let mut acked = produce(cfg.clone(), "profiles", updates, true).await;
    // A tenth of the keys are deleted.
    let deletes = (0..KEYS / 10).map(|k| (format!("user-{k:05}"), None));
    acked.extend(produce(cfg, "profiles", deletes, true).await);
    assert_eq!(acked.len(), UPDATES + KEYS / 10);
    let expect = latest(&acked);
    let live = expect.values().filter(|v| v.is_some()).count();
    assert_eq!(live, KEYS - KEYS / 10);

    let mut api = broker.data().await;
    // Cleaned, and the tombstones gone after delete.retention.ms.
    let reads = wait_for(
        "one record per live key",
        Duration::from_secs(120),
        async || {
            let reads = read_from_start(&mut api, "profiles").await;
            (reads.len() == live).then_some(reads)
        },
    )
    .await;
    let last = check_reads(&reads, &expect);
    for (k, v) in &expect {
        assert_eq!(last.get(k).cloned().flatten(), v.clone(), "key {k}");
    }
    assert!(reads.iter().all(|r| r.2.is_some()), "no tombstone is left");

    // Disk usage is near the live data: the live records plus a header
    // per produced batch, not the million updates.
    let live_bytes: usize = reads
        .iter()
        .map(|r| r.1.len() + r.2.as_ref().map_or(0, String::len))
        .sum();
    let d = broker.describe("profiles").await.expect("describe");
    let p = &d.partitions[0];
    assert!(
        p.size_bytes < 3 * live_bytes as u64,
        "{} bytes on disk for {live_bytes} bytes of live records",
        p.size_bytes
    );
    let c = p
        .cleaner
        .as_ref()
        .expect("a compacted partition shows its cleaner");
    assert!(c.passes > 0 && c.bytes_reclaimed > 50 << 20, "{c:?}");
    assert!(c.cleaned_offset > 0 && c.dirty_ratio < 0.5, "{c:?}");
    // The CLI shows the cleaner's state; metrics count its work.
    let out = broker.cli(&["topic", "describe", "profiles"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DIRTY") && text.contains("RECLAIMED"),
        "{text}"
    );
    let (_, metrics) = http_get(&http, "/metrics").await.expect("metrics");
    assert!(metrics.contains("strata_cleaner_passes_total"), "metrics");
    assert!(
        metrics.contains("strata_cleaner_reclaimed_bytes_total"),
        "metrics"
    );
}

/// What a partition directory holds of unfinished cleaning.
fn cleaning_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.ends_with(".cleaned") || n.ends_with(".swap")
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_cleaning_reads_as_before_or_after_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut flags = PROMPT.to_vec();
    // Slow passes, so that kills land inside them.
    flags.extend(["--log-cleaner-io-bytes-per-sec", "3000000"]);
    let mut broker = BrokerProc::start(&data, &flags).await;
    create(
        &broker,
        "state",
        compacted(&[("min.cleanable.dirty.ratio", "0.2")]),
    )
    .await;
    let part_dir = data.join("state-0");
    let mut acked = Vec::new();
    let (mut seq, mut mid_pass, mut rounds) = (0usize, 0, 0);
    while rounds < 12 && !(rounds >= 6 && mid_pass >= 2) {
        rounds += 1;
        let cfg = strata_client::ClientConfig::new(vec![broker.endpoint()]);
        let start = seq;
        seq += 60_000;
        let updates = (start..seq).map(|i| (format!("k-{:04}", i % 2_000), Some(value_of(i))));
        acked.extend(produce(cfg, "state", updates, true).await);
        if rounds % 2 == 1 {
            // Somewhere inside the passes this produce started.
            let wait = 200 + (rounds as u64 * 7919) % 2_500;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        } else {
            // As soon as a pass is seen writing: the pass may still end
            // first, which the check below counts as a kill between passes.
            let deadline = Instant::now() + Duration::from_secs(10);
            while cleaning_files(&part_dir) == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        broker.kill();
        mid_pass += usize::from(cleaning_files(&part_dir) > 0);
        eprintln!("round {rounds}: {mid_pass} kills inside a pass so far");
        broker.restart().await;
        assert_eq!(
            cleaning_files(&part_dir),
            0,
            "recovery finishes or drops every pass"
        );
        let mut api = broker.data().await;
        let reads = read_from_start(&mut api, "state").await;
        let last = check_reads(&reads, &latest(&acked));
        assert_eq!(last.len(), 2_000, "round {rounds}: every key reads");
    }
    assert!(
        mid_pass >= 1,
        "no kill landed inside a pass in {rounds} rounds"
    );
    // And cleaning carries on to one record per key.
    let expect = latest(&acked);
    let mut api = broker.data().await;
    let reads = wait_for(
        "a fully cleaned log",
        Duration::from_secs(120),
        async || {
            let reads = read_from_start(&mut api, "state").await;
            (reads.len() == 2_000).then_some(reads)
        },
    )
    .await;
    let last = check_reads(&reads, &expect);
    assert_eq!(last, expect);
}

/// The last value per key a replica's log files hold.
fn replica_latest(data_dir: &Path, topic: &str) -> BTreeMap<String, Option<String>> {
    let mut last = BTreeMap::new();
    for b in read_partition_batches(data_dir, topic, 0) {
        let b = Bytes::from(b);
        let Ok(h) = batch::parse_header(&b) else {
            continue;
        };
        if h.is_control() {
            continue;
        }
        for r in batch::records(&b).expect("records").flatten() {
            let s = |b: Option<Bytes>| b.map(|b| String::from_utf8_lossy(&b).into_owned());
            last.insert(s(r.key).expect("a key"), s(r.value));
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_compact_under_load_and_leader_kills() {
    let mut extra: Vec<String> = PROMPT.iter().map(|s| s.to_string()).collect();
    extra.extend(["--log-cleaner-io-bytes-per-sec".into(), "0".into()]);
    let mut c = Cluster::start(
        3,
        ClusterOpts {
            extra,
            ..Default::default()
        },
    )
    .await;
    let mut admin = c.admin().await;
    admin
        .create_topic(CreateTopicRequest {
            name: "cdc".into(),
            partitions: 1,
            replication_factor: 3,
            configs: compacted(&[
                ("min.cleanable.dirty.ratio", "0.2"),
                ("max.compaction.lag.ms", "3000"),
            ]),
        })
        .await
        .expect("create");
    c.wait_all_in_sync("cdc", Duration::from_secs(30)).await;
    let mut acked = Vec::new();
    let mut seq = 0usize;
    for round in 0..3u64 {
        let start = seq;
        seq += 100_000;
        let updates = (start..seq).map(|i| (format!("row-{:04}", i % 1_000), Some(value_of(i))));
        let leader = c.wait_leader("cdc", 0, Duration::from_secs(30)).await;
        let producing = tokio::spawn(produce(c.client_config(), "cdc", updates, false));
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        // The leader dies with the produce under way.
        assert!(
            !producing.is_finished(),
            "round {round}: produced before the kill"
        );
        c.kill(leader);
        acked.extend(producing.await.expect("producer task"));
        c.restart(leader).await;
        c.wait_all_in_sync("cdc", Duration::from_secs(60)).await;
    }
    assert!(acked.len() > 150_000, "{} acknowledged", acked.len());
    let expect = latest(&acked);
    // Every replica cleans its own log; they end up agreeing on every key.
    let ids = c.ids();
    let agreed = wait_for("replicas agree", Duration::from_secs(120), async || {
        let views: Vec<_> = ids
            .iter()
            .map(|id| replica_latest(&c.data_dir(*id), "cdc"))
            .collect();
        let sizes: Vec<usize> = ids
            .iter()
            .map(|id| {
                read_partition_batches(&c.data_dir(*id), "cdc", 0)
                    .iter()
                    .map(Vec::len)
                    .sum()
            })
            .collect();
        // Compacted on every replica: 300,000 updates took some 24 MB.
        let small = sizes.iter().all(|s| *s < 3 << 20);
        (small && views.windows(2).all(|w| w[0] == w[1])).then(|| views[0].clone())
    })
    .await;
    assert_eq!(agreed.len(), 1_000);
    for (k, v) in &expect {
        let got = agreed[k].as_deref().expect("live");
        assert!(
            seq_of(got) >= seq_of(v.as_deref().expect("live")),
            "key {k}"
        );
    }
    // The leader serves exactly that.
    let leader = c.wait_leader("cdc", 0, Duration::from_secs(30)).await;
    let mut api = BrokerClient::connect(format!("http://{}", c.client_addr(leader)))
        .await
        .expect("connect");
    let served = check_reads(&read_from_start(&mut api, "cdc").await, &expect);
    assert_eq!(served, agreed);

    // A follower wiped and rebuilt from the leader converges.
    let follower = *ids.iter().find(|i| **i != leader).expect("a follower");
    c.kill(follower);
    c.wipe(follower);
    c.restart(follower).await;
    c.wait_all_in_sync("cdc", Duration::from_secs(90)).await;
    let rebuilt = wait_for(
        "the rebuilt follower",
        Duration::from_secs(60),
        async || {
            let v = replica_latest(&c.data_dir(follower), "cdc");
            (v == agreed).then_some(v)
        },
    )
    .await;
    assert_eq!(rebuilt.len(), 1_000);
    c.assert_not_broken();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_refuses_what_it_cannot_keep() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), PROMPT).await;
    let mut admin = broker.admin().await;
    for (k, v) in [
        ("cleanup.policy", "shred"),
        ("cleanup.policy", "compact,"),
        ("min.compaction.lag.ms", "-1"),
        ("max.compaction.lag.ms", "-5"),
        ("delete.retention.ms", "-1"),
        ("min.cleanable.dirty.ratio", "2"),
    ] {
        let st = admin
            .create_topic(CreateTopicRequest {
                name: "bad".into(),
                partitions: 1,
                replication_factor: 1,
                configs: [(k.to_string(), v.to_string())].into(),
            })
            .await
            .expect_err("refused");
        assert_eq!(error_code(&st), "INVALID_CONFIG", "{k}={v}: {st:?}");
    }
    create(&broker, "keyed", compacted(&[])).await;
    let mut b = BatchBuilder::new(1);
    b.push(1, Some(b"k"), Some(b"v"), &[]);
    b.push(1, None, Some(b"no key"), &[]);
    let mut api = broker.data().await;
    let r = api
        .produce(ProduceRequest {
            topic: "keyed".into(),
            partition: 0,
            acks: Acks::All as i32,
            records: b.finish(),
            timeout_ms: 0,
            correlation_id: 0,
        })
        .await;
    let code = match r {
        Err(st) => error_code(&st),
        Ok(resp) => format!("{:?}", resp.into_inner().error.map(|e| e.code)),
    };
    assert!(
        code.contains("INVALID_RECORD")
            || code == format!("{:?}", Some(ErrorCode::InvalidRecord as i32)),
        "{code}"
    );
    // Nothing of the refused batch was stored; a keyed batch still is.
    let mut b = BatchBuilder::new(1);
    b.push(1, Some(b"k"), Some(b"v"), &[]);
    api.produce(ProduceRequest {
        topic: "keyed".into(),
        partition: 0,
        acks: Acks::All as i32,
        records: b.finish(),
        timeout_ms: 0,
        correlation_id: 0,
    })
    .await
    .expect("a keyed record is taken");
    let reads = read_from_start(&mut api, "keyed").await;
    assert_eq!(reads, vec![(0, "k".to_string(), Some("v".to_string()))]);
    // Compaction is switched on by altering a topic too.
    let r = broker.cli(
        &[
            "topic",
            "alter",
            "keyed",
            "--config",
            "cleanup.policy=bogus",
        ],
        None,
    );
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!broker.has_died());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_use_a_compacted_topic() {
    use strata_tests::tools::{have_kcat, have_python_module, run_python_ok, run_with_input};
    if !have_python_module("confluent_kafka") || !have_python_module("kafka") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let kafka = format!("127.0.0.1:{}", free_port());
    let mut flags = PROMPT.to_vec();
    flags.extend([
        "--log-cleaner-io-bytes-per-sec",
        "0",
        "--kafka-listen",
        &kafka,
    ]);
    let broker = BrokerProc::start(&tmp.path().join("data"), &flags).await;
    run_python_ok("compacted_topic.py", vec![kafka.clone()], || {
        broker.log_tail(30)
    })
    .await;
    if !have_kcat() {
        return;
    }
    // kcat (librdkafka 2.0) reads the compacted log to its end too.
    let out = run_with_input(
        "kcat",
        &[
            "-C",
            "-b",
            &kafka,
            "-t",
            "cf-profiles",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\n",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!((keys.len(), distinct.len()), (450, 450));
}

/// Bytes of a partition directory's segment files.
fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_topic_stays_the_size_of_the_live_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut flags = PROMPT.to_vec();
    flags.extend([
        "--offsets-partitions",
        "1",
        "--offsets-segment-bytes",
        "65536",
        "--log-cleaner-io-bytes-per-sec",
        "0",
    ]);
    let mut broker = BrokerProc::start(&data, &flags).await;
    let d = wait_for("the offsets topic", Duration::from_secs(30), async || {
        broker.describe("__consumer_offsets").await.ok()
    })
    .await;
    assert!(
        d.config["cleanup.policy"].contains("compact"),
        "{:?}",
        d.config
    );
    broker
        .admin()
        .await
        .create_topic(CreateTopicRequest {
            name: "events".into(),
            partitions: 20,
            replication_factor: 1,
            configs: Default::default(),
        })
        .await
        .expect("create");
    // 2,000 commits of 20 partitions each: some 2 MB of commit records
    // for 20 live offsets.
    let mut groups = broker.groups().await;
    for round in 0..2_000i64 {
        groups
            .offset_commit(OffsetCommitRequest {
                group: "readers".into(),
                offsets: (0..20)
                    .map(|p| TopicPartitionOffset {
                        topic: "events".into(),
                        partition: p,
                        offset: round * 100 + i64::from(p),
                        metadata: format!("round {round}"),
                    })
                    .collect(),
                member_id: String::new(),
                member_epoch: 0,
            })
            .await
            .expect("commit");
    }
    let dir = data.join("__consumer_offsets-0");
    wait_for(
        "a compacted offsets log",
        Duration::from_secs(60),
        async || (segment_bytes(&dir) < 512 << 10).then_some(()),
    )
    .await;
    // A restart replays the compacted log to the latest commits.
    broker.kill();
    broker.restart().await;
    let mut groups = broker.groups().await;
    let got = groups
        .offset_fetch(OffsetFetchRequest {
            group: "readers".into(),
            topics: vec![],
        })
        .await
        .expect("fetch")
        .into_inner();
    let mut offsets: Vec<(u32, i64, String)> = got
        .offsets
        .into_iter()
        .map(|o| (o.partition, o.offset, o.metadata))
        .collect();
    offsets.sort();
    let want: Vec<(u32, i64, String)> = (0..20)
        .map(|p| (p, 1_999 * 100 + i64::from(p), "round 1999".to_string()))
        .collect();
    assert_eq!(offsets, want);
}

/// Bytes of the data objects under `dir` (a store's partition prefix).
fn object_bytes(dir: &Path) -> u64 {
    strata_tests::files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".log"))
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The manifest copy next to a partition's objects: (cleaned_to, end).
fn manifest_copy(objects: &Path) -> Option<(i64, i64)> {
    let path = strata_tests::files_under(objects)
        .into_iter()
        .find(|p| p.ends_with("manifest.json"))?;
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let end = m["segments"].as_array()?.last()?["next"].as_i64()?;
    Some((m["cleaned_to"].as_i64().unwrap_or(0), end))
}

/// Waits until everything of partition 0 is remote, the remote part is cleaned to its end, and the replaced
/// objects are gone. Returns the bytes of the objects.
async fn wait_remote_settled(broker: &BrokerProc, topic: &str, objects: &Path) -> u64 {
    wait_for(
        "a settled remote log",
        Duration::from_secs(120),
        async || {
            let d = broker.describe(topic).await.ok()?;
            let p = d.partitions.first()?;
            let (cleaned_to, end) = manifest_copy(objects)?;
            let all_remote = p.remote_end_offset == Some(p.high_watermark);
            let bytes = object_bytes(objects);
            (all_remote && cleaned_to == end && bytes == p.remote_bytes).then_some(bytes)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiered_compacted_topic_keeps_the_store_to_the_live_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = strata_tests::s3::S3Server::start(&tmp.path().join("s3"), "tiered").await;
    let http = format!("127.0.0.1:{}", free_port());
    let kafka = format!("127.0.0.1:{}", free_port());
    let mut flags: Vec<String> = PROMPT.iter().map(|s| s.to_string()).collect();
    flags.extend(s3.broker_flags("tiered", "state"));
    flags.extend(
        [
            "--tier-upload-interval",
            "100ms",
            "--http-listen",
            &http,
            "--kafka-listen",
            &kafka,
        ]
        .map(String::from),
    );
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut broker = BrokerProc::start(&tmp.path().join("data"), &flag_refs).await;
    create(
        &broker,
        "tables",
        compacted(&[
            ("remote.storage.enable", "true"),
            ("retention.local.bytes", "1"),
            ("segment.bytes", "65536"),
            ("segment.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0"),
        ]),
    )
    .await;
    let objects = tmp.path().join("s3").join("tiered").join("state");
    const KEYS: usize = 500;
    let cfg = || strata_client::ClientConfig::new(vec![broker.endpoint()]);
    let key = |i: usize| format!("row-{:04}", i % KEYS);

    // Ten versions of every key, then the store settles.
    let updates = (0..10 * KEYS).map(|i| (key(i), Some(value_of(i))));
    let mut acked = produce(cfg(), "tables", updates, true).await;
    let first = wait_remote_settled(&broker, "tables", &objects).await;

    // Twenty more versions and a fifth of the keys deleted: the history
    // triples, the store does not grow.
    let updates = (10 * KEYS..30 * KEYS).map(|i| (key(i), Some(value_of(i))));
    acked.extend(produce(cfg(), "tables", updates, true).await);
    let deletes = (0..KEYS / 5).map(|i| (key(i), None));
    acked.extend(produce(cfg(), "tables", deletes, true).await);
    let expect = latest(&acked);
    let live = KEYS - KEYS / 5;
    let mut api = broker.data().await;
    // The tombstones go after delete.retention.ms, from the remote part.
    let reads = wait_for(
        "one record per live key",
        Duration::from_secs(120),
        async || {
            let reads = read_from_start(&mut api, "tables").await;
            (reads.len() == live).then_some(reads)
        },
    )
    .await;
    let last = check_reads(&reads, &expect);
    for (k, v) in &expect {
        assert_eq!(last.get(k).cloned().flatten(), v.clone(), "key {k}");
    }
    let settled = wait_remote_settled(&broker, "tables", &objects).await;
    let d = broker.describe("tables").await.expect("describe");
    let p = &d.partitions[0];
    assert_eq!(p.remote_start_offset, Some(0), "{p:?}");
    assert!(
        p.local_start_offset > 0,
        "the records below the local start were read from the store: {p:?}"
    );
    let produced: usize = acked
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len))
        .sum();
    let live_bytes: usize = reads
        .iter()
        .map(|r| r.1.len() + r.2.as_ref().map_or(0, String::len))
        .sum();
    assert!(
        settled <= first + first / 4,
        "the store grew from {first} to {settled} bytes with the history"
    );
    assert!(
        settled < 3 * live_bytes as u64 && settled < produced as u64 / 5,
        "{settled} bytes in the store for {live_bytes} live bytes ({produced} produced)"
    );
    let (_, metrics) = http_get(&http, "/metrics").await.expect("metrics");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("strata_tier_compaction_passes_total") >= 2.0,
        "{metrics}"
    );
    assert!(value("strata_tier_compaction_reclaimed_bytes_total") > 0.0);
    // The cleaner's lag: everything cleanable is clean by now.
    assert!(metrics.contains("strata_cleaner_dirty_bytes "), "{metrics}");
    assert_eq!(value("strata_cleaner_max_dirty_percent"), 0.0);

    // After a SIGKILL the remote part reads the same.
    broker.kill();
    broker.restart().await;
    let mut api = broker.data().await;
    let again = read_from_start(&mut api, "tables").await;
    assert_eq!(again, reads, "the log reads the same after a restart");

    // A Kafka client reads the same from the beginning, through the
    // empty batches compaction left in the remote segments.
    if !strata_tests::tools::have_kcat() {
        return;
    }
    let out = strata_tests::tools::run_with_input(
        "kcat",
        &[
            "-C",
            "-b",
            &kafka,
            "-t",
            "tables",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o %k %s\n",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Vec<String> = reads
        .iter()
        .map(|(o, k, v)| format!("{o} {k} {}", v.as_deref().unwrap_or("")))
        .collect();
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        got == want,
        "kcat read {} records, {} expected",
        got.len(),
        want.len()
    );
}
