//! The produce operation, shared by every front end: check a request
//! (ACL, topic, partition, batch framing and CRC, size), propose its
//! batches to the partition's Raft group, then wait for the acks.
//!
//! The three stages are separate so that a streaming front end can check
//! the next request while the previous one is being appended, and so that
//! appends keep the order in which requests arrived on a connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::{self, BatchHeader};

use super::Broker;
use crate::error::{BrokerError, Result};
use crate::partition::{Acks, Partition};
use crate::raft::node::Proposal;
use crate::security::auth::{Identity, Operation, Resource};

/// How long a produce waits for its acks when the request names no limit.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait a request may ask for.
pub const MAX_WAIT_CAP: Duration = Duration::from_secs(60);

/// What a front end asks to append to one partition.
pub struct ProduceRequest {
    pub topic: String,
    pub partition: u32,
    /// One or more strata batches, back to back.
    pub records: Bytes,
    pub acks: Acks,
    /// `None`: the default wait.
    pub timeout: Option<Duration>,
}

/// Where the records of a produce landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// -1 when the request asked for no acks.
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
}

/// A produce request that passed every check (done outside any lock).
pub struct Prepared {
    part: Arc<Partition>,
    started: Instant,
    /// When the checks were done.
    checked: Instant,
    acks: Acks,
    batches: Vec<(BatchHeader, Bytes)>,
    timeout: Duration,
}

/// A produce request handed to the Raft loop, waiting for its acks.
pub struct Pending {
    part: Arc<Partition>,
    started: Instant,
    checked: Instant,
    records: u64,
    bytes: u64,
    acks: Acks,
    rx: tokio::sync::oneshot::Receiver<Result<Proposal>>,
    timeout: Duration,
}

impl Broker {
    /// Checks a produce request: ACL, topic, partition leadership, batch
    /// framing and CRC, the topic's size limit.
    pub fn prepare_produce(&self, who: &Identity, req: ProduceRequest) -> Result<Prepared> {
        let started = Instant::now();
        self.prepare_inner(who, req, started).inspect_err(|_| {
            crate::metrics::global().request("produce", started.elapsed(), false);
        })
    }

    fn prepare_inner(
        &self,
        who: &Identity,
        req: ProduceRequest,
        started: Instant,
    ) -> Result<Prepared> {
        self.authorize(who, Operation::Write, Resource::Topic, &req.topic)?;
        if req.topic.starts_with("__") {
            return Err(BrokerError::InvalidTopic {
                name: req.topic,
                why: "internal topics are written by the broker only".into(),
            });
        }
        let part = self.leader_partition(&req.topic, req.partition)?;
        let batches = batch::split_validated(&req.records)?;
        let config = part.config();
        let max = config.max_message_bytes;
        if let Some((h, _)) = batches.iter().find(|(h, _)| h.total_len() > max as usize) {
            return Err(BrokerError::BatchTooLarge {
                size: h.total_len(),
                max,
            });
        }
        if batches.iter().any(|(h, _)| h.is_control()) {
            return Err(BrokerError::InvalidRequest(
                "control batches are written by the broker only".into(),
            ));
        }
        if config.cleanup.compact {
            check_keyed(&req.topic, &batches)?;
        }
        let timeout = req
            .timeout
            .map_or(DEFAULT_ACK_TIMEOUT, |t| t.min(MAX_WAIT_CAP));
        Ok(Prepared {
            part,
            started,
            checked: Instant::now(),
            acks: req.acks,
            batches,
            timeout,
        })
    }
}

/// A compacted topic keeps the latest record per key: a record without a
/// key could never be compacted, so it is refused (Kafka's INVALID_RECORD).
fn check_keyed(topic: &str, batches: &[(BatchHeader, Bytes)]) -> Result<()> {
    for (_, b) in batches {
        for r in batch::records(b)? {
            if r?.key.is_none() {
                return Err(BrokerError::InvalidRecord(format!(
                    "topic '{topic}' is compacted: every record needs a key"
                )));
            }
        }
    }
    Ok(())
}

impl Prepared {
    /// Proposes the batches (calls keep their order); what is left is
    /// waiting for the acks.
    pub fn append(self) -> Result<Pending> {
        let records = self
            .batches
            .iter()
            .map(|(h, _)| h.records_count as u64)
            .sum();
        let bytes = self.batches.iter().map(|(h, _)| h.total_len() as u64).sum();
        let started = self.started;
        let rx = self.part.start_produce(self.batches).inspect_err(|_| {
            crate::metrics::global().request("produce", started.elapsed(), false);
        })?;
        Ok(Pending {
            part: self.part,
            started,
            checked: self.checked,
            records,
            bytes,
            acks: self.acks,
            rx,
            timeout: self.timeout,
        })
    }
}

/// A produce slower than this is logged (at debug) with its stages.
const SLOW_PRODUCE: Duration = Duration::from_millis(50);

impl Pending {
    /// Waits for the acks the request asked for.
    pub async fn finish(self) -> Result<Produced> {
        let done = self
            .part
            .complete_produce(self.rx, self.acks, self.timeout)
            .await;
        let m = crate::metrics::global();
        let took = self.started.elapsed();
        m.request("produce", took, done.is_ok());
        let a = done?;
        m.produced(self.part.topic(), self.records, self.bytes);
        observe_stages(
            &self.part,
            self.bytes,
            (self.started, self.checked),
            &a.stages,
            took,
        );
        let (base_offset, last_offset) = if self.acks == Acks::None {
            (-1, -1)
        } else {
            (a.base_offset, a.last_offset)
        };
        Ok(Produced {
            base_offset,
            last_offset,
            log_start_offset: a.log_start_offset,
        })
    }
}

/// Feeds the per-stage histograms: `check` (ACL, framing, CRC), `queue`
/// (until the Raft loop proposed), `append` (until the local log held
/// the batches), `replicate` (until the high watermark passed them);
/// `respond`, the rest, is the wake-up after the acks.
fn observe_stages(
    part: &Partition,
    bytes: u64,
    (started, checked): (Instant, Instant),
    st: &crate::partition::ProduceStages,
    took: Duration,
) {
    let m = crate::metrics::global();
    let since = |a: Instant, b: Option<Instant>| b.map(|b| b.saturating_duration_since(a));
    let check = checked.saturating_duration_since(started);
    let queue = since(checked, st.proposed);
    let append = st.proposed.and_then(|p| since(p, st.written));
    let replicate = st
        .written
        .or(st.proposed)
        .and_then(|w| since(w, st.committed));
    let last = st.committed.or(st.written).or(st.proposed);
    let respond = last.map(|l| (started + took).saturating_duration_since(l));
    let stages = [
        ("check", Some(check)),
        ("queue", queue),
        ("append", append),
        ("replicate", replicate),
        ("respond", respond),
    ];
    for (stage, d) in stages {
        if let Some(d) = d {
            m.produce_stage(stage, d);
        }
    }
    if took >= SLOW_PRODUCE {
        let ms = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1e3);
        tracing::debug!(topic = %part.topic(), partition = part.id(),
            bytes = bytes, total_ms = took.as_secs_f64() * 1e3,
            check_ms = ms(Some(check)), queue_ms = ms(queue), append_ms = ms(append),
            replicate_ms = ms(replicate), respond_ms = ms(respond), "slow produce");
    }
}
