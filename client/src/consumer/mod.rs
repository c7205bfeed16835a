//! The consumer: manual assignment of partitions with a start position,
//! or a subscription through which the group's coordinator assigns them
//! (`membership`); a [`Stream`] of records in offset order per partition
//! (fed by one background `Subscribe` stream per partition, see `reader`),
//! positions, and group offset commits (the committed offset is the next
//! offset to read).

mod membership;
mod reader;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use strata_proto::v1::{ErrorCode, OffsetSpec};
use tokio::sync::mpsc;

use crate::admin::{offset_commit_as, offset_fetch};
use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::record::{ConsumerRecord, decode_records};
pub use membership::{AssignmentEvent, Subscription, TopicPartition};
use membership::{Change, Member, MemberConfig};
use reader::{Reader, Shared};

/// Where reading a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// An exact offset.
    Offset(i64),
    /// The first record whose timestamp is at or after this (ms since the
    /// Unix epoch); the high watermark when there is none.
    Timestamp(i64),
    /// The group's committed offset, else `auto_offset_reset`.
    Committed,
}

/// What to do without a usable offset (nothing committed, or out of range).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
    /// Fail with the error instead.
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Group whose committed offsets `commit`/`Committed` use.
    pub group: Option<String>,
    /// Longest long-poll of one fetch. Unused since partitions are read
    /// through `Subscribe` streams (which push data as it is committed).
    pub max_wait: Duration,
    /// Bytes a fetch waits for before answering. Unused, as `max_wait`.
    pub min_bytes: u32,
    /// Cap of one streamed message when `max_partition_bytes` is 0.
    pub max_bytes: u32,
    /// Cap of one streamed message of a partition (0 = `max_bytes`), at
    /// most 4 MiB and less when many partitions share the buffer (see
    /// `prefetch`); the first batch of a message always comes whole.
    pub max_partition_bytes: u32,
    pub auto_offset_reset: OffsetReset,
    /// Streamed chunks buffered ahead of the reader, per partition; all
    /// partitions together buffer at most about `prefetch` × `max_bytes`.
    pub prefetch: usize,
    /// Static membership (Kafka's `group.instance.id`): a consumer that
    /// restarts within its session timeout gets its partitions back
    /// without a rebalance.
    pub group_instance_id: Option<String>,
    /// A subscribed consumer not heard from this long loses its
    /// partitions (1 s to 5 min).
    pub session_timeout: Duration,
    /// How long a subscribed consumer may take to give up a partition.
    pub rebalance_timeout: Duration,
    /// The coordinator's assignor: `uniform` (default) or `range`.
    pub assignor: Option<String>,
    /// A subscribed consumer commits its positions of partitions it gives
    /// up before it releases them.
    pub commit_on_revoke: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group: None,
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 32 << 20,
            max_partition_bytes: 8 << 20,
            auto_offset_reset: OffsetReset::Earliest,
            prefetch: 4,
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            assignor: None,
            commit_on_revoke: true,
        }
    }
}

/// Decoded records of one partition (by index into the assignment).
type Decoded = (usize, Vec<ConsumerRecord>);

#[derive(Debug)]
struct Assigned {
    topic: Arc<str>,
    partition: u32,
    /// Next offset to hand out.
    position: i64,
    /// The partition's stream, started on the first poll after an
    /// (re)assignment or seek.
    reader: Option<Reader>,
}

/// Reads assigned partitions. Dropping it stops every partition's stream.
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<Cluster>,
    cfg: ConsumerConfig,
    /// What the partitions' reader tasks share.
    shared: Arc<Shared>,
    assigned: Vec<Assigned>,
    /// Decoded records of one partition (by index into `assigned`) not yet
    /// handed out by [`Consumer::records`].
    current: Option<(usize, VecDeque<ConsumerRecord>)>,
    /// Where the next poll starts looking, so partitions take turns.
    next: usize,
    /// Group membership, once subscribed.
    member: Option<Member>,
    events: Option<mpsc::UnboundedSender<AssignmentEvent>>,
    events_rx: Option<mpsc::UnboundedReceiver<AssignmentEvent>>,
}

