//! Upload and remote reads against a local-directory object store.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use strata_proto::batch::{self, BatchBuilder};

use super::*;

/// `n` batches of 10 records each (offsets from `base`, timestamps
/// 1000 + offset) and 300-byte values, concatenated.
fn batches(base: i64, n: usize) -> Bytes {
    let mut out = BytesMut::new();
    for b in 0..n {
        let first = base + (b as i64) * 10;
        let mut bb = BatchBuilder::new(1000 + first);
        for i in 0..10 {
            let v = format!("{:0300}", first + i);
            bb.push(1000 + first + i, None, Some(v.as_bytes()), &[]);
        }
        let mut bytes = bb.finish().to_vec();
        batch::stamp(&mut bytes, first, 1, (first / 10 + 1) as u64);
        out.extend_from_slice(&bytes);
    }
    out.freeze()
}

fn tier(dir: &std::path::Path) -> Arc<Tier> {
    Arc::new(
        Tier::open(TierSettings {
            url: format!("file://{}", dir.display()),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            path_style: None,
            signed_payload: false,
            allow_http: None,
            cache_bytes: 8 << 20,
            chunk_bytes: 1 << 20,
            max_uploads: 2,
            upload_bytes_per_sec: 0,
            upload_interval: Duration::from_secs(1),
        })
        .unwrap(),
    )
}

fn loc() -> RemoteLoc {
    RemoteLoc {
        topic: "t".into(),
        topic_id: "id".into(),
        partition: 0,
    }
}

fn first_offsets(b: &Bytes) -> Vec<i64> {
    batch::BatchIter::new(b.clone())
        .map(|r| r.unwrap().0.base_offset)
        .collect()
}

