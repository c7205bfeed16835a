//! Partition readers: one background task per assigned partition holds a
//! server-streaming `Subscribe` to the partition's leader and hands the
//! streamed batches, not yet decoded, to the consumer through a small
//! bounded channel (backpressure: a full channel stops reading the stream,
//! which fills the HTTP/2 window and parks the broker's sender).
//!
//! All partitions of a consumer share a byte budget for chunks handed over
//! but not yet taken, and with many partitions each stream asks for smaller
//! messages (a task holds one message while it waits for room), so that
//! memory stays bounded however many partitions are assigned.
//!
//! The task owns the stream offset (the offset after the last batch it
//! forwarded); the consumer owns the positions of records actually handed
//! out. On `NOT_LEADER`, connection errors or an unexpected end of the
//! stream the task reconnects to the (refreshed) leader and resumes from its
//! offset with backoff; `OFFSET_OUT_OF_RANGE` is handled per
//! `auto_offset_reset`. Dropping a [`Reader`] aborts its task (and with it
//! the stream).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use strata_proto::v1::{ErrorCode, OffsetSpec, SubscribeRequest};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::{ConsumerConfig, OffsetReset};
use crate::cluster::Cluster;
use crate::conn::with_deadline;
use crate::error::{ClientError, Result, from_error_info, is_error};
use crate::record::scan_next_offset;

/// Largest message asked of the broker. Bigger messages measured slower
/// (1 KiB records, one partition: ~1.4 GB/s at 2-4 MiB, ~1.2 GB/s at 6 MiB,
/// ~1.0 GB/s at 8-16 MiB): a message of a few MiB stays in cache between
/// its arrival and its decoding.
const MAX_MESSAGE_BYTES: u32 = 4 << 20;
/// Smallest message cap asked for, however many partitions share the budget.
const MIN_MESSAGE_BYTES: u32 = 64 << 10;
/// Headroom kept below the client's largest accepted gRPC message.
const MESSAGE_OVERHEAD: usize = 64 << 10;

/// Streamed, not yet decoded batches of one partition. The consumer decodes
/// them while the task already reads the next message.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The stream offset before these batches: records below it are skipped
    /// (the first batch may start before it).
    pub from: i64,
    pub data: Bytes,
    /// This chunk's share of the consumer's buffer budget, returned when
    /// the chunk is dropped.
    _budget: OwnedSemaphorePermit,
}

/// What every reader task of a consumer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    cluster: Arc<Cluster>,
    /// Cap of one streamed message.
    max_bytes: u32,
    reset: OffsetReset,
    /// Chunks buffered per partition.
    depth: usize,
    /// KiB of chunks handed over but not yet taken, across partitions.
    budget: Arc<Semaphore>,
    budget_kib: u32,
}

impl Shared {
    pub(crate) fn new(cluster: &Arc<Cluster>, cfg: &ConsumerConfig) -> Arc<Self> {
        let wanted = match (cfg.max_partition_bytes, cfg.max_bytes) {
            (0, 0) => MAX_MESSAGE_BYTES,
            (0, n) | (n, _) => n.min(MAX_MESSAGE_BYTES),
        };
        let limit = cluster
            .config()
            .max_message_size
            .saturating_sub(MESSAGE_OVERHEAD)
            .max(MESSAGE_OVERHEAD);
        let max_bytes = (wanted as usize).min(limit) as u32;
        let depth = cfg.prefetch.max(1);
        let budget_kib = (depth as u64 * u64::from(cfg.max_bytes.max(max_bytes)))
            .div_ceil(1024)
            .min(u64::from(u32::MAX)) as u32;
        Arc::new(Self {
            cluster: Arc::clone(cluster),
            max_bytes,
            reset: cfg.auto_offset_reset,
            depth,
            budget: Arc::new(Semaphore::new(budget_kib as usize)),
            budget_kib,
        })
    }

    /// The message cap of one stream when `partitions` share the budget.
    fn message_bytes(&self, partitions: usize) -> u32 {
        let share = u64::from(self.budget_kib) * 1024 / partitions.max(1) as u64;
        share
            .max(u64::from(MIN_MESSAGE_BYTES))
            .min(u64::from(self.max_bytes)) as u32
    }

