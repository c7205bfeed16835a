//! The asynchronous producer: [`Producer::send`] partitions a record,
//! reserves buffer memory, appends it to its partition's open batch and
//! returns a [`RecordFuture`]; batches leave when their partition has
//! nothing at the sender, when full, or after a linger (see
//! [`ProducerConfig::idle_send`]), through the sender task (see `sender`),
//! pipelined and, by default, idempotent.

mod accumulator;
mod compression;
mod future;
mod sender;
mod sequence;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strata_proto::v1::{Acks, ErrorCode, InitProducerIdRequest};
use tokio::sync::{Semaphore, TryAcquireError, mpsc, oneshot};

pub use compression::Compression;
pub use future::{RecordFuture, RecordMetadata};

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::conn::with_deadline;
use crate::error::{ClientError, Result};
use crate::partitioner::{Sticky, key_partition};
use accumulator::{ClosedBatch, PartitionAccumulator, RecordRef};
use sender::{Command, SenderConfig};

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a batch may wait for more records before it is sent.
    pub linger: Duration,
    /// Target batch size in bytes, of the records before compression (a
    /// single larger record gets its own batch).
    pub batch_size: usize,
    /// When the broker answers.
    pub acks: Acks,
    /// Batches per partition in flight at once.
    pub max_in_flight: usize,
    /// Number batches so that retries never duplicate or reorder records.
    pub idempotent: bool,
    /// Re-sends of a batch after retriable failures before it fails. The
    /// default is unbounded, as in Kafka: the delivery timeout bounds how
    /// long a record is retried, so a failover delays records, never fails
    /// them.
    pub retries: u32,
    /// Longest time from a batch's creation to its failure.
    pub delivery_timeout: Duration,
    /// Bytes of records buffered (not yet acknowledged) before `send` waits.
    pub buffer_memory: usize,
    /// Codec compressing each batch's records (default none).
    pub compression: Compression,
    /// Batch by the round trip instead of a timer (default on): a
    /// partition with no batch at the sender sends the batch a record opens
    /// at once; a batch opened while the partition's earlier batches are at
    /// the sender leaves when they complete (or when full, or after
    /// `busy_linger`). Batch size then follows the load: one record at a
    /// time when the rate is low, larger batches as round trips lengthen,
    /// so requests do not multiply near saturation. Off: every batch waits
    /// for `linger` or `batch_size` (Kafka's behaviour).
    pub idle_send: bool,
    /// With `idle_send`: the longest a batch opened while its partition's
    /// earlier batches are at the sender waits for them before it is sent
    /// anyway (pipelined behind them).
    pub busy_linger: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            linger: Duration::from_millis(5),
            batch_size: 256 * 1024,
            acks: Acks::All,
            max_in_flight: 5,
            idempotent: true,
            retries: u32::MAX,
            delivery_timeout: Duration::from_secs(120),
            buffer_memory: 64 << 20,
            compression: Compression::None,
            idle_send: true,
            busy_linger: Duration::from_millis(50),
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    pub topic: Arc<str>,
    /// Explicit partition; otherwise by key hash, or sticky when keyless.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the Unix epoch; `None` = now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A keyless record with a value.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug)]
struct TopicState {
    name: Arc<str>,
    partitions: Vec<Mutex<PartitionAccumulator>>,
    /// Per partition, its batches at the sender (queued or in flight).
    busy: Vec<Arc<AtomicUsize>>,
    sticky: Sticky,
}

impl TopicState {
    fn count(&self) -> u32 {
        self.partitions.len() as u32
    }
}

#[derive(Debug)]
struct LingerEntry {
    deadline: Instant,
    topic: Weak<TopicState>,
    partition: u32,
    id: u64,
}

#[derive(Debug)]
struct Inner {
    cluster: Arc<Cluster>,
    cfg: ProducerConfig,
    topics: RwLock<HashMap<Arc<str>, Arc<TopicState>>>,
    memory: Arc<Semaphore>,
    sender: mpsc::UnboundedSender<Command>,
    linger: mpsc::UnboundedSender<LingerEntry>,
    closed: AtomicBool,
}

