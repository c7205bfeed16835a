//! Tiered storage: sealed, committed segments go to object storage (any
//! `object_store` backend: a local directory or S3 and compatibles), with
//! a sparse index each; the per-partition manifest lives in the
//! controller's replicated state (and is mirrored next to the objects).
//! Reads below the local log start come back by ranged GETs through a
//! bounded chunk cache with read-ahead.
//!
//! Object layout under the store's prefix:
//! `TOPIC/TOPIC_ID/PARTITION/BASE-UPLOAD_ID.log` (the batches, byte for
//! byte as in the local segment), `… .index` ([`RemoteIndex`]) and
//! `TOPIC/TOPIC_ID/PARTITION/manifest.json`.

pub mod cache;
pub mod host;
pub mod manifest;
pub mod serve;
pub mod uploader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_proto::batch::{self, HEADER_LEN};

use crate::log::SealedSlice;
use cache::ChunkCache;
pub use manifest::{IndexEntry, RemoteIndex, RemoteManifest, RemoteSegment};

/// Bytes fetched ahead of a sequential reader.
const READ_AHEAD_BYTES: u64 = 4 << 20;

/// Where the object store is and how the tiering runs (broker settings).
#[derive(Clone, Debug)]
pub struct TierSettings {
    /// `file:///path` or `s3://bucket/prefix`.
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`); default with an endpoint.
    pub path_style: Option<bool>,
    /// Sign request bodies (SHA-256) instead of `UNSIGNED-PAYLOAD`.
    pub signed_payload: bool,
    pub allow_http: Option<bool>,
    /// Budget of the remote-read chunk cache.
    pub cache_bytes: u64,
    /// Bytes per chunk: one ranged GET.
    pub chunk_bytes: u64,
    /// Uploads in flight per broker.
    pub max_uploads: usize,
    /// Average upload rate cap per broker in bytes/s (0 = unlimited).
    pub upload_bytes_per_sec: u64,
    /// How often leaders look for segments to upload.
    pub upload_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    #[error("remote data is corrupt or missing: {0}")]
    Corrupt(String),
    #[error("object store configuration: {0}")]
    Config(String),
}

fn store_err(key: &ObjPath, e: object_store::Error) -> TierError {
    match e {
        object_store::Error::NotFound { .. } => {
            TierError::Corrupt(format!("object {key} is missing"))
        }
        e => {
            // The causes say what went wrong (refused, timed out, denied).
            let mut msg = format!("{key}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                let text = s.to_string();
                if !msg.contains(&text) {
                    msg.push_str(": ");
                    msg.push_str(&text);
                }
                src = s.source();
            }
            TierError::Unavailable(msg)
        }
    }
}

/// A partition as named in the object store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteLoc {
    pub topic: String,
    pub topic_id: String,
    pub partition: u32,
}

/// Counters of the tiering (exported on `/metrics`).
#[derive(Default)]
pub struct TierMetrics {
    pub uploaded_bytes: AtomicU64,
    pub uploaded_segments: AtomicU64,
    pub upload_errors: AtomicU64,
    pub downloaded_bytes: AtomicU64,
    pub download_errors: AtomicU64,
    pub corrupt_reads: AtomicU64,
    pub deleted_segments: AtomicU64,
    /// Committed bytes of led partitions not yet uploaded (a gauge).
    pub backlog_bytes: AtomicU64,
}

pub struct Tier {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    /// The directory of a `file://` store.
    local_root: Option<std::path::PathBuf>,
    settings: TierSettings,
    cache: ChunkCache,
    indexes: Mutex<HashMap<String, Arc<RemoteIndex>>>,
    /// Where the last read of each object ended: a read that starts there
    /// is sequential and gets read-ahead; random reads do not.
    read_ends: Mutex<HashMap<String, u64>>,
    uploads: tokio::sync::Semaphore,
    /// When the upload rate cap next lets bytes go.
    upload_clock: Mutex<std::time::Instant>,
    pub metrics: TierMetrics,
}

