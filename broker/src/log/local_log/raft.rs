//! The log seen as a Raft log: one batch per entry, found by Raft index.
//! Entries before the first stored batch are summarised by the `RaftBase`
//! (the last compacted entry), which retention and snapshot installs move.

use std::io;
use std::path::Path;

use bytes::Bytes;
use strata_proto::batch::{self, BatchError, BatchHeader};

use super::{
    AppendInfo, IoContext, LOG_START_FILE, Log, LogError, RAFT_BASE_FILE, RECOVERY_POINT_FILE,
    RaftBase,
};
use crate::log::checkpoint;
use crate::log::segment::Segment;

pub(super) fn read_base(dir: &Path) -> RaftBase {
    let Ok(Some(b)) = checkpoint::read(&dir.join(RAFT_BASE_FILE)) else {
        return RaftBase::default();
    };
    let text = String::from_utf8_lossy(&b);
    let mut it = text.split_whitespace();
    let mut next = || it.next().and_then(|v| v.parse::<i64>().ok());
    match (next(), next(), next()) {
        (Some(i), Some(t), Some(o)) if i >= 0 && t >= 0 && o >= 0 => RaftBase {
            index: i as u64,
            term: t as u64,
            next_offset: o,
        },
        _ => RaftBase::default(),
    }
}

pub(super) fn write_base(dir: &Path, b: RaftBase) -> io::Result<()> {
    let text = format!("{} {} {}", b.index, b.term, b.next_offset);
    checkpoint::write(&dir.join(RAFT_BASE_FILE), text.as_bytes())
}

impl Log {
    pub fn raft_base(&self) -> RaftBase {
        self.raft_base
    }

    /// Index of the last stored entry (the base index when none is stored).
    pub fn raft_last_index(&self) -> u64 {
        self.last_raft.1.max(self.raft_base.index)
    }

    /// The segment holding Raft index `index`, if stored.
    fn segment_for_index(&self, index: u64) -> Option<&Segment> {
        if index <= self.raft_base.index || index > self.last_raft.1 {
            return None;
        }
        self.segments
            .values()
            .rev()
            .find(|s| s.first_raft_index().is_some_and(|f| f <= index))
    }

    /// Header of the batch holding entry `index`.
    pub fn raft_header(&self, index: u64) -> Option<BatchHeader> {
        if index == self.last_raft.1 && index > self.raft_base.index {
            // The common case (the leader asks for its last term) without a lookup.
            let seg = self
                .segments
                .values()
                .rev()
                .find(|s| s.last_raft().1 == index)?;
            return seg.find_raft_index(index).map(|(_, h)| h);
        }
        self.segment_for_index(index)?
            .find_raft_index(index)
            .map(|(_, h)| h)
    }

    /// Term of entry `index` (also answers for the base entry).
    pub fn raft_term(&self, index: u64) -> Option<u64> {
        if index == self.raft_base.index {
            return Some(self.raft_base.term);
        }
        if index == self.last_raft.1 {
            return Some(self.last_raft.0);
        }
        self.raft_header(index).map(|h| h.raft_term)
    }

    /// The offset right after entry `index` (what committing it makes visible).
    pub fn offset_after_index(&self, index: u64) -> Option<i64> {
        if index == self.raft_base.index {
            return Some(self.raft_base.next_offset.max(self.log_start_offset));
        }
        if index == self.last_raft.1 {
            return Some(self.next_offset);
        }
        self.raft_header(index).map(|h| h.next_offset())
    }

    /// Stored batches for entries `[low, high)`, at most `max_bytes` of them
    /// (one at least).
    pub fn raft_entries(&self, low: u64, high: u64, max_bytes: u64) -> Vec<(BatchHeader, Bytes)> {
        let mut out = Vec::new();
        let mut size = 0u64;
        let mut next = low;
        while next < high {
            let Some(seg) = self.segment_for_index(next) else {
                break;
            };
            let Some((pos, _)) = seg.find_raft_index(next) else {
                break;
            };
            let mut more = true;
            seg.batches_from(pos, |h, b| {
                if h.raft_index >= high || (!out.is_empty() && size + b.len() as u64 > max_bytes) {
                    more = false;
                    return false;
                }
                size += b.len() as u64;
                next = h.raft_index + 1;
                out.push((*h, b));
                true
            });
            if !more {
                break;
            }
        }
        out
    }

