//! The consumer: manual assignment of partitions with a start position,
//! a [`Stream`] of records in offset order per partition (fed by one
//! background `Subscribe` stream per partition, see `reader`), positions,
//! and group offset commits (the committed offset is the next offset to
//! read).

mod reader;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use strata_proto::v1::{ErrorCode, OffsetSpec};

use crate::admin::{offset_commit, offset_fetch};
use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::record::{ConsumerRecord, decode_records};
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
        })
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.cfg
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

    /// Commits explicit `(topic, partition, next offset to read)` triples.
    pub async fn commit_offsets(&self, offsets: &[(String, u32, i64)]) -> Result<()> {
        let group = self.group()?;
        offset_commit(&self.cluster, group, offsets).await
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
