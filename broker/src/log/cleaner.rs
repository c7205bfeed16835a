//! Log compaction, the pass itself: given the sealed, committed segments of
//! a log (a [`CompactionPlan`], taken under the partition lock), build a
//! map from key to the offset of its latest record over the dirty part,
//! then rewrite every segment below the map's end keeping only the records
//! the map says are latest, into `.cleaned` files beside the old segments.
//! Installing them is the log's (`Log::install_cleaned`).
//!
//! What a pass keeps:
//! - every batch: a batch whose records all go stays as an empty batch, so
//!   the log's offsets and Raft indexes stay contiguous and every replica
//!   can serve any entry it holds;
//! - control batches as they are;
//! - a keyed record unless a later record of its key lies in the map's
//!   range; records without a key;
//! - a tombstone (a null value) that is its key's latest until it is older
//!   than `delete.retention.ms`.
//!
//! The pass is deterministic: the same segments, map size and clock give
//! the same bytes. Nothing here runs under the partition lock; readers keep
//! reading the old segments until the new ones are installed, and the old
//! maps stay valid for as long as a fetch holds their bytes.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_proto::batch::{self, BatchHeader, BatchIter};

use super::segment::file_stem;

/// Suffix of a cleaned segment being written (deleted by recovery).
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment committed to replace the segments it covers
/// (completed by recovery).
pub const SWAP_SUFFIX: &str = ".swap";
/// Bytes of memory one key of the offset map takes (hash, offset and the
/// table's own overhead).
pub const MAP_BYTES_PER_KEY: usize = 32;

/// One sealed segment as a pass reads it.
#[derive(Clone, Debug)]
pub struct SegmentView {
    pub base: i64,
    pub next: i64,
    /// All of its batches: a zero-copy view of the segment's map.
    pub data: Bytes,
}

/// What one pass works on.
#[derive(Clone, Debug)]
pub struct CompactionPlan {
    pub dir: PathBuf,
    /// Every cleanable segment, from the first on, in offset order.
    pub segments: Vec<SegmentView>,
    /// Everything below this was cleaned by an earlier pass.
    pub first_dirty: i64,
    /// The offset after the last cleanable segment.
    pub end: i64,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// Largest size of a cleaned segment (adjacent small segments merge).
    pub segment_bytes: u64,
}

/// A cleaned segment written beside the ones it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanedSegment {
    /// Its base offset: the first replaced segment's.
    pub base: i64,
    /// Base offset and size of each segment it replaces.
    pub replaces: Vec<(i64, usize)>,
    pub path: PathBuf,
    pub size: usize,
}

/// What a pass did.
#[derive(Clone, Debug, Default)]
pub struct PassOutcome {
    pub cleaned: Vec<CleanedSegment>,
    /// The offset the next pass's dirty part starts at.
    pub cleaned_to: i64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub keys: usize,
    /// When the first tombstone the pass kept becomes removable (a pass
    /// is due then, dirty or not).
    pub tombstones_expire_ms: Option<i64>,
}

/// A key's fingerprint: two independent 64-bit hashes (a collision, which
/// would drop a record, takes some 2^64 keys to become likely).
type KeyHash = u128;

fn key_hash(key: &[u8]) -> KeyHash {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Hashes a key that already is a hash: takes its low bits.
#[derive(Default)]
struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Key → offset of its latest record, holding at most `capacity` keys.
pub struct OffsetMap {
    map: HashMap<KeyHash, i64, BuildHasherDefault<Passthrough>>,
    capacity: usize,
}

impl OffsetMap {
    /// A map that fits in `memory` bytes (a thousand keys at least).
    pub fn with_memory(memory: usize) -> Self {
        Self::with_capacity((memory / MAP_BYTES_PER_KEY).max(1000))
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            map: HashMap::default(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Keys that can still be added for sure.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.map.len())
    }

    fn put(&mut self, key: &[u8], offset: i64) {
        self.map.insert(key_hash(key), offset);
    }

    /// Offset of the latest record of `key` in the mapped range.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&key_hash(key)).copied()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

/// Records of the non-control batches of a segment (an upper bound of the
/// keys it adds to a map).
fn record_count(data: &Bytes) -> usize {
    headers(data)
        .filter(|h| !h.is_control())
        .map(|h| h.records_count.max(0) as usize)
        .sum()
}

/// The headers of the batches in `data` (stored, so already checked).
fn headers(data: &Bytes) -> impl Iterator<Item = BatchHeader> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = batch::parse_header(data.get(pos..)?).ok()?;
        if pos + h.total_len() > data.len() {
            return None;
        }
        pos += h.total_len();
        Some(h)
    })
}

