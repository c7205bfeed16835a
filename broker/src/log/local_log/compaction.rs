//! The log's side of compaction: which segments a pass may clean and when
//! one is due (`compaction_plan`), swapping the cleaned segments in
//! (`install_cleaned`), and finishing a swap a crash interrupted (at open).
//!
//! A swap is crash-safe in three durable steps. The cleaned file, synced,
//! is renamed from `.cleaned` to `.swap`: the commit point. The segments
//! it replaces are then removed (all but the first, whose `.log` name the
//! swap takes over, and that one's indexes), and the directory synced; and
//! finally `.swap` is renamed over the first segment's `.log` and the
//! directory synced again. At open, a `.cleaned` file is an unfinished pass
//! (removed) and a `.swap` file a committed one (finished): the log reads
//! as before the pass or as after it, never as a mix.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use strata_proto::batch::{self, HEADER_LEN};

use super::{IoContext, Log, LogError};
use crate::log::checkpoint;
use crate::log::cleaner::{
    CLEANED_SUFFIX, CleanedSegment, CompactionPlan, PassOutcome, SWAP_SUFFIX, SegmentView,
};
use crate::log::segment::{self, Segment};

/// The offset below which the log was cleaned, and when the tombstones a
/// pass kept expire (`offset expiry`, -1 = none). No fsync: a lost file
/// only makes the next pass clean more.
pub(super) const CLEANER_OFFSET_FILE: &str = "cleaner-offset";

/// What the cleaner reports of a compacted log.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CleanerState {
    /// Everything below this has been cleaned.
    pub cleaned_offset: i64,
    /// Share of the cleanable bytes not cleaned yet.
    pub dirty_ratio: f64,
    /// Bytes of sealed, committed segments a pass could clean.
    pub cleanable_bytes: u64,
    /// Bytes removed by the passes since the log was opened.
    pub bytes_reclaimed: u64,
    /// Passes installed since the log was opened.
    pub passes: u64,
}

fn stem_with(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    segment::parse_log_name(&format!("{stem}.log"))
}

fn segment_paths(dir: &Path, base: i64) -> [PathBuf; 3] {
    let s = segment::file_stem(base);
    [
        dir.join(format!("{s}.log")),
        dir.join(format!("{s}.index")),
        dir.join(format!("{s}.timeindex")),
    ]
}

fn remove_if_present(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The offset after the last whole batch of a file of batches.
fn end_of_batches(path: &Path) -> io::Result<Option<i64>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    let (mut pos, mut end) = (0u64, None);
    while pos + HEADER_LEN as u64 <= len {
        file.read_exact_at(&mut head, pos)?;
        let Ok(h) = batch::parse_header(&head) else {
            break;
        };
        if pos + h.total_len() as u64 > len {
            break;
        }
        end = Some(h.next_offset());
        pos += h.total_len() as u64;
    }
    Ok(end)
}

/// Removes the segments a committed swap replaces (the first one's
/// indexes only) and syncs the directory.
fn remove_replaced(dir: &Path, first: i64, others: impl Iterator<Item = i64>) -> io::Result<()> {
    for base in others {
        for p in segment_paths(dir, base) {
            remove_if_present(&p)?;
        }
    }
    let [_, idx, tidx] = segment_paths(dir, first);
    remove_if_present(&idx)?;
    remove_if_present(&tidx)?;
    checkpoint::sync_dir(dir)
}

/// Finishes what a crash left of cleaning passes, before the segments are
/// listed: unfinished files go, committed swaps are completed.
pub(super) fn finish_interrupted(dir: &Path) -> Result<(), LogError> {
    let mut swaps = Vec::new();
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if stem_with(&name, CLEANED_SUFFIX).is_some() {
            std::fs::remove_file(entry.path()).at(dir)?;
        } else if let Some(base) = stem_with(&name, SWAP_SUFFIX) {
            swaps.push((base, entry.path()));
        } else if let Some(base) = segment::parse_log_name(&name) {
            bases.push(base);
        }
    }
    for (base, path) in swaps {
        let end = end_of_batches(&path).at(dir)?.unwrap_or(base);
        let replaced = bases.iter().copied().filter(|b| *b > base && *b < end);
        remove_replaced(dir, base, replaced).at(dir)?;
        let [log, ..] = segment_paths(dir, base);
        std::fs::rename(&path, &log).at(dir)?;
        checkpoint::sync_dir(dir).at(dir)?;
        tracing::info!(dir = %dir.display(), base, end, "finished a compaction swap");
    }
    Ok(())
}

/// Reads the cleaner's checkpoint of a log directory: the cleaned offset
/// and the tombstones' expiry.
pub(super) fn read_cleaner_checkpoint(dir: &Path) -> (i64, Option<i64>) {
    let Ok(Some(b)) = checkpoint::read(&dir.join(CLEANER_OFFSET_FILE)) else {
        return (0, None);
    };
    let text = String::from_utf8_lossy(&b);
    let mut it = text.split_whitespace().map(str::parse::<i64>);
    match (it.next(), it.next()) {
        (Some(Ok(o)), Some(Ok(e))) => (o, (e >= 0).then_some(e)),
        (Some(Ok(o)), None) => (o, None),
        _ => (0, None),
    }
}

