//! `Log`: one partition's ordered sequence of segments.
//!
//! Invariants: segments are contiguous in offsets (each starts where the
//! previous ends); only the last one is active (writable); the log start
//! offset lies within the first segment; `flushed` never exceeds the end.
//! Appends and reads take `&mut self` / `&self`: the caller serializes them
//! (one lock per partition), while the returned `Bytes` stay valid after the
//! lock is released.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_proto::batch::{self, BatchError, BatchHeader};

use super::checkpoint;
use super::config::LogConfig;
use super::file::PooledFile;
use super::segment::{self, Segment, SegmentSizes};

const LOG_START_FILE: &str = "log-start-offset";
const RECOVERY_POINT_FILE: &str = "recovery-point";
/// The Raft entry just before the first stored batch: `index term next_offset`.
const RAFT_BASE_FILE: &str = "raft-base";
/// Raft hard state and membership of the partition's group (JSON).
pub const RAFT_STATE_FILE: &str = "raft-state";
/// The lazily written commit index of the partition's Raft group.
pub const COMMIT_HINT_FILE: &str = "raft-commit";
/// Written by the broker to tie a partition directory to its topic.
pub const OWNER_FILE: &str = "partition.meta";
/// The partition's idempotent-producer state, written at a clean stop.
pub const PRODUCER_STATE_FILE: &str = "producer-state";
/// Written by a clean stop once the data and the indexes are synced (it
/// holds the log end); removed, durably, when the log is opened again.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// The boot id of the machine the log was last opened on: a restart in the
/// same boot (a process crash) finds everything written in the page cache.
pub const BOOT_FILE: &str = "boot-id";

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: u32 },
    #[error("corrupt batch: {0}")]
    Corrupt(#[from] BatchError),
    #[error("storage I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("raft log: {0}")]
    Raft(String),
}

trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T, LogError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T, LogError> {
        self.map_err(|source| LogError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Where an appended batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub raft_index: u64,
}

/// What a read returned.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// Whole batches, a zero-copy slice of one segment.
    pub records: Bytes,
    /// Offset after the last returned batch (the requested offset if none).
    pub next_offset: i64,
}

/// The batches of a sealed segment from one offset on (an upload).
#[derive(Debug, Clone)]
pub struct SealedSlice {
    /// Whole batches, a zero-copy slice of the segment's map.
    pub data: Bytes,
    /// Offset of the first batch.
    pub base: i64,
    /// Offset after the segment.
    pub next: i64,
    /// Newest record timestamp of the segment.
    pub max_ts: i64,
    /// The segment file, when the slice is all of it (an upload to a
    /// directory on the same filesystem can then link it, not copy it).
    pub file: Option<PathBuf>,
}

/// What `open` found and repaired.
#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub segments: usize,
    pub recovered_segments: usize,
    pub truncated_bytes: usize,
    /// Bytes of batches read and CRC-checked (the rest was trusted: synced
    /// before the recovery point was recorded).
    pub checked_bytes: usize,
    pub dropped_segments: usize,
    pub ignored_files: Vec<String>,
}

/// Files to fsync (outside the partition lock) to make `up_to` durable.
pub struct SyncPlan {
    pub files: Vec<PooledFile>,
    /// The partition directory, when segments were created since its last
    /// sync (a new file is only durable once its directory entry is).
    pub dir: Option<PathBuf>,
    pub up_to: i64,
}

impl SyncPlan {
    pub fn run(&self) -> io::Result<()> {
        let started = std::time::Instant::now();
        for f in &self.files {
            match f.get() {
                Ok(f) => f.sync_data()?,
                // Deleted since (retention, a truncation): nothing to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(dir) = &self.dir {
            checkpoint::sync_dir(dir)?;
        }
        super::fsync_done(started.elapsed());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dir.is_none()
    }
}

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    next_offset: i64,
    last_raft: (u64, u64),
    /// Offsets below this are on disk.
    flushed: i64,
    /// Sealed segments written since the last sync.
    unsynced_sealed: Vec<PooledFile>,
    /// A segment file was created since the directory was last synced.
    dir_unsynced: bool,
    /// The Raft entry before the first stored batch (index, term) and the
    /// offset right after it.
    raft_base: RaftBase,
    /// Compaction: everything below this offset has been cleaned.
    cleaned_offset: i64,
    /// Compaction: bytes reclaimed and passes installed since the open.
    cleaner_totals: (u64, u64),
    /// Compaction: when the earliest tombstone kept by the last pass may go.
    tombstones_expire_ms: Option<i64>,
}