/// An asynchronous, batching producer. Cheap to clone; all clones share
/// batches, connections and the producer id.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Producer {
    /// Connects (lazily), and with idempotence obtains a producer id.
    pub async fn new(client: ClientConfig, cfg: ProducerConfig) -> Result<Self> {
        if cfg.max_in_flight == 0 {
            return Err(ClientError::InvalidArgument(
                "max_in_flight must be at least 1".into(),
            ));
        }
        if cfg.buffer_memory < cfg.batch_size.min(1 << 20) {
            return Err(ClientError::InvalidArgument(
                "buffer_memory is smaller than one batch".into(),
            ));
        }
        let cluster = Cluster::new(client)?;
        let producer = if cfg.idempotent {
            let r = cluster
                .any_hedged(|addr| {
                    let cluster = &cluster;
                    async move {
                        let mut c = cluster.pool.broker(&addr)?;
                        with_deadline(
                            cluster.config(),
                            Duration::ZERO,
                            c.init_producer_id(InitProducerIdRequest {}),
                        )
                        .await
                    }
                })
                .await?;
            let epoch = i16::try_from(r.producer_epoch).map_err(|_| {
                ClientError::Corrupt(format!("producer epoch {} out of range", r.producer_epoch))
            })?;
            Some((r.producer_id, epoch))
        } else {
            None
        };
        let memory = Arc::new(Semaphore::new(
            cfg.buffer_memory.min(Semaphore::MAX_PERMITS),
        ));
        let (tx, rx) = mpsc::unbounded_channel();
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let scfg = SenderConfig {
            acks: cfg.acks,
            max_in_flight: cfg.max_in_flight,
            retries: cfg.retries,
            delivery_timeout: cfg.delivery_timeout,
            request_timeout: cluster.config().request_timeout,
            producer,
        };
        tokio::spawn(sender::run(
            Arc::clone(&cluster),
            scfg,
            Arc::clone(&memory),
            rx,
            cfg.idle_send.then_some(idle_tx),
        ));
        let (ltx, lrx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            cluster,
            cfg,
            topics: RwLock::new(HashMap::new()),
            memory,
            sender: tx,
            linger: ltx,
            closed: AtomicBool::new(false),
        });
        tokio::spawn(linger_task(Arc::downgrade(&inner), lrx));
        tokio::spawn(idle_task(Arc::downgrade(&inner), idle_rx));
        Ok(Self { inner })
    }

    /// The producer's settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.cfg
    }

    async fn topic(&self, name: &Arc<str>) -> Result<Arc<TopicState>> {
        let cached = match self.inner.topics.read() {
            Ok(t) => t.get(name).cloned(),
            Err(p) => p.into_inner().get(name).cloned(),
        };
        if let Some(t) = cached {
            return Ok(t);
        }
        let info = self.inner.cluster.topic(name).await?;
        let state = Arc::new(TopicState {
            name: Arc::clone(name),
            partitions: (0..info.partitions())
                .map(|p| {
                    Mutex::new(
                        PartitionAccumulator::new(Arc::clone(name), p, self.inner.cfg.batch_size)
                            .with_compression(self.inner.cfg.compression.codec()),
                    )
                })
                .collect(),
            busy: (0..info.partitions())
                .map(|_| Arc::new(AtomicUsize::new(0)))
                .collect(),
            sticky: Sticky::default(),
        });
        let mut map = match self.inner.topics.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        Ok(Arc::clone(map.entry(Arc::clone(name)).or_insert(state)))
    }

    /// Partitions of `topic` (from metadata).
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(&Arc::from(topic)).await?.count())
    }

    /// Enqueues a record. Returns once the record sits in a batch (waiting
    /// while buffer memory is full); the returned future resolves when the
    /// broker acknowledged the batch.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordFuture> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(ClientError::Closed("producer is closed".into()));
        }
        let topic = self.topic(&record.topic).await?;
        let n = topic.count();
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p >= n => {
                return Err(ClientError::broker(
                    ErrorCode::UnknownPartition,
                    format!("topic '{}' has no partition {p}", topic.name),
                ));
            }
            (Some(p), _) => p,
            (None, Some(k)) => key_partition(k, n),
            (None, None) => topic.sticky.partition(n),
        };
        let headers_len: usize = record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 4)
            .sum();
        let reserved = record.key.as_ref().map_or(0, Bytes::len)
            + record.value.as_ref().map_or(0, Bytes::len)
            + headers_len
            + 24;
        if reserved > self.inner.cfg.buffer_memory {
            return Err(ClientError::InvalidArgument(format!(
                "record of {reserved} bytes exceeds buffer_memory"
            )));
        }
        let permits = u32::try_from(reserved)
            .map_err(|_| ClientError::InvalidArgument("record too large".into()))?;
        match self.inner.memory.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => self
                .inner
                .memory
                .acquire_many(permits)
                .await
                .map_err(|_| ClientError::Closed("producer is closed".into()))?
                .forget(),
            Err(TryAcquireError::Closed) => {
                return Err(ClientError::Closed("producer is closed".into()));
            }
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        let hdrs: Vec<(&str, Option<&[u8]>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        let sticky = record.partition.is_none() && record.key.is_none();
        let appended = {
            let mut acc = lock(&topic.partitions[partition as usize]);
            let mut appended = acc.append(RecordRef {
                timestamp,
                key: record.key.as_deref(),
                value: record.value.as_deref(),
                headers: &hdrs,
                reserved,
            });
            // Closed batches reach the sender before the lock is released,
            // so the partition's batches leave in the order they closed
            // (the linger timer closes batches of the same partition).
            for batch in appended.closed.drain(..) {
                if sticky {
                    topic.sticky.batch_closed(partition, n);
                }
                self.dispatch(&topic, partition, batch);
            }
            // Nothing of this partition at the sender: no reason to wait.
            if appended.opened.is_some()
                && self.inner.cfg.idle_send
                && topic.busy[partition as usize].load(Ordering::Acquire) == 0
                && let Some(batch) = acc.close()
            {
                appended.opened = None;
                if sticky {
                    topic.sticky.batch_closed(partition, n);
                }
                self.dispatch(&topic, partition, batch);
            }
            appended
        };
        if let Some(id) = appended.opened {
            // With idle_send only a batch opened while busy gets here, so
            // the wait is the same for every batch of this producer.
            let wait = if self.inner.cfg.idle_send {
                self.inner.cfg.busy_linger
            } else {
                self.inner.cfg.linger
            };
            let _ = self.inner.linger.send(LingerEntry {
                deadline: Instant::now() + wait,
                topic: Arc::downgrade(&topic),
                partition,
                id,
            });
        }
        Ok(appended.future)
    }

    fn dispatch(&self, topic: &TopicState, partition: u32, batch: ClosedBatch) {
        self.inner.dispatch(topic, partition, batch);
    }

    /// Sends every open batch now and waits until everything sent before
    /// this call is acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        self.inner.close_open_batches();
        let (tx, rx) = oneshot::channel();
        self.inner
            .sender
            .send(Command::Flush(tx))
            .map_err(|_| ClientError::Closed("producer sender stopped".into()))?;
        rx.await
            .map_err(|_| ClientError::Closed("producer sender stopped".into()))
    }

    /// Flushes, then refuses further sends.
    pub async fn close(&self) -> Result<()> {
        let r = self.flush().await;
        self.inner.closed.store(true, Ordering::Relaxed);
        r
    }
}

