//! Opening a segment found on disk: trusting its indexes when their shape
//! is sane, or scanning its batches (length, CRC, offset and Raft index
//! continuity) to find the valid end and rebuild both indexes. A scan
//! starts where the data is known synced (the recovery point), found
//! through the on-disk indexes, so that a restart reads the unsynced tail
//! of the active segment rather than all of it.

use std::io;
use std::path::Path;

use strata_proto::batch::{self, BatchHeader};

use super::{ScanResult, Segment, SegmentSizes};
use crate::log::file::PooledFile;
use crate::log::index::{IndexFile, OffsetEntry, TimeEntry};
use crate::log::mmap::{self, SharedMap};

/// Bytes after a segment's valid end checked for torn-write garbage.
const TAIL_CHECK_BYTES: usize = 1 << 20;
/// The unit in which a file's data and holes are told apart.
const PAGE: usize = 4096;

/// What is known of a segment found on disk that may have been torn.
#[derive(Debug, Clone, Copy)]
pub struct Recover {
    /// Every batch below this offset is known intact (synced, or written
    /// in this boot).
    pub synced_below: i64,
    /// The indexes are as written (synced at a clean stop, or in the page
    /// cache of this boot): every entry is trusted, not only those below
    /// the last time entry.
    pub indexes_intact: bool,
    /// Whether the batches after the resume point are CRC-checked (not
    /// after a clean stop, which synced them).
    pub check_crc: bool,
}

/// A scan's starting point inside a segment: the batch at `position` and
/// the index entries and state of everything before it.
struct Resume {
    position: usize,
    next_offset: i64,
    /// Raft index and max timestamp of the segment's first batch.
    first: (u64, i64),
    max_timestamp: i64,
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
}

