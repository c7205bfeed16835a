//! The offset lookups, shared by every front end: the earliest or latest
//! offset of a partition, the first offset at or after a time, the record
//! with the largest timestamp, and where a leader epoch (a Raft term)
//! ends.

use super::Broker;
use crate::error::Result;
use crate::security::auth::{Identity, Operation, Resource};

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    Earliest,
    /// The high watermark (the next offset a consumer would read).
    Latest,
    /// The first offset with a timestamp at or after this one (ms).
    Timestamp(i64),
    /// The record with the largest timestamp.
    MaxTimestamp,
    /// The first offset on this broker's disk (above what is only in
    /// object storage).
    EarliestLocal,
    /// The last offset in object storage (-1 when nothing is there).
    LatestTiered,
}

/// The answer of a list-offsets lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: i64,
    /// The record's timestamp for a time lookup that found one, else -1.
    pub timestamp: i64,
    pub log_start: i64,
    pub high_watermark: i64,
    /// The term of the batch holding `offset` (the current term for the
    /// high watermark), when known here.
    pub term: Option<u64>,
}

/// Where a leader epoch ends, as the partition's leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The term the leader leads in.
    pub current: u64,
    /// The largest epoch at or below the asked one with batches, and the
    /// offset after its last batch; `None` for an epoch above `current`.
    pub found: Option<(u64, i64)>,
}

impl Broker {
    /// Looks an offset up on the partition's leader.
    pub async fn list_offset(
        &self,
        who: &Identity,
        topic: &str,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<ListedOffset> {
        self.authorize(who, Operation::Describe, Resource::Topic, topic)?;
        let part = self.leader_partition(topic, partition)?;
        let o = crate::tier::serve::offsets(self, &part);
        let (offset, timestamp) = match query {
            OffsetQuery::Latest => (o.high_watermark, -1),
            OffsetQuery::Earliest => (o.log_start, -1),
            OffsetQuery::Timestamp(ts) => crate::tier::serve::offset_for_timestamp(self, &part, ts)
                .await?
                .filter(|(off, _)| *off < o.high_watermark)
                .unwrap_or((o.high_watermark, -1)),
            OffsetQuery::MaxTimestamp => part.max_timestamp_offset()?.unwrap_or((-1, -1)),
            OffsetQuery::EarliestLocal => (part.local_start(), -1),
            OffsetQuery::LatestTiered => {
                let end = self.with_state(|s| {
                    s.manifest(topic, partition)
                        .filter(|m| !m.segments.is_empty())
                        .map(|m| m.end())
                });
                (end.map_or(-1, |e| e - 1), -1)
            }
        };
        let term = if offset == o.high_watermark {
            Some(part.role().term)
        } else {
            part.term_at(offset)
        };
        Ok(ListedOffset {
            offset,
            timestamp,
            log_start: o.log_start,
            high_watermark: o.high_watermark,
            term,
        })
    }

    /// Where leader epoch `epoch` ends on the partition's leader (Kafka's
    /// OffsetForLeaderEpoch: a consumer checks that the log it read was
    /// not truncated under it by a leader change).
    pub fn epoch_end(
        &self,
        who: &Identity,
        topic: &str,
        partition: u32,
        epoch: u64,
    ) -> Result<EpochEnd> {
        self.authorize(who, Operation::Describe, Resource::Topic, topic)?;
        let part = self.leader_partition(topic, partition)?;
        let current = part.role().term;
        Ok(EpochEnd {
            current,
            found: part.epoch_end(epoch, current),
        })
    }
}
