//! A partition replica hosted by this broker: its log (which is also the
//! log of the partition's Raft group), its Raft state, its high watermark
//! (the offset after the committed index), idempotent-producer state and
//! the flusher that syncs under the `interval` and `never` policies (under
//! `always` the Raft event loop syncs every cycle, one fsync per file for
//! everything that arrived meanwhile).
//!
//! The log, its Raft state and what the replica publishes (leadership,
//! high watermark, health) are the [`ReplicaCore`] the event loop drives;
//! the partition is the [`Replica`] over it whose state machine is the
//! idempotent-producer table (`producer_state`).
//!
//! Locking: one short-lived mutex around the log, and one around the
//! producer table (taken after the log's where both are held); neither is
//! held across an `.await`. Watchers of the high watermark (long-polling
//! fetches, subscriptions, acks=all produces) wait on `watch` channels.

mod compaction;
pub mod producer_state;
#[cfg(test)]
mod raft_tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::BatchHeader;
use tokio::sync::{Notify, watch};

use crate::error::{BrokerError, Result};
use crate::log::{FsyncPolicy, Log, LogConfig, PRODUCER_STATE_FILE, ReadInfo, checkpoint, now_ms};
use crate::raft::directory::Directory;
use crate::raft::node::{Cmd, Proposal, RaftHandle};
pub use crate::raft::replica::Role;
use crate::raft::replica::{Admission, GroupLog, Replica, ReplicaCore};
use crate::raft::storage::RaftMeta;
use producer_state::{ProducerTable, SeqCheck};

/// How often the recovery point is persisted at most.
const RECOVERY_CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// Background syncs (flushers of every partition) running at once: past the
/// disk's queue depth more only add threads. Thousands of partitions due
/// together (created at once, a restart, `fsync=interval`) then wait for a
/// slot instead of each taking a thread of the blocking pool.
static SYNC_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);

/// How long a produce waits for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    All,
    Leader,
    None,
}

/// Offsets a produce request was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
    /// The log end after this append (what must become durable/committed).
    pub end_offset: i64,
    /// When the produce passed each stage.
    pub stages: ProduceStages,
}

