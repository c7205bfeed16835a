//! Raft replication: raft-rs groups over logs (`storage`), the broker's
//! single event loop that drives them all (`node`, with its commands in
//! `command`, the handling of one `Ready` in `ready`, quiescing and the
//! leader lease in `quiesce`, replicas held out after a storage failure in
//! `suspend` and the views it publishes in `view`), what a replica is to
//! that loop (`replica`: its storage and the hooks of its state machine),
//! snapshots of state machines that are not their log (`snapshot`), the
//! peer transport (`transport`) and what this broker knows of its peers
//! (`directory`). Nothing here knows what a group replicates: partitions,
//! the controller and the coordinators implement [`replica::Replica`].

mod command;
pub mod directory;
pub mod hardstate;
pub mod node;
mod quiesce;
mod ready;
pub mod replica;
pub mod snapshot;
pub mod storage;
mod suspend;
pub mod transport;
mod view;

use std::time::Duration;

/// Identifies a Raft group: the partition whose log it replicates.
pub type GroupKey = (String, u32);

/// Timing of every group on this broker.
#[derive(Debug, Clone, Copy)]
pub struct RaftTiming {
    pub tick: Duration,
    /// Ticks without a leader before an election (randomized up to 2x).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(50),
            // 300-600 ms: a silent leader is replaced well within a second
            // (see `quiesce::WAKE_AFTER` for the faster path), and an isolated
            // one steps down (check-quorum) as fast.
            election_ticks: 6,
            heartbeat_ticks: 2,
        }
    }
}

/// Routes raft-rs's slog records into `tracing` (debug level and up).
pub struct SlogToTracing;

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<Self::Ok, Self::Err> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::debug!(target: "raft", "{}", record.msg()),
            _ => {}
        }
        Ok(())
    }
}

pub fn logger() -> slog::Logger {
    slog::Logger::root(SlogToTracing, slog::o!())
}