/// The Raft position the log starts after (the last compacted entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RaftBase {
    pub index: u64,
    pub term: u64,
    pub next_offset: i64,
}

impl Log {
    fn sizes(config: &LogConfig) -> SegmentSizes {
        SegmentSizes {
            capacity: config.segment_bytes as usize,
            index_max_bytes: config.index_max_bytes as usize,
            index_interval_bytes: config.index_interval_bytes as usize,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    /// Compacted logs: everything below this was cleaned.
    pub fn cleaned_offset(&self) -> i64 {
        self.cleaned_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// The offset the next record gets (log end offset).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// (term, index) of the last batch.
    pub fn last_raft(&self) -> (u64, u64) {
        self.last_raft
    }
    pub fn flushed_offset(&self) -> i64 {
        self.flushed
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size() as u64).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn segment_bases(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    fn active(&mut self) -> &mut Segment {
        // `open` and `roll` guarantee one segment at least.
        #[allow(clippy::expect_used)]
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Seals the active segment and starts a new one at the log end.
    pub fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let next = self.next_offset;
        let active = self.active();
        // Segments are named by base offset: one holding only entries
        // without records (Raft's empty entries) keeps being appended to.
        if active.is_empty() || active.base_offset() == next {
            return Ok(());
        }
        // The new segment first: when it cannot be created (a full disk)
        // the log stays as it was and the active segment stays writable.
        let seg =
            Segment::create(&dir, self.next_offset, Self::sizes(&self.config), now_ms).at(&dir)?;
        let active = self.active();
        if let Err(e) = active.seal() {
            let _ = seg.delete();
            return Err(e).at(&dir);
        }
        let file = active.file().clone();
        self.unsynced_sealed.push(file);
        // The directory is synced by the next sync plan, off the append path.
        self.dir_unsynced = true;
        self.segments.insert(self.next_offset, seg);
        Ok(())
    }

    /// Appends one validated batch as the leader: the log assigns its base
    /// offset and the next Raft index and stamps them with `term`.
    pub fn append(
        &mut self,
        batch_bytes: &[u8],
        term: u64,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        if batch_bytes.len() > self.config.max_message_bytes as usize {
            return Err(LogError::BatchTooLarge {
                size: batch_bytes.len(),
                max: self.config.max_message_bytes,
            });
        }
        let index = self.raft_last_index() + 1;
        self.append_entry(batch_bytes, term, index, now_ms)
    }

    fn segment_for(&self, offset: i64) -> Option<&Segment> {
        self.segments.range(..=offset).next_back().map(|(_, s)| s)
    }

    /// Whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (the first batch always) and below `max_offset` (the high
    /// watermark). Reading at the end returns nothing.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<ReadInfo, LogError> {
        self.read_with(offset, max_bytes, max_offset, true)
    }

    /// As `read`; with `first_whole` false, a first batch larger than
    /// `max_bytes` is not returned either.
    pub fn read_with(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        first_whole: bool,
    ) -> Result<ReadInfo, LogError> {
        if offset < self.log_start_offset || offset > self.next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.next_offset,
            });
        }
        let limit = max_offset.min(self.next_offset);
        let mut at = offset;
        while at < limit {
            let Some(seg) = self.segment_for(at) else {
                break;
            };
            match seg.find(at) {
                Some((pos, _)) => {
                    let (records, next) = seg.read_at(pos, max_bytes, limit, first_whole);
                    if records.is_empty() {
                        break;
                    }
                    return Ok(ReadInfo {
                        records,
                        next_offset: next,
                    });
                }
                // Offsets held only by empty batches: try the next segment.
                None => at = seg.next_offset().max(at + 1),
            }
        }
        Ok(ReadInfo {
            records: Bytes::new(),
            next_offset: offset,
        })
    }

