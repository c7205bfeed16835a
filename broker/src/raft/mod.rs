//! Raft replication: raft-rs groups over logs (`storage`), the broker's
//! single event loop that drives them all (`node`, with its commands in
//! `command`, the groups due for a look in `pending`, the handling of one `Ready` in `ready`, quiescing and the
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
mod pending;
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
            // 1-2 s without a heartbeat before a group elects on its own (as
            // Redpanda's 1.5 s): a broker whose disk stalls a few hundred ms
            // (one slow fsync) costs no elections. A broker that goes silent
            // or drops its links is replaced faster, within
            // `quiesce::WAKE_AFTER` plus `quiesce::LEASE_END_SPREAD`, and a
            // leader that hears no quorum of brokers steps down as fast.
            election_ticks: 20,
            heartbeat_ticks: 2,
        }
    }
}

/// Routes raft-rs's slog records into `tracing` (debug level and up), with
/// the group they concern (the logger's topic and partition) and the
/// record's own key-values appended to the message.
pub struct SlogToTracing;

/// Collects slog key-values as ` key=value` pairs.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for SlogToTracing {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<Self::Ok, Self::Err> {
        let level = match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::Level::ERROR,
            slog::Level::Warning => tracing::Level::WARN,
            slog::Level::Info => tracing::Level::DEBUG,
            _ => return Ok(()),
        };
        let enabled = match level {
            tracing::Level::ERROR => tracing::enabled!(target: "raft", tracing::Level::ERROR),
            tracing::Level::WARN => tracing::enabled!(target: "raft", tracing::Level::WARN),
            _ => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
        };
        if !enabled {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        let _ = slog::KV::serialize(values, record, &mut kv);
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let text = kv.0;
        match level {
            tracing::Level::ERROR => tracing::error!(target: "raft", "{}{text}", record.msg()),
            tracing::Level::WARN => tracing::warn!(target: "raft", "{}{text}", record.msg()),
            _ => tracing::debug!(target: "raft", "{}{text}", record.msg()),
        }
        Ok(())
    }
}

pub fn logger() -> slog::Logger {
    slog::Logger::root(SlogToTracing, slog::o!())
}
