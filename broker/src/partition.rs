//! A partition replica hosted by this broker: its log (which is also the
//! log of the partition's Raft group), its Raft state, its high watermark
//! (the offset after the committed index), idempotent-producer state and
//! the flusher that syncs under the `interval` and `never` policies (under
//! `always` the Raft event loop syncs every cycle, one fsync per file for
//! everything that arrived meanwhile).
//!
//! Locking: one short-lived mutex around the log; it is never held across
//! an `.await`. Watchers of the high watermark (long-polling fetches,
//! subscriptions, acks=all produces) wait on `watch` channels.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::BatchHeader;
use tokio::sync::{Notify, watch};

use crate::cluster::directory::Directory;
use crate::error::{BrokerError, Result};
use crate::log::{FsyncPolicy, Log, LogConfig, ReadInfo};
use crate::producer_state::ProducerTable;
use crate::raft::node::{Cmd, Proposal, RaftHandle};
use crate::raft::storage::RaftMeta;

/// How often the recovery point is persisted at most.
const RECOVERY_CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub struct Inner {
    pub log: Log,
    pub producers: ProducerTable,
    pub meta: RaftMeta,
}

/// How long a produce waits for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    All,
    Leader,
    None,
}

/// The leadership as this replica last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Role {
    pub leader: u64,
    pub term: u64,
}

/// Offsets a produce request was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// The log end after this append (what must become durable/committed).
    pub end_offset: i64,
}

/// A snapshot of a partition's offsets.
#[derive(Debug, Clone, Copy)]
pub struct Offsets {
    pub log_start: i64,
    pub high_watermark: i64,
    pub log_end: i64,
    pub size_bytes: u64,
    pub segments: usize,
}

pub struct Partition {
    topic: String,
    id: u32,
    node_id: u64,
    inner: Mutex<Inner>,
    hw: watch::Sender<i64>,
    /// Log end written by the event loop (what acks=leader waits for).
    written: watch::Sender<i64>,
    role: watch::Sender<Role>,
    raft: RaftHandle,
    directory: std::sync::Arc<Directory>,
    flush: Notify,
    closed: AtomicBool,
    /// Set when an fsync failed: the partition refuses further writes.
    failed: AtomicBool,
    /// Set while the Raft loop holds the replica out after a write failed
    /// (a full disk): it answers STORAGE_ERROR and leads nothing until the
    /// disk has room again.
    suspended: AtomicBool,
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

impl Partition {
    /// Opens the partition over its recovered log and Raft state and
    /// starts its flusher. The high watermark starts at the stored commit.
    pub fn open(
        topic: &str,
        id: u32,
        log: Log,
        meta: RaftMeta,
        node_id: u64,
        raft: RaftHandle,
        directory: std::sync::Arc<Directory>,
    ) -> Arc<Self> {
        let mut producers = ProducerTable::default();
        log.scan_headers(|h| producers.record(h));
        let end = log.next_offset();
        let commit = meta.commit.min(log.raft_last_index());
        let hw0 = log
            .offset_after_index(commit)
            .unwrap_or(log.log_start_offset())
            .max(log.log_start_offset());
        let p = Arc::new(Self {
            topic: topic.to_owned(),
            id,
            node_id,
            inner: Mutex::new(Inner {
                log,
                producers,
                meta,
            }),
            hw: watch::Sender::new(hw0),
            written: watch::Sender::new(end),
            role: watch::Sender::new(Role::default()),
            raft,
            directory,
            flush: Notify::new(),
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            suspended: AtomicBool::new(false),
        });
        tokio::spawn(Self::flusher(Arc::clone(&p)));
        p
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the log half-updated
        // in a way later calls rely on; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn out_of_range(&self, offset: i64, start: i64, end: i64) -> BrokerError {
        BrokerError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.id,
            offset,
            start,
            end,
        }
    }

    fn map_log(&self, e: crate::log::LogError) -> BrokerError {
        BrokerError::from_log(&self.topic, self.id, e)
    }

    pub fn config(&self) -> LogConfig {
        self.lock().log.config().clone()
    }

    pub fn set_config(&self, cfg: LogConfig) {
        self.lock().log.set_config(cfg);
        self.flush.notify_one();
    }

    /// Runs `f` on the log and Raft state (used by the Raft storage).
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

