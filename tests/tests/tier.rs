//! Tiered storage end to end: real `stratad` processes offload sealed
//! segments to object storage (a local directory, or an S3-protocol server
//! on 127.0.0.1 spoken to by the brokers' S3 client), free local disk,
//! and serve reads from offset 0 back out of object storage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_proto::v1::{
    FetchPartition, FetchRequest, ListOffsetsRequest, OffsetSpec, PartitionDescription,
};
use strata_tests::s3::S3Server;
use strata_tests::{
    Cluster, ClusterOpts, ProduceLoad, check_acked, consume_earliest, free_port, produce_acked,
    read_partition,
};

const BUCKET: &str = "strata-tier";
/// Small segments, everything local beyond the active segment offloaded.
const TIERED: [(&str, &str); 3] = [
    ("remote.storage.enable", "true"),
    ("segment.bytes", "16384"),
    ("retention.local.bytes", "1"),
];

/// Broker flags: quick upload and retention passes.
fn quick_flags() -> Vec<String> {
    [
        "--tier-upload-interval",
        "100ms",
        "--retention-check-interval",
        "100ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A cluster of `n` brokers with `extra` flags (plus quick upload and
/// retention passes) and `topic` created with `configs`, in sync.
async fn tiered(
    n: usize,
    mut extra: Vec<String>,
    topic: &str,
    partitions: u32,
    configs: &[(&str, &str)],
) -> Cluster {
    extra.extend(quick_flags());
    let c = Cluster::start(
        n,
        ClusterOpts {
            extra,
            ..Default::default()
        },
    )
    .await;
    c.create_topic_with(topic, partitions, n as u32, configs)
        .await
        .expect("create");
    c.wait_all_in_sync(topic, Duration::from_secs(30)).await;
    c
}

/// Waits until `topic`-0 has `min` remote segments.
async fn wait_remote_segments(c: &Cluster, topic: &str, min: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while partition(c, topic, 0)
        .await
        .is_none_or(|d| d.remote_segments < min)
    {
        assert!(Instant::now() < deadline, "no uploads to {topic}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn partition(c: &Cluster, topic: &str, p: u32) -> Option<PartitionDescription> {
    let d = c.describe(topic).await?;
    d.partitions.into_iter().find(|x| x.partition == p)
}

/// Waits until every sealed segment of `topic`-`p` is remote and gone from
/// local disk (only the active segment is local), with at least `min`
/// remote segments.
async fn wait_offloaded(
    c: &Cluster,
    topic: &str,
    p: u32,
    min: u32,
    timeout: Duration,
) -> PartitionDescription {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(d) = partition(c, topic, p).await {
            let done = d.remote_segments >= min
                && d.segments == 1
                && d.remote_end_offset == Some(d.local_start_offset)
                && d.local_start_offset > 0;
            if done {
                return d;
            }
            last = Some(d);
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{p} not offloaded in {timeout:?}: last described {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Files under `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    strata_tests::files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// `--object-store` naming the directory `objects`.
fn file_store(objects: &Path) -> Vec<String> {
    vec![
        "--object-store".to_string(),
        format!("file://{}", objects.display()),
    ]
}

/// `n` distinct values of about 100 bytes, tagged with `tag`.
fn sample_values(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag}-{i:06}-{}", "x".repeat(90)))
        .collect()
}

/// The manifest copy in object storage (written after each change, so
/// waited for): as described, contiguous, no range twice, objects there.
async fn check_manifest_copy(objects: &Path, d: &PartitionDescription) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let copies = files(objects, "manifest.json");
        assert_eq!(copies.len(), 1, "one manifest copy: {copies:?}");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&copies[0]).expect("manifest")).expect("json");
        let n = m["segments"].as_array().map_or(0, Vec::len);
        if n as u32 == d.remote_segments || Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let segs = m["segments"].as_array().expect("segments");
    assert_eq!(segs.len() as u32, d.remote_segments, "manifest copy: {m}");
    let mut ids = std::collections::HashSet::new();
    for w in segs.windows(2) {
        assert_eq!(w[0]["next"], w[1]["base"], "a gap or an overlap in {m}");
    }
    for s in segs {
        assert!(
            ids.insert(s["upload_id"].to_string()),
            "an upload twice in {m}"
        );
        let name = format!(
            "{:020}-{}.log",
            s["base"].as_i64().expect("base"),
            s["upload_id"].as_str().expect("id")
        );
        let data = files(objects, &name);
        assert_eq!(data.len(), 1, "object {name} of the manifest");
        assert_eq!(
            std::fs::metadata(&data[0]).expect("object").len(),
            s["size"].as_u64().expect("size")
        );
    }
    assert_eq!(
        segs.last().map(|s| s["next"].as_i64()),
        Some(d.remote_end_offset)
    );
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in:\n{body}"))
}

/// Produces `values` (acks=all) in batches of 100 records (about 11 KB,
/// so that 16 KiB segments roll often); returns their offsets.
async fn produce_batched(c: &Cluster, topic: &str, values: &[String]) -> Vec<i64> {
    let mut offsets = Vec::new();
    for chunk in values.chunks(100) {
        offsets.extend(produce_acked(c.client_config(), topic, 0, chunk).await);
    }
    offsets
}

/// Produce, offload, check what is where, read everything back from 0.
async fn roundtrip(mut opts: ClusterOpts, objects: &Path) {
    let http = format!("127.0.0.1:{}", free_port());
    opts.extra
        .extend(["--http-listen".to_string(), http.clone()]);
    opts.extra.extend(quick_flags());
    let c = Cluster::start(1, opts).await;
    c.create_topic_with("cold", 1, 1, &TIERED)
        .await
        .expect("create");
    c.wait_all_in_sync("cold", Duration::from_secs(30)).await;
    let values = sample_values("cold", 3000);
    let offsets = produce_batched(&c, "cold", &values).await;
    assert_eq!(offsets, (0..3000).collect::<Vec<i64>>());

    let d = wait_offloaded(&c, "cold", 0, 10, Duration::from_secs(60)).await;
    assert_eq!(d.log_start_offset, 0, "the log still starts at 0: {d:?}");
    assert_eq!(d.remote_start_offset, Some(0));
    assert!(d.remote_bytes > 250_000, "{d:?}");
    // Local disk holds only the active segment; the objects are there.
    let local = files(&c.data_dir(1).join("cold-0"), ".log");
    assert_eq!(local.len(), 1, "local segments left: {local:?}");
    assert_eq!(files(objects, ".log").len() as u32, d.remote_segments);
    assert_eq!(files(objects, ".index").len() as u32, d.remote_segments);
    check_manifest_copy(objects, &d).await;

    // Every record comes back, in order, identical: raw fetches and the
    // client library's consumer from the earliest offset.
    let log = read_partition(&c, "cold", 0).await;
    let expect: Vec<(i64, String)> = values
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    assert_eq!(log.len(), expect.len());
    assert!(
        log == expect,
        "records read back differ from those produced"
    );
    let consumed = consume_earliest(c.client_config(), "cold", 0, 3000).await;
    assert!(consumed == expect, "the consumer read back other records");

    // Earliest and time lookups answer from the remote part.
    let mut api = c.get(1).data().await;
    let lo = |spec: OffsetSpec, ts: i64| ListOffsetsRequest {
        topic: "cold".into(),
        partition: 0,
        spec: spec as i32,
        timestamp: ts,
    };
    let e = api
        .list_offsets(lo(OffsetSpec::Earliest, 0))
        .await
        .expect("earliest");
    assert_eq!(e.into_inner().offset, 0);
    let t = api
        .list_offsets(lo(OffsetSpec::Timestamp, 0))
        .await
        .expect("by time");
    assert_eq!(t.into_inner().offset, 0);

    // The CLI shows where the data is.
    let out = c
        .get(1)
        .cli(&["topic", "describe", "cold", "--output", "json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("describe json");
    let p = &j["partitions"][0];
    assert_eq!(p["remote_start_offset"], 0, "{j}");
    assert_eq!(p["local_start_offset"], d.local_start_offset, "{j}");
    assert!(p["remote_bytes"].as_u64().is_some_and(|b| b > 0), "{j}");
    assert!(p.get("upload_lag_bytes").is_some(), "{j}");
    // Turning tiering off would strand the remote data: refused.
    let out = c.get(1).cli(
        &[
            "topic",
            "alter",
            "cold",
            "--config",
            "remote.storage.enable=false",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remote.storage.enable") && err.lines().count() == 1,
        "{err}"
    );

    // DeleteRecords into the remote part moves the start there; the
    // remote segments below go, with their objects.
    let before = files(objects, ".log").len();
    let del = c
        .get(1)
        .admin()
        .await
        .delete_records(strata_proto::v1::DeleteRecordsRequest {
            topic: "cold".into(),
            partition: 0,
            offset: 1500,
        })
        .await
        .expect("delete records");
    assert_eq!(del.into_inner().log_start_offset, 1500);
    let e = api
        .list_offsets(lo(OffsetSpec::Earliest, 0))
        .await
        .expect("earliest");
    assert_eq!(e.into_inner().offset, 1500);
    let r = api
        .fetch(FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic: "cold".into(),
                partition: 0,
                offset: 100,
                max_bytes: 0,
            }],
        })
        .await
        .expect("fetch");
    let err = r.into_inner().partitions[0]
        .error
        .clone()
        .expect("deleted offset");
    assert_eq!(
        err.code,
        strata_proto::v1::ErrorCode::OffsetOutOfRange as i32,
        "{err:?}"
    );
    let after = files(objects, ".log").len();
    assert!(
        after < before,
        "objects below the new start stay: {before} -> {after}"
    );
    let rest = consume_earliest(c.client_config(), "cold", 0, 1500).await;
    assert!(
        rest == expect[1500..],
        "the consumer starts at the new start"
    );

    let (_, m) = strata_tests::http_get(&http, "/metrics")
        .await
        .expect("/metrics");
    assert!(metric(&m, "strata_tier_uploaded_segments_total") >= u64::from(d.remote_segments));
    assert!(metric(&m, "strata_tier_downloaded_bytes_total") > 250_000);
    assert!(metric(&m, "strata_tier_cache_misses_total") > 0);
    assert_eq!(metric(&m, "strata_tier_corrupt_reads_total"), 0);

    // Deleting the topic deletes its objects.
    c.get(1)
        .admin()
        .await
        .delete_topic(strata_proto::v1::DeleteTopicRequest {
            name: "cold".into(),
        })
        .await
        .expect("delete topic");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !files(objects, ".log").is_empty() {
        assert!(
            Instant::now() < deadline,
            "objects of the deleted topic stay"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.assert_not_broken();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_and_read_back_file_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = dir.path().join("objects");
    let opts = ClusterOpts {
        extra: file_store(&objects),
        ..Default::default()
    };
    roundtrip(opts, &objects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_and_read_back_s3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(dir.path(), BUCKET).await;
    let opts = ClusterOpts {
        extra: s3.broker_flags(BUCKET, "cluster-a"),
        ..Default::default()
    };
    roundtrip(opts, &dir.path().join(BUCKET).join("cluster-a")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(dir.path(), BUCKET).await;
    let mut c = tiered(3, s3.broker_flags(BUCKET, "k"), "tk", 1, &TIERED).await;
    let load = ProduceLoad::start(c.client_addrs(), "tk", 1);
    wait_remote_segments(&c, "tk", 3).await;
    let leader = c.wait_leader("tk", 0, Duration::from_secs(20)).await;
    eprintln!("SIGKILL leader {leader} while it uploads");
    c.kill(leader);
    let before = partition(&c, "tk", 0)
        .await
        .map_or(0, |d| d.remote_segments);
    // The new leader goes on uploading.
    let deadline = Instant::now() + Duration::from_secs(60);
    while partition(&c, "tk", 0)
        .await
        .is_none_or(|d| d.remote_segments < before + 3)
    {
        assert!(Instant::now() < deadline, "the new leader does not upload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.restart(leader).await;
    assert!(
        load.wait_progress(50, Duration::from_secs(30)).await,
        "produce stalled"
    );
    let report = load.stop().await;

    let d = wait_offloaded(&c, "tk", 0, 6, Duration::from_secs(60)).await;
    check_manifest_copy(&dir.path().join(BUCKET).join("k"), &d).await;
    let log = read_partition(&c, "tk", 0).await;
    assert_eq!(log.first().map(|r| r.0), Some(0), "the log reads from 0");
    check_acked(0, &log, &report.acked[0]);
    c.assert_not_broken();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_outage_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s3 = S3Server::start(dir.path(), BUCKET).await;
    let c = tiered(1, s3.broker_flags(BUCKET, "o"), "out", 2, &TIERED).await;
    let load = ProduceLoad::start(c.client_addrs(), "out", 2);
    wait_remote_segments(&c, "out", 2).await;

    s3.stop().await;
    let at_stop = load.progress();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = partition(&c, "out", 0).await.expect("describe");
    let progressed = load.progress();
    assert!(
        progressed.iter().zip(&at_stop).all(|(a, b)| a > b),
        "produce stalled while the object store was down: {at_stop:?} -> {progressed:?}"
    );
    assert!(
        during.segments > 2,
        "local segments are kept while uploads fail: {during:?}"
    );
    assert!(during.upload_lag_bytes > 0, "{during:?}");

    s3.resume().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    assert!(
        report.errors.is_empty(),
        "produces failed: {:?}",
        report.errors
    );
    for p in 0..2 {
        let d = wait_offloaded(&c, "out", p, 2, Duration::from_secs(90)).await;
        let topic_dir = dir.path().join(BUCKET).join("o").join("out");
        let id_dir = std::fs::read_dir(&topic_dir)
            .expect("topic dir")
            .flatten()
            .next()
            .expect("topic id dir")
            .path();
        check_manifest_copy(&id_dir.join(p.to_string()), &d).await;
        let log = read_partition(&c, "out", p).await;
        check_acked(p, &log, &report.acked[p as usize]);
    }
    let log = c.get(1).log();
    assert!(
        log.contains("tiered storage upload failed"),
        "no warning logged"
    );
    assert!(
        log.contains("tiered storage uploads resumed"),
        "no recovery logged"
    );
    c.assert_not_broken();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_remote_object_fails_its_range_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(dir.path(), BUCKET).await;
    let c = tiered(1, s3.broker_flags(BUCKET, "c"), "bad", 1, &TIERED).await;
    let values = sample_values("bad", 2000);
    produce_batched(&c, "bad", &values).await;
    wait_offloaded(&c, "bad", 0, 6, Duration::from_secs(60)).await;

    // Damage the last byte (a record value) of the third remote segment.
    let objects = files(&dir.path().join(BUCKET), ".log");
    let victim = &objects[2];
    let base: i64 = victim
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|n| n.parse().ok())
        .expect("object name starts with its base offset");
    let next_base: i64 = objects[3]
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|n| n.parse().ok())
        .expect("base");
    let mut bytes = std::fs::read(victim).expect("object");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x5a;
    std::fs::write(victim, bytes).expect("rewrite object");

    let mut api = c.get(1).data().await;
    let fetch = |offset: i64| FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 4 << 20,
        partitions: vec![FetchPartition {
            topic: "bad".into(),
            partition: 0,
            offset,
            max_bytes: 0,
        }],
    };
    let r = api.fetch(fetch(base)).await.expect("fetch").into_inner();
    let err = r.partitions[0]
        .error
        .clone()
        .expect("the damaged range fails");
    assert_eq!(
        err.code,
        strata_proto::v1::ErrorCode::RemoteDataCorrupt as i32,
        "{err:?}"
    );
    assert!(err.message.contains("CRC mismatch"), "{err:?}");
    // Ranges before and after still read.
    for offset in [0, next_base] {
        let r = api.fetch(fetch(offset)).await.expect("fetch").into_inner();
        assert!(
            r.partitions[0].error.is_none(),
            "offset {offset}: {:?}",
            r.partitions[0].error
        );
        assert!(!r.partitions[0].records.is_empty(), "offset {offset}");
    }
    assert!(
        c.get(1).log().contains("CRC mismatch"),
        "the broker reports the damage:\n{}",
        c.get(1).log_tail(20)
    );
    c.assert_not_broken();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_retention_deletes_remote_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = dir.path().join("objects");
    // 16 KiB segments, one local; the whole log bounded at 100 kB.
    let mut cfg = TIERED.to_vec();
    cfg.push(("retention.bytes", "100000"));
    let c = tiered(1, file_store(&objects), "short", 1, &cfg).await;
    let values = sample_values("short", 3000);
    produce_batched(&c, "short", &values).await;

    // The oldest remote segments go: the log starts later, remote and
    // local together stay within the bound (plus one segment).
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let d = partition(&c, "short", 0).await.expect("describe");
        if d.remote_start_offset.is_some_and(|s| s > 0)
            && d.segments == 1
            && d.remote_bytes + d.size_bytes <= 100_000 + 16_384
        {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not trim the remote log: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(Some(d.log_start_offset), d.remote_start_offset, "{d:?}");
    check_manifest_copy(&objects, &d).await;
    // The objects of the dropped segments are gone; no orphan remains.
    assert_eq!(files(&objects, ".log").len() as u32, d.remote_segments);
    // Reading from the earliest offset gets the retained tail, in order.
    let start = d.log_start_offset as usize;
    let tail = consume_earliest(c.client_config(), "short", 0, 3000 - start).await;
    let expect: Vec<(i64, String)> = values[start..]
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, v)| ((start + i) as i64, v))
        .collect();
    assert!(tail == expect, "the retained records differ");
    c.assert_not_broken();
}

/// A follower rebuilt from nothing starts its log at the leader's local
/// start (a snapshot) and serves everything older from object storage
/// once it leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilt_follower_serves_old_data_from_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = dir.path().join("objects");
    let mut c = tiered(3, file_store(&objects), "rb", 1, &TIERED).await;
    let values = sample_values("rb", 2000);
    produce_batched(&c, "rb", &values).await;
    let d = wait_offloaded(&c, "rb", 0, 6, Duration::from_secs(60)).await;
    c.wait_all_in_sync("rb", Duration::from_secs(30)).await;

    let leader = c.wait_leader("rb", 0, Duration::from_secs(10)).await;
    let victim = c
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    c.wipe(victim);
    c.restart(victim).await;
    c.wait_all_in_sync("rb", Duration::from_secs(60)).await;
    // Its local log holds only what the leader still had locally.
    let local = files(&c.data_dir(victim).join("rb-0"), ".log");
    assert!(
        local.len() <= 2,
        "the rebuilt replica copied old segments: {local:?}"
    );

    // Leading, it serves the whole log, the remote part included.
    let out = c.get(leader).cli(
        &["cluster", "transfer-leader", "rb", "0", &victim.to_string()],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.wait_leader("rb", 0, Duration::from_secs(10)).await != victim {
        assert!(
            Instant::now() < deadline,
            "leadership did not move to {victim}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = read_partition(&c, "rb", 0).await;
    let expect: Vec<(i64, String)> = values
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, v)| (i as i64, v))
        .collect();
    assert!(log == expect, "the rebuilt leader serves other records");
    assert!(d.remote_segments >= 6);
    c.assert_not_broken();
}
