//! The sender task: takes closed batches in per-partition order, routes each
//! partition to its leader, and pipelines batches over one `ProduceStream`
//! per broker connection (up to `max_in_flight` per partition).
//!
//! Invariants:
//! - a partition's batches are sent, and re-sent, in the order they were
//!   closed; with idempotence each carries its sequence from the first send
//!   on, so a re-send after a lost answer can only be deduplicated, never
//!   appended twice or out of order;
//! - on a retriable failure (or a broken stream) every batch of that
//!   partition still in flight is abandoned (late answers are ignored) and
//!   queued again in order, after a backoff and a metadata refresh;
//! - a batch's memory permits are returned exactly once, when it completes;
//! - a request left unanswered (a paused or cut-off leader answers nothing)
//!   triggers a metadata refresh after `STALL_AFTER`; when another broker
//!   now leads the partition its in-flight batches go there instead, and
//!   after the request timeout they are re-sent in any case;
//! - with idempotence, `OUT_OF_ORDER_SEQUENCE` is retried (in order, like
//!   any retriable failure) until the retries or the delivery timeout run
//!   out: after a failover it means an earlier batch has not reached the
//!   new leader yet, not that the record cannot be delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::v1::{Acks, ProduceRequest, ProduceResponse};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::accumulator::ClosedBatch;
use super::sequence::{advance_seq, renumber, restart_epoch};
use crate::cluster::Cluster;
use crate::error::{ClientError, from_error_info, is_error};

/// Requests to the sender task.
#[derive(Debug)]
pub(crate) enum Command {
    Batch {
        topic: Arc<str>,
        partition: u32,
        batch: ClosedBatch,
    },
    /// Answer once every batch received before this command is done.
    Flush(oneshot::Sender<()>),
}

#[derive(Debug)]
enum Event {
    Response(ProduceResponse),
    Closed { conn: u64, err: ClientError },
    Refreshed,
}

/// Settings the sender needs.
#[derive(Debug, Clone)]
pub(crate) struct SenderConfig {
    pub acks: Acks,
    pub max_in_flight: usize,
    pub retries: u32,
    pub delivery_timeout: Duration,
    pub request_timeout: Duration,
    /// `(producer id, epoch)` when idempotent.
    pub producer: Option<(i64, i16)>,
}

pub(crate) type Key = (Arc<str>, u32);
/// Index of a partition in [`Sender::parts`]: partitions are looked up by
/// name once, when a batch arrives, and by index everywhere else.
type PartId = usize;

/// An unanswered request this old makes the sender check the leadership.
const STALL_AFTER: Duration = Duration::from_millis(300);
/// Least time between two such checks.
const STALL_CHECK_EVERY: Duration = Duration::from_millis(250);
/// Slack past the request timeout before an unanswered request is re-sent
/// (the broker answers TIMEOUT itself at the request timeout).
const ANSWER_SLACK: Duration = Duration::from_secs(2);
/// Retries of a partition whose leader is changing made at the first
/// backoff (50 ms by default, so about a second) before backing off as for
/// any other failure.
const LEADER_POLLS: u32 = 20;

#[derive(Debug)]
pub(super) struct Sendable {
    pub(super) builder: Option<super::accumulator::Builder>,
    pub(super) bytes: Bytes,
    pub(super) shared: Arc<super::future::BatchShared>,
    pub(super) count: u32,
    pub(super) reserved: usize,
    pub(super) created: Instant,
    pub(super) arrival: u64,
    pub(super) base_seq: i32,
    pub(super) attempts: u32,
    pub(super) last_error: Option<ClientError>,
    pub(super) busy: Option<Arc<AtomicUsize>>,
}

#[derive(Debug)]
struct PartState {
    key: Key,
    queue: VecDeque<Sendable>,
    in_flight: Vec<u64>,
    next_seq: i32,
    /// Producer epoch of this partition's batches: the producer's, bumped
    /// when a batch's fate became unknowable.
    epoch: Option<i16>,
    /// The broker the partition's batches last went to.
    last_addr: Option<String>,
    retry_at: Option<Instant>,
    failures: u32,
    /// Whether the partition is on the `ready` list.
    listed: bool,
}

