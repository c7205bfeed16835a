//! Local storage of partition logs: segments, offset and time indexes,
//! recovery and retention. Knows nothing of the network, Raft or topics.

pub mod checkpoint;
pub mod config;
pub mod index;
mod local_log;
mod mmap;
pub mod segment;

pub use config::{FsyncPolicy, LogConfig};
pub use local_log::{
    AppendInfo, COMMIT_HINT_FILE, Log, LogError, OWNER_FILE, RAFT_STATE_FILE, RaftBase, ReadInfo,
    RecoveryReport, SealedSlice, SyncPlan,
};

/// Milliseconds since the Unix epoch (record and segment timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