    /// Called by the event loop when the group's leadership changes.
    pub fn set_role(&self, role: Role) {
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    /// Called by the event loop as the commit index advances.
    pub fn advance_hw(&self, hw: i64) {
        raise(&self.hw, hw);
    }

    /// Called by the event loop after a snapshot moved the log.
    pub fn reset_hw(&self, hw: i64) {
        self.hw.send_replace(hw);
    }

    /// Called by the event loop after it wrote entries up to `end`.
    pub fn mark_written(&self, end: i64) {
        raise(&self.written, end);
    }

    pub fn not_leader(&self) -> BrokerError {
        let leader = self.role().leader;
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

    pub fn log_end(&self) -> i64 {
        self.lock().log.next_offset()
    }

    /// The first offset on local disk.
    pub fn local_start(&self) -> i64 {
        self.lock().log.log_start_offset()
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    pub fn subscribe_hw(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    pub fn offsets(&self) -> Offsets {
        let g = self.lock();
        Offsets {
            log_start: g.log.log_start_offset(),
            high_watermark: self.high_watermark(),
            log_end: g.log.next_offset(),
            size_bytes: g.log.size_bytes(),
            segments: g.log.segment_count(),
        }
    }

    /// Produces validated batches as the leader: the event loop checks
    /// idempotent-producer sequences, proposes one Raft entry per batch and
    /// answers with the offsets they get; then this waits as `acks` asks.
    /// An entry that a new leader replaced is reported as NOT_LEADER.
    pub async fn produce(
        &self,
        batches: Vec<(BatchHeader, Bytes)>,
        acks: Acks,
        timeout: Duration,
    ) -> Result<Appended> {
        let rx = self.start_produce(batches)?;
        self.complete_produce(rx, acks, timeout).await
    }

    /// Hands batches to the event loop (in call order).
    pub fn start_produce(
        &self,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Proposal>>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::ShuttingDown);
        }
        if self.unwritable() {
            return Err(self.offline());
        }
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.raft.send(Cmd::Propose {
            key: (self.topic.clone(), self.id),
            batches,
            reply: tx,
        })?;
        Ok(rx)
    }

    /// Waits for the proposal's offsets, then as `acks` asks.
    pub async fn complete_produce(
        &self,
        rx: tokio::sync::oneshot::Receiver<Result<Proposal>>,
        acks: Acks,
        timeout: Duration,
    ) -> Result<Appended> {
        let p = rx.await.map_err(|_| BrokerError::ShuttingDown)??;
        let appended = Appended {
            base_offset: p.base_offset,
            last_offset: p.last_offset,
            log_start_offset: self.lock().log.log_start_offset(),
            end_offset: p.end_offset,
        };
        match acks {
            Acks::None => return Ok(appended),
            Acks::Leader => {
                let mut rx = self.written.subscribe();
                let fut = rx.wait_for(|w| *w >= p.end_offset);
                tokio::select! {
                    biased;
                    r = tokio::time::timeout(timeout, fut) => match r {
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => return Err(BrokerError::ShuttingDown),
                        Err(_) => {
                            return Err(BrokerError::Timeout(format!(
                                "{}/{} did not append in time",
                                self.topic, self.id
                            )));
                        }
                    },
                    () = self.leadership_lost(p.term) => return Err(self.not_leader()),
                }
            }
            Acks::All => self.wait_committed(p.end_offset, p.term, timeout).await?,
        }
        // The entry now holding our index must be ours (same term).
        if p.index > 0 {
            // A missing index was replaced by a shorter log of a newer
            // leader: not ours either. (Retention dropping a committed entry
            // before this check only turns a success into a retriable error.)
            let term = self.lock().log.raft_term(p.index);
            if term != Some(p.term) {
                return Err(self.not_leader());
            }
        }
        Ok(appended)
    }

    /// Waits until offsets below `end` are committed (visible and, under
    /// `fsync=always`, on disk) while this replica leads in `term`. A
    /// replica that steps down (or a new term begins) answers NOT_LEADER at
    /// once, naming the new leader when known: the entry may still commit
    /// under it, so the answer is retriable and an idempotent retry gets the
    /// original offsets.
    pub async fn wait_committed(&self, end: i64, term: u64, timeout: Duration) -> Result<()> {
        let mut rx = self.hw.subscribe();
        let fut = rx.wait_for(|hw| *hw >= end);
        tokio::select! {
            biased;
            r = tokio::time::timeout(timeout, fut) => match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(BrokerError::ShuttingDown),
                Err(_) => {
                    if self.unwritable() {
                        return Err(self.offline());
                    }
                    Err(BrokerError::Timeout(format!(
                        "{}/{} did not commit in time",
                        self.topic, self.id
                    )))
                }
            },
            () = self.leadership_lost(term) => {
                if self.unwritable() {
                    return Err(self.offline());
                }
                Err(self.not_leader())
            }
        }
    }

    /// Resolves once this replica no longer leads in `term` (it stepped
    /// down, a newer term began, or the replica closed). Long polls,
    /// subscriptions and produces waiting on the leader select on it.
    pub async fn leadership_lost(&self, term: u64) {
        let mut rx = self.role.subscribe();
        let me = self.node_id;
        let _ = rx.wait_for(|r| r.leader != me || r.term != term).await;
    }

    /// The STORAGE_ERROR of a replica taken offline by a failed write.
    pub fn offline(&self) -> BrokerError {
        let why = if self.failed.load(Ordering::Acquire) {
            "is offline after a failed fsync"
        } else {
            "cannot write to its disk (full?); its other replicas take over"
        };
        BrokerError::Storage(format!("{}/{} {why}", self.topic, self.id))
    }

    /// Whether an fsync failed (the replica stays offline until restart,
    /// whose recovery checks what reached the disk).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Whether writes are refused (failed fsync, or suspended).
    pub fn unwritable(&self) -> bool {
        self.failed.load(Ordering::Acquire) || self.suspended.load(Ordering::Acquire)
    }

    /// Called by the Raft loop when it takes the replica out after a failed
    /// write: leads nothing (waiters are answered STORAGE_ERROR), and the
    /// idempotence table forgets what never reached the log.
    pub fn suspend(&self) {
        self.suspended.store(true, Ordering::Release);
        self.drop_leadership();
        self.forget_unwritten();
    }

    /// Leads nothing from now on (same term): whoever waits on this
    /// replica as leader is answered at once.
    pub fn drop_leadership(&self) {
        let term = self.role().term;
        self.set_role(Role { leader: 0, term });
    }

    /// Makes the idempotence table forget batches past the log end:
    /// proposals of a leader that never reached the log may not answer a
    /// retry as duplicates.
    pub fn forget_unwritten(&self) {
        let mut g = self.lock();
        let end = g.log.next_offset();
        g.producers.truncate_from(end);
    }

    /// Called by the Raft loop when the replica runs again.
    pub fn resume(&self) {
        self.suspended.store(false, Ordering::Release);
    }

    /// Reads whole batches from `offset` up to the high watermark; the first
    /// batch is returned even when larger than `max_bytes`.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<(ReadInfo, Offsets)> {
        self.read_with(offset, max_bytes, true)
    }

