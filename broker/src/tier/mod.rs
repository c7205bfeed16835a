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
mod compactor;
pub mod host;
pub mod manifest;
mod read;
pub mod serve;
mod store;
pub mod sweep;
pub mod uploader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_proto::batch;

use crate::log::SealedSlice;
use cache::ChunkCache;
pub use manifest::{IndexEntry, RemoteIndex, RemoteManifest, RemoteReplacement, RemoteSegment};
use store::{link_object, open_store};

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
    /// Remote compaction passes swapped into a manifest.
    pub compaction_passes: AtomicU64,
    /// Remote bytes those passes removed.
    pub compaction_reclaimed_bytes: AtomicU64,
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
    sweeps: sweep::Sweeps,
    /// When the upload rate cap next lets bytes go.
    upload_clock: Mutex<std::time::Instant>,
    pub metrics: TierMetrics,
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
            sweeps: sweep::Sweeps::default(),
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
