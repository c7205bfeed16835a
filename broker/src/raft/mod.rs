//! Raft replication: raft-rs groups over logs (`storage`), the broker's
//! single event loop that drives them all (`node`, with its commands in
//! `command`, the groups it hosts by dense id in `groups`, new groups' first
//! elections in `fresh`, messages for groups not open yet in `early`, the
//! groups due for a look in `pending`, the handling of one `Ready` in
//! `ready`, quiescing and the leader lease in
//! `quiesce`, replicas held out after a storage failure in `suspend` and the
//! views it publishes in `view`), what a replica is to that loop
//! (`replica`: its storage and the hooks of its state machine), snapshots of
//! state machines that are not their log (`snapshot`), the peer transport
//! (`transport`) and what this broker knows of its peers (`directory`).
//! Nothing here knows what a group replicates: partitions, the controller
//! and the coordinators implement [`replica::Replica`].

mod command;
pub mod directory;
mod early;
mod fresh;
mod groups;
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

/// Hashing for the loop's maps and sets of groups: it hashes a key a few
/// times per awake group per tick, which with SipHash over 100,000 groups
/// being created took most of a core. foldhash is seeded per process.
pub(crate) type GroupHasher = foldhash::fast::RandomState;
pub(crate) type GroupMap<V> = std::collections::HashMap<GroupKey, V, GroupHasher>;

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
            // A heartbeat every 200 ms, five to ten per election timeout
            // (Redpanda: 150 ms against 1.5 s). It is also the round in
            // which the loop looks at each awake group once (see
            // `node::RaftLoop::tick`).
            heartbeat_ticks: 4,
        }
    }
}

/// Routes raft-rs's slog records into `tracing` (debug level and up), with
/// the group they concern (the logger's topic and partition) and the
/// record's own key-values appended to the message.
pub struct SlogToTracing;

/// A record's key-values (the logger's, then its own) as ` key=value`
/// pairs, formatted only when the record is logged.
struct KvText<'a>(&'a slog::Record<'a>, &'a slog::OwnedKVList);

/// Writes slog key-values into a formatter.
struct KvWriter<'a, 'b>(&'a mut std::fmt::Formatter<'b>);

impl slog::Serializer for KvWriter<'_, '_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        write!(self.0, " {key}={val}").map_err(|_| slog::Error::Other)
    }
}

impl std::fmt::Display for KvText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut w = KvWriter(f);
        let ok = slog::KV::serialize(self.1, self.0, &mut w).is_ok()
            && slog::KV::serialize(&self.0.kv(), self.0, &mut w).is_ok();
        if ok { Ok(()) } else { Err(std::fmt::Error) }
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
        let (msg, kv) = (record.msg(), KvText(record, values));
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{msg}{kv}")
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}{kv}"),
            slog::Level::Info => tracing::debug!(target: "raft", "{msg}{kv}"),
            _ => {}
        }
        Ok(())
    }
}

pub fn logger() -> slog::Logger {
    slog::Logger::root(SlogToTracing, slog::o!())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::KvText;

    /// Formats every record as the broker's drain does.
    struct Capture(Arc<Mutex<Vec<String>>>);

    impl slog::Drain for Capture {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, r: &slog::Record<'_>, v: &slog::OwnedKVList) -> Result<(), slog::Never> {
            let line = format!("{}{}", r.msg(), KvText(r, v));
            self.0.lock().unwrap().push(line);
            Ok(())
        }
    }

    #[test]
    fn records_carry_their_group_and_their_own_values() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let root = slog::Logger::root(Capture(Arc::clone(&lines)), slog::o!());
        let group = root.new(slog::o!("topic" => "t", "partition" => 3));
        slog::warn!(group, "stepped down"; "term" => 7);
        assert_eq!(
            lines.lock().unwrap().as_slice(),
            ["stepped down partition=3 topic=t term=7"]
        );
    }
}