    /// The first offset whose record timestamp is >= `target`, with that
    /// timestamp; `None` when every record is older.
    pub fn offset_for_timestamp(&self, target: i64) -> Result<Option<(i64, i64)>, LogError> {
        for seg in self.segments.values() {
            if seg.max_timestamp() < target {
                continue;
            }
            let mut found = seg.find_timestamp(target);
            while let Some((pos, h)) = found {
                let b = seg.batch_at(pos, &h);
                for r in batch::records(&b)? {
                    let r = r?;
                    if r.timestamp >= target && r.offset >= self.log_start_offset {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
                found = seg
                    .find(h.next_offset())
                    .filter(|(_, n)| n.max_timestamp >= target);
                if found.is_none() {
                    break;
                }
            }
        }
        Ok(None)
    }

    /// The first batch stamped with a term above `term`: its base offset
    /// and term, `None` when no batch is. Terms never decrease along the
    /// log, so this is a binary search over offsets that looks at one
    /// batch header per probe.
    pub fn first_batch_above_term(&self, term: u64) -> Option<(i64, u64)> {
        let (mut lo, mut hi) = (self.log_start_offset, self.next_offset);
        let mut found = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some((_, h)) = self.segment_for(mid).and_then(|s| s.find(mid)) else {
                break;
            };
            if h.raft_term > term {
                found = Some((h.base_offset, h.raft_term));
                hi = h.base_offset.min(mid);
            } else {
                lo = h.next_offset();
            }
        }
        found
    }

    /// The term stamped on the batch holding `offset`.
    pub fn term_at(&self, offset: i64) -> Option<u64> {
        if offset < self.log_start_offset {
            return None;
        }
        let (_, h) = self.segment_for(offset)?.find(offset)?;
        Some(h.raft_term)
    }

    /// The record with the largest timestamp (the first such record):
    /// its offset and timestamp; `None` for a log without records.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let mut best: Option<(&Segment, i64)> = None;
        for seg in self.segments.values() {
            let ts = seg.max_timestamp();
            if ts >= 0 && best.is_none_or(|(_, b)| ts > b) {
                best = Some((seg, ts));
            }
        }
        let Some((seg, max)) = best else {
            return Ok(None);
        };
        let mut found = seg.find_timestamp(max);
        while let Some((pos, h)) = found {
            let b = seg.batch_at(pos, &h);
            for r in batch::records(&b)? {
                let r = r?;
                if r.timestamp == max && r.offset >= self.log_start_offset {
                    return Ok(Some((r.offset, r.timestamp)));
                }
            }
            found = seg
                .find(h.next_offset())
                .filter(|(_, n)| n.max_timestamp >= max);
        }
        Ok(None)
    }

    /// The batches from `from` to the end of the sealed segment holding
    /// it, when that segment ends at or below `limit` (committed data).
    pub fn sealed_slice(&self, from: i64, limit: i64) -> Option<SealedSlice> {
        let seg = self.segment_for(from.max(self.log_start_offset))?;
        if !seg.is_sealed() || seg.next_offset() > limit || seg.next_offset() <= from {
            return None;
        }
        // From the batch spanning `from`, empty or not: the remote log
        // continues exactly where the local one is.
        let (pos, h) = seg.find_spanning(from.max(seg.base_offset()))?;
        let (data, _) = seg.read_at(pos, usize::MAX, i64::MAX, true);
        if data.is_empty() {
            return None;
        }
        let whole = pos == 0 && data.len() == seg.size();
        Some(SealedSlice {
            file: whole.then(|| {
                self.dir
                    .join(format!("{}.log", segment::file_stem(seg.base_offset())))
            }),
            data,
            base: h.base_offset,
            next: seg.next_offset(),
            max_ts: seg.max_timestamp(),
        })
    }

    /// Bytes of the batches from the one holding `offset` to the log end
    /// (the whole log when `offset` is below the start).
    pub fn bytes_from(&self, offset: i64) -> u64 {
        self.segments
            .values()
            .filter(|s| s.next_offset() > offset)
            .map(|s| match s.find(offset) {
                Some((pos, _)) if s.base_offset() <= offset => (s.size() - pos) as u64,
                _ => s.size() as u64,
            })
            .sum()
    }