/// Adds the keyed records of the batches in `data` from offset `from` on
/// and below `until` to the map; stops early when the map is full. Returns
/// the offset up to which the map covers.
fn map_batches(map: &mut OffsetMap, data: &Bytes, from: i64, until: i64) -> i64 {
    for item in BatchIter::new(data.clone()) {
        let Ok((h, b)) = item else {
            break;
        };
        if h.is_control() || h.next_offset() <= from {
            continue;
        }
        if h.base_offset >= until {
            return until;
        }
        if map.room() < h.records_count.max(0) as usize {
            return h.base_offset;
        }
        if let Ok(records) = batch::records(&b) {
            for r in records.flatten() {
                if let Some(k) = &r.key
                    && r.offset >= from
                {
                    map.put(k, r.offset);
                }
            }
        }
    }
    until
}

/// Maps the keyed records of one dirty segment from `first_dirty` on and
/// below `end`. Returns the offset the map covers up to and whether the
/// whole segment fitted (so that the next one may be mapped too).
pub fn map_segment(
    map: &mut OffsetMap,
    seg: &SegmentView,
    first_dirty: i64,
    end: i64,
) -> (i64, bool) {
    let whole = record_count(&seg.data) <= map.room();
    let reached = map_batches(map, &seg.data, first_dirty, end);
    let covered = if whole { seg.next } else { reached };
    (covered.min(end), whole && covered >= seg.next)
}

/// Builds the map over the dirty part of the plan: whole segments while
/// they surely fit, then as much of the next one as fits. Returns the
/// offset the map covers up to (the pass's end).
pub fn build_map(
    plan: &CompactionPlan,
    map: &mut OffsetMap,
    throttle: &mut dyn FnMut(usize),
) -> i64 {
    map.clear();
    let mut covered = plan.first_dirty;
    for seg in plan.segments.iter().filter(|s| s.next > plan.first_dirty) {
        throttle(seg.data.len());
        let (reached, go_on) = map_segment(map, seg, plan.first_dirty, plan.end);
        covered = reached;
        if !go_on {
            break;
        }
    }
    covered.min(plan.end)
}

/// What a pass keeps, given the map over its dirty part.
pub struct CleanRules<'a> {
    pub map: &'a OffsetMap,
    /// The map covers `[first_dirty, map_end)`: records from here on stay.
    pub map_end: i64,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
}

impl CleanRules<'_> {
    /// Whether the record stays.
    fn keeps(&self, r: &batch::RecordView<'_>) -> bool {
        if r.offset >= self.map_end {
            return true;
        }
        let Some(key) = r.key else {
            return true;
        };
        if self.map.latest(key).is_some_and(|latest| r.offset < latest) {
            return false;
        }
        !(r.tombstone && self.tombstone_expiry(r) <= self.now_ms)
    }

    /// When a tombstone may go: `delete.retention.ms` after its timestamp.
    fn tombstone_expiry(&self, r: &batch::RecordView<'_>) -> i64 {
        r.timestamp.saturating_add(self.delete_retention_ms)
    }

    /// Writes the batches of `data` (a segment's), each cleaned, to `out`;
    /// adds what went and the earliest expiry of a kept tombstone to
    /// `outcome`. Returns the bytes written and whether any batch changed.
    pub fn clean_segment(
        &self,
        data: &Bytes,
        out: &mut impl Write,
        outcome: &mut PassOutcome,
    ) -> io::Result<(usize, bool)> {
        let (mut written, mut changed) = (0usize, false);
        for item in BatchIter::new(data.clone()) {
            let (h, b) = item.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let cleaned = if h.is_control() {
                None
            } else {
                let mut removed = 0u64;
                let mut expiry = outcome.tombstones_expire_ms;
                let r = batch::retain(&b, |r| {
                    let keep = self.keeps(r);
                    removed += u64::from(!keep);
                    if keep && r.tombstone && r.offset < self.map_end {
                        let at = self.tombstone_expiry(r);
                        expiry = Some(expiry.map_or(at, |e| e.min(at)));
                    }
                    keep
                });
                outcome.tombstones_expire_ms = expiry;
                // Records that do not decode stay as they are.
                let r = r.ok().flatten();
                if r.is_some() {
                    outcome.records_removed += removed;
                }
                r
            };
            let bytes = cleaned.as_ref().unwrap_or(&b);
            changed |= cleaned.is_some();
            out.write_all(bytes)?;
            written += bytes.len();
        }
        Ok((written, changed))
    }
}

