//! A replica's part in log compaction: what the cleaner may clean (the
//! committed, sealed part of the log), installing a pass under the log's
//! lock, and the cleaner's state for describe and metrics. Every replica,
//! leader or follower, cleans its own log.

use crate::error::Result;
use crate::log::cleaner::{CompactionPlan, PassOutcome};
use crate::log::{CleanerState, now_ms};

use super::Partition;

impl Partition {
    /// A pass due on this replica's log, if the topic is compacted.
    pub fn compaction_plan(&self) -> Option<CompactionPlan> {
        if self.is_closed() || self.has_failed() {
            return None;
        }
        let hw = self.high_watermark();
        self.lock().log.compaction_plan(now_ms(), hw)
    }

    /// Swaps a finished pass in (nothing once the replica is closed: its
    /// files are removed instead). Returns the bytes reclaimed.
    pub fn install_cleaned(&self, outcome: &PassOutcome) -> Result<u64> {
        let mut g = self.lock();
        if self.is_closed() {
            for c in &outcome.cleaned {
                let _ = std::fs::remove_file(&c.path);
            }
            return Ok(0);
        }
        g.log.install_cleaned(outcome).map_err(|e| self.map_log(e))
    }

    /// The cleaner's view of a compacted topic's replica.
    pub fn cleaner_state(&self) -> Option<CleanerState> {
        let hw = self.high_watermark();
        let g = self.lock();
        g.log
            .config()
            .cleanup
            .compact
            .then(|| g.log.cleaner_state(now_ms(), hw))
    }
}