    /// Whether the active segment is due for a time-based roll.
    pub fn roll_due(&self, now_ms: i64) -> bool {
        let Some(seg) = self.segments.values().next_back() else {
            return false;
        };
        !seg.is_empty()
            && self
                .config
                .segment_ms
                .is_some_and(|ms| now_ms - seg.created_ms() >= ms)
    }

    /// What to fsync to make everything appended so far durable.
    pub fn sync_plan(&mut self) -> SyncPlan {
        let mut files = std::mem::take(&mut self.unsynced_sealed);
        if let Some(seg) = self.segments.values().next_back() {
            files.push(seg.file().clone());
        }
        SyncPlan {
            files,
            dir: self.take_dir(),
            up_to: self.next_offset,
        }
    }

    fn take_dir(&mut self) -> Option<PathBuf> {
        std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone())
    }

    /// Records that a `SyncPlan` completed.
    pub fn mark_synced(&mut self, up_to: i64) {
        self.flushed = self.flushed.max(up_to.min(self.next_offset));
    }

    /// Persists the recovery point: a restart only re-checks data after it.
    ///
    /// No fsync: the recovery point only ever names data already synced, so
    /// a crash that loses (or tears) this file just means recovery checks
    /// more of the log.
    pub fn checkpoint_recovery_point(&self) -> Result<(), LogError> {
        checkpoint::overwrite_i64_relaxed(&self.dir.join(RECOVERY_POINT_FILE), self.flushed)
            .at(&self.dir)
    }

    /// Flushes everything and records the recovery point (clean shutdown).
    /// The active segment's indexes are synced too and a `clean-shutdown`
    /// marker written: the next open then trusts them and reads only the
    /// batches after the last index entry, without checking CRCs.
    pub fn close(&mut self) -> Result<(), LogError> {
        let plan = self.sync_plan();
        plan.run().at(&self.dir)?;
        self.mark_synced(plan.up_to);
        self.checkpoint_recovery_point()?;
        if let Some(seg) = self.segments.values().next_back() {
            seg.sync_indexes().at(&self.dir)?;
        }
        checkpoint::write_i64(&self.dir.join(CLEAN_SHUTDOWN_FILE), self.next_offset).at(&self.dir)
    }

    /// Visits the header of every batch from the log start on, without
    /// reading record data (used to rebuild producer state).
    pub fn scan_headers(&self, f: impl FnMut(&BatchHeader)) {
        self.scan_headers_from(i64::MIN, f);
    }

    /// Calls `f` with the header of every batch from offset `from` on (a
    /// batch boundary), in order: only the segments holding them are read.
    pub fn scan_headers_from(&self, from: i64, mut f: impl FnMut(&BatchHeader)) {
        for seg in self.segments.values() {
            if seg.next_offset() > from || seg.base_offset() >= from {
                seg.for_each_header_from(from, &mut f);
            }
        }
    }

    /// Base offset of the active segment: it changes when the log rolls.
    pub fn active_base(&self) -> i64 {
        self.segments.keys().next_back().copied().unwrap_or(0)
    }

    /// Whether sealed segments wait for an fsync.
    pub fn has_unsynced_sealed(&self) -> bool {
        !self.unsynced_sealed.is_empty() || self.dir_unsynced
    }

    /// What to fsync to make every sealed segment durable (not the active
    /// one): used by the `never` policy so that restarts re-check only the
    /// active segment.
    pub fn sealed_sync_plan(&mut self) -> SyncPlan {
        let files = std::mem::take(&mut self.unsynced_sealed);
        let up_to = self
            .segments
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.next_offset);
        SyncPlan {
            files,
            dir: self.take_dir(),
            up_to,
        }
    }

    /// Visits every batch (header and bytes) from `from` on.
    pub fn scan_batches(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader, &Bytes),
    ) -> Result<(), LogError> {
        let mut at = from.max(self.log_start_offset);
        while at < self.next_offset {
            let info = self.read(at, 8 << 20, self.next_offset)?;
            if info.records.is_empty() {
                break;
            }
            for b in batch::BatchIter::new(info.records) {
                let (h, bytes) = b?;
                f(&h, &bytes);
            }
            at = info.next_offset;
        }
        Ok(())
    }
}

mod compaction;
pub use compaction::CleanerState;
mod raft;
mod recovery;
mod retention;
#[cfg(test)]
mod tests;
