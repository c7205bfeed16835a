//! What the event loop drives: a replica of one group. The loop knows a
//! replica only through [`Replica`] — its storage ([`ReplicaCore`]: the log
//! and Raft state under one lock, and the leadership, high watermark and
//! health it publishes) and the hooks of the state machine over that log
//! (what appended, truncated, restored and committed entries mean to it).
//! Partition replicas, the controller and the internal coordinators each
//! implement it; the loop has no other knowledge of what a group is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use strata_proto::batch::BatchHeader;
use tokio::sync::watch;

use super::GroupKey;
use super::directory::Directory;
use super::snapshot::StateSnapshot;
use super::storage::RaftMeta;
use crate::error::{BrokerError, Result};
use crate::log::Log;

/// The leadership as this replica last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Role {
    pub leader: u64,
    pub term: u64,
}

/// A group's log with the Raft state stored beside it.
pub struct GroupLog {
    pub log: Log,
    pub meta: RaftMeta,
}

/// How a proposed batch is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Appended as a new entry.
    Append,
    /// Already in the log (or proposed) at these offsets: not appended
    /// again; answered once they commit.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// A replica as the event loop sees it. The hooks run on the loop's
/// thread; those that get the log's guard run while the loop holds it.
pub trait Replica: Send + Sync + 'static {
    /// The log, the Raft state and what the replica publishes.
    fn core(&self) -> &Arc<ReplicaCore>;

    /// The Raft index committed entries are applied from at start (raft-rs
    /// hands over the committed entries above it again). By default what
    /// committed before: nothing over the log needs them again.
    fn applied_at_start(&self, log: &GroupLog) -> u64 {
        log.meta
            .commit
            .min(log.log.raft_last_index())
            .max(log.log.raft_base().index)
    }

    /// Whether messages from brokers outside the group's membership are
    /// stepped (a group that brokers join by catching up as learners).
    fn admits_strangers(&self) -> bool {
        false
    }

    /// Decides how a batch proposed on the leader is taken.
    fn admit(&self, _batch: &BatchHeader) -> Result<Admission> {
        Ok(Admission::Append)
    }

    /// A batch the log holds, or will hold, at `batch.base_offset`: proposed
    /// on this leader, or written from the leader's entries.
    fn record(&self, _batch: &BatchHeader) {}

    /// What was recorded from `offset` on is gone or never reached the log
    /// (a suffix a new leader replaced, or an old leader's proposals).
    fn truncated(&self, _offset: i64) {}

    /// The log started a new segment while entries were written (every
    /// recorded batch up to its end is in it).
    fn rolled(&self, _log: &Log) {}

    /// A snapshot from the leader replaced the whole log.
    fn restored(&self) {}

    /// Applied entries between snapshots of the state machine (`None`: the
    /// log is the state; the group is never snapshotted this way).
    fn snapshot_every(&self) -> Option<u64> {
        None
    }

    /// The state machine as of the last applied entry (for a snapshot).
    fn snapshot_state(&self) -> Option<Bytes> {
        None
    }

    /// Replaces the state machine with a snapshot's: its state as of entry
    /// `index`. Refusing it refuses the snapshot.
    fn restore_state(&self, _index: u64, _state: &Bytes) -> std::result::Result<(), String> {
        Ok(())
    }

    /// A committed normal entry with data, in index order.
    fn apply(&self, _index: u64, _data: &Bytes) {}

    /// Every committed entry up to `index` was applied.
    fn applied(&self, _index: u64) {}

    /// The answer to a request this replica cannot take because it does
    /// not lead (`leader`: the leader it knows, 0 when none).
    fn refuse(&self, leader: u64) -> BrokerError {
        self.core().not_leader_of(leader)
    }
}

/// The part of a replica the event loop owns: the log and Raft state
/// (shared with the raft-rs storage), and the leadership, high watermark,
/// written end and health it publishes to the rest of the broker.
///
/// Locking: one short-lived mutex around the log; never held across an
/// `.await` or a call into raft-rs.
pub struct ReplicaCore {
    topic: String,
    id: u32,
    node_id: u64,
    log: Mutex<GroupLog>,
    hw: watch::Sender<i64>,
    /// Log end written by the event loop (what acks=leader waits for).
    written: watch::Sender<i64>,
    role: watch::Sender<Role>,
    directory: Arc<Directory>,
    /// Set when an fsync failed: the replica refuses further writes.
    failed: AtomicBool,
    /// Set while the loop holds the replica out after a write failed (a
    /// full disk): it leads nothing until the disk has room again.
    suspended: AtomicBool,
    /// The state machine's latest snapshot (groups that take them), and
    /// when it was taken (ms since the epoch).
    snapshot: Mutex<Option<(Arc<StateSnapshot>, i64)>>,
}

fn raise(tx: &watch::Sender<i64>, v: i64) {
    tx.send_if_modified(|cur| {
        if v > *cur {
            *cur = v;
            true
        } else {
            false
        }
    });
}