/// Opens the store named by `s.url`; a `file://` directory is created.
fn open_store(s: &TierSettings) -> Result<(Arc<dyn ObjectStore>, ObjPath), TierError> {
    if let Some(path) = s.url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(TierError::Config(format!(
                "object-store '{}': a file store needs an absolute path (file:///dir)",
                s.url
            )));
        }
        std::fs::create_dir_all(path)
            .map_err(|e| TierError::Config(format!("object-store {path}: {e}")))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| TierError::Config(format!("object-store {path}: {e}")))?
            .with_automatic_cleanup(true);
        return Ok((Arc::new(fs), ObjPath::default()));
    }
    if let Some(rest) = s.url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(TierError::Config(format!(
                "object-store '{}': expected s3://bucket[/prefix]",
                s.url
            )));
        }
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        // Client options replace the builder's HTTP settings as a whole:
        // plain HTTP is allowed there.
        let mut client = object_store::ClientOptions::new()
            .with_timeout(Duration::from_secs(60))
            .with_connect_timeout(Duration::from_secs(3));
        let env_http = std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true");
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e);
            b = b.with_virtual_hosted_style_request(!s.path_style.unwrap_or(true));
            client = client.with_allow_http(s.allow_http.unwrap_or(e.starts_with("http://")));
        } else {
            if let Some(p) = s.path_style {
                b = b.with_virtual_hosted_style_request(!p);
            }
            client = client.with_allow_http(s.allow_http.unwrap_or(env_http));
        }
        if let Some(r) = &s.region {
            b = b.with_region(r);
        }
        // Hashing every body for the signature costs a core-second per
        // ~300 MB uploaded; the data carries its own CRCs (checked before
        // upload and on every read) and TLS protects it in transit.
        b = b.with_unsigned_payload(!s.signed_payload);
        if let Some(k) = &s.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &s.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        // Uploads retry on their own schedule; reads fail fast.
        let retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        b = b.with_retry(retry).with_client_options(client);
        let store = b
            .build()
            .map_err(|e| TierError::Config(format!("object-store '{}': {e}", s.url)))?;
        return Ok((Arc::new(store), ObjPath::from(prefix)));
    }
    Err(TierError::Config(format!(
        "object-store '{}': expected file:///path or s3://bucket/prefix",
        s.url
    )))
}

/// Puts a sealed segment file into a `file://` store as a hard link: no
/// copy of the data, which stays put while the local segment is deleted
/// later. Only when the store is on the same filesystem and the file holds
/// exactly the uploaded bytes; false means "copy it instead".
fn link_object(root: &std::path::Path, key: &ObjPath, src: &std::path::Path, size: u64) -> bool {
    let dest = key
        .parts()
        .fold(root.to_path_buf(), |p, part| p.join(part.as_ref()));
    let linked = (|| {
        if std::fs::metadata(src)?.len() != size {
            return Ok(false);
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::hard_link(src, &dest)?;
        Ok::<_, std::io::Error>(true)
    })();
    match linked {
        Ok(done) => done,
        Err(e) => {
            tracing::debug!(src = %src.display(), dest = %dest.display(), error = %e,
                "cannot link the segment into the store; copying it");
            false
        }
    }
}

/// A random hex id of 16 characters.
pub fn random_hex() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Builds the remote index of `data` (whole batches), checking every
/// batch's checksum: corrupt local data is never uploaded.
pub fn build_index(data: &[u8], base: i64) -> Result<RemoteIndex, String> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let mut max_ts = i64::MIN;
    let mut last_indexed: Option<usize> = None;
    let mut expect = base;
    while pos < data.len() {
        let h = batch::verify_crc(&data[pos..]).map_err(|e| format!("batch at byte {pos}: {e}"))?;
        if h.base_offset < expect && h.records_count > 0 {
            return Err(format!("batch at byte {pos}: offsets go backwards"));
        }
        if last_indexed.is_none_or(|l| (pos - l) as u64 >= manifest::INDEX_INTERVAL)
            && h.records_count > 0
        {
            entries.push(IndexEntry {
                offset: h.base_offset,
                pos: pos as u64,
                max_ts_before: max_ts,
            });
            last_indexed = Some(pos);
        }
        if h.records_count > 0 {
            max_ts = max_ts.max(h.max_timestamp);
            expect = h.next_offset();
        }
        pos += h.total_len();
    }
    Ok(RemoteIndex { entries })
}

impl Tier {
    pub fn open(settings: TierSettings) -> Result<Self, TierError> {
        let (store, prefix) = open_store(&settings)?;
        let local_root = settings
            .url
            .strip_prefix("file://")
            .map(std::path::PathBuf::from);
        Ok(Self {
            store,
            prefix,
            local_root,
            cache: ChunkCache::new(settings.cache_bytes),
            indexes: Mutex::new(HashMap::new()),
            read_ends: Mutex::new(HashMap::new()),
            uploads: tokio::sync::Semaphore::new(settings.max_uploads),
            upload_clock: Mutex::new(std::time::Instant::now()),
            metrics: TierMetrics::default(),
            settings,
        })
    }