/// One cleaned file being written.
struct Output {
    base: i64,
    replaces: Vec<(i64, usize)>,
    path: PathBuf,
    out: BufWriter<File>,
    size: usize,
    changed: bool,
}

impl Output {
    fn create(dir: &Path, base: i64) -> io::Result<Self> {
        let path = dir.join(format!("{}{CLEANED_SUFFIX}", file_stem(base)));
        let file = File::create(&path)?;
        Ok(Self {
            base,
            replaces: Vec::new(),
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            size: 0,
            changed: false,
        })
    }

    /// Makes the file durable; `None` (and no file) when it would only copy
    /// a single segment unchanged.
    fn finish(self) -> io::Result<Option<CleanedSegment>> {
        if !self.changed && self.replaces.len() == 1 {
            drop(self.out);
            std::fs::remove_file(&self.path)?;
            return Ok(None);
        }
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        Ok(Some(CleanedSegment {
            base: self.base,
            replaces: self.replaces,
            path: self.path,
            size: self.size,
        }))
    }
}

/// Runs one pass: the map, then the cleaned segments. `throttle` is told
/// every stretch of bytes read or written (the caller's I/O rate cap).
/// On an error every file the pass wrote is removed.
pub fn run_pass(
    plan: &CompactionPlan,
    map: &mut OffsetMap,
    throttle: &mut dyn FnMut(usize),
) -> io::Result<PassOutcome> {
    let map_end = build_map(plan, map, throttle);
    let mut outcome = PassOutcome {
        cleaned_to: map_end,
        keys: map.len(),
        bytes_read: plan
            .segments
            .iter()
            .filter(|s| s.next > plan.first_dirty)
            .map(|s| s.data.len() as u64)
            .sum(),
        ..PassOutcome::default()
    };
    let result = write_cleaned(plan, map, map_end, throttle, &mut outcome);
    if result.is_err() {
        for c in &outcome.cleaned {
            let _ = std::fs::remove_file(&c.path);
        }
    }
    result.map(|()| outcome)
}

fn write_cleaned(
    plan: &CompactionPlan,
    map: &OffsetMap,
    map_end: i64,
    throttle: &mut dyn FnMut(usize),
    outcome: &mut PassOutcome,
) -> io::Result<()> {
    let rules = CleanRules {
        map,
        map_end,
        now_ms: plan.now_ms,
        delete_retention_ms: plan.delete_retention_ms,
    };
    let mut current: Option<Output> = None;
    for seg in plan.segments.iter().filter(|s| s.base < map_end) {
        let fits = current.as_ref().is_some_and(|o| {
            (o.size + seg.data.len()) as u64 <= plan.segment_bytes
                && seg.next - o.base <= i64::from(u32::MAX)
        });
        if !fits && let Some(done) = current.take() {
            outcome.cleaned.extend(done.finish()?);
        }
        let o = match &mut current {
            Some(o) => o,
            None => current.insert(Output::create(&plan.dir, seg.base)?),
        };
        o.replaces.push((seg.base, seg.data.len()));
        throttle(seg.data.len());
        let (written, changed) = rules.clean_segment(&seg.data, &mut o.out, outcome)?;
        o.size += written;
        o.changed |= changed;
    }
    if let Some(done) = current.take() {
        outcome.cleaned.extend(done.finish()?);
    }
    outcome.bytes_written = outcome.cleaned.iter().map(|c| c.size as u64).sum();
    Ok(())
}

#[cfg(test)]
mod tests;