    /// Writes entry `index` of `term` (one stored batch). An entry at or
    /// below the last index replaces it and everything after (Raft's log
    /// matching: a new leader overwrote an uncommitted suffix).
    pub fn append_entry(
        &mut self,
        batch_bytes: &[u8],
        term: u64,
        index: u64,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        if index <= self.raft_last_index() {
            self.truncate_from_index(index, now_ms)?;
        }
        if index != self.raft_last_index() + 1 {
            return Err(LogError::Raft(format!(
                "entry {index} does not follow the last index {}",
                self.raft_last_index()
            )));
        }
        let base_offset = self.next_offset;
        let h = batch::parse_header(batch_bytes)?;
        if h.total_len() != batch_bytes.len() {
            return Err(BatchError::Truncated {
                need: h.total_len(),
                have: batch_bytes.len(),
            }
            .into());
        }
        let mut prefix = [0u8; 28];
        prefix.copy_from_slice(&batch_bytes[..28]);
        batch::stamp(&mut prefix, base_offset, term, index);
        let stamped = BatchHeader {
            base_offset,
            raft_term: term,
            raft_index: index,
            ..h
        };
        let next = stamped.next_offset();
        let seg_ms = self.config.segment_ms;
        if self
            .active()
            .needs_roll(batch_bytes.len(), next, now_ms, seg_ms)
        {
            self.roll(now_ms)?;
        }
        let dir = self.dir.clone();
        self.active()
            .append(&[&prefix, &batch_bytes[28..]], &stamped, now_ms)
            .at(&dir)?;
        self.next_offset = next;
        self.last_raft = (term, index);
        Ok(AppendInfo {
            base_offset,
            last_offset: stamped.last_offset(),
            raft_index: index,
        })
    }

    /// Drops entry `index` and every later one.
    pub fn truncate_from_index(&mut self, index: u64, now_ms: i64) -> Result<(), LogError> {
        if index <= self.raft_base.index {
            return Err(LogError::Raft(format!(
                "cannot truncate at {index}: entries up to {} are compacted",
                self.raft_base.index
            )));
        }
        if index > self.last_raft.1 {
            return Ok(());
        }
        let Some((seg_base, pos)) = self
            .segment_for_index(index)
            .and_then(|s| s.find_raft_index(index).map(|(p, _)| (s.base_offset(), p)))
        else {
            return Err(LogError::Raft(format!("entry {index} not found")));
        };
        let later: Vec<i64> = self
            .segments
            .range(seg_base + 1..)
            .map(|(b, _)| *b)
            .collect();
        for b in later {
            if let Some(seg) = self.segments.remove(&b) {
                seg.delete().at(&self.dir)?;
            }
        }
        let dir = self.dir.clone();
        let seg = self.active();
        seg.truncate_at(pos).at(&dir)?;
        let (next, last) = (seg.next_offset(), seg.last_raft());
        self.next_offset = next;
        self.last_raft = if last.1 != 0 {
            last
        } else {
            self.segments
                .values()
                .rev()
                .map(Segment::last_raft)
                .find(|r| r.1 != 0)
                .unwrap_or((self.raft_base.term, self.raft_base.index))
        };
        self.flushed = self.flushed.min(self.next_offset);
        self.cleaned_offset = self.cleaned_offset.min(self.next_offset);
        // Durably, before anything is appended over the cut: a recovery
        // point past the cut would let a restart trust unsynced bytes.
        checkpoint::write_i64(&self.dir.join(RECOVERY_POINT_FILE), self.flushed).at(&self.dir)?;
        let _ = now_ms;
        Ok(())
    }

    /// Installs a snapshot: the log restarts empty after entry
    /// `base.index`, at offset `base.next_offset`.
    pub fn reset_to(&mut self, base: RaftBase, now_ms: i64) -> Result<(), LogError> {
        write_base(&self.dir, base).at(&self.dir)?;
        checkpoint::write_i64(&self.dir.join(LOG_START_FILE), base.next_offset).at(&self.dir)?;
        self.raft_base = base;
        for (_, seg) in std::mem::take(&mut self.segments) {
            seg.delete().at(&self.dir)?;
        }
        let seg = Segment::create(
            &self.dir,
            base.next_offset,
            Self::sizes(&self.config),
            now_ms,
        )
        .at(&self.dir)?;
        self.segments.insert(base.next_offset, seg);
        self.unsynced_sealed.clear();
        self.dir_unsynced = true;
        self.log_start_offset = base.next_offset;
        self.next_offset = base.next_offset;
        self.last_raft = (base.term, base.index);
        self.flushed = base.next_offset;
        self.cleaned_offset = base.next_offset;
        self.tombstones_expire_ms = None;
        // Durably: the old recovery point may lie inside the new segment.
        checkpoint::write_i64(&self.dir.join(RECOVERY_POINT_FILE), self.flushed).at(&self.dir)
    }
}