    pub fn settings(&self) -> &TierSettings {
        &self.settings
    }

    /// One of the per-broker upload slots.
    pub async fn upload_slot(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, tokio::sync::AcquireError> {
        self.uploads.acquire().await
    }

    pub fn cache(&self) -> &ChunkCache {
        &self.cache
    }

    fn dir(&self, loc: &RemoteLoc) -> ObjPath {
        self.prefix
            .clone()
            .join(loc.topic.as_str())
            .join(loc.topic_id.as_str())
            .join(loc.partition.to_string())
    }

    fn data_key(&self, loc: &RemoteLoc, seg: &RemoteSegment) -> ObjPath {
        self.dir(loc)
            .join(format!("{:020}-{}.log", seg.base, seg.upload_id))
    }

    fn index_key(&self, loc: &RemoteLoc, seg: &RemoteSegment) -> ObjPath {
        self.dir(loc)
            .join(format!("{:020}-{}.index", seg.base, seg.upload_id))
    }

    /// Uploads `slice` (data, then index) under a fresh upload id.
    pub async fn upload(
        &self,
        loc: &RemoteLoc,
        slice: SealedSlice,
    ) -> Result<RemoteSegment, TierError> {
        let data = slice.data.clone();
        let index = tokio::task::spawn_blocking(move || build_index(&data, slice.base))
            .await
            .map_err(|e| TierError::Unavailable(format!("index task: {e}")))?
            .map_err(|e| {
                TierError::Corrupt(format!(
                    "local segment of {}/{} at offset {}: {e}",
                    loc.topic, loc.partition, slice.base
                ))
            })?;
        let seg = RemoteSegment {
            base: slice.base,
            next: slice.next,
            size: slice.data.len() as u64,
            max_ts: slice.max_ts,
            upload_id: random_hex(),
        };
        let (dk, ik) = (self.data_key(loc, &seg), self.index_key(loc, &seg));
        self.pace(seg.size).await;
        let linked = match (&self.local_root, &slice.file) {
            (Some(root), Some(src)) => link_object(root, &dk, src, seg.size),
            _ => false,
        };
        let r = async {
            if !linked {
                self.store
                    .put(&dk, PutPayload::from(slice.data))
                    .await
                    .map_err(|e| store_err(&dk, e))?;
            }
            self.store
                .put(&ik, PutPayload::from(index.encode()))
                .await
                .map_err(|e| store_err(&ik, e))?;
            Ok::<_, TierError>(())
        }
        .await;
        if let Err(e) = r {
            self.metrics.upload_errors.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.metrics
            .uploaded_bytes
            .fetch_add(seg.size, Ordering::Relaxed);
        self.metrics
            .uploaded_segments
            .fetch_add(1, Ordering::Relaxed);
        Ok(seg)
    }

    /// Waits until the upload rate cap lets `bytes` more go (the average
    /// over uploads stays at the cap; each upload itself runs at full speed).
    async fn pace(&self, bytes: u64) {
        let rate = self.settings.upload_bytes_per_sec;
        if rate == 0 {
            return;
        }
        let start = {
            let mut next = self.upload_clock.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*next).max(std::time::Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }

    /// Deletes the objects of `seg` (missing ones are fine).
    pub async fn delete_segment(
        &self,
        loc: &RemoteLoc,
        seg: &RemoteSegment,
    ) -> Result<(), TierError> {
        for k in [self.data_key(loc, seg), self.index_key(loc, seg)] {
            self.cache.forget(k.as_ref());
            self.indexes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(k.as_ref());
            match self.store.delete(&k).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(&k, e)),
            }
        }
        self.metrics
            .deleted_segments
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes every object of a partition (its topic was deleted).
    pub async fn delete_partition(&self, loc: &RemoteLoc) -> Result<usize, TierError> {
        use futures::StreamExt;
        let dir = self.dir(loc);
        let metas: Vec<_> = self.store.list(Some(&dir)).collect().await;
        let mut n = 0;
        for m in metas {
            let m = m.map_err(|e| store_err(&dir, e))?;
            match self.store.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
                Err(e) => return Err(store_err(&m.location, e)),
            }
        }
        Ok(n)
    }

    /// Mirrors the manifest next to the objects (the controller state is
    /// the authority; this copy is for operators and disaster recovery).
    pub async fn write_manifest(
        &self,
        loc: &RemoteLoc,
        m: &RemoteManifest,
    ) -> Result<(), TierError> {
        let key = self.dir(loc).join("manifest.json");
        let body = serde_json::to_vec_pretty(m)
            .map_err(|e| TierError::Config(format!("manifest: {e}")))?;
        self.store
            .put(&key, PutPayload::from(body))
            .await
            .map_err(|e| store_err(&key, e))?;
        Ok(())
    }

    async fn index(
        &self,
        loc: &RemoteLoc,
        seg: &RemoteSegment,
    ) -> Result<Arc<RemoteIndex>, TierError> {
        let key = self.index_key(loc, seg);
        if let Some(i) = self
            .indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key.as_ref())
        {
            return Ok(Arc::clone(i));
        }
        let got = async {
            let r = self.store.get(&key).await.map_err(|e| store_err(&key, e))?;
            r.bytes().await.map_err(|e| store_err(&key, e))
        }
        .await
        .inspect_err(|_| {
            self.metrics.download_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        self.metrics
            .downloaded_bytes
            .fetch_add(got.len() as u64, Ordering::Relaxed);
        let idx = RemoteIndex::decode(&got).map_err(|e| {
            self.metrics.corrupt_reads.fetch_add(1, Ordering::Relaxed);
            TierError::Corrupt(format!("{key}: {e}"))
        })?;
        let idx = Arc::new(idx);
        let mut map = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(key.as_ref().to_owned(), Arc::clone(&idx));
        Ok(idx)
    }

    async fn chunk(&self, key: &ObjPath, size: u64, k: u64) -> Result<Bytes, TierError> {
        let chunk = self.settings.chunk_bytes;
        let start = k * chunk;
        let end = (start + chunk).min(size);
        self.cache
            .get(key.as_ref(), k, || async {
                let b = self
                    .store
                    .get_range(key, start..end)
                    .await
                    .map_err(|e| store_err(key, e))
                    .inspect_err(|_| {
                        self.metrics.download_errors.fetch_add(1, Ordering::Relaxed);
                    })?;
                if b.len() as u64 != end - start {
                    return Err(TierError::Corrupt(format!(
                        "{key}: {} bytes where {} were expected",
                        b.len(),
                        end - start
                    )));
                }
                self.metrics
                    .downloaded_bytes
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            })
            .await
    }

    /// Whether bytes `[pos, pos + len)` of `key` are all in the cache.
    fn cached(&self, key: &ObjPath, pos: u64, len: usize) -> bool {
        let chunk = self.settings.chunk_bytes;
        let last = (pos + len.max(1) as u64 - 1) / chunk;
        (pos / chunk..=last).all(|k| self.cache.ready(key.as_ref(), k))
    }

    /// Bytes `[pos, pos + len)` of object `key` of `size` bytes.
    async fn range(
        &self,
        key: &ObjPath,
        size: u64,
        pos: u64,
        len: usize,
    ) -> Result<Bytes, TierError> {
        let end = pos + len as u64;
        if end > size {
            return Err(TierError::Corrupt(format!(
                "{key}: a batch runs past the end of the object ({end} > {size})"
            )));
        }
        let chunk = self.settings.chunk_bytes;
        let (first, last) = (pos / chunk, (end - 1) / chunk);
        if first == last {
            let c = self.chunk(key, size, first).await?;
            let at = (pos - first * chunk) as usize;
            return Ok(c.slice(at..at + len));
        }
        let mut out = BytesMut::with_capacity(len);
        for k in first..=last {
            let c = self.chunk(key, size, k).await?;
            let lo = pos.max(k * chunk) - k * chunk;
            let hi = end.min((k + 1) * chunk) - k * chunk;
            out.extend_from_slice(&c[lo as usize..hi as usize]);
        }
        Ok(out.freeze())
    }

    fn corrupt(&self, key: &ObjPath, what: String) -> TierError {
        self.metrics.corrupt_reads.fetch_add(1, Ordering::Relaxed);
        self.cache.forget(key.as_ref());
        tracing::error!(object = %key, "{what}");
        TierError::Corrupt(format!("{key}: {what}"))
    }

    /// Whole batches of `seg` from the one holding `offset`: up to
    /// `max_bytes` (the first whole when `first_whole`), below `limit`.
    /// Returns the bytes and the offset after them.
    pub async fn read(
        self: &Arc<Self>,
        loc: &RemoteLoc,
        seg: &RemoteSegment,
        offset: i64,
        max_bytes: usize,
        limit: i64,
        first_whole: bool,
    ) -> Result<(Bytes, i64), TierError> {
        let idx = self.index(loc, seg).await?;
        let key = self.data_key(loc, seg);
        let mut pos = idx.floor(offset).map_or(0, |e| e.pos);
        let mut out = BytesMut::new();
        let mut next = offset;
        let mut first_pos = pos;
        while pos < seg.size {
            // Once there is something to answer with, answer rather than
            // wait for another download (sequential readers find it
            // fetched ahead by their next request).
            let head_len = HEADER_LEN.min((seg.size - pos) as usize);
            if !out.is_empty() && !self.cached(&key, pos, head_len) {
                break;
            }
            let head = self.range(&key, seg.size, pos, head_len).await?;
            let h = batch::parse_header(&head)
                .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
            let len = h.total_len();
            if !out.is_empty() && !self.cached(&key, pos, len) {
                break;
            }
            if h.next_offset() <= offset || h.records_count == 0 && out.is_empty() {
                pos += len as u64;
                continue;
            }
            if h.records_count > 0 && h.next_offset() > limit {
                break;
            }
            if (!out.is_empty() || !first_whole) && out.len() + len > max_bytes {
                break;
            }
            let b = self.range(&key, seg.size, pos, len).await?;
            batch::verify_crc(&b).map_err(|e| {
                self.corrupt(
                    &key,
                    format!("batch at offset {} (byte {pos}): {e}", h.base_offset),
                )
            })?;
            // Offsets are not under the checksum: they must run on.
            let misplaced = if out.is_empty() {
                h.base_offset > offset.max(seg.base)
            } else {
                h.base_offset != next
            };
            if misplaced {
                return Err(self.corrupt(
                    &key,
                    format!(
                        "batch at byte {pos} has offset {} where {} was expected",
                        h.base_offset,
                        if out.is_empty() { offset } else { next }
                    ),
                ));
            }
            if out.is_empty() {
                first_pos = pos;
            }
            out.extend_from_slice(&b);
            next = h.next_offset().max(next);
            pos += len as u64;
        }
        // Sequential consumers (this read starts where the last one of the
        // object ended, or at its start) find the next chunks waiting.
        let chunk = self.settings.chunk_bytes;
        let sequential = {
            let mut ends = self.read_ends.lock().unwrap_or_else(|e| e.into_inner());
            let seq = first_pos == 0
                || ends
                    .get(key.as_ref())
                    .is_some_and(|e| first_pos / chunk <= e / chunk + 1 && *e <= first_pos + chunk);
            if ends.len() >= 4096 {
                ends.clear();
            }
            ends.insert(key.as_ref().to_owned(), pos);
            seq
        };
        if sequential {
            let chunks = seg.size.div_ceil(chunk);
            let from = pos / chunk;
            let ahead = (READ_AHEAD_BYTES / chunk).max(1);
            for k in from..(from + ahead).min(chunks) {
                if !self.cache.contains(key.as_ref(), k) {
                    let me = Arc::clone(self);
                    let key = key.clone();
                    let size = seg.size;
                    tokio::spawn(async move {
                        let _ = me.chunk(&key, size, k).await;
                    });
                }
            }
        }
        Ok((out.freeze(), next))
    }

    /// The first record of `seg` with a timestamp >= `ts` at or after
    /// `start`: (offset, timestamp).
    pub async fn offset_for_timestamp(
        &self,
        loc: &RemoteLoc,
        seg: &RemoteSegment,
        ts: i64,
        start: i64,
    ) -> Result<Option<(i64, i64)>, TierError> {
        let idx = self.index(loc, seg).await?;
        let key = self.data_key(loc, seg);
        let mut pos = idx.floor_time(ts).map_or(0, |e| e.pos);
        while pos < seg.size {
            let head = self
                .range(
                    &key,
                    seg.size,
                    pos,
                    HEADER_LEN.min((seg.size - pos) as usize),
                )
                .await?;
            let h = batch::parse_header(&head)
                .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
            let len = h.total_len();
            if h.records_count > 0 && h.max_timestamp >= ts && h.next_offset() > start {
                let b = self.range(&key, seg.size, pos, len).await?;
                batch::verify_crc(&b)
                    .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
                let recs = batch::records(&b)
                    .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
                for r in recs {
                    let r =
                        r.map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
                    if r.timestamp >= ts && r.offset >= start {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
            }
            pos += len as u64;
        }
        Ok(None)
    }
}

/// Object-storage failures as the broker reports them.
impl From<TierError> for crate::error::BrokerError {
    fn from(e: TierError) -> Self {
        use TierError as T;
        match e {
            T::Unavailable(m) => Self::RemoteStorage(m),
            T::Corrupt(m) => Self::RemoteDataCorrupt(m),
            T::Config(m) => Self::InvalidConfig(m),
        }
    }
}

#[cfg(test)]
mod tests;
