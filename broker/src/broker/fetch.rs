//! The fetch operation, shared by every front end: read whole batches
//! from the leaders of several partitions, waiting (long poll) until
//! enough bytes are there, the deadline passes or a leadership is lost.
//!
//! A long poll on a replica that steps down ends at once, with that
//! partition reporting `NOT_LEADER`, so that the consumer moves to the new
//! leader instead of waiting out its deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Broker;
use super::produce::MAX_WAIT_CAP;
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use crate::security::auth::{Identity, Operation, Resource};

/// Cap of one fetch response (stays well below the gRPC message limit).
pub const MAX_FETCH_BYTES: usize = 48 << 20;

/// One partition of a fetch.
#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    /// 0: no per-partition limit (only the request's).
    pub max_bytes: usize,
}

/// A fetch over several partitions.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub partitions: Vec<FetchPartition>,
    pub max_wait: Duration,
    /// Answer as soon as this many bytes are there (at least 1).
    pub min_bytes: usize,
    /// 0: the broker's cap.
    pub max_bytes: usize,
}

/// What was read from one partition.
#[derive(Debug, Clone)]
pub struct PartitionRead {
    /// Whole strata batches, back to back.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start: i64,
}

/// The outcome for one partition of a fetch, in request order.
#[derive(Debug)]
pub struct FetchedPartition {
    pub topic: String,
    pub partition: u32,
    pub result: Result<PartitionRead>,
}

impl Broker {
    /// Reads every partition of `req`, each checked against the ACLs on
    /// its own (a denied partition reports the error, the others are read).
    pub async fn fetch(&self, who: &Identity, req: &FetchRequest) -> Vec<FetchedPartition> {
        let started = Instant::now();
        let max_total = match req.max_bytes {
            0 => MAX_FETCH_BYTES,
            n => n.min(MAX_FETCH_BYTES),
        };
        let deadline = Instant::now() + req.max_wait.min(MAX_WAIT_CAP);
        let looked_up: Vec<Result<Arc<Partition>>> = req
            .partitions
            .iter()
            .map(|p| {
                self.authorize(who, Operation::Read, Resource::Topic, &p.topic)?;
                self.leader_partition(&p.topic, p.partition)
            })
            .collect();
        let parts: Vec<Option<Arc<Partition>>> =
            looked_up.iter().map(|r| r.as_ref().ok().cloned()).collect();
        // A lookup error ends the request in its first turn.
        let mut errors: Vec<Option<BrokerError>> = looked_up.into_iter().map(Result::err).collect();
        // The term each partition is led in: a long poll on a replica that
        // steps down ends at once with NOT_LEADER for that partition.
        let terms: Vec<u64> = parts
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.role().term))
            .collect();
        loop {
            // Subscribe before reading so that no append slips between.
            let mut watches: Vec<_> = parts.iter().flatten().map(|p| p.subscribe_hw()).collect();
            let mut out = Vec::with_capacity(req.partitions.len());
            let mut total = 0usize;
            let mut failed = false;
            for (i, fp) in req.partitions.iter().enumerate() {
                let result = match (&parts[i], errors[i].take()) {
                    (Some(p), _) if p.leads_in(terms[i]) => {
                        let r = self.read_partition(p, fp, max_total, total).await;
                        if let Ok(r) = &r {
                            total += r.records.len();
                        }
                        r
                    }
                    (Some(p), _) => Err(p.not_leader()),
                    (None, e) => Err(e.unwrap_or_else(|| {
                        BrokerError::NotReady(format!("{}/{}", fp.topic, fp.partition))
                    })),
                };
                failed |= result.is_err();
                out.push(FetchedPartition {
                    topic: fp.topic.clone(),
                    partition: fp.partition,
                    result,
                });
            }
            let now = Instant::now();
            if failed || total >= req.min_bytes.max(1) || now >= deadline || watches.is_empty() {
                let m = crate::metrics::global();
                for p in &out {
                    if let Ok(r) = &p.result {
                        m.fetched(&p.topic, r.records.len() as u64);
                    }
                }
                m.request("fetch", started.elapsed(), !failed);
                return out;
            }
            let changed =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            let lost = futures::future::select_all(
                parts
                    .iter()
                    .zip(&terms)
                    .filter_map(|(p, t)| p.as_ref().map(|p| Box::pin(p.leadership_lost(*t)))),
            );
            // A deadline, a new high watermark or a lost leadership: the
            // next turn reads (or reports) again.
            tokio::select! {
                _ = tokio::time::timeout(deadline - now, changed) => {}
                _ = lost => {}
            }
        }
    }

    /// Reads one partition within what is left of the response's room.
    async fn read_partition(
        &self,
        part: &Arc<Partition>,
        fp: &FetchPartition,
        max_total: usize,
        total: usize,
    ) -> Result<PartitionRead> {
        let room = max_total.saturating_sub(total);
        let cap = match fp.max_bytes {
            0 => room,
            n => n.min(room),
        };
        // The first batch of the response always goes out whole so that a
        // consumer progresses; later ones only if they fit.
        let first_whole = total == 0;
        if cap == 0 && !first_whole {
            let o = crate::tier::serve::offsets(self, part);
            return Ok(PartitionRead {
                records: Bytes::new(),
                high_watermark: o.high_watermark,
                log_start: o.log_start,
            });
        }
        let (info, offs) =
            crate::tier::serve::read(self, part, fp.offset, cap.max(1), first_whole).await?;
        Ok(PartitionRead {
            records: info.records,
            high_watermark: offs.high_watermark,
            log_start: offs.log_start,
        })
    }
}

impl FetchedPartition {
    /// The error of a partition the identity may not read, if any: the
    /// gRPC front end fails the whole request on it.
    pub fn denied(parts: &[FetchedPartition]) -> Option<&BrokerError> {
        parts.iter().find_map(|p| match &p.result {
            Err(e @ BrokerError::Unauthorized(_)) => Some(e),
            _ => None,
        })
    }
}
