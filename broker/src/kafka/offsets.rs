//! ListOffsets (key 2) and OffsetForLeaderEpoch (key 23), through the
//! broker's offset lookups. Leader epochs are Raft terms: a record's epoch
//! is the term its batch was appended in, the current epoch is the term
//! the leader leads in.

use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use crate::broker::list_offsets::OffsetQuery;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// A term as Kafka's epoch (-1 when it does not fit or is unknown).
fn epoch(term: Option<u64>) -> i32 {
    term.and_then(|t| i32::try_from(t).ok()).unwrap_or(-1)
}

pub async fn list_offsets(ctx: &Ctx, req: ListOffsetsRequest, version: i16) -> Reply {
    let mut ok = true;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let query = match p.timestamp {
                LATEST => Some(OffsetQuery::Latest),
                EARLIEST => Some(OffsetQuery::Earliest),
                MAX_TIMESTAMP if version >= 7 => Some(OffsetQuery::MaxTimestamp),
                EARLIEST_LOCAL if version >= 8 => Some(OffsetQuery::EarliestLocal),
                LATEST_TIERED if version >= 9 => Some(OffsetQuery::LatestTiered),
                ts if ts >= 0 => Some(OffsetQuery::Timestamp(ts)),
                _ => None,
            };
            let base =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let Some(query) = query else {
                ok = false;
                parts.push(
                    base.with_error_code(errors::INVALID_REQUEST)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1),
                );
                continue;
            };
            let partition = u32::try_from(p.partition_index).unwrap_or(u32::MAX);
            match ctx
                .broker
                .list_offset(&ctx.who, &name, partition, query)
                .await
            {
                // No record at or after the time: Kafka answers an
                // unknown offset (-1), not the end of the log.
                Ok(o) if matches!(query, OffsetQuery::Timestamp(_)) && o.timestamp < 0 => parts
                    .push(
                        base.with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1),
                    ),
                Ok(o) => parts.push(
                    base.with_timestamp(o.timestamp)
                        .with_offset(o.offset)
                        // Epochs are answered from v4.
                        .with_leader_epoch(if o.offset < 0 || version < 4 {
                            -1
                        } else {
                            epoch(o.term)
                        }),
                ),
                Err(e) => {
                    ok = false;
                    parts.push(
                        base.with_error_code(errors::code(&e, Refused::Topic))
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(-1),
                    );
                }
            }
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(parts),
        );
    }
    Reply::Now(
        Response::ListOffsets(ListOffsetsResponse::default().with_topics(topics)),
        ok,
    )
}

/// OffsetForLeaderEpoch: for each partition, the largest epoch at or
/// below the asked one and where it ends, as Kafka's leader answers it. A
/// `current_leader_epoch` other than the leader's is fenced (older) or
/// unknown (newer), so a client with stale metadata refreshes it.
pub fn offset_for_leader_epoch(ctx: &Ctx, req: OffsetForLeaderEpochRequest) -> Reply {
    let mut ok = true;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.topic.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let base = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            let partition = u32::try_from(p.partition).unwrap_or(u32::MAX);
            let asked = u64::try_from(p.leader_epoch).ok();
            let answer = ctx
                .broker
                .epoch_end(&ctx.who, &name, partition, asked.unwrap_or(0));
            let entry = match answer {
                Err(e) => base.with_error_code(errors::code(&e, Refused::Topic)),
                Ok(end) => {
                    let current = i64::try_from(end.current).unwrap_or(i64::MAX);
                    let fenced =
                        p.current_leader_epoch >= 0 && i64::from(p.current_leader_epoch) != current;
                    if fenced && i64::from(p.current_leader_epoch) < current {
                        base.with_error_code(errors::FENCED_LEADER_EPOCH)
                    } else if fenced {
                        base.with_error_code(errors::UNKNOWN_LEADER_EPOCH)
                    } else {
                        match (asked, end.found) {
                            (Some(_), Some((term, offset))) => base
                                .with_leader_epoch(epoch(Some(term)))
                                .with_end_offset(offset),
                            // An undefined or future epoch: undefined too.
                            _ => base,
                        }
                    }
                }
            };
            ok &= entry.error_code == errors::NONE;
            parts.push(entry);
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(parts),
        );
    }
    Reply::Now(
        Response::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics)),
        ok,
    )
}