impl Log {
    /// The sealed segments below `limit` (the high watermark: only committed
    /// entries are cleaned) and old enough for `min.compaction.lag.ms`.
    fn cleanable(&self, now_ms: i64, limit: i64) -> impl Iterator<Item = &Segment> {
        let min_lag = self.config.compaction.min_lag_ms;
        self.segments.values().take_while(move |s| {
            s.is_sealed()
                && s.next_offset() <= limit
                && (min_lag == 0 || s.max_timestamp() <= now_ms.saturating_sub(min_lag))
        })
    }

    /// The cleaner's view of this log.
    pub fn cleaner_state(&self, now_ms: i64, limit: i64) -> CleanerState {
        let (mut total, mut dirty) = (0u64, 0u64);
        for s in self.cleanable(now_ms, limit) {
            total += s.size() as u64;
            if s.next_offset() > self.cleaned_offset {
                dirty += s.size() as u64;
            }
        }
        CleanerState {
            cleaned_offset: self.cleaned_offset,
            dirty_ratio: if total == 0 {
                0.0
            } else {
                dirty as f64 / total as f64
            },
            cleanable_bytes: total,
            bytes_reclaimed: self.cleaner_totals.0,
            passes: self.cleaner_totals.1,
        }
    }

    /// A pass to run now, if the log is compacted and one is due: its
    /// dirty share reached `min.cleanable.dirty.ratio`, or a record waited
    /// longer than `max.compaction.lag.ms`.
    pub fn compaction_plan(&self, now_ms: i64, limit: i64) -> Option<CompactionPlan> {
        if !self.config.cleanup.compact {
            return None;
        }
        let cfg = self.config.compaction;
        let segments: Vec<&Segment> = self.cleanable(now_ms, limit).collect();
        let end = segments.last()?.next_offset();
        let first_dirty = self
            .cleaned_offset
            .max(segments.first().map_or(0, |s| s.base_offset()))
            .min(end);
        let state = self.cleaner_state(now_ms, limit);
        let overdue = cfg.max_lag_ms != i64::MAX
            && segments
                .iter()
                .find(|s| s.next_offset() > first_dirty)
                .is_some_and(|s| s.created_ms() < now_ms.saturating_sub(cfg.max_lag_ms));
        let tombstones_due = self.tombstones_expire_ms.is_some_and(|t| t <= now_ms);
        if first_dirty >= end && !tombstones_due {
            return None;
        }
        if state.dirty_ratio < cfg.min_dirty_ratio && !overdue && !tombstones_due {
            return None;
        }
        Some(CompactionPlan {
            dir: self.dir.clone(),
            segments: segments
                .iter()
                .map(|s| SegmentView {
                    base: s.base_offset(),
                    next: s.next_offset(),
                    data: s.all_batches(),
                })
                .collect(),
            first_dirty,
            end,
            now_ms,
            delete_retention_ms: cfg.delete_retention_ms,
            segment_bytes: self.config.segment_bytes,
        })
    }

    /// Swaps a pass's cleaned segments in. A cleaned segment whose
    /// segments changed meanwhile (retention deleted them, a snapshot
    /// replaced the log) is discarded. Returns the bytes reclaimed.
    pub fn install_cleaned(&mut self, outcome: &PassOutcome) -> Result<u64, LogError> {
        let mut reclaimed = 0u64;
        for c in &outcome.cleaned {
            let intact = c.replaces.iter().all(|(b, size)| {
                self.segments
                    .get(b)
                    .is_some_and(|s| s.is_sealed() && s.size() == *size)
            });
            if !intact {
                remove_if_present(&c.path).at(&self.dir)?;
                continue;
            }
            let before: usize = c.replaces.iter().map(|r| r.1).sum();
            self.swap_in(c)?;
            reclaimed += before.saturating_sub(c.size) as u64;
        }
        self.cleaned_offset = self.cleaned_offset.max(outcome.cleaned_to);
        self.tombstones_expire_ms = outcome.tombstones_expire_ms;
        let text = format!(
            "{} {}",
            self.cleaned_offset,
            self.tombstones_expire_ms.unwrap_or(-1)
        );
        checkpoint::write_relaxed(&self.dir.join(CLEANER_OFFSET_FILE), text.as_bytes())
            .at(&self.dir)?;
        self.cleaner_totals.0 += reclaimed;
        self.cleaner_totals.1 += 1;
        Ok(reclaimed)
    }

    fn swap_in(&mut self, c: &CleanedSegment) -> Result<(), LogError> {
        let dir = self.dir.clone();
        let swap = dir.join(format!("{}{SWAP_SUFFIX}", segment::file_stem(c.base)));
        std::fs::rename(&c.path, &swap).at(&dir)?;
        checkpoint::sync_dir(&dir).at(&dir)?;
        let others = c.replaces.iter().map(|r| r.0).filter(|b| *b != c.base);
        remove_replaced(&dir, c.base, others).at(&dir)?;
        let [log, ..] = segment_paths(&dir, c.base);
        std::fs::rename(&swap, &log).at(&dir)?;
        checkpoint::sync_dir(&dir).at(&dir)?;
        let (seg, _) = Segment::open(&dir, c.base, Self::sizes(&self.config), None).at(&dir)?;
        // The old segments' maps stay valid for readers holding their bytes.
        for (b, _) in &c.replaces {
            self.segments.remove(b);
        }
        self.segments.insert(c.base, seg);
        Ok(())
    }
}