impl Inner {
    fn dispatch(&self, topic: &TopicState, partition: u32, mut batch: ClosedBatch) {
        if let Some(busy) = topic.busy.get(partition as usize) {
            busy.fetch_add(1, Ordering::AcqRel);
            batch.busy = Some(Arc::clone(busy));
        }
        if let Err(mpsc::error::SendError(Command::Batch { batch, .. })) =
            self.sender.send(Command::Batch {
                topic: Arc::clone(&topic.name),
                partition,
                batch,
            })
        {
            if let Some(busy) = &batch.busy {
                busy.fetch_sub(1, Ordering::AcqRel);
            }
            batch
                .shared
                .complete(Err(ClientError::Closed("producer sender stopped".into())));
            self.memory.add_permits(batch.reserved);
        }
    }

    /// Sends the open batch of a partition whose last batch at the sender
    /// just completed (see [`ProducerConfig::idle_send`]).
    fn partition_idle(&self, topic: &str, partition: u32) {
        let state = match self.topics.read() {
            Ok(t) => t.get(topic).cloned(),
            Err(p) => p.into_inner().get(topic).cloned(),
        };
        let Some(t) = state else { return };
        let (Some(acc), Some(busy)) = (
            t.partitions.get(partition as usize),
            t.busy.get(partition as usize),
        ) else {
            return;
        };
        let mut acc = lock(acc);
        if busy.load(Ordering::Acquire) == 0
            && let Some(b) = acc.close()
        {
            t.sticky.batch_closed(partition, t.count());
            self.dispatch(&t, partition, b);
        }
    }

    fn close_open_batches(&self) {
        let topics: Vec<Arc<TopicState>> = match self.topics.read() {
            Ok(t) => t.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        };
        for t in topics {
            for (p, acc) in t.partitions.iter().enumerate() {
                let mut acc = lock(acc);
                if let Some(b) = acc.close() {
                    self.dispatch(&t, p as u32, b);
                }
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nothing may hang: open batches go out before the sender stops.
        self.close_open_batches();
    }
}

/// Closes batches whose linger expired. Deadlines arrive in order because
/// the wait is the same for every batch of a producer.
async fn linger_task(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<LingerEntry>) {
    while let Some(e) = rx.recv().await {
        tokio::time::sleep_until(e.deadline.into()).await;
        let (Some(inner), Some(topic)) = (inner.upgrade(), e.topic.upgrade()) else {
            continue;
        };
        let Some(acc) = topic.partitions.get(e.partition as usize) else {
            continue;
        };
        // Dispatched under the lock: a batch `send` closes next cannot
        // overtake this one.
        let mut acc = lock(acc);
        if let Some(b) = acc.close_if(e.id) {
            topic.sticky.batch_closed(e.partition, topic.count());
            inner.dispatch(&topic, e.partition, b);
        }
    }
}

/// Sends the open batches of partitions the sender reports idle.
async fn idle_task(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<sender::Key>) {
    while let Some((topic, partition)) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        inner.partition_idle(&topic, partition);
    }
}