    /// Waits until `len` bytes fit into the budget (a chunk larger than the
    /// whole budget takes all of it).
    async fn reserve(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        let kib = len.div_ceil(1024).clamp(1, self.budget_kib as usize) as u32;
        Arc::clone(&self.budget).acquire_many_owned(kib).await.ok()
    }
}

/// The consumer's handle on one partition's reader task.
#[derive(Debug)]
pub(crate) struct Reader {
    rx: mpsc::Receiver<Result<Chunk>>,
    task: JoinHandle<()>,
    /// The task ended (after a fatal error) and everything it sent was read.
    done: bool,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Reader {
    /// Starts reading `topic/partition` at `offset`; `partitions` is how
    /// many partitions the consumer reads in all.
    pub(crate) fn spawn(
        shared: &Arc<Shared>,
        topic: Arc<str>,
        partition: u32,
        offset: i64,
        partitions: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(shared.depth);
        let target = Target {
            topic,
            partition,
            max_bytes: shared.message_bytes(partitions),
        };
        let task = tokio::spawn(run(Arc::clone(shared), target, offset, tx));
        Self {
            rx,
            task,
            done: false,
        }
    }

    /// Whether the reader gave up for good (its error was already handed out).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk or error; `None` once the task ended.
    pub(crate) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Chunk>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let r = self.rx.poll_recv(cx);
        if let Poll::Ready(None) = r {
            self.done = true;
        }
        r
    }
}

/// What one reader task streams.
#[derive(Debug)]
struct Target {
    topic: Arc<str>,
    partition: u32,
    /// Cap of one streamed message.
    max_bytes: u32,
}

/// How one stream ended.
enum Ended {
    /// The consumer dropped the reader.
    Closed,
    /// Failed; the task decides whether and how to go on.
    Failed(ClientError),
}

/// Streams one partition until the consumer drops the reader or a fatal
/// error (handed to the consumer) ends it.
async fn run(
    shared: Arc<Shared>,
    target: Target,
    mut offset: i64,
    tx: mpsc::Sender<Result<Chunk>>,
) {
    let cluster = &shared.cluster;
    let (topic, partition) = (&target.topic, target.partition);
    let max_attempts = cluster.config().retries.saturating_mul(3);
    let mut attempt = 0u32;
    loop {
        let e = match stream_once(&shared, &target, &mut offset, &tx, &mut attempt).await {
            Ended::Closed => return,
            Ended::Failed(e) => e,
        };
        if e.code() == Some(ErrorCode::OffsetOutOfRange) {
            match reset_offset(cluster, shared.reset, topic, partition, offset, e).await {
                Ok(o) => {
                    offset = o;
                    continue;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        if !e.is_retriable() || attempt >= max_attempts {
            let _ = tx.send(Err(e)).await;
            return;
        }
        tracing::debug!(
            topic = %topic,
            partition,
            offset,
            attempt,
            error = %e,
            "subscribe stream failed; reconnecting"
        );
        if let Some(l) = e.leader() {
            cluster.set_leader(topic, partition, l.id, &l.addr);
        } else if attempt > 0 || e.invalidates_metadata() {
            // A failed refresh is retried by the next attempt.
            let _ = cluster.refresh(&[topic.to_string()]).await;
        }
        tokio::select! {
            () = tokio::time::sleep(cluster.config().backoff(attempt)) => {}
            () = tx.closed() => return,
        }
        attempt = attempt.saturating_add(1);
    }
}

/// Opens a Subscribe stream at `offset` on the partition's leader and
/// forwards its messages until it fails. `attempt` is reset once the stream
/// is open.
async fn stream_once(
    shared: &Shared,
    target: &Target,
    offset: &mut i64,
    tx: &mpsc::Sender<Result<Chunk>>,
    attempt: &mut u32,
) -> Ended {
    let cluster = &shared.cluster;
    let (topic, partition) = (&target.topic, target.partition);
    let addr = match leader(cluster, topic, partition).await {
        Ok(a) => a,
        Err(e) => return Ended::Failed(e),
    };
    let open = async {
        let mut c = cluster.pool.broker(&addr)?;
        let req = SubscribeRequest {
            topic: topic.to_string(),
            partition,
            offset: *offset,
            max_bytes: target.max_bytes,
        };
        with_deadline(cluster.config(), Duration::ZERO, c.subscribe(req)).await
    };
    let mut stream = tokio::select! {
        r = open => match r {
            Ok(s) => s,
            Err(e) => return Ended::Failed(e.at(&addr)),
        },
        () = tx.closed() => return Ended::Closed,
    };
    *attempt = 0;
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Ended::Failed(ClientError::Connection(format!(
                    "subscribe stream of {topic}/{partition} from {addr} ended"
                )));
            }
            Err(st) => return Ended::Failed(ClientError::from(st).at(&addr)),
        };
        if is_error(msg.error.as_ref()) {
            return Ended::Failed(
                msg.error
                    .as_ref()
                    .map(from_error_info)
                    .unwrap_or(ClientError::Timeout),
            );
        }
        let next = match scan_next_offset(&msg.records, *offset) {
            Ok(n) => n,
            Err(e) => {
                return Ended::Failed(ClientError::Corrupt(format!(
                    "{topic}/{partition}: {}",
                    e.message()
                )));
            }
        };
        if next <= *offset {
            continue;
        }
        let Some(budget) = shared.reserve(msg.records.len()).await else {
            return Ended::Closed;
        };
        let chunk = Chunk {
            from: *offset,
            data: msg.records,
            _budget: budget,
        };
        *offset = next;
        if tx.send(Ok(chunk)).await.is_err() {
            return Ended::Closed;
        }
    }
}