    /// As `read`; with `first_whole` false nothing beyond `max_bytes` is
    /// returned.
    pub fn read_with(
        &self,
        offset: i64,
        max_bytes: usize,
        first_whole: bool,
    ) -> Result<(ReadInfo, Offsets)> {
        let g = self.lock();
        let hw = self.high_watermark();
        let start = g.log.log_start_offset();
        if offset < start || offset > hw {
            return Err(self.out_of_range(offset, start, hw));
        }
        let info = g
            .log
            .read_with(offset, max_bytes, hw, first_whole)
            .map_err(|e| self.map_log(e))?;
        let offs = Offsets {
            log_start: start,
            high_watermark: hw,
            log_end: g.log.next_offset(),
            size_bytes: 0,
            segments: 0,
        };
        Ok((info, offs))
    }

    /// First offset with a timestamp >= `ts` below the high watermark.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        let g = self.lock();
        let hw = self.high_watermark();
        let found = g
            .log
            .offset_for_timestamp(ts)
            .map_err(|e| self.map_log(e))?;
        Ok(found.filter(|(o, _)| *o < hw))
    }

    /// Moves the log start on every replica (DeleteRecords); -1 means the
    /// high watermark. The move is a Raft entry (a control batch), applied
    /// by each replica when it commits, so records deleted here do not come
    /// back after a leader change. Answers once it committed.
    pub async fn delete_records(&self, offset: i64, timeout: Duration) -> Result<i64> {
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        let start = self.lock().log.log_start_offset();
        if target < start || target > hw {
            return Err(self.out_of_range(offset, start, hw));
        }
        if target == start {
            return Ok(start);
        }
        let batch = crate::raft::storage::delete_records_batch(target, now_ms());
        let header = strata_proto::batch::parse_header(&batch)
            .map_err(|e| BrokerError::Storage(format!("delete-records entry: {e}")))?;
        let rx = self.start_produce(vec![(header, batch)])?;
        self.complete_produce(rx, Acks::All, timeout).await?;
        Ok(self.lock().log.log_start_offset().max(target))
    }

    /// Applies a committed DeleteRecords entry to this replica's log.
    pub fn apply_delete_records(&self, target: i64) {
        let mut g = self.lock();
        let target = target.min(g.log.next_offset());
        if target <= g.log.log_start_offset() {
            return;
        }
        if let Err(e) = g.log.delete_records(target, now_ms()) {
            tracing::warn!(topic = %self.topic, partition = self.id, offset = target, error = %e,
                "cannot move the log start");
        }
    }

    /// Retention (of committed data only) and time-based rolling; returns
    /// deleted segment count. `remote` is what object storage holds
    /// (start, end): under tiered storage only segments below its end may
    /// go, and offsets below its start are gone from the whole log.
    pub fn maintain(&self, remote: Option<(i64, i64)>) -> Result<usize> {
        let now = now_ms();
        let hw = self.high_watermark();
        let mut g = self.lock();
        if g.log.roll_due(now) {
            g.log.roll(now).map_err(|e| self.map_log(e))?;
        }
        let mut limit = hw;
        if g.log.config().remote_storage {
            let start = g.log.log_start_offset();
            limit = limit.min(remote.map_or(start, |(_, end)| end));
            if let Some((rstart, _)) = remote
                && rstart > start
                && rstart <= hw
            {
                // Retention of the whole log passed the local start.
                g.log
                    .delete_records(rstart, now)
                    .map_err(|e| self.map_log(e))?;
            }
        }
        let n = g
            .log
            .apply_retention_below(now, limit)
            .map_err(|e| self.map_log(e))?;
        let sealed = g.log.has_unsynced_sealed();
        drop(g);
        if sealed {
            self.flush.notify_one();
        }
        Ok(n)
    }

    /// Visits every batch from `from` (used to load internal topics).
    pub fn scan(&self, from: i64, f: impl FnMut(&BatchHeader, &Bytes)) -> Result<()> {
        let g = self.lock();
        g.log.scan_batches(from, f).map_err(|e| self.map_log(e))
    }

    /// Stops the flusher, syncs everything and records the recovery point
    /// and the Raft state.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.flush.notify_one();
        let mut g = self.lock();
        g.log.close().map_err(|e| self.map_log(e))?;
        let dir = g.log.dir().to_owned();
        g.meta
            .store(&dir)
            .map_err(|e| BrokerError::Storage(format!("{}: {e}", dir.display())))
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes the partition offline (a failed write or fsync).
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// A fraction in [0, 1) that differs between partitions, to spread
    /// periodic work.
    fn spread(&self) -> f64 {
        let h = crc32c::crc32c_append(
            crc32c::crc32c(self.topic.as_bytes()),
            &self.id.to_be_bytes(),
        );
        f64::from(h) / (f64::from(u32::MAX) + 1.0)
    }

    /// The group-commit loop: one fsync covers every append that arrived
    /// while the previous one ran.
    async fn flusher(self: Arc<Self>) {
        // Spread the checkpoints of partitions opened together over the
        // interval instead of writing thousands of files at one instant.
        let mut last_checkpoint = Instant::now()
            .checked_sub(RECOVERY_CHECKPOINT_EVERY.mul_f64(self.spread()))
            .unwrap_or_else(Instant::now);
        let mut last_saved = (-1i64, u64::MAX);
        loop {
            let policy = self.lock().log.config().fsync;
            match policy {
                FsyncPolicy::Interval(d) => {
                    let _ = tokio::time::timeout(d, self.flush.notified()).await;
                }
                FsyncPolicy::Always | FsyncPolicy::Never => {
                    let _ = tokio::time::timeout(RECOVERY_CHECKPOINT_EVERY, self.flush.notified())
                        .await;
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let (plan, full) = {
                let mut g = self.lock();
                match g.log.config().fsync {
                    FsyncPolicy::Interval(_) => (g.log.sync_plan(), true),
                    _ => (g.log.sealed_sync_plan(), false),
                }
            };
            if plan.is_empty() {
                if last_checkpoint.elapsed() >= RECOVERY_CHECKPOINT_EVERY {
                    // Only what changed is written: idle partitions cost nothing.
                    let g = self.lock();
                    let state = (g.log.flushed_offset(), g.meta.commit);
                    if state != last_saved {
                        let _ = g.log.checkpoint_recovery_point();
                        let _ = g.meta.store_commit_hint(g.log.dir());
                        last_saved = state;
                    }
                    last_checkpoint = Instant::now();
                }
                continue;
            }
            let sealed_only = !full;
            let run = tokio::task::spawn_blocking(move || plan.run().map(|()| plan.up_to)).await;
            match run {
                Ok(Ok(up_to)) => {
                    let mut g = self.lock();
                    g.log.mark_synced(up_to);
                    if sealed_only || last_checkpoint.elapsed() >= RECOVERY_CHECKPOINT_EVERY {
                        if let Err(e) = g.log.checkpoint_recovery_point() {
                            tracing::warn!(topic = %self.topic, partition = self.id, error = %e, "recovery point not saved");
                        }
                        // The commit index, persisted lazily (term and vote
                        // are written at once by the event loop).
                        let _ = g.meta.store_commit_hint(g.log.dir());
                        last_checkpoint = Instant::now();
                    }
                    drop(g);
                }
                Ok(Err(e)) => {
                    tracing::error!(topic = %self.topic, partition = self.id, error = %e,
                        "fsync failed; taking the partition offline");
                    self.failed.store(true, Ordering::Release);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "flush task failed");
                    self.failed.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
}