impl Consumer {
    /// A consumer with no assignment; connects lazily.
    pub fn new(client: ClientConfig, cfg: ConsumerConfig) -> Result<Self> {
        if let Some(g) = &cfg.group
            && g.is_empty()
        {
            return Err(ClientError::InvalidArgument("empty group name".into()));
        }
        let cluster = Cluster::new(client)?;
        Ok(Self {
            shared: Shared::new(&cluster, &cfg),
            cluster,
            cfg,
            assigned: Vec::new(),
            current: None,
            next: 0,
            member: None,
            events: None,
            events_rx: None,
        })
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.cfg
    }

    /// Joins the consumer's group and reads whatever its coordinator assigns
    /// (see [`AssignmentEvent`] for the changes). Needs a group and no
    /// manual assignment.
    pub fn subscribe(&mut self, subscription: Subscription) -> Result<()> {
        let group = self.group()?.to_owned();
        if self.member.is_some() {
            return Err(ClientError::InvalidArgument("already subscribed".into()));
        }
        if !self.assigned.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a consumer with manually assigned partitions cannot subscribe".into(),
            ));
        }
        match &subscription {
            Subscription::Topics(t) if t.is_empty() || t.iter().any(String::is_empty) => {
                return Err(ClientError::InvalidArgument(
                    "subscribe to at least one topic, by name".into(),
                ));
            }
            Subscription::Pattern(p) if p.is_empty() => {
                return Err(ClientError::InvalidArgument("empty topic pattern".into()));
            }
            _ => {}
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(tx);
        self.events_rx = Some(rx);
        self.member = Some(Member::start(
            Arc::clone(&self.cluster),
            MemberConfig {
                group,
                subscription,
                instance_id: self.cfg.group_instance_id.clone(),
                session_timeout: self.cfg.session_timeout,
                rebalance_timeout: self.cfg.rebalance_timeout,
                assignor: self.cfg.assignor.clone(),
                offset_reset: self.cfg.auto_offset_reset,
                commit_on_revoke: self.cfg.commit_on_revoke,
            },
        ));
        Ok(())
    }

    /// The assignment changes of a subscribed consumer, in order (taken
    /// once).
    pub fn assignment_events(&mut self) -> Option<mpsc::UnboundedReceiver<AssignmentEvent>> {
        self.events_rx.take()
    }

    /// The member id and epoch of a subscribed consumer.
    pub fn member(&self) -> Option<(String, i32)> {
        self.member.as_ref().map(Member::identity)
    }

    /// Leaves the group at once (a static member leaves its place to its
    /// instance) and stops reading. Dropping the consumer instead leaves
    /// the group when the session times out.
    pub async fn close(mut self) {
        if let Some(m) = self.member.take() {
            m.leave().await;
        }
    }

    fn emit(&self, e: AssignmentEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    /// Applies what the membership task asked for since the last poll.
    fn apply_changes(&mut self, cx: &mut Context<'_>) -> Result<()> {
        loop {
            let Some(m) = self.member.as_mut() else {
                return Ok(());
            };
            let change = match m.changes.poll_recv(cx) {
                Poll::Ready(Some(c)) => c,
                Poll::Ready(None) | Poll::Pending => return Ok(()),
            };
            match change {
                Change::Assign(list) => {
                    let tps: Vec<TopicPartition> = list.iter().map(|(tp, _)| tp.clone()).collect();
                    for ((t, p), at) in list {
                        match self.slot(&t, p) {
                            Some(i) => self.reposition(i, at),
                            None => self.assigned.push(Assigned {
                                topic: Arc::from(t.as_str()),
                                partition: p,
                                position: at,
                                reader: None,
                            }),
                        }
                    }
                    self.emit(AssignmentEvent::Assigned(tps));
                }
                Change::Revoke(tps, reply) => {
                    let positions: Vec<(TopicPartition, i64)> = tps
                        .iter()
                        .filter_map(|(t, p)| self.position(t, *p).map(|o| ((t.clone(), *p), o)))
                        .collect();
                    for (t, p) in &tps {
                        self.unassign(t, *p);
                    }
                    let _ = reply.send(positions);
                    self.emit(AssignmentEvent::Revoked(tps));
                }
                Change::Lose(tps) => {
                    for (t, p) in &tps {
                        self.unassign(t, *p);
                    }
                    self.emit(AssignmentEvent::Lost(tps));
                }
                Change::Failed(e) => return Err(e),
            }
        }
    }

    /// Partitions of `topic`.
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.cluster.topic(topic).await?.partitions())
    }

    /// Moves partition `i` to `offset`: stops its stream (dropping what it
    /// buffered) and forgets its decoded records not yet handed out.
    fn reposition(&mut self, i: usize, offset: i64) {
        let a = &mut self.assigned[i];
        a.reader = None;
        a.position = offset;
        if self.current.as_ref().is_some_and(|(s, _)| *s == i) {
            self.current = None;
        }
    }

    fn slot(&self, topic: &str, partition: u32) -> Option<usize> {
        self.assigned
            .iter()
            .position(|a| a.partition == partition && &*a.topic == topic)
    }

    /// Resolves `start` to an offset.
    async fn resolve(&self, topic: &str, partition: u32, start: StartOffset) -> Result<i64> {
        let spec = match start {
            StartOffset::Offset(o) if o < 0 => {
                return Err(ClientError::InvalidArgument(format!("negative offset {o}")));
            }
            StartOffset::Offset(o) => {
                // Validates the partition exists.
                let t = self.cluster.topic(topic).await?;
                if partition >= t.partitions() {
                    return Err(ClientError::broker(
                        ErrorCode::UnknownPartition,
                        format!("topic '{topic}' has no partition {partition}"),
                    ));
                }
                return Ok(o);
            }
            StartOffset::Earliest => (OffsetSpec::Earliest, 0),
            StartOffset::Latest => (OffsetSpec::Latest, 0),
            StartOffset::Timestamp(ts) => (OffsetSpec::Timestamp, ts),
            StartOffset::Committed => {
                if let Some(o) = self.committed(topic, partition).await? {
                    return Ok(o);
                }
                match self.cfg.auto_offset_reset {
                    OffsetReset::Earliest => (OffsetSpec::Earliest, 0),
                    OffsetReset::Latest => (OffsetSpec::Latest, 0),
                    OffsetReset::None => {
                        return Err(ClientError::InvalidArgument(format!(
                            "no committed offset for {topic}/{partition}"
                        )));
                    }
                }
            }
        };
        Ok(self
            .cluster
            .list_offsets(topic, partition, spec.0, spec.1)
            .await?
            .offset)
    }

    /// Adds (or re-positions) a partition.
    pub async fn assign(&mut self, topic: &str, partition: u32, start: StartOffset) -> Result<i64> {
        let offset = self.resolve(topic, partition, start).await?;
        match self.slot(topic, partition) {
            Some(i) => self.reposition(i, offset),
            None => self.assigned.push(Assigned {
                topic: Arc::from(topic),
                partition,
                position: offset,
                reader: None,
            }),
        }
        Ok(offset)
    }

    /// Assigns every partition of `topic`; returns how many.
    pub async fn assign_topic(&mut self, topic: &str, start: StartOffset) -> Result<u32> {
        let n = self.partitions(topic).await?;
        for p in 0..n {
            self.assign(topic, p, start).await?;
        }
        Ok(n)
    }

    /// Moves a partition's position (it must be assigned); its stream
    /// restarts there.
    pub fn seek(&mut self, topic: &str, partition: u32, offset: i64) -> Result<()> {
        let i = self.slot(topic, partition).ok_or_else(|| {
            ClientError::InvalidArgument(format!("{topic}/{partition} is not assigned"))
        })?;
        self.reposition(i, offset);
        Ok(())
    }

    /// Stops reading a partition.
    pub fn unassign(&mut self, topic: &str, partition: u32) {
        if let Some(i) = self.slot(topic, partition) {
            self.reposition(i, 0);
            self.assigned.remove(i);
            if let Some((s, _)) = self.current.as_mut()
                && *s > i
            {
                *s -= 1;
            }
        }
    }

    /// Assigned partitions.
    pub fn assignment(&self) -> Vec<(Arc<str>, u32)> {
        self.assigned
            .iter()
            .map(|a| (Arc::clone(&a.topic), a.partition))
            .collect()
    }

    /// The next offset to be handed out for a partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.slot(topic, partition)
            .map(|i| self.assigned[i].position)
    }

    /// Polls the partitions' streams, in turns, for the next non-empty chunk
    /// of decoded records (all of one partition, by index). `None` once
    /// nothing is assigned or every partition failed.
    fn poll_decoded(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Decoded>>> {
        if let Err(e) = self.apply_changes(cx) {
            return Poll::Ready(Some(Err(e)));
        }
        let n = self.assigned.len();
        for a in &mut self.assigned {
            if a.reader.is_none() {
                a.reader = Some(Reader::spawn(
                    &self.shared,
                    Arc::clone(&a.topic),
                    a.partition,
                    a.position,
                    n,
                ));
            }
        }
        loop {
            let mut live = false;
            let mut again = false;
            for k in 0..n {
                let i = (self.next + k) % n;
                let a = &mut self.assigned[i];
                let Some(r) = a.reader.as_mut().filter(|r| !r.is_done()) else {
                    continue;
                };
                match r.poll_chunk(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        let recs =
                            match decode_records(&a.topic, a.partition, chunk.from, chunk.data) {
                                Ok(d) => d.records,
                                Err(e) => return Poll::Ready(Some(Err(e))),
                            };
                        if recs.is_empty() {
                            // Only control batches; this stream may hold more.
                            again = true;
                            live = true;
                            continue;
                        }
                        self.next = (i + 1) % n;
                        return Poll::Ready(Some(Ok((i, recs))));
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.next = (i + 1) % n;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(None) => {}
                    Poll::Pending => live = true,
                }
            }
            if !live {
                // A subscribed consumer waits for (more) partitions.
                if self.member.is_some() {
                    return Poll::Pending;
                }
                return Poll::Ready(None);
            }
            if !again {
                return Poll::Pending;
            }
        }
    }

    /// Polls for the next chunk of records (all from one partition).
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<ConsumerRecord>>>> {
        if let Some((slot, recs)) = self.current.take()
            && !recs.is_empty()
        {
            let v: Vec<ConsumerRecord> = recs.into();
            self.advance(slot, &v);
            return Poll::Ready(Some(Ok(v)));
        }
        match self.poll_decoded(cx) {
            Poll::Ready(Some(Ok((slot, recs)))) => {
                self.advance(slot, &recs);
                Poll::Ready(Some(Ok(recs)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn advance(&mut self, slot: usize, recs: &[ConsumerRecord]) {
        if let (Some(a), Some(last)) = (self.assigned.get_mut(slot), recs.last()) {
            a.position = last.offset + 1;
        }
    }

    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ConsumerRecord>>> {
        loop {
            if let Some((slot, recs)) = self.current.as_mut()
                && let Some(r) = recs.pop_front()
            {
                if let Some(a) = self.assigned.get_mut(*slot) {
                    a.position = r.offset + 1;
                }
                return Poll::Ready(Some(Ok(r)));
            }
            self.current = None;
            match self.poll_decoded(cx) {
                Poll::Ready(Some(Ok((slot, recs)))) => self.current = Some((slot, recs.into())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Records of every assigned partition, in offset order per partition.
    /// Positions advance as records are yielded. The stream ends only when
    /// nothing is assigned (or every partition failed).
    pub fn records(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures::stream::poll_fn(move |cx| self.poll_record(cx))
    }

    /// The next chunk of records of one partition (positions advance past
    /// all of them); cheaper than [`Consumer::records`] for bulk reading.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<ConsumerRecord>>> {
        futures::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    fn group(&self) -> Result<&str> {
        self.cfg
            .group
            .as_deref()
            .ok_or_else(|| ClientError::InvalidArgument("the consumer has no group".into()))
    }

    /// Commits the current positions of every assigned partition.
    pub async fn commit(&self) -> Result<()> {
        let offsets: Vec<(String, u32, i64)> = self
            .assigned
            .iter()
            .map(|a| (a.topic.to_string(), a.partition, a.position))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        self.commit_offsets(&offsets).await
    }

    /// Commits explicit `(topic, partition, next offset to read)` triples
    /// (as the group's member, once subscribed: only partitions it owns).
    pub async fn commit_offsets(&self, offsets: &[(String, u32, i64)]) -> Result<()> {
        let group = self.group()?;
        let (id, epoch) = self.member().unwrap_or_default();
        offset_commit_as(&self.cluster, group, offsets, (&id, epoch)).await
    }

    /// The group's committed offset of a partition, if any.
    pub async fn committed(&self, topic: &str, partition: u32) -> Result<Option<i64>> {
        let group = self.group()?;
        let all = offset_fetch(&self.cluster, group, &[topic.to_owned()]).await?;
        Ok(all
            .into_iter()
            .find(|o| o.partition == partition && o.topic == topic)
            .map(|o| o.offset))
    }
}