/// The address of the partition's leader (from the metadata cache, asking
/// the cluster when the topic is not cached).
async fn leader(cluster: &Cluster, topic: &str, partition: u32) -> Result<String> {
    let t = cluster.topic(topic).await?;
    if partition >= t.partitions() {
        return Err(ClientError::broker(
            ErrorCode::UnknownPartition,
            format!("topic '{topic}' has no partition {partition}"),
        ));
    }
    cluster.leader_addr(topic, partition).ok_or_else(|| {
        ClientError::broker(
            ErrorCode::NotLeader,
            format!("no leader known for {topic}/{partition}"),
        )
    })
}

/// The offset to resume from after `OFFSET_OUT_OF_RANGE`, per
/// `auto_offset_reset` (`None` gives the error back).
async fn reset_offset(
    cluster: &Cluster,
    reset: OffsetReset,
    topic: &str,
    partition: u32,
    from: i64,
    e: ClientError,
) -> Result<i64> {
    let spec = match reset {
        OffsetReset::Earliest => OffsetSpec::Earliest,
        OffsetReset::Latest => OffsetSpec::Latest,
        OffsetReset::None => return Err(e),
    };
    let r = cluster.list_offsets(topic, partition, spec, 0).await?;
    tracing::info!(
        topic,
        partition,
        from,
        to = r.offset,
        "offset out of range; reset"
    );
    Ok(r.offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;

    #[tokio::test]
    async fn message_cap_and_shared_budget() {
        let cluster = Cluster::new(ClientConfig::default()).expect("cluster");
        let shared = Shared::new(&cluster, &ConsumerConfig::default());
        assert_eq!(shared.max_bytes, MAX_MESSAGE_BYTES);
        assert_eq!(shared.budget_kib, 4 * (32 << 10));
        // 128 MiB of budget: 4 MiB messages up to 32 partitions, then less.
        assert_eq!(shared.message_bytes(1), MAX_MESSAGE_BYTES);
        assert_eq!(shared.message_bytes(32), MAX_MESSAGE_BYTES);
        assert_eq!(shared.message_bytes(64), 2 << 20);
        assert_eq!(shared.message_bytes(100_000), MIN_MESSAGE_BYTES);

        let cfg = ConsumerConfig {
            max_bytes: 4096,
            max_partition_bytes: 2048,
            prefetch: 2,
            ..Default::default()
        };
        let shared = Shared::new(&cluster, &cfg);
        assert_eq!(
            (shared.max_bytes, shared.depth, shared.budget_kib),
            (2048, 2, 8)
        );
        assert_eq!(shared.message_bytes(1), 2048);
        let first = shared.reserve(5000).await.expect("fits");
        let second = shared.reserve(5000);
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut second)
                .await
                .is_err(),
            "over budget: waits"
        );
        drop(first);
        let second = second.await.expect("fits once the first is taken");
        assert_eq!(second.num_permits(), 5);
        drop(second);
        // Larger than the whole budget: takes all of it.
        assert_eq!(
            shared.reserve(1 << 20).await.map(|p| p.num_permits()),
            Some(8)
        );
    }
}