impl ReplicaCore {
    /// A replica over its recovered log and Raft state. The high
    /// watermark starts at the stored commit.
    pub fn new(
        topic: &str,
        id: u32,
        node_id: u64,
        log: Log,
        meta: RaftMeta,
        directory: Arc<Directory>,
    ) -> Self {
        let end = log.next_offset();
        let commit = meta.commit.min(log.raft_last_index());
        let hw0 = log
            .offset_after_index(commit)
            .unwrap_or(log.log_start_offset())
            .max(log.log_start_offset());
        Self {
            topic: topic.to_owned(),
            id,
            node_id,
            log: Mutex::new(GroupLog { log, meta }),
            hw: watch::Sender::new(hw0),
            written: watch::Sender::new(end),
            role: watch::Sender::new(Role::default()),
            directory,
            failed: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
            snapshot: Mutex::new(None),
        }
    }

    /// The state machine's latest snapshot, if one was taken or installed.
    pub fn state_snapshot(&self) -> Option<Arc<StateSnapshot>> {
        let g = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|(s, _)| Arc::clone(s))
    }

    /// Records the latest snapshot, taken (or stored) at `taken_ms`.
    pub fn set_state_snapshot(&self, s: StateSnapshot, taken_ms: i64) {
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Some((Arc::new(s), taken_ms));
    }

    /// When the latest snapshot was taken, if there is one.
    pub fn state_snapshot_taken_ms(&self) -> Option<i64> {
        let g = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|(_, t)| *t)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn key(&self) -> GroupKey {
        (self.topic.clone(), self.id)
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn lock(&self) -> MutexGuard<'_, GroupLog> {
        // A panic while holding the lock cannot leave the log half-updated
        // in a way later calls rely on; keep serving.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the log and Raft state.
    pub fn with_log<T>(&self, f: impl FnOnce(&Log, &RaftMeta) -> T) -> T {
        let g = self.lock();
        f(&g.log, &g.meta)
    }

    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    pub fn subscribe_role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        self.role().leader == self.node_id
    }

    /// Whether this replica leads, in `term`.
    pub fn leads_in(&self, term: u64) -> bool {
        let r = self.role();
        r.leader == self.node_id && r.term == term
    }

    /// Publishes a leadership change.
    pub fn set_role(&self, role: Role) {
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    /// Leads nothing from now on (same term): whoever waits on this
    /// replica as leader is answered at once.
    pub fn drop_leadership(&self) {
        let term = self.role().term;
        self.set_role(Role { leader: 0, term });
    }

    /// Resolves once this replica no longer leads in `term` (it stepped
    /// down, a newer term began, or the replica closed).
    pub async fn leadership_lost(&self, term: u64) {
        let mut rx = self.role.subscribe();
        let me = self.node_id;
        let _ = rx.wait_for(|r| r.leader != me || r.term != term).await;
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    pub fn subscribe_hw(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Moves the high watermark forward as entries commit.
    pub fn advance_hw(&self, hw: i64) {
        raise(&self.hw, hw);
    }

    /// Sets the high watermark after a snapshot moved the log.
    pub fn reset_hw(&self, hw: i64) {
        self.hw.send_replace(hw);
    }

    /// Records that entries up to `end` are written.
    pub fn mark_written(&self, end: i64) {
        raise(&self.written, end);
    }

    pub fn subscribe_written(&self) -> watch::Receiver<i64> {
        self.written.subscribe()
    }

    /// NOT_LEADER naming the leader this replica knows.
    pub fn not_leader(&self) -> BrokerError {
        self.not_leader_of(self.role().leader)
    }

    /// NOT_LEADER naming `leader` (0: unknown).
    pub fn not_leader_of(&self, leader: u64) -> BrokerError {
        BrokerError::NotLeader {
            topic: self.topic.clone(),
            partition: self.id,
            leader_id: leader,
            leader_addr: if leader == 0 {
                String::new()
            } else {
                self.directory.client_addr(leader)
            },
        }
    }

    /// Whether an fsync failed (the replica stays offline until restart,
    /// whose recovery checks what reached the disk).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Takes the replica offline (a failed write or fsync).
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// Whether writes are refused (failed fsync, or suspended).
    pub fn unwritable(&self) -> bool {
        self.has_failed() || self.suspended.load(Ordering::Acquire)
    }

    /// Holds the replica out after a failed write: it leads nothing, and
    /// whoever waits on it as leader is answered at once.
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::Release);
        self.drop_leadership();
    }

    /// Lets the replica run again.
    pub fn resume(&self) {
        self.suspended.store(false, Ordering::Release);
    }

    /// Applies a committed DeleteRecords entry: moves the log start.
    pub fn apply_delete_records(&self, target: i64, now_ms: i64) {
        let mut g = self.lock();
        let target = target.min(g.log.next_offset());
        if target <= g.log.log_start_offset() {
            return;
        }
        if let Err(e) = g.log.delete_records(target, now_ms) {
            tracing::warn!(topic = %self.topic, partition = self.id, offset = target, error = %e,
                "cannot move the log start");
        }
    }
}
