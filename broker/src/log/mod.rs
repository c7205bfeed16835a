//! Local storage of partition logs: segments, offset and time indexes,
//! recovery and retention. Knows nothing of the network, Raft or topics.

pub mod checkpoint;
pub mod cleaner;
pub mod config;
mod file;
pub mod index;
mod local_log;
mod mmap;
pub mod segment;

use std::sync::OnceLock;
use std::time::Duration;

pub use config::{CleanupPolicy, CompactionConfig, FsyncPolicy, LogConfig};
pub use local_log::{
    AppendInfo, COMMIT_HINT_FILE, CleanerState, Log, LogError, OWNER_FILE, PRODUCER_STATE_FILE,
    RAFT_STATE_FILE, RaftBase, ReadInfo, RecoveryReport, SealedSlice, SyncPlan,
};

/// Milliseconds since the Unix epoch (record and segment timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Told how long each completed sync plan took, once installed.
static FSYNC_OBSERVER: OnceLock<fn(Duration)> = OnceLock::new();

/// Installs the function told the duration of every completed sync plan
/// (the broker routes it to its metrics). The first call wins; later calls
/// change nothing.
pub fn observe_fsyncs(f: fn(Duration)) {
    let _ = FSYNC_OBSERVER.set(f);
}

/// Reports a completed sync plan to the observer, if one is installed.
fn fsync_done(took: Duration) {
    if let Some(f) = FSYNC_OBSERVER.get() {
        f(took);
    }
}