impl Segment {
    /// Opens a segment found on disk. With `recover` (the recovery point:
    /// every batch below it was synced), the batches from the last indexed
    /// one at or below the recovery point on are checked and the file is
    /// cut after the last good one; otherwise the file and its indexes are
    /// trusted if their shape is sane (and the indexes are rebuilt if not).
    /// The segment comes back sealed.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        sizes: SegmentSizes,
        recover: Option<Recover>,
    ) -> io::Result<(Self, ScanResult)> {
        let (log, idx, tidx) = Self::paths(dir, base_offset);
        let file = PooledFile::open(&log)?;
        let f = file.get()?;
        let len = f.metadata()?.len() as usize;
        let map = if len > 0 {
            Some(SharedMap::new(mmap::map_read(&f, len)?))
        } else {
            None
        };
        let mut seg = Self {
            base_offset,
            dir: dir.to_owned(),
            file,
            map,
            capacity: len,
            size: len,
            next_offset: base_offset,
            first_raft_index: None,
            last_raft: (0, 0),
            max_timestamp: -1,
            first_timestamp: None,
            offset_index: IndexFile::open_sealed(&idx).or_else(|_| IndexFile::create(&idx, 0))?,
            time_index: IndexFile::open_sealed(&tidx).or_else(|_| IndexFile::create(&tidx, 0))?,
            bytes_since_index: 0,
            sizes,
            sealed: true,
            created_ms: 0,
        };
        let mut scan = ScanResult {
            valid_bytes: len,
            ..ScanResult::default()
        };
        // Opening reads a few headers and index pages: no read-around (it
        // would read, or zero-fill in sparse files, megabytes per segment).
        // A scan of the whole segment reads ahead as usual.
        if let Some(m) = &seg.map {
            m.read_only_touched(true)?;
        }
        if recover.is_none() {
            seg.load_tail_state();
        }
        let sane = recover.is_none() && seg.indexes_look_sane();
        if sane {
            if let Some(t) = seg.time_index.last() {
                seg.max_timestamp = seg.max_timestamp.max(t.timestamp);
            }
        } else {
            if !mmap::has_data_from(&f, 0)? {
                // Preallocated and never written: nothing to read.
                seg.size = 0;
            }
            // The resume point is found from a few pages, and from it only
            // a short tail is read.
            let resume = recover.and_then(|r| seg.resume_point(r));
            // The scan from there on reads sequentially.
            if let Some(m) = &seg.map {
                m.read_only_touched(false)?;
            }
            let check_crc = recover.is_some_and(|r| r.check_crc);
            scan = seg.rebuild(check_crc, resume)?;
            if scan.truncated_bytes > 0 {
                // No map is shared yet: shrink and remap to the valid prefix.
                seg.map = None;
                f.set_len(scan.valid_bytes as u64)?;
                seg.capacity = scan.valid_bytes;
                if scan.valid_bytes > 0 {
                    seg.map = Some(SharedMap::new(mmap::map_read(&f, scan.valid_bytes)?));
                }
            }
        }
        if let Some(m) = &seg.map {
            m.read_only_touched(false)?;
        }
        // Raft no-ops are stamped 0 (every replica stores the same bytes),
        // so the first batch's timestamp may say nothing: the first
        // indexed time that is set stands for the segment's creation.
        seg.created_ms = seg
            .first_timestamp
            .filter(|t| *t > 0)
            .or_else(|| {
                (0..seg.time_index.len())
                    .map_while(|i| seg.time_index.get(i))
                    .map(|t| t.timestamp)
                    .find(|t| *t > 0)
            })
            .unwrap_or(0);
        Ok((seg, scan))
    }

    /// Whether a sealed segment's indexes can be used as they are: entries
    /// in strict order, inside the file, and the first and last pointing at
    /// the batches they name. Only the indexes and two batch headers are
    /// read: checking every entry against its batch would read the whole
    /// segment from disk at every start.
    fn indexes_look_sane(&self) -> bool {
        let mut prev: Option<OffsetEntry> = None;
        for i in 0..self.offset_index.len() {
            let Some(e) = self.offset_index.get(i) else {
                return false;
            };
            let ordered = match prev {
                None => e.position == 0,
                // Empty batches (Raft no-ops) share the next batch's offset.
                Some(p) => e.rel_offset >= p.rel_offset && e.position > p.position,
            };
            if !ordered || e.position as usize >= self.size {
                return false;
            }
            prev = Some(e);
        }
        for e in [self.offset_index.get(0), prev].into_iter().flatten() {
            let names_its_batch = self
                .header_at(e.position as usize)
                .is_some_and(|h| h.base_offset == self.base_offset + i64::from(e.rel_offset));
            if !names_its_batch {
                return false;
            }
        }
        let mut prev_ts = i64::MIN;
        let span = self.next_offset - self.base_offset;
        for i in 0..self.time_index.len() {
            let Some(t) = self.time_index.get(i) else {
                return false;
            };
            if t.timestamp < prev_ts || i64::from(t.rel_offset) >= span {
                return false;
            }
            prev_ts = t.timestamp;
        }
        self.size == 0 || !self.offset_index.is_empty()
    }

    /// Walks the batches after the last index entry to learn the segment's
    /// end state (next offset, Raft position, max timestamp).
    fn load_tail_state(&mut self) {
        if let Some(h) = self.header_at(0) {
            self.first_raft_index = Some(h.raft_index);
            self.first_timestamp = Some(h.max_timestamp);
        }
        let mut pos = self.offset_index.last().map_or(0, |e| e.position as usize);
        while let Some(h) = self.header_at(pos) {
            self.note_batch(&h);
            pos += h.total_len();
        }
    }

    /// Where a scan of this segment may start when every batch below
    /// offset `synced_below` is known to be on disk: at the last batch the
    /// offset index points to that starts at or below it. Only the indexes
    /// and two batch headers are read (not the data before that batch).
    ///
    /// The indexes are not synced with the data, so after a machine crash
    /// their tails may be lost: a lost page reads as zeros, which breaks
    /// the strict order every entry keeps and ends the trusted prefix, and
    /// the time index is only trusted below its last entry (entries after
    /// it may have been lost without a trace). `None`: scan from the start.
    fn resume_point(&self, recover: Recover) -> Option<Resume> {
        let synced_below = recover.synced_below;
        let first = self.header_at(0)?;
        if first.base_offset != self.base_offset {
            return None;
        }
        let offsets: Vec<OffsetEntry> = (0..self.offset_index.len())
            .map_while(|i| self.offset_index.get(i))
            .enumerate()
            .scan(None::<OffsetEntry>, |prev, (i, e)| {
                let ordered = match prev {
                    None => i == 0 && e.position == 0 && e.rel_offset == 0,
                    // Empty batches (Raft no-ops) share the next offset.
                    Some(p) => e.rel_offset >= p.rel_offset && e.position > p.position,
                };
                *prev = Some(e);
                ordered.then_some(e)
            })
            .collect();
        let times: Vec<TimeEntry> = (0..self.time_index.len())
            .map_while(|i| self.time_index.get(i))
            .scan(None::<TimeEntry>, |prev, t| {
                let ordered =
                    prev.is_none_or(|p| t.rel_offset > p.rel_offset && t.timestamp > p.timestamp);
                *prev = Some(t);
                ordered.then_some(t)
            })
            .collect();
        // The first entries describe the first batch (a lost first page
        // reads as an all-zero entry, which the order checks accept); the
        // first time entry is that of the first batch with records (a
        // segment often starts with a new leader's empty batch).
        let first_time_ok = match self.first_batch_with_records() {
            Some(d) if d.max_timestamp > -1 => times.first().is_some_and(|t| {
                self.base_offset + i64::from(t.rel_offset) == d.base_offset
                    && t.timestamp == d.max_timestamp
            }),
            _ => true,
        };
        if !first_time_ok || offsets.first().is_none_or(|e| e.rel_raft_index != 0) {
            return None;
        }
        // Time entries below the last one are complete; the resume batch
        // must lie below it too (or at it).
        let time_limit = if recover.indexes_intact {
            u32::MAX
        } else {
            times.last().map_or(0, |t| t.rel_offset)
        };
        let k = offsets.iter().rposition(|e| {
            e.rel_offset <= time_limit
                && self.base_offset + i64::from(e.rel_offset) <= synced_below
                && (e.position as usize) < self.size
        })?;
        if k == 0 {
            return None;
        }
        let e = offsets[k];
        let h = self.header_at(e.position as usize)?;
        if h.base_offset != self.base_offset + i64::from(e.rel_offset)
            || h.raft_index != first.raft_index + u64::from(e.rel_raft_index)
        {
            return None;
        }
        let times: Vec<TimeEntry> = times
            .into_iter()
            .take_while(|t| t.rel_offset < e.rel_offset)
            .collect();
        Some(Resume {
            position: e.position as usize,
            next_offset: h.base_offset,
            first: (first.raft_index, first.max_timestamp),
            max_timestamp: times.last().map_or(-1, |t| t.timestamp),
            offsets: offsets[..k].to_vec(),
            times,
        })
    }

    /// The header of the first batch holding records, looked for among the
    /// first few batches (Raft no-ops come one per new leader).
    fn first_batch_with_records(&self) -> Option<BatchHeader> {
        let mut pos = 0usize;
        for _ in 0..64 {
            let h = self.header_at(pos)?;
            if h.records_count > 0 {
                return Some(h);
            }
            pos += h.total_len();
        }
        None
    }

    /// Rebuilds both indexes by scanning (from `resume` when given: its
    /// entries are kept and the batches before it are not read). With
    /// `check_crc`, stops at the first batch failing its CRC or continuity
    /// checks.
    fn rebuild(&mut self, check_crc: bool, resume: Option<Resume>) -> io::Result<ScanResult> {
        let (_, idx, tidx) = Self::paths(&self.dir, self.base_offset);
        self.offset_index = IndexFile::create(&idx, self.sizes.index_max_bytes)?;
        self.time_index = IndexFile::create(&tidx, self.sizes.index_max_bytes)?;
        self.bytes_since_index = 0;
        self.next_offset = self.base_offset;
        self.first_raft_index = None;
        self.max_timestamp = -1;
        let total = self.size;
        let mut pos = 0usize;
        if let Some(r) = resume {
            let kept = self.offset_index.extend(&r.offsets) && self.time_index.extend(&r.times);
            if !kept {
                return Err(io::Error::other("index entries do not fit a rebuilt index"));
            }
            pos = r.position;
            self.next_offset = r.next_offset;
            self.first_raft_index = Some(r.first.0);
            self.first_timestamp = Some(r.first.1);
            self.max_timestamp = r.max_timestamp;
            // The batch at the resume point gets its entry again.
            self.bytes_since_index = self.sizes.index_interval_bytes;
        }
        let start = pos;
        let mut prev_index: Option<u64> = None;
        while let Some(h) = self.header_at(pos) {
            if check_crc {
                let d = self.data();
                if batch::verify_crc(&d[pos..pos + h.total_len()]).is_err() {
                    break;
                }
            }
            let continuous = h.base_offset == self.next_offset
                && h.records_count >= 0
                && h.last_offset_delta >= h.records_count - 1
                && prev_index.is_none_or(|p| h.raft_index == p + 1)
                && h.next_offset() - self.base_offset <= i64::from(u32::MAX);
            if !continuous {
                break;
            }
            if !self.index_batch(pos, &h) {
                break;
            }
            prev_index = Some(h.raft_index);
            self.note_batch(&h);
            pos += h.total_len();
        }
        self.size = pos;
        self.offset_index.seal()?;
        self.time_index.seal()?;
        // Zeros after the last batch are preallocated space, not lost data.
        // Only a window after the valid end is inspected: a torn write
        // leaves its garbage there, and the rest of a preallocated file is
        // zeros that would take long to scan (appends overwrite it anyway).
        // Past the page holding the end, a hole (the usual preallocated
        // tail) holds no garbage and is not read at all.
        let page_end = total.min(pos.next_multiple_of(PAGE));
        let window_end = if mmap::has_data_from(&*self.file.get()?, page_end as u64)? {
            total.min(pos.saturating_add(TAIL_CHECK_BYTES))
        } else {
            page_end
        };
        let tail = match &self.map {
            Some(m) => &m.as_slice()[pos..window_end.max(pos)],
            None => &[],
        };
        let garbage = tail.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        Ok(ScanResult {
            valid_bytes: pos,
            truncated_bytes: garbage,
            checked_bytes: pos - start,
        })
    }
}
