//! Shrinking a partition log from the front: explicit record deletion,
//! time and size retention, and removing the segments they leave behind
//! (the Raft base is moved past them first).

use super::{IoContext, LOG_START_FILE, Log, LogError, RaftBase, raft};
use crate::log::checkpoint;

impl Log {
    /// Moves the log start to `offset` (<= log end), deleting segments that
    /// fall entirely below it.
    pub fn delete_records(&mut self, offset: i64, now_ms: i64) -> Result<i64, LogError> {
        if offset < self.log_start_offset || offset > self.next_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end: self.next_offset,
            });
        }
        if offset == self.log_start_offset {
            return Ok(offset);
        }
        checkpoint::write_i64(&self.dir.join(LOG_START_FILE), offset).at(&self.dir)?;
        self.log_start_offset = offset;
        if offset == self.next_offset {
            self.roll(now_ms)?;
        }
        self.delete_segments_below_start()?;
        Ok(offset)
    }

    /// Drops the log a state snapshot at Raft index `index` covers: the
    /// active segment is sealed, then every sealed segment whose entries
    /// are all at or below `index` goes (the Raft base moves past them).
    pub fn compact_through_index(&mut self, index: u64, now_ms: i64) -> Result<usize, LogError> {
        self.roll(now_ms)?;
        let doomed: Vec<(i64, i64)> = self
            .segments
            .iter()
            .take_while(|(_, s)| s.is_sealed() && s.last_raft().1 <= index)
            .map(|(b, s)| (*b, s.next_offset()))
            .collect();
        let Some((_, next)) = doomed.last().copied() else {
            return Ok(0);
        };
        if next > self.log_start_offset {
            checkpoint::write_i64(&self.dir.join(LOG_START_FILE), next).at(&self.dir)?;
            self.log_start_offset = next;
        }
        let bases: Vec<i64> = doomed.into_iter().map(|(b, _)| b).collect();
        self.delete_segments(&bases)
    }

    fn delete_segments_below_start(&mut self) -> Result<usize, LogError> {
        let doomed: Vec<i64> = self
            .segments
            .iter()
            .filter(|(_, s)| s.is_sealed() && s.next_offset() <= self.log_start_offset)
            .map(|(b, _)| *b)
            .collect();
        self.delete_segments(&doomed)
    }

    fn delete_segments(&mut self, bases: &[i64]) -> Result<usize, LogError> {
        // Record the new Raft base before any file goes away.
        let mut base = self.raft_base;
        for b in bases {
            if let Some(seg) = self.segments.get(b)
                && seg.last_raft().1 > base.index
            {
                base = RaftBase {
                    index: seg.last_raft().1,
                    term: seg.last_raft().0,
                    next_offset: seg.next_offset(),
                };
            }
        }
        if base != self.raft_base {
            raft::write_base(&self.dir, base).at(&self.dir)?;
            self.raft_base = base;
        }
        for b in bases {
            if let Some(seg) = self.segments.remove(b) {
                seg.delete().at(&self.dir)?;
            }
        }
        Ok(bases.len())
    }

    /// Applies `retention.ms` and `retention.bytes` (under tiered storage
    /// `retention.local.*`) to sealed segments.
    /// Returns how many segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.apply_retention_below(now_ms, i64::MAX)
    }

    /// As `apply_retention`, deleting only segments that end at or below
    /// `limit` (the high watermark: uncommitted entries are never dropped).
    pub fn apply_retention_below(&mut self, now_ms: i64, limit: i64) -> Result<usize, LogError> {
        let mut doomed = Vec::new();
        let (retention_ms, retention_bytes) = self.config.local_limits();
        let mut total = self.size_bytes();
        let sealed: Vec<(i64, u64, i64, i64)> = self
            .segments
            .iter()
            .filter(|(_, s)| s.is_sealed() && s.next_offset() <= limit)
            .map(|(b, s)| (*b, s.size() as u64, s.max_timestamp(), s.next_offset()))
            .collect();
        for (base, size, max_ts, next) in sealed {
            let too_old = retention_ms.is_some_and(|ms| max_ts >= 0 && now_ms - max_ts > ms);
            let too_big =
                retention_bytes.is_some_and(|limit| total > limit && total - size >= limit);
            let below_start = next <= self.log_start_offset;
            if too_old || too_big || below_start {
                doomed.push((base, next));
                total -= size;
            } else {
                break;
            }
        }
        if let Some((_, next)) = doomed.last()
            && *next > self.log_start_offset
        {
            checkpoint::write_i64(&self.dir.join(LOG_START_FILE), *next).at(&self.dir)?;
            self.log_start_offset = *next;
        }
        let bases: Vec<i64> = doomed.into_iter().map(|(b, _)| b).collect();
        self.delete_segments(&bases)
    }
}
