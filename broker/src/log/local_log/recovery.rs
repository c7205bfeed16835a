//! Opening a partition log: finding its segment files, checking the ones a
//! crash may have torn, dropping what cannot be trusted after a cut or a
//! gap, and settling the log start, end and Raft position.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    BOOT_FILE, CLEAN_SHUTDOWN_FILE, COMMIT_HINT_FILE, IoContext, LOG_START_FILE, Log, LogError,
    OWNER_FILE, PRODUCER_STATE_FILE, RAFT_BASE_FILE, RAFT_STATE_FILE, RECOVERY_POINT_FILE,
    RecoveryReport, compaction, raft,
};
use crate::log::checkpoint;
use crate::log::config::LogConfig;
use crate::log::segment::{self, Recover, Segment};

impl Log {
    /// Opens (or creates) the log in `dir`, recovering after a crash: every
    /// segment from the recovery point on is checked batch by batch (in the
    /// one holding the recovery point, from the last indexed batch at or
    /// below it) and cut at the first torn or corrupt batch; later segments
    /// are dropped; bad or missing indexes are rebuilt. Unknown files are
    /// left alone.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<(Self, RecoveryReport), LogError> {
        std::fs::create_dir_all(dir).at(dir)?;
        compaction::finish_interrupted(dir)?;
        let sizes = Self::sizes(&config);
        let mut report = RecoveryReport::default();
        let recovery_point = checkpoint::read_i64(&dir.join(RECOVERY_POINT_FILE))
            .unwrap_or(None)
            .unwrap_or(0);
        // After a clean stop everything up to the marked end, indexes
        // included, is on disk. The marker goes before anything is
        // appended: a crash from here on is recovered as one.
        let clean_path = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_end = checkpoint::read_i64(&clean_path).unwrap_or(None);
        if clean_end.is_some() || clean_path.exists() {
            std::fs::remove_file(&clean_path).at(dir)?;
            checkpoint::sync_dir(dir).at(dir)?;
        }
        let recovery_point = recovery_point.max(clean_end.unwrap_or(0));
        // Written since this machine booted: a process crash loses nothing
        // that reached the page cache, so only the tail after the last
        // index entry (a write cut short) needs checking. Never raises the
        // recovery point: that stays what is on disk.
        let boot = current_boot();
        let same_boot =
            boot.is_some() && checkpoint::read(&dir.join(BOOT_FILE)).ok().flatten() == boot;
        let trusted_below = if same_boot { i64::MAX } else { recovery_point };
        let mut log_start = checkpoint::read_i64(&dir.join(LOG_START_FILE))
            .unwrap_or(None)
            .unwrap_or(0);
        let raft_base = raft::read_base(dir);

        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(base) = segment::parse_log_name(&name) {
                bases.push(base);
            } else if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            } else if !(name.ends_with(".index")
                || name.ends_with(".timeindex")
                || name == LOG_START_FILE
                || name == RECOVERY_POINT_FILE
                || name == RAFT_BASE_FILE
                || name == RAFT_STATE_FILE
                || name == COMMIT_HINT_FILE
                || name == OWNER_FILE
                || name == PRODUCER_STATE_FILE
                || name == CLEAN_SHUTDOWN_FILE
                || name == compaction::CLEANER_OFFSET_FILE
                || name == BOOT_FILE)
            {
                report.ignored_files.push(name);
            }
        }
        bases.sort_unstable();
        // Segments at or after the one holding the recovery point are suspect.
        let first_suspect = bases
            .iter()
            .rev()
            .find(|b| **b <= trusted_below)
            .copied()
            .unwrap_or(0);

        let mut segments = BTreeMap::new();
        let mut expected: Option<i64> = None;
        let mut broken = false;
        let n = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            if broken || expected.is_some_and(|e| e != base) {
                // A gap or an earlier cut: nothing after it can be trusted.
                broken = true;
                let (seg, _) = Segment::open(dir, base, sizes, None).at(dir)?;
                seg.delete().at(dir)?;
                report.dropped_segments += 1;
                continue;
            }
            let recover = base >= first_suspect || i + 1 == n;
            let check = recover.then_some(Recover {
                synced_below: trusted_below,
                indexes_intact: clean_end.is_some() || same_boot,
                check_crc: clean_end.is_none(),
            });
            let (seg, scan) = Segment::open(dir, base, sizes, check).at(dir)?;
            if recover {
                report.recovered_segments += 1;
            }
            report.truncated_bytes += scan.truncated_bytes;
            report.checked_bytes += scan.checked_bytes;
            let cut = scan.truncated_bytes > 0;
            if seg.is_empty() && i + 1 != n {
                seg.delete().at(dir)?;
                report.dropped_segments += 1;
                broken = true;
                continue;
            }
            expected = Some(seg.next_offset());
            segments.insert(base, seg);
            if cut {
                broken = true;
            }
        }

        // A snapshot installed past everything stored (a crash between
        // recording the new base and deleting the old segments).
        let stored_last = segments
            .values()
            .map(Segment::last_raft)
            .map(|r| r.1)
            .max()
            .unwrap_or(0);
        if raft_base.index > 0 && stored_last < raft_base.index {
            for (_, seg) in std::mem::take(&mut segments) {
                seg.delete().at(dir)?;
            }
            log_start = log_start.max(raft_base.next_offset);
        }
        if segments.is_empty() {
            let start = log_start.max(raft_base.next_offset);
            let seg = Segment::create(dir, start, sizes, now_ms).at(dir)?;
            segments.insert(start, seg);
        }
        if let Some((_, last)) = segments.iter_mut().next_back() {
            last.reactivate().at(dir)?;
            last.created_no_later_than(now_ms);
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let (next_offset, last_raft) = segments
            .values()
            .next_back()
            .map(|s| (s.next_offset(), s.last_raft()))
            .unwrap_or((0, (0, 0)));
        let last_raft = if last_raft.1 == 0 {
            // An empty active segment: take the Raft position from the one before.
            segments
                .values()
                .rev()
                .map(Segment::last_raft)
                .find(|r| r.1 != 0)
                .unwrap_or((raft_base.term, raft_base.index))
        } else {
            last_raft
        };
        log_start = log_start.clamp(first_base, next_offset);
        report.segments = segments.len();
        let cleaner = compaction::read_cleaner_checkpoint(dir);
        let log = Self {
            dir: dir.to_owned(),
            config,
            segments,
            log_start_offset: log_start,
            next_offset,
            last_raft,
            flushed: recovery_point.min(next_offset),
            unsynced_sealed: Vec::new(),
            dir_unsynced: true,
            raft_base,
            cleaned_offset: cleaner.0.clamp(first_base, next_offset),
            cleaner_totals: (0, 0),
            tombstones_expire_ms: cleaner.1,
        };
        if let Some(b) = boot {
            // Rebuilt (as "another boot") if lost: never needs a sync.
            checkpoint::write_relaxed(&dir.join(BOOT_FILE), &b).at(dir)?;
        }
        Ok((log, report))
    }
}

/// The running kernel's boot id (Linux), which changes at every boot;
/// read once per process.
fn current_boot() -> Option<Vec<u8>> {
    static BOOT: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read("/proc/sys/kernel/random/boot_id")
            .ok()
            .filter(|b| !b.is_empty())
    })
    .clone()
}