#[tokio::test]
async fn upload_then_read_by_offset_and_time() {
    let d = tempfile::tempdir().unwrap();
    let t = tier(d.path());
    // ~3.1 KiB per batch: 700 batches span three 1 MiB chunks.
    let data = batches(100, 700);
    let slice = SealedSlice {
        data: data.clone(),
        base: 100,
        next: 7100,
        max_ts: 1000 + 7099,
        file: None,
    };
    let seg = t.upload(&loc(), slice).await.unwrap();
    assert_eq!(
        (seg.base, seg.next, seg.size),
        (100, 7100, data.len() as u64)
    );

    // From the start, across chunk boundaries, to the end.
    let mut at = 100;
    let mut all = BytesMut::new();
    while at < 7100 {
        let (b, next) = t
            .read(&loc(), &seg, at, 64 << 10, i64::MAX, true)
            .await
            .unwrap();
        assert!(!b.is_empty() && next > at);
        assert_eq!(first_offsets(&b)[0], at);
        all.extend_from_slice(&b);
        at = next;
    }
    assert_eq!(all.freeze(), data, "byte for byte what was uploaded");

    // The batch holding an offset in the middle; the high watermark bounds.
    let (b, next) = t.read(&loc(), &seg, 3456, 1, i64::MAX, true).await.unwrap();
    assert_eq!(first_offsets(&b), vec![3450]);
    assert_eq!(next, 3460);
    let (b, _) = t
        .read(&loc(), &seg, 3450, 1 << 20, 3470, true)
        .await
        .unwrap();
    assert_eq!(first_offsets(&b), vec![3450, 3460]);

    // Timestamps: the first record at or after.
    let found = t
        .offset_for_timestamp(&loc(), &seg, 1000 + 5005, 0)
        .await
        .unwrap();
    assert_eq!(found, Some((5005, 6005)));
    assert_eq!(
        t.offset_for_timestamp(&loc(), &seg, 99_999, 0)
            .await
            .unwrap(),
        None
    );
    assert!(t.cache().hits.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn corrupt_and_missing_objects_fail_their_range_only() {
    let d = tempfile::tempdir().unwrap();
    let t = tier(d.path());
    let a = t
        .upload(
            &loc(),
            SealedSlice {
                data: batches(0, 400),
                base: 0,
                next: 4000,
                max_ts: 4999,
                file: None,
            },
        )
        .await
        .unwrap();
    let b = t
        .upload(
            &loc(),
            SealedSlice {
                data: batches(4000, 10),
                base: 4000,
                next: 4100,
                max_ts: 5099,
                file: None,
            },
        )
        .await
        .unwrap();
    let flip = |seg: &RemoteSegment, at: usize| {
        let path = d
            .path()
            .join(format!("t/id/0/{:020}-{}.log", seg.base, seg.upload_id));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    };
    // A record byte three quarters into the first object (batch 300).
    let batch_len = a.size as usize / 400;
    flip(&a, 300 * batch_len + 100);

    let e = t
        .read(&loc(), &a, 2900, 1 << 20, i64::MAX, true)
        .await
        .unwrap_err();
    assert!(matches!(e, TierError::Corrupt(_)), "{e}");
    // The untouched start of the object and the next object still read.
    let (ok, _) = t
        .read(&loc(), &a, 0, 1 << 10, i64::MAX, true)
        .await
        .unwrap();
    assert_eq!(first_offsets(&ok)[0], 0);
    let (ok, _) = t
        .read(&loc(), &b, 4000, 1 << 20, i64::MAX, true)
        .await
        .unwrap();
    assert_eq!(first_offsets(&ok).len(), 10);
    assert_eq!(t.metrics.corrupt_reads.load(Ordering::Relaxed), 1);

    // The base offset of a batch is outside its checksum: caught by the
    // offsets running on.
    let c = t
        .upload(
            &loc(),
            SealedSlice {
                data: batches(4100, 10),
                base: 4100,
                next: 4200,
                max_ts: 5199,
                file: None,
            },
        )
        .await
        .unwrap();
    flip(&c, 3 * batch_len + 7);
    let e = t
        .read(&loc(), &c, 4100, 1 << 20, i64::MAX, true)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("expected"), "{e}");

    // A missing object is reported as such.
    t.delete_segment(&loc(), &b).await.unwrap();
    let e = t
        .read(&loc(), &b, 4000, 1 << 20, i64::MAX, true)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

/// A whole segment file goes into a file store as a hard link (same
/// filesystem): no copy, and it outlives the local file.
#[tokio::test]
async fn whole_segments_are_linked_into_a_file_store() {
    use std::os::unix::fs::MetadataExt;
    let d = tempfile::tempdir().unwrap();
    let t = tier(&d.path().join("store"));
    let data = batches(0, 50);
    let src = d.path().join("00000000000000000000.log");
    std::fs::write(&src, &data).unwrap();
    let slice = |file: Option<std::path::PathBuf>| SealedSlice {
        data: data.clone(),
        base: 0,
        next: 500,
        max_ts: 1499,
        file,
    };
    let seg = t.upload(&loc(), slice(Some(src.clone()))).await.unwrap();
    let obj = d.path().join(format!(
        "store/t/id/0/{:020}-{}.log",
        seg.base, seg.upload_id
    ));
    assert_eq!(
        std::fs::metadata(&obj).unwrap().ino(),
        std::fs::metadata(&src).unwrap().ino(),
        "linked, not copied"
    );
    std::fs::remove_file(&src).unwrap();
    let (b, next) = t
        .read(&loc(), &seg, 0, 1 << 20, i64::MAX, true)
        .await
        .unwrap();
    assert_eq!((b, next), (data.clone(), 500));
    // A file that is not exactly the slice is copied.
    std::fs::write(&src, [&data[..], b"tail"].concat()).unwrap();
    let seg = t.upload(&loc(), slice(Some(src.clone()))).await.unwrap();
    let obj = d.path().join(format!(
        "store/t/id/0/{:020}-{}.log",
        seg.base, seg.upload_id
    ));
    assert_ne!(
        std::fs::metadata(&obj).unwrap().ino(),
        std::fs::metadata(&src).unwrap().ino()
    );
    assert_eq!(std::fs::read(&obj).unwrap(), data.to_vec());
}

#[test]
fn index_rejects_corrupt_local_data() {
    let mut data = batches(0, 3).to_vec();
    let n = data.len();
    data[n - 5] ^= 1;
    assert!(build_index(&data, 0).is_err());
    let idx = build_index(&batches(0, 100), 0).unwrap();
    assert_eq!(idx.entries[0].offset, 0);
    assert!(idx.entries.len() >= 4, "one entry per 64 KiB");
}

/// An S3 endpoint that refuses connections: a retriable error naming
/// the cause (plain-HTTP endpoints are allowed without extra settings).
#[tokio::test]
async fn unreachable_s3_is_unavailable_with_the_cause() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let t = Tier::open(TierSettings {
        url: "s3://bucket/p".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        region: Some("us-east-1".into()),
        access_key_id: Some("a".into()),
        secret_access_key: Some("b".into()),
        path_style: None,
        signed_payload: false,
        allow_http: None,
        cache_bytes: 1 << 20,
        chunk_bytes: 256 << 10,
        max_uploads: 1,
        upload_bytes_per_sec: 0,
        upload_interval: Duration::from_secs(1),
    })
    .unwrap();
    let e = t
        .write_manifest(&loc(), &RemoteManifest::default())
        .await
        .unwrap_err();
    assert!(matches!(e, TierError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("Connection refused"), "{e}");
    for bad in ["s3://", "file://relative/dir", "gs://b/p"] {
        let mut s = t.settings().clone();
        s.url = bad.into();
        assert!(matches!(Tier::open(s), Err(TierError::Config(_))), "{bad}");
    }
}

/// The upload rate cap spaces uploads so that the average stays at the
/// cap (on tokio's paused clock: no real waiting, exact figures).
#[tokio::test(start_paused = true)]
async fn uploads_are_paced_at_the_cap() {
    let d = tempfile::tempdir().unwrap();
    let mut s = tier(d.path()).settings().clone();
    s.upload_bytes_per_sec = 1_000_000;
    let t = Tier::open(s).unwrap();
    let began = tokio::time::Instant::now();
    for _ in 0..3 {
        t.pace(500_000).await;
    }
    // The first goes at once, each next one 0.5 s after the previous.
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(990) && took < Duration::from_millis(1100),
        "{took:?}"
    );
}

#[tokio::test]
async fn sweeps_delete_old_objects_no_manifest_names() {
    let d = tempfile::tempdir().unwrap();
    let t = tier(d.path());
    let seg = t
        .upload(
            &loc(),
            SealedSlice {
                data: batches(0, 10),
                base: 0,
                next: 100,
                max_ts: 1099,
                file: None,
            },
        )
        .await
        .unwrap();
    let m = RemoteManifest {
        start: 0,
        segments: vec![seg.clone()],
        ..RemoteManifest::default()
    };
    // An upload whose manifest change a crash lost, long ago, and one
    // just made (it may be on its way to the manifest).
    let dir = d.path().join("t").join("id").join("0");
    let old = dir.join("00000000000000000100-lost.log");
    let fresh = dir.join("00000000000000000100-fresh.log");
    for p in [&old, &fresh] {
        std::fs::write(p, b"orphan").unwrap();
    }
    let long_ago = std::time::SystemTime::now() - sweep::MIN_AGE - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    assert_eq!(
        t.sweep(&loc(), &m).await.unwrap(),
        0,
        "first seen: suspected"
    );
    assert_eq!(t.sweep(&loc(), &m).await.unwrap(), 0, "not due again yet");
    t.sweeps.forget_last_sweeps();
    assert_eq!(t.sweep(&loc(), &m).await.unwrap(), 1);
    assert!(!old.exists() && fresh.exists());
    // The named segment's objects stay and read.
    let (got, _) = t.read(&loc(), &seg, 0, 1 << 20, 100, true).await.unwrap();
    assert_eq!(got, batches(0, 10));
}
