//! A partition replica hosted by this broker: its log, its high watermark,
//! idempotent-producer state and the flusher that implements the `fsync`
//! policy with group commit.
//!
//! Locking: one short-lived mutex around the log; it is never held across
//! an `.await` or an fsync. Watchers of the high watermark (long-polling
//! fetches, subscriptions) and of the durable offset (acks=all under
//! `fsync=always`) wait on `watch` channels.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::BatchHeader;
use tokio::sync::{Notify, watch};

use crate::error::{BrokerError, Result};
use crate::log::{FsyncPolicy, Log, LogConfig, ReadInfo};
use crate::producer_state::{ProducerTable, SeqCheck};

/// How often the recovery point is persisted at most.
const RECOVERY_CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Inner {
    log: Log,
    producers: ProducerTable,
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
    inner: Mutex<Inner>,
    hw: watch::Sender<i64>,
    durable: watch::Sender<i64>,
    flush: Notify,
    closed: AtomicBool,
    /// Set when an fsync failed: the partition refuses further writes.
    failed: AtomicBool,
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
    /// Opens the partition's log (recovering it) and starts its flusher.
    pub fn open(topic: &str, id: u32, log: Log) -> Arc<Self> {
        let mut producers = ProducerTable::default();
        log.scan_headers(|h| producers.record(h));
        let end = log.next_offset();
        let flushed = log.flushed_offset();
        // Everything present after recovery is as durable as the policy
        // promised, so it is all visible.
        let hw0 = end;
        let p = Arc::new(Self {
            topic: topic.to_owned(),
            id,
            inner: Mutex::new(Inner { log, producers }),
            hw: watch::Sender::new(hw0),
            durable: watch::Sender::new(flushed.max(0)),
            flush: Notify::new(),
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
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
        let always = cfg.fsync == FsyncPolicy::Always;
        let mut g = self.lock();
        g.log.set_config(cfg);
        let end = g.log.next_offset();
        drop(g);
        if !always {
            raise(&self.hw, end);
        }
        self.flush.notify_one();
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

    /// Appends validated batches as the leader, skipping batches an
    /// idempotent producer already wrote.
    pub fn append(&self, batches: &[(BatchHeader, Bytes)], term: u64) -> Result<Appended> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::ShuttingDown);
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(BrokerError::Storage(format!(
                "{}/{} is offline after a failed fsync",
                self.topic, self.id
            )));
        }
        let now = now_ms();
        let mut g = self.lock();
        let (mut base, mut last) = (-1i64, -1i64);
        for (h, bytes) in batches {
            let (b, l) = match g.producers.check(h)? {
                SeqCheck::Duplicate {
                    base_offset,
                    last_offset,
                } => (base_offset, last_offset),
                SeqCheck::Append => {
                    let info = g
                        .log
                        .append(bytes, term, now)
                        .map_err(|e| self.map_log(e))?;
                    let stamped = BatchHeader {
                        base_offset: info.base_offset,
                        ..*h
                    };
                    g.producers.record(&stamped);
                    (info.base_offset, info.last_offset)
                }
            };
            if base < 0 {
                base = b;
            }
            last = l;
        }
        let end = g.log.next_offset();
        let log_start = g.log.log_start_offset();
        let policy = g.log.config().fsync;
        let sealed = g.log.has_unsynced_sealed();
        drop(g);
        match policy {
            FsyncPolicy::Always => self.flush.notify_one(),
            _ => {
                raise(&self.hw, end);
                if sealed {
                    self.flush.notify_one();
                }
            }
        }
        Ok(Appended {
            base_offset: base,
            last_offset: last,
            log_start_offset: log_start,
            end_offset: end,
        })
    }

    /// Waits until offsets below `end` are committed (visible and, under
    /// `fsync=always`, on disk).
    pub async fn wait_committed(&self, end: i64, timeout: Duration) -> Result<()> {
        let mut rx = self.hw.subscribe();
        let fut = rx.wait_for(|hw| *hw >= end);
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BrokerError::ShuttingDown),
            Err(_) => {
                if self.failed.load(Ordering::Acquire) {
                    return Err(BrokerError::Storage("fsync failed".into()));
                }
                Err(BrokerError::Timeout(format!(
                    "{}/{} did not commit in time",
                    self.topic, self.id
                )))
            }
        }
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

    /// Moves the log start (DeleteRecords); -1 means the high watermark.
    pub fn delete_records(&self, offset: i64) -> Result<i64> {
        let mut g = self.lock();
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        let start = g.log.log_start_offset();
        if target < start || target > hw {
            return Err(self.out_of_range(offset, start, hw));
        }
        g.log
            .delete_records(target, now_ms())
            .map_err(|e| self.map_log(e))
    }

    /// Retention and time-based rolling; returns deleted segment count.
    pub fn maintain(&self) -> Result<usize> {
        let now = now_ms();
        let mut g = self.lock();
        if g.log.roll_due(now) {
            g.log.roll(now).map_err(|e| self.map_log(e))?;
        }
        let n = g.log.apply_retention(now).map_err(|e| self.map_log(e))?;
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

    /// Stops the flusher, syncs everything and records the recovery point.
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.flush.notify_one();
        let mut g = self.lock();
        g.log.close().map_err(|e| self.map_log(e))
    }

    /// The group-commit loop: one fsync covers every append that arrived
    /// while the previous one ran.
    async fn flusher(self: Arc<Self>) {
        let mut last_checkpoint = Instant::now();
        loop {
            let policy = self.lock().log.config().fsync;
            match policy {
                FsyncPolicy::Interval(d) => {
                    let _ = tokio::time::timeout(d, self.flush.notified()).await;
                }
                FsyncPolicy::Always | FsyncPolicy::Never => self.flush.notified().await,
            }
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let (plan, full) = {
                let mut g = self.lock();
                match g.log.config().fsync {
                    FsyncPolicy::Never => (g.log.sealed_sync_plan(), false),
                    _ => (g.log.sync_plan(), true),
                }
            };
            if plan.is_empty() {
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
                        last_checkpoint = Instant::now();
                    }
                    let policy = g.log.config().fsync;
                    drop(g);
                    raise(&self.durable, up_to);
                    if policy == FsyncPolicy::Always {
                        raise(&self.hw, up_to);
                    }
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
