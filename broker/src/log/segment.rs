//! One segment: a `.log` file of whole record batches plus its sparse
//! `.index` and `.timeindex`, all named by the segment's zero-padded base
//! offset.
//!
//! The active segment is preallocated to `segment.bytes` and written with
//! positioned writes; every segment is read through one shared read-only map,
//! so fetches return zero-copy slices. Sealing trims the files to their
//! contents. Recovery scans batches (length, CRC, offset continuity), stops
//! at the first bad one and rebuilds the indexes (the `recovery` submodule).

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_proto::batch::{self, BatchHeader, HEADER_LEN};

use super::file::PooledFile;
use super::index::{IndexFile, OffsetEntry, TimeEntry};
use super::mmap::{self, SharedMap};

mod recovery;
pub use recovery::Recover;

/// Sizes a new or reopened segment uses.
#[derive(Clone, Copy, Debug)]
pub struct SegmentSizes {
    /// Preallocated size of an active `.log` file.
    pub capacity: usize,
    pub index_max_bytes: usize,
    pub index_interval_bytes: usize,
}

/// File name stem for a base offset.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What a recovery scan found.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScanResult {
    /// Bytes that held whole valid batches.
    pub valid_bytes: usize,
    /// Bytes dropped after them (torn or corrupt tail).
    pub truncated_bytes: usize,
    /// Bytes of batches read and checked (the rest was trusted).
    pub checked_bytes: usize,
}

pub struct Segment {
    base_offset: i64,
    dir: PathBuf,
    file: PooledFile,
    map: Option<SharedMap>,
    capacity: usize,
    size: usize,
    next_offset: i64,
    first_raft_index: Option<u64>,
    last_raft: (u64, u64),
    max_timestamp: i64,
    first_timestamp: Option<i64>,
    offset_index: IndexFile<OffsetEntry>,
    time_index: IndexFile<TimeEntry>,
    bytes_since_index: usize,
    sizes: SegmentSizes,
    sealed: bool,
    created_ms: i64,
}

