//! The background fetch loop of a consumer: long-polls every assigned
//! partition, grouped by leader, and hands decoded chunks to the consumer
//! through a small bounded channel, so the next fetch is already in flight
//! while the previous chunk is consumed.
//!
//! The loop owns the fetch offsets; the consumer owns the positions of
//! records actually handed out. A change of assignment replaces the loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use strata_proto::v1::{ErrorCode, FetchPartition, FetchRequest, OffsetSpec};
use tokio::sync::mpsc;

use super::{ConsumerConfig, OffsetReset};
use crate::cluster::Cluster;
use crate::conn::with_deadline;
use crate::error::{ClientError, Result, from_error_info, is_error};
use crate::record::scan_next_offset;

/// Fetched, not yet decoded batches of one partition. The consumer decodes
/// them while the loop already waits for the next fetch.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Index into the consumer's assignment.
    pub slot: usize,
    pub topic: Arc<str>,
    pub partition: u32,
    /// The offset requested: records below it are skipped.
    pub from: i64,
    pub data: Bytes,
}

/// One partition the loop fetches.
#[derive(Debug, Clone)]
pub(crate) struct FetchSlot {
    pub slot: usize,
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
}

/// Runs until the consumer drops the receiver or no partition is left.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    cfg: ConsumerConfig,
    mut slots: Vec<FetchSlot>,
    tx: mpsc::Sender<Result<Chunk>>,
) {
    let mut attempt = 0u32;
    while !slots.is_empty() {
        // Group by leader; partitions without a known leader wait for a refresh.
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        let mut leaderless = false;
        for (i, s) in slots.iter().enumerate() {
            if cluster.cached_topic(&s.topic).is_none()
                && let Err(e) = cluster.topic(&s.topic).await
                && !e.is_retriable()
            {
                let _ = tx.send(Err(e)).await;
                return;
            }
            match cluster.leader_addr(&s.topic, s.partition) {
                Some(a) => groups.entry(a).or_default().push(i),
                None => leaderless = true,
            }
        }
        let wait = Duration::from_millis(u64::from(cfg.max_wait_ms()));
        let requests = groups.into_iter().map(|(addr, idx)| {
            let req = FetchRequest {
                max_wait_ms: cfg.max_wait_ms(),
                min_bytes: cfg.min_bytes,
                max_bytes: cfg.max_bytes,
                partitions: idx
                    .iter()
                    .map(|&i| FetchPartition {
                        topic: slots[i].topic.to_string(),
                        partition: slots[i].partition,
                        offset: slots[i].offset,
                        max_bytes: cfg.max_partition_bytes,
                    })
                    .collect(),
            };
            let cluster = &cluster;
            async move {
                let r = async {
                    let mut c = cluster.pool.broker(&addr)?;
                    with_deadline(cluster.config(), wait, c.fetch(req)).await
                }
                .await;
                (idx, r)
            }
        });
        let results = futures::future::join_all(requests).await;
        let mut retry: Option<ClientError> = None;
        let mut drop_slots: Vec<usize> = Vec::new();
        for (idx, r) in results {
            let resp = match r {
                Ok(r) => r,
                Err(e) if e.is_retriable() => {
                    retry = Some(e);
                    continue;
                }
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    drop_slots.extend(idx.iter().map(|&i| slots[i].slot));
                    continue;
                }
            };
            for p in resp.partitions {
                let Some(&i) = idx
                    .iter()
                    .find(|&&i| slots[i].partition == p.partition && *slots[i].topic == *p.topic)
                else {
                    continue;
                };
                if is_error(p.error.as_ref()) {
                    let e = p
                        .error
                        .as_ref()
                        .map(from_error_info)
                        .unwrap_or(ClientError::Timeout);
                    match handle_partition_error(&cluster, &cfg, &mut slots[i], e).await {
                        Ok(None) => {}
                        Ok(Some(e)) => retry = Some(e),
                        Err(e) => {
                            drop_slots.push(slots[i].slot);
                            if tx.send(Err(e)).await.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
                let s = &mut slots[i];
                match scan_next_offset(&p.records, s.offset) {
                    Ok(next) => {
                        if next > s.offset {
                            let chunk = Chunk {
                                slot: s.slot,
                                topic: Arc::clone(&s.topic),
                                partition: s.partition,
                                from: s.offset,
                                data: p.records,
                            };
                            s.offset = next;
                            if tx.send(Ok(chunk)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        drop_slots.push(s.slot);
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        slots.retain(|s| !drop_slots.contains(&s.slot));
        if retry.is_some() || leaderless {
            if attempt > 0 || leaderless {
                let _ = cluster.refresh(&topics(&slots)).await;
            }
            tokio::time::sleep(cluster.config().backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
            if let Some(e) = retry
                && attempt > cluster.config().retries.saturating_mul(3)
            {
                let _ = tx.send(Err(e)).await;
                return;
            }
        } else {
            attempt = 0;
        }
    }
}

fn topics(slots: &[FetchSlot]) -> Vec<String> {
    let mut t: Vec<String> = slots.iter().map(|s| s.topic.to_string()).collect();
    t.sort();
    t.dedup();
    t
}

/// Deals with a per-partition fetch error: `Ok(None)` = fixed (offset
/// reset), `Ok(Some(e))` = retry later, `Err(e)` = give the partition up.
async fn handle_partition_error(
    cluster: &Cluster,
    cfg: &ConsumerConfig,
    s: &mut FetchSlot,
    e: ClientError,
) -> Result<Option<ClientError>> {
    if e.code() == Some(ErrorCode::OffsetOutOfRange) {
        let spec = match cfg.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => return Err(e),
        };
        let r = cluster.list_offsets(&s.topic, s.partition, spec, 0).await?;
        tracing::info!(
            topic = %s.topic,
            partition = s.partition,
            from = s.offset,
            to = r.offset,
            "fetch offset out of range; reset"
        );
        s.offset = r.offset;
        return Ok(None);
    }
    if e.is_retriable() {
        if let Some(l) = e.leader() {
            cluster.set_leader(&s.topic, s.partition, l.id, &l.addr);
        }
        return Ok(Some(e));
    }
    Err(e)
}
