//! The list-offsets operation, shared by every front end: the earliest or
//! latest offset of a partition, or the first offset at or after a time.

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
}

/// The answer of a list-offsets lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: i64,
    /// The record's timestamp for a time lookup that found one, else -1.
    pub timestamp: i64,
    pub log_start: i64,
    pub high_watermark: i64,
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
        };
        Ok(ListedOffset {
            offset,
            timestamp,
            log_start: o.log_start,
            high_watermark: o.high_watermark,
        })
    }
}