/// When a produce passed the stages after its checks, as the waiting
/// request saw them (for the per-stage latency metrics and the slow
/// request log). A stage the acks did not wait for stays `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceStages {
    /// The Raft loop proposed the batches (the end of the proposal queue).
    pub proposed: Option<Instant>,
    /// The batches were in the local log.
    pub written: Option<Instant>,
    /// The high watermark passed them.
    pub committed: Option<Instant>,
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
    core: Arc<ReplicaCore>,
    /// What idempotent producers wrote: the log as proposed and written.
    producers: Mutex<ProducerTable>,
    raft: RaftHandle,
    flush: Notify,
    closed: AtomicBool,
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
        let producers = Self::load_producers(&log);
        let p = Arc::new(Self {
            topic: topic.to_owned(),
            id,
            core: Arc::new(ReplicaCore::new(topic, id, node_id, log, meta, directory)),
            producers: Mutex::new(producers),
            raft,
            flush: Notify::new(),
            closed: AtomicBool::new(false),
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

    /// What the Raft loop drives: the log, its Raft state and what the
    /// replica publishes.
    pub fn core(&self) -> &Arc<ReplicaCore> {
        &self.core
    }

    /// The log and its Raft state, locked.
    pub fn lock(&self) -> MutexGuard<'_, GroupLog> {
        self.core.lock()
    }

    fn producers(&self) -> MutexGuard<'_, ProducerTable> {
        // As the log's lock: a panic cannot leave the table half-updated.
        self.producers.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Runs `f` on the log and Raft state.
    pub fn with_log<T>(&self, f: impl FnOnce(&Log, &RaftMeta) -> T) -> T {
        self.core.with_log(f)
    }

    pub fn role(&self) -> Role {
        self.core.role()
    }

    pub fn subscribe_role(&self) -> watch::Receiver<Role> {
        self.core.subscribe_role()
    }

    pub fn is_leader(&self) -> bool {
        self.core.is_leader()
    }

    /// Whether this replica leads, in `term`.
    pub fn leads_in(&self, term: u64) -> bool {
        self.core.leads_in(term)
    }

    pub fn not_leader(&self) -> BrokerError {
        self.core.not_leader()
    }

    pub fn log_end(&self) -> i64 {
        self.lock().log.next_offset()
    }

    /// The first offset on local disk.
    pub fn local_start(&self) -> i64 {
        self.lock().log.log_start_offset()
    }

    pub fn high_watermark(&self) -> i64 {
        self.core.high_watermark()
    }

    pub fn subscribe_hw(&self) -> watch::Receiver<i64> {
        self.core.subscribe_hw()
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
        let mut appended = Appended {
            base_offset: p.base_offset,
            last_offset: p.last_offset,
            log_start_offset: self.lock().log.log_start_offset(),
            end_offset: p.end_offset,
            stages: ProduceStages {
                proposed: Some(Instant::now()),
                ..ProduceStages::default()
            },
        };
        match acks {
            Acks::None => return Ok(appended),
            Acks::Leader => {
                let mut rx = self.core.subscribe_written();
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
                appended.stages.written = Some(Instant::now());
            }
            Acks::All => {
                appended.stages.written = self
                    .wait_committed_timed(p.end_offset, p.term, timeout)
                    .await?;
                appended.stages.committed = Some(Instant::now());
            }
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
        self.wait_committed_timed(end, term, timeout)
            .await
            .map(|_| ())
    }

    /// [`Self::wait_committed`], noting when the local log held `end` on
    /// the way (`None` if it committed first: followers may persist an
    /// entry before its leader does).
    async fn wait_committed_timed(
        &self,
        end: i64,
        term: u64,
        timeout: Duration,
    ) -> Result<Option<Instant>> {
        let mut hw = self.core.subscribe_hw();
        let mut written = self.core.subscribe_written();
        let fut = async {
            let mut written_at = None;
            loop {
                if written_at.is_none() && *written.borrow_and_update() >= end {
                    written_at = Some(Instant::now());
                }
                if *hw.borrow_and_update() >= end {
                    return Ok::<_, tokio::sync::watch::error::RecvError>(written_at);
                }
                tokio::select! {
                    r = hw.changed() => r?,
                    r = written.changed(), if written_at.is_none() => r?,
                }
            }
        };
        tokio::select! {
            biased;
            r = tokio::time::timeout(timeout, fut) => match r {
                Ok(Ok(at)) => Ok(at),
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
        self.core.leadership_lost(term).await;
    }

    /// The STORAGE_ERROR of a replica taken offline by a failed write.
    pub fn offline(&self) -> BrokerError {
        let why = if self.core.has_failed() {
            "is offline after a failed fsync"
        } else {
            "cannot write to its disk (full?); its other replicas take over"
        };
        BrokerError::Storage(format!("{}/{} {why}", self.topic, self.id))
    }

    /// Whether an fsync failed (the replica stays offline until restart,
    /// whose recovery checks what reached the disk).
    pub fn has_failed(&self) -> bool {
        self.core.has_failed()
    }

    /// Whether writes are refused (failed fsync, or held out by the Raft
    /// loop after a failed write: a full disk).
    pub fn unwritable(&self) -> bool {
        self.core.unwritable()
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

    /// The record with the largest timestamp below the high watermark:
    /// its offset and timestamp.
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>> {
        let g = self.lock();
        let hw = self.high_watermark();
        let found = g.log.max_timestamp_offset().map_err(|e| self.map_log(e))?;
        Ok(found.filter(|(o, _)| *o < hw))
    }

    /// The term stamped on the batch holding `offset` (Kafka's leader
    /// epoch of the record), when it is stored here.
    pub fn term_at(&self, offset: i64) -> Option<u64> {
        self.lock().log.term_at(offset)
    }

    /// Kafka's end offset of leader epoch `epoch` (epochs are Raft terms;
    /// `current` is the term this replica leads in): the start of the
    /// first batch of a later term, or the log end; paired with the
    /// largest term at or below `epoch` that has batches here (`epoch`
    /// itself when none that old is stored). `None` for an epoch above
    /// the current one.
    pub fn epoch_end(&self, epoch: u64, current: u64) -> Option<(u64, i64)> {
        if epoch > current {
            return None;
        }
        let g = self.lock();
        let log_end = g.log.next_offset();
        if epoch == current {
            return Some((epoch, log_end));
        }
        let end = g
            .log
            .first_batch_above_term(epoch)
            .map_or(log_end, |(o, _)| o);
        let floor = (end > g.log.log_start_offset())
            .then(|| g.log.term_at(end - 1))
            .flatten()
            .map_or(epoch, |t| t.min(epoch));
        Some((floor, end))
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

    /// The producer table: the snapshot a clean stop wrote when it
    /// describes this log's end, else rebuilt from every batch header (which
    /// reads the whole log from disk).
    fn load_producers(log: &Log) -> ProducerTable {
        let (term, index) = log.last_raft();
        let end = (log.next_offset(), term, index);
        let path = log.dir().join(PRODUCER_STATE_FILE);
        if let Ok(Some(buf)) = checkpoint::read(&path)
            && let Some((mut t, (offset, term, index))) = ProducerTable::decode_stamped(&buf)
        {
            // Raft's log matching: an entry of the same index and term means
            // the same log up to it. The table may hold proposals that never
            // reached the log, so what it says from its stamp on is dropped
            // and read again from the log.
            let matches = (offset, term, index) == end
                || (index <= end.2
                    && log.raft_term(index) == Some(term)
                    && log.offset_after_index(index) == Some(offset));
            if matches {
                t.truncate_from(offset);
                log.scan_headers_from(offset, |h| t.record(h));
                return t;
            }
        }
        let mut producers = ProducerTable::default();
        log.scan_headers(|h| producers.record(h));
        producers
    }

    /// Writes the producer table stamped with the log's end, so that a
    /// restart (after a crash as well) reads only the batches after it.
    /// Called when the log rolls a segment: a restart then reads at most
    /// the active segment's headers. Not synced: a table lost or torn in a
    /// crash fails to decode and the whole log is read instead.
    fn snapshot_producers(&self, log: &Log) {
        let (term, index) = log.last_raft();
        let snapshot = self.producers().encode((log.next_offset(), term, index));
        let path = log.dir().join(PRODUCER_STATE_FILE);
        if let Err(e) = checkpoint::write_relaxed(&path, &snapshot) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the producer table");
        }
    }

    /// Stops the flusher, syncs everything and records the recovery point,
    /// the Raft state and the producer table.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.flush.notify_one();
        let mut g = self.lock();
        g.log.close().map_err(|e| self.map_log(e))?;
        let dir = g.log.dir().to_owned();
        let (term, index) = g.log.last_raft();
        let snapshot = self.producers().encode((g.log.next_offset(), term, index));
        checkpoint::write(&dir.join(PRODUCER_STATE_FILE), &snapshot)
            .map_err(|e| BrokerError::Storage(format!("{}: {e}", dir.display())))?;
        g.meta
            .store(&dir)
            .map_err(|e| BrokerError::Storage(format!("{}: {e}", dir.display())))
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes the partition offline (a failed write or fsync).
    pub fn fail(&self) {
        self.core.fail();
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
        // What the files hold already (read at open).
        let mut last_saved = {
            let g = self.lock();
            (g.log.flushed_offset(), g.meta.commit)
        };
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
            let run = {
                let _slot = SYNC_SLOTS.acquire().await;
                tokio::task::spawn_blocking(move || plan.run().map(|()| plan.up_to)).await
            };
            match run {
                Ok(Ok(up_to)) => {
                    let mut g = self.lock();
                    g.log.mark_synced(up_to);
                    let state = (g.log.flushed_offset(), g.meta.commit);
                    // After a roll at once (the recovery point moved past
                    // the sealed segments); otherwise with the periodic
                    // checkpoint, and only what changed.
                    let due = if sealed_only {
                        state.0 != last_saved.0
                    } else {
                        last_checkpoint.elapsed() >= RECOVERY_CHECKPOINT_EVERY
                    };
                    if due && state != last_saved {
                        if let Err(e) = g.log.checkpoint_recovery_point() {
                            tracing::warn!(topic = %self.topic, partition = self.id, error = %e, "recovery point not saved");
                        }
                        // The commit index, persisted lazily (term and vote
                        // are written at once by the event loop).
                        let _ = g.meta.store_commit_hint(g.log.dir());
                        last_saved = state;
                        last_checkpoint = Instant::now();
                    }
                    drop(g);
                }
                Ok(Err(e)) => {
                    tracing::error!(topic = %self.topic, partition = self.id, error = %e,
                        "fsync failed; taking the partition offline");
                    self.core.fail();
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "flush task failed");
                    self.core.fail();
                    return;
                }
            }
        }
    }
}

/// A partition's state machine is its idempotent-producer table: it decides
/// which proposals are duplicates and follows the log as it is written,
/// replaced and restored.
impl Replica for Partition {
    fn core(&self) -> &Arc<ReplicaCore> {
        &self.core
    }

    fn admit(&self, batch: &BatchHeader) -> Result<Admission> {
        Ok(match self.producers().check(batch)? {
            SeqCheck::Append => Admission::Append,
            SeqCheck::Duplicate {
                base_offset,
                last_offset,
            } => Admission::Duplicate {
                base_offset,
                last_offset,
            },
        })
    }

    fn record(&self, batch: &BatchHeader) {
        self.producers().record(batch);
    }

    fn truncated(&self, offset: i64) {
        self.producers().truncate_from(offset);
    }

    fn rolled(&self, log: &Log) {
        self.snapshot_producers(log);
    }

    fn restored(&self) {
        *self.producers() = ProducerTable::default();
    }
}