impl Segment {
    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        let s = file_stem(base);
        (
            dir.join(format!("{s}.log")),
            dir.join(format!("{s}.index")),
            dir.join(format!("{s}.timeindex")),
        )
    }

    /// Creates an empty active segment. On failure (a full disk) no file of
    /// it is left behind.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        sizes: SegmentSizes,
        now_ms: i64,
    ) -> io::Result<Self> {
        Self::try_create(dir, base_offset, sizes, now_ms).inspect_err(|_| {
            for p in <[PathBuf; 3]>::from(Self::paths(dir, base_offset)) {
                let _ = std::fs::remove_file(p);
            }
        })
    }

    fn try_create(
        dir: &Path,
        base_offset: i64,
        sizes: SegmentSizes,
        now_ms: i64,
    ) -> io::Result<Self> {
        let (log, idx, tidx) = Self::paths(dir, base_offset);
        let file = PooledFile::create(&log)?;
        let f = file.get()?;
        f.set_len(sizes.capacity as u64)?;
        let map = SharedMap::new(mmap::map_read(&f, sizes.capacity)?);
        Ok(Self {
            base_offset,
            dir: dir.to_owned(),
            file,
            map: Some(map),
            capacity: sizes.capacity,
            size: 0,
            next_offset: base_offset,
            first_raft_index: None,
            last_raft: (0, 0),
            max_timestamp: -1,
            first_timestamp: None,
            offset_index: IndexFile::create(&idx, sizes.index_max_bytes)?,
            time_index: IndexFile::create(&tidx, sizes.index_max_bytes)?,
            bytes_since_index: 0,
            sizes,
            sealed: false,
            created_ms: now_ms,
        })
    }

    fn data(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m.as_slice()[..self.size],
            None => &[],
        }
    }

    /// The header of the batch at `pos`, if a plausible one is there.
    fn header_at(&self, pos: usize) -> Option<BatchHeader> {
        let d = self.data();
        let end = d.len().min(pos.checked_add(HEADER_LEN)?);
        let h = batch::parse_header(d.get(pos..end)?).ok()?;
        if pos + h.total_len() > d.len() {
            return None;
        }
        Some(h)
    }

    fn note_batch(&mut self, h: &BatchHeader) {
        self.next_offset = h.next_offset();
        self.last_raft = (h.raft_term, h.raft_index);
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        if self.first_raft_index.is_none() {
            self.first_raft_index = Some(h.raft_index);
            self.first_timestamp = Some(h.max_timestamp);
        }
    }

    /// Adds index entries for the batch at `pos` if the interval is due.
    /// False if an index is full.
    fn index_batch(&mut self, pos: usize, h: &BatchHeader) -> bool {
        let first = self.size_is_zero_at(pos);
        if first || self.bytes_since_index >= self.sizes.index_interval_bytes {
            let rel_raft = h
                .raft_index
                .saturating_sub(self.first_raft_index.unwrap_or(h.raft_index));
            let entry = OffsetEntry {
                rel_offset: (h.base_offset - self.base_offset) as u32,
                rel_raft_index: rel_raft.min(u64::from(u32::MAX)) as u32,
                position: pos as u32,
            };
            if !self.offset_index.push(entry) {
                return false;
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len();
        if h.records_count > 0 && h.max_timestamp > self.max_timestamp {
            let t = TimeEntry {
                timestamp: h.max_timestamp,
                rel_offset: (h.base_offset - self.base_offset) as u32,
            };
            let replace_last = self
                .time_index
                .last()
                .is_some_and(|l| l.rel_offset == t.rel_offset);
            if replace_last {
                let n = self.time_index.len();
                self.time_index.truncate_entries(n - 1);
            }
            if !self.time_index.push(t) {
                return false;
            }
        }
        true
    }

    fn size_is_zero_at(&self, pos: usize) -> bool {
        pos == 0
    }

    /// Turns a segment that was opened sealed into the active one:
    /// re-extends the file to its capacity and reopens the indexes for
    /// appends.
    pub fn reactivate(&mut self) -> io::Result<()> {
        if !self.sealed {
            return Ok(());
        }
        let cap = self.sizes.capacity.max(self.size);
        // Growing a file never invalidates existing maps.
        let f = self.file.get()?;
        f.set_len(cap as u64)?;
        self.map = Some(SharedMap::new(mmap::map_read(&f, cap)?));
        self.capacity = cap;
        self.offset_index.unseal(self.sizes.index_max_bytes)?;
        self.time_index.unseal(self.sizes.index_max_bytes)?;
        // Restart the interval so that the next batch gets an entry.
        self.bytes_since_index = self.sizes.index_interval_bytes;
        self.sealed = false;
        Ok(())
    }

    /// Makes the index entries written so far durable.
    pub fn sync_indexes(&self) -> io::Result<()> {
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// For the active segment after a restart: one whose batches carry no
    /// timestamp yet counts as created now, not in 1970 (which would make
    /// every restart roll it at the first append).
    pub fn created_no_later_than(&mut self, now_ms: i64) {
        if self.created_ms <= 0 {
            self.created_ms = now_ms;
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> usize {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }
    pub fn last_raft(&self) -> (u64, u64) {
        self.last_raft
    }
    pub fn first_raft_index(&self) -> Option<u64> {
        self.first_raft_index
    }
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }
    pub fn file(&self) -> &PooledFile {
        &self.file
    }

    /// Whether appending `len` more bytes at `offset` needs a new segment.
    pub fn needs_roll(
        &self,
        len: usize,
        next_offset_after: i64,
        now_ms: i64,
        segment_ms: Option<i64>,
    ) -> bool {
        if self.size == 0 {
            return false;
        }
        self.size + len > self.sizes.capacity
            || self.offset_index.is_full()
            || self.time_index.is_full()
            || next_offset_after - self.base_offset > i64::from(u32::MAX)
            || self.size + len > u32::MAX as usize
            || segment_ms.is_some_and(|ms| now_ms - self.created_ms >= ms)
    }

    /// Appends one stamped batch given as consecutive parts (a stamped
    /// header prefix and the untouched rest, so no batch is copied).
    pub fn append(&mut self, parts: &[&[u8]], h: &BatchHeader, now_ms: i64) -> io::Result<()> {
        debug_assert!(!self.sealed);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let end = self.size + len;
        let f = self.file.get()?;
        if end > self.capacity {
            // Only an oversized first batch gets here: grow the file.
            f.set_len(end as u64)?;
            self.map = Some(SharedMap::new(mmap::map_read(&f, end)?));
            self.capacity = end;
        }
        let mut at = self.size as u64;
        for p in parts {
            f.write_all_at(p, at)?;
            at += p.len() as u64;
        }
        if self.size == 0 {
            self.created_ms = now_ms;
        }
        let pos = self.size;
        // An index that is full was checked by needs_roll; ignore here.
        let _indexed = self.index_batch(pos, h);
        self.note_batch(h);
        self.size = end;
        Ok(())
    }

    /// Visits every batch header in file order.
    pub fn for_each_header(&self, f: &mut impl FnMut(&BatchHeader)) {
        self.for_each_header_from(i64::MIN, f);
    }

    /// Like [`Self::for_each_header`] for the batches from offset `from`
    /// on, starting at the last indexed batch below it (empty batches
    /// share the offset of the batch after them). Only the header pages
    /// are read: no read-around while walking (advice only: a failure to
    /// give it changes nothing but speed).
    pub fn for_each_header_from(&self, from: i64, f: &mut impl FnMut(&BatchHeader)) {
        if let Some(m) = &self.map {
            let _ = m.read_only_touched(true);
        }
        self.walk_headers_from(from, f);
        if let Some(m) = &self.map {
            let _ = m.read_only_touched(false);
        }
    }

    fn walk_headers_from(&self, from: i64, f: &mut impl FnMut(&BatchHeader)) {
        let mut pos = if from > self.base_offset {
            let rel = (from - self.base_offset - 1).min(i64::from(u32::MAX)) as u32;
            self.offset_index
                .floor_by(&rel, |e| e.rel_offset)
                .map_or(0, |e| e.position as usize)
        } else {
            0
        };
        while let Some(h) = self.header_at(pos) {
            if h.base_offset >= from {
                f(&h);
            }
            pos += h.total_len();
        }
    }

    /// Position and header of the batch containing `offset`, or of the
    /// first batch with records after it.
    pub fn find(&self, offset: i64) -> Option<(usize, BatchHeader)> {
        self.find_batch(offset, true)
    }

    /// Position and header of the batch spanning `offset`, even an empty
    /// one (compaction leaves them: they keep the offsets contiguous).
    pub fn find_spanning(&self, offset: i64) -> Option<(usize, BatchHeader)> {
        self.find_batch(offset, false)
    }

    fn find_batch(&self, offset: i64, with_records: bool) -> Option<(usize, BatchHeader)> {
        if offset < self.base_offset || offset >= self.next_offset {
            return None;
        }
        let rel = (offset - self.base_offset) as u32;
        let mut pos = self
            .offset_index
            .floor_by(&rel, |e| e.rel_offset)
            .map_or(0, |e| e.position as usize);
        while let Some(h) = self.header_at(pos) {
            if h.next_offset() > offset && (h.records_count > 0 || !with_records) {
                return Some((pos, h));
            }
            pos += h.total_len();
        }
        None
    }

    /// Visits whole batches from byte `pos` in file order until `f`
    /// returns false.
    pub fn batches_from(&self, mut pos: usize, mut f: impl FnMut(&BatchHeader, Bytes) -> bool) {
        while let Some(h) = self.header_at(pos) {
            let b = self.batch_at(pos, &h);
            if !f(&h, b) {
                return;
            }
            pos += h.total_len();
        }
    }

    /// Position and header of the batch with Raft index `index`.
    pub fn find_raft_index(&self, index: u64) -> Option<(usize, BatchHeader)> {
        let first = self.first_raft_index?;
        if index < first {
            return None;
        }
        let rel = (index - first).min(u64::from(u32::MAX)) as u32;
        let mut pos = self
            .offset_index
            .floor_by(&rel, |e| e.rel_raft_index)
            .map_or(0, |e| e.position as usize);
        while let Some(h) = self.header_at(pos) {
            if h.raft_index == index {
                return Some((pos, h));
            }
            if h.raft_index > index {
                return None;
            }
            pos += h.total_len();
        }
        None
    }

    /// Whole batches from `pos` while the total stays within `max_bytes`
    /// (the first one even beyond it when `first_whole`) and their offsets
    /// stay below `max_offset`. Returns the bytes and the offset after the
    /// last batch.
    pub fn read_at(
        &self,
        pos: usize,
        max_bytes: usize,
        max_offset: i64,
        first_whole: bool,
    ) -> (Bytes, i64) {
        let mut end = pos;
        let mut next = -1;
        while let Some(h) = self.header_at(end) {
            if h.next_offset() > max_offset && h.records_count > 0 {
                break;
            }
            if (end > pos || !first_whole) && end - pos + h.total_len() > max_bytes {
                break;
            }
            end += h.total_len();
            next = h.next_offset();
        }
        match (&self.map, end > pos) {
            (Some(m), true) => (m.slice(pos, end), next),
            _ => (Bytes::new(), next),
        }
    }

    /// The first batch at or after the time index entry below `target` whose
    /// max timestamp reaches `target`.
    pub fn find_timestamp(&self, target: i64) -> Option<(usize, BatchHeader)> {
        if self.max_timestamp < target {
            return None;
        }
        let start_rel = self
            .time_index
            .floor_by(&target.saturating_sub(1), |e| e.timestamp)
            .map(|e| e.rel_offset);
        let mut pos = match start_rel {
            Some(rel) => self
                .offset_index
                .floor_by(&rel, |e| e.rel_offset)
                .map_or(0, |e| e.position as usize),
            None => 0,
        };
        while let Some(h) = self.header_at(pos) {
            if h.records_count > 0 && h.max_timestamp >= target {
                return Some((pos, h));
            }
            pos += h.total_len();
        }
        None
    }

    /// Every batch of the segment: a zero-copy view of its map.
    pub fn all_batches(&self) -> Bytes {
        match &self.map {
            Some(m) => m.slice(0, self.size),
            None => Bytes::new(),
        }
    }

    /// The bytes of one batch at `pos` (as found by `find*`).
    pub fn batch_at(&self, pos: usize, h: &BatchHeader) -> Bytes {
        match &self.map {
            Some(m) => m.slice(pos, pos + h.total_len()),
            None => Bytes::new(),
        }
    }

    /// Drops every batch from byte `pos` on (a batch boundary). Bytes are
    /// zeroed on disk rather than cut, so live maps stay valid.
    pub fn truncate_at(&mut self, pos: usize) -> io::Result<()> {
        if pos >= self.size {
            return Ok(());
        }
        self.reactivate()?;
        let zeros = vec![0u8; (self.size - pos).min(1 << 20)];
        let mut at = pos;
        while at < self.size {
            let n = zeros.len().min(self.size - at);
            self.file.get()?.write_all_at(&zeros[..n], at as u64)?;
            at += n;
        }
        let keep = (0..self.offset_index.len())
            .take_while(|i| {
                self.offset_index
                    .get(*i)
                    .is_some_and(|e| (e.position as usize) < pos)
            })
            .count();
        self.offset_index.truncate_entries(keep);
        self.size = pos;
        let limit = self.offset_index.last().map_or(0, |e| e.rel_offset);
        let keep_t = (0..self.time_index.len())
            .take_while(|i| {
                self.time_index
                    .get(*i)
                    .is_some_and(|e| e.rel_offset <= limit)
            })
            .count();
        self.time_index.truncate_entries(keep_t);
        // Recompute the end state from the last remaining index entry.
        self.next_offset = self.base_offset;
        self.last_raft = (0, 0);
        self.max_timestamp = self.time_index.last().map_or(-1, |t| t.timestamp);
        if pos == 0 {
            self.first_raft_index = None;
            self.first_timestamp = None;
        }
        let mut p = self.offset_index.last().map_or(0, |e| e.position as usize);
        let mut since = 0usize;
        while let Some(h) = self.header_at(p) {
            if h.records_count > 0 && h.max_timestamp > self.max_timestamp {
                self.time_index.push(TimeEntry {
                    timestamp: h.max_timestamp,
                    rel_offset: (h.base_offset - self.base_offset) as u32,
                });
            }
            self.note_batch(&h);
            since += h.total_len();
            p += h.total_len();
        }
        self.bytes_since_index = since;
        Ok(())
    }

    /// Flushes written data to disk (data only; indexes are rebuilt after a
    /// crash).
    pub fn sync(&self) -> io::Result<()> {
        self.file.get()?.sync_data()
    }

    /// Makes the segment read-only: trims the `.log` to its contents (the map
    /// only ever exposes bytes below the size) and trims the indexes.
    pub fn seal(&mut self) -> io::Result<()> {
        if self.sealed {
            return Ok(());
        }
        self.file.get()?.set_len(self.size as u64)?;
        self.capacity = self.size;
        self.offset_index.seal()?;
        self.time_index.seal()?;
        self.sealed = true;
        Ok(())
    }

    /// Removes the segment's files. Live maps keep reading the unlinked data.
    pub fn delete(self) -> io::Result<()> {
        let (log, idx, tidx) = Self::paths(&self.dir, self.base_offset);
        for p in [log, idx, tidx] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