impl PartState {
    fn new(key: Key) -> Self {
        Self {
            key,
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            next_seq: 0,
            epoch: None,
            last_addr: None,
            retry_at: None,
            failures: 0,
            listed: false,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    part: PartId,
    batch: Sendable,
    conn: u64,
    addr: String,
    sent: Instant,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<ProduceRequest>,
}

/// The sender's state. Work per event is bounded by what the event touches,
/// not by the number of partitions: with thousands of partitions a loop
/// over all of them on every answer costs more than sending.
struct Sender {
    cluster: Arc<Cluster>,
    cfg: SenderConfig,
    memory: Arc<Semaphore>,
    parts: Vec<PartState>,
    index: HashMap<Key, PartId>,
    /// Partitions that may have a batch to send now (queued, and neither
    /// at `max_in_flight` nor backing off when listed).
    ready: VecDeque<PartId>,
    /// Partitions waiting for their `retry_at`.
    backing_off: HashSet<PartId>,
    /// Unanswered requests by correlation id. Ids grow with the send
    /// time, so the first entry is the oldest request.
    in_flight: BTreeMap<u64, InFlight>,
    conns: HashMap<String, Conn>,
    next_conn: u64,
    next_cid: u64,
    arrivals: u64,
    incomplete: BTreeSet<u64>,
    flush_waiters: Vec<(u64, oneshot::Sender<()>)>,
    refreshing: bool,
    /// When unanswered requests last made the sender refresh metadata.
    last_stall_check: Option<Instant>,
    ev_tx: mpsc::UnboundedSender<Event>,
    /// Partitions that have no batch at the sender any more.
    idle: Option<mpsc::UnboundedSender<Key>>,
}

/// Runs the sender until every producer handle is gone and all batches
/// are done.
pub(crate) async fn run(
    cluster: Arc<Cluster>,
    cfg: SenderConfig,
    memory: Arc<Semaphore>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    idle: Option<mpsc::UnboundedSender<Key>>,
) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut s = Sender {
        cluster,
        cfg,
        memory,
        parts: Vec::new(),
        index: HashMap::new(),
        ready: VecDeque::new(),
        backing_off: HashSet::new(),
        in_flight: BTreeMap::new(),
        conns: HashMap::new(),
        next_conn: 0,
        next_cid: 0,
        arrivals: 0,
        incomplete: BTreeSet::new(),
        flush_waiters: Vec::new(),
        refreshing: false,
        last_stall_check: None,
        ev_tx,
        idle,
    };
    let mut open = true;
    loop {
        if !open && s.incomplete.is_empty() {
            break;
        }
        let wake = s.next_wakeup();
        tokio::select! {
            cmd = rx.recv(), if open => match cmd {
                Some(c) => s.command(c),
                None => open = false,
            },
            Some(ev) = ev_rx.recv() => s.event(ev),
            () = sleep_until(wake), if wake.is_some() => {}
        }
        // Take whatever else is queued before sending, so that requests
        // leave in as few wakeups as possible.
        while open {
            match rx.try_recv() {
                Ok(c) => s.command(c),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        while let Ok(ev) = ev_rx.try_recv() {
            s.event(ev);
        }
        s.check_stalls();
        s.pump();
        s.notify_flushes();
    }
    s.notify_flushes();
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Sender {
    fn command(&mut self, c: Command) {
        match c {
            Command::Batch {
                topic,
                partition,
                batch,
            } => {
                self.arrivals += 1;
                self.incomplete.insert(self.arrivals);
                let key = (topic, partition);
                let id = match self.index.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id = self.parts.len();
                        self.parts.push(PartState::new(key.clone()));
                        self.index.insert(key, id);
                        id
                    }
                };
                self.parts[id].queue.push_back(Sendable {
                    builder: Some(batch.builder),
                    bytes: Bytes::new(),
                    shared: batch.shared,
                    count: batch.count,
                    reserved: batch.reserved,
                    created: batch.created,
                    arrival: self.arrivals,
                    base_seq: -1,
                    attempts: 0,
                    last_error: None,
                    busy: batch.busy,
                });
                self.list(id);
            }
            Command::Flush(tx) => self.flush_waiters.push((self.arrivals, tx)),
        }
    }

    /// Puts a partition with queued batches on the `ready` list (once).
    fn list(&mut self, id: PartId) {
        let part = &mut self.parts[id];
        if !part.listed && !part.queue.is_empty() {
            part.listed = true;
            self.ready.push_back(id);
        }
    }

    fn notify_flushes(&mut self) {
        let min_open = self.incomplete.first().copied().unwrap_or(u64::MAX);
        let waiters = std::mem::take(&mut self.flush_waiters);
        for (mark, tx) in waiters {
            if min_open > mark {
                let _ = tx.send(());
            } else {
                self.flush_waiters.push((mark, tx));
            }
        }
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let retry = self
            .backing_off
            .iter()
            .filter_map(|&id| self.parts[id].retry_at)
            .min();
        // The oldest unanswered request is looked at again when it stalls.
        let stall = self.in_flight.values().next().map(|f| {
            let at = f.sent + STALL_AFTER;
            match self.last_stall_check {
                Some(t) => at.max(t + STALL_CHECK_EVERY),
                None => at,
            }
        });
        match (retry, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Partitions of the requests sent at least `age` ago, oldest first,
    /// each once.
    fn sent_before(&self, now: Instant, age: Duration) -> Vec<PartId> {
        let mut seen = HashSet::new();
        self.in_flight
            .values()
            .take_while(|f| now.duration_since(f.sent) >= age)
            .filter(|f| seen.insert(f.part))
            .map(|f| f.part)
            .collect()
    }

    /// Unanswered requests: refresh the metadata (at most every
    /// `STALL_CHECK_EVERY`) to learn of a new leader, and re-send what
    /// waited past the request timeout.
    fn check_stalls(&mut self) {
        let now = Instant::now();
        let stalled = self
            .in_flight
            .values()
            .next()
            .is_some_and(|f| now.duration_since(f.sent) >= STALL_AFTER);
        if !stalled {
            return;
        }
        for id in self.sent_before(now, self.cfg.request_timeout + ANSWER_SLACK) {
            self.requeue(id, Vec::new());
            self.backoff_partition(id, ClientError::Timeout);
        }
        if self
            .last_stall_check
            .is_some_and(|t| now.duration_since(t) < STALL_CHECK_EVERY)
        {
            return;
        }
        self.last_stall_check = Some(now);
        let parts = self.sent_before(now, STALL_AFTER);
        let topics = topics_of(parts.iter().map(|&id| &self.parts[id].key));
        self.refresh_topics(topics);
    }

    /// After a refresh: partitions whose requests went to a broker that no
    /// longer leads them are re-sent to the new leader (idempotence makes
    /// a batch that did reach the old one a duplicate, answered with its
    /// offsets).
    fn reroute(&mut self) {
        let mut moved: HashSet<PartId> = HashSet::new();
        let mut checked = HashSet::new();
        for f in self.in_flight.values() {
            if moved.contains(&f.part) || !checked.insert((f.part, f.addr.as_str())) {
                continue;
            }
            let key = &self.parts[f.part].key;
            if self
                .cluster
                .leader_addr(&key.0, key.1)
                .is_some_and(|a| a != f.addr)
            {
                moved.insert(f.part);
            }
        }
        for id in moved {
            let key = &self.parts[id].key;
            tracing::debug!(topic = %key.0, partition = key.1, "leader moved; re-sending in-flight batches");
            self.requeue(id, Vec::new());
        }
        // Partitions backing off after a failure at their old leader go to
        // a new one at once.
        let waiting: Vec<PartId> = self.backing_off.iter().copied().collect();
        for id in waiting {
            let part = &mut self.parts[id];
            if let Some(addr) = self.cluster.leader_addr(&part.key.0, part.key.1)
                && part.last_addr.as_ref().is_some_and(|a| *a != addr)
            {
                part.retry_at = None;
                self.backing_off.remove(&id);
                self.list(id);
            }
        }
    }

    fn finish(&mut self, b: Sendable, r: Result<i64, ClientError>) {
        b.shared.complete(r);
        self.memory.add_permits(b.reserved);
        self.incomplete.remove(&b.arrival);
        // The partition's last batch at the sender is done: the batch now
        // open (if any) need not linger.
        if let Some(busy) = b.busy
            && busy.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(idle) = &self.idle
        {
            let _ = idle.send((Arc::clone(&b.shared.topic), b.shared.partition));
        }
    }

    /// Sends what may be sent now.
    fn pump(&mut self) {
        let now = Instant::now();
        if !self.backing_off.is_empty() {
            let due: Vec<PartId> = self
                .backing_off
                .iter()
                .copied()
                .filter(|&id| self.parts[id].retry_at.is_none_or(|t| t <= now))
                .collect();
            for id in due {
                self.backing_off.remove(&id);
                self.parts[id].retry_at = None;
                self.list(id);
            }
        }
        let mut need_refresh = false;
        while let Some(id) = self.ready.pop_front() {
            let part = &mut self.parts[id];
            part.listed = false;
            if part.queue.is_empty() || part.in_flight.len() >= self.cfg.max_in_flight {
                // An answer lists it again.
                continue;
            }
            if part.retry_at.is_some_and(|t| t > now) {
                self.backing_off.insert(id);
                continue;
            }
            let Some(addr) = self.cluster.leader_addr(&part.key.0, part.key.1) else {
                need_refresh = true;
                let err = ClientError::broker(
                    strata_proto::v1::ErrorCode::NotLeader,
                    format!("no leader known for {}/{}", part.key.0, part.key.1),
                );
                self.backoff_partition(id, err);
                continue;
            };
            let conn = self.conn(&addr);
            self.parts[id].last_addr = Some(addr.clone());
            self.send_queued(id, &addr, conn);
        }
        if need_refresh {
            self.refresh();
        }
    }

    /// Sends a partition's queued batches to `addr` up to `max_in_flight`.
    fn send_queued(
        &mut self,
        id: PartId,
        addr: &str,
        conn: (u64, mpsc::UnboundedSender<ProduceRequest>),
    ) {
        loop {
            let part = &mut self.parts[id];
            if part.in_flight.len() >= self.cfg.max_in_flight {
                return;
            }
            let Some(mut b) = part.queue.pop_front() else {
                return;
            };
            if b.attempts > 0 && b.created.elapsed() > self.cfg.delivery_timeout {
                let err = b.last_error.take().unwrap_or(ClientError::Timeout);
                self.fail(id, b, err);
                continue;
            }
            if let Some(mut builder) = b.builder.take() {
                if let Some((pid, epoch)) = self.cfg.producer {
                    let epoch = *part.epoch.get_or_insert(epoch);
                    b.base_seq = part.next_seq;
                    builder.0.set_producer(pid, epoch, part.next_seq);
                    part.next_seq = advance_seq(part.next_seq, b.count);
                }
                b.bytes = builder.0.finish();
            }
            b.attempts += 1;
            self.next_cid += 1;
            let cid = self.next_cid;
            let req = ProduceRequest {
                topic: part.key.0.to_string(),
                partition: part.key.1,
                acks: self.cfg.acks as i32,
                records: b.bytes.clone(),
                timeout_ms: self
                    .cfg
                    .request_timeout
                    .as_millis()
                    .min(u128::from(u32::MAX)) as u32,
                correlation_id: cid,
            };
            part.in_flight.push(cid);
            self.in_flight.insert(
                cid,
                InFlight {
                    part: id,
                    batch: b,
                    conn: conn.0,
                    addr: addr.to_owned(),
                    sent: Instant::now(),
                },
            );
            if conn.1.send(req).is_err() {
                // The stream task is gone; its Closed event requeues.
                return;
            }
        }
    }

    fn conn(&mut self, addr: &str) -> (u64, mpsc::UnboundedSender<ProduceRequest>) {
        if let Some(c) = self.conns.get(addr) {
            return (c.id, c.tx.clone());
        }
        self.next_conn += 1;
        let id = self.next_conn;
        let (tx, rx) = mpsc::unbounded_channel();
        self.conns
            .insert(addr.to_owned(), Conn { id, tx: tx.clone() });
        let cluster = Arc::clone(&self.cluster);
        let ev = self.ev_tx.clone();
        let addr = addr.to_owned();
        tokio::spawn(async move {
            let err = stream_task(&cluster, &addr, rx, &ev).await;
            let _ = ev.send(Event::Closed { conn: id, err });
        });
        (id, tx)
    }

    /// Refreshes the metadata of every topic with unfinished batches.
    fn refresh(&mut self) {
        if self.refreshing {
            return;
        }
        let topics = topics_of(
            self.parts
                .iter()
                .filter(|p| !p.queue.is_empty() || !p.in_flight.is_empty())
                .map(|p| &p.key),
        );
        self.refresh_topics(topics);
    }

    fn refresh_topics(&mut self, topics: Vec<String>) {
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let cluster = Arc::clone(&self.cluster);
        let ev = self.ev_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = cluster.refresh(&topics).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
            let _ = ev.send(Event::Refreshed);
        });
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Refreshed => {
                self.refreshing = false;
                self.reroute();
            }
            Event::Response(resp) => self.response(resp),
            Event::Closed { conn, err } => {
                self.conns.retain(|_, c| c.id != conn);
                let mut parts: Vec<PartId> = self
                    .in_flight
                    .values()
                    .filter(|f| f.conn == conn)
                    .map(|f| f.part)
                    .collect();
                parts.sort_unstable();
                parts.dedup();
                if !parts.is_empty() {
                    tracing::debug!(error = %err, "produce stream broke; re-sending in flight batches");
                    self.refresh();
                }
                for id in parts {
                    self.requeue(id, Vec::new());
                    self.backoff_partition(id, err.clone());
                }
            }
        }
    }

    fn response(&mut self, resp: ProduceResponse) {
        let Some(f) = self.in_flight.remove(&resp.correlation_id) else {
            return; // abandoned by a retry
        };
        let id = f.part;
        self.parts[id]
            .in_flight
            .retain(|c| *c != resp.correlation_id);
        if !is_error(resp.error.as_ref()) {
            self.parts[id].failures = 0;
            self.finish(f.batch, Ok(resp.base_offset));
            self.list(id);
            return;
        }
        let err = resp
            .error
            .as_ref()
            .map(from_error_info)
            .unwrap_or(ClientError::Timeout);
        let mut b = f.batch;
        // With idempotence a sequence gap after a failover is an earlier
        // batch still on its way: retry in order, never drop records.
        let retriable = err.is_retriable()
            || (self.cfg.producer.is_some()
                && err.code() == Some(strata_proto::v1::ErrorCode::OutOfOrderSequence));
        if retriable
            && b.attempts <= self.cfg.retries
            && b.created.elapsed() < self.cfg.delivery_timeout
        {
            if let Some(l) = err.leader() {
                let key = &self.parts[id].key;
                self.cluster.set_leader(&key.0, key.1, l.id, &l.addr);
            } else if err.invalidates_metadata() {
                self.refresh();
            }
            b.last_error = Some(err.clone());
            self.requeue(id, vec![b]);
            self.backoff_partition(id, err);
        } else {
            self.fail(id, b, err);
            self.list(id);
        }
    }

    /// Fails one batch. With idempotence the partition's later batches
    /// (in flight or sent before) are re-numbered to close the gap; earlier
    /// ones keep their sequences. When the broker refused the batch, its
    /// sequence is free again; when the batch was given up after retriable
    /// failures (the delivery timeout), it may have been appended or not:
    /// the partition's sequence cannot be recovered, so the epoch is bumped
    /// and the unfinished batches start again from sequence 0.
    fn fail(&mut self, id: PartId, b: Sendable, err: ClientError) {
        let (seq, arrival) = (b.base_seq, b.arrival);
        let unknowable =
            b.attempts > 0 && (err.is_retriable() || matches!(err, ClientError::Timeout));
        self.finish(b, Err(err));
        let Some((_, epoch)) = self.cfg.producer else {
            return;
        };
        if seq < 0 {
            return;
        }
        self.requeue(id, Vec::new());
        let part = &mut self.parts[id];
        let current = *part.epoch.get_or_insert(epoch);
        match current.checked_add(1).filter(|_| unknowable) {
            Some(bumped) => {
                tracing::warn!(topic = %part.key.0, partition = part.key.1, epoch = bumped,
                    "a batch failed with its outcome unknown; bumping the producer epoch");
                part.epoch = Some(bumped);
                part.next_seq = restart_epoch(&mut part.queue, bumped);
            }
            None => part.next_seq = renumber(&mut part.queue, arrival, seq),
        }
    }

    /// Abandons the partition's in-flight batches and queues them (plus
    /// `extra`) again, in their original order, ahead of newer batches.
    fn requeue(&mut self, id: PartId, mut extra: Vec<Sendable>) {
        let part = &mut self.parts[id];
        for cid in part.in_flight.drain(..) {
            if let Some(f) = self.in_flight.remove(&cid) {
                extra.push(f.batch);
            }
        }
        extra.sort_by_key(|b| b.arrival);
        for b in extra.into_iter().rev() {
            part.queue.push_front(b);
        }
        self.list(id);
    }

    /// Delays the partition; gives up on its head batch after too many tries.
    fn backoff_partition(&mut self, id: PartId, err: ClientError) {
        let part = &mut self.parts[id];
        let give_up = part.queue.front().is_some_and(|b| {
            b.attempts > self.cfg.retries || b.created.elapsed() > self.cfg.delivery_timeout
        }) || part.failures > self.cfg.retries.saturating_add(1);
        if give_up && let Some(b) = part.queue.pop_front() {
            part.failures = 0;
            part.retry_at = None;
            self.fail(id, b, err);
            self.list(id);
            return;
        }
        // A partition between leaders (not the leader, gone, not ready) is
        // polled at the shortest backoff: an election ends within a second,
        // and the next metadata answer after it names the winner.
        let between_leaders = err.invalidates_metadata() && part.failures < LEADER_POLLS;
        let delay = if between_leaders {
            self.cluster.config().retry_backoff
        } else {
            self.cluster.config().backoff(part.failures)
        };
        part.failures += 1;
        part.retry_at = Some(Instant::now() + delay);
        if let Some(b) = part.queue.front_mut() {
            b.last_error = Some(err);
        }
        self.backing_off.insert(id);
    }
}

/// The distinct topics of some partitions.
fn topics_of<'a>(keys: impl Iterator<Item = &'a Key>) -> Vec<String> {
    keys.map(|k| k.0.to_string())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect()
}

/// Drives one `ProduceStream`: forwards answers until the stream ends, and
/// returns why it ended.
async fn stream_task(
    cluster: &Cluster,
    addr: &str,
    rx: mpsc::UnboundedReceiver<ProduceRequest>,
    ev: &mpsc::UnboundedSender<Event>,
) -> ClientError {
    let mut client = match cluster.pool.broker(addr) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let resp = match client
        .produce_stream(UnboundedReceiverStream::new(rx))
        .await
    {
        Ok(r) => r,
        Err(st) => return st.into(),
    };
    let mut stream = resp.into_inner();
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                if ev.send(Event::Response(resp)).is_err() {
                    return ClientError::Closed("producer closed".into());
                }
            }
            Ok(None) => return ClientError::Connection(format!("produce stream to {addr} ended")),
            Err(st) => return st.into(),
        }
    }
}
