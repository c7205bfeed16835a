//! Fetch (key 1) and ListOffsets (key 2), through the broker's one fetch
//! path and offset lookup. Stored batches go out with Kafka's prefix
//! (leader epoch = the batch's Raft term) in front of their bodies.
//!
//! Fetch sessions (KIP-227) are not kept: every answer carries session id
//! 0 and all asked partitions, which clients treat as "full fetches".

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_proto::batch::kafka::to_kafka_bytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use crate::broker::fetch::{FetchPartition, FetchRequest as Op, FetchedPartition};
use crate::broker::list_offsets::OffsetQuery;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

fn partition_data(p: FetchedPartition) -> (PartitionData, bool) {
    let base = PartitionData::default()
        .with_partition_index(p.partition as i32)
        .with_preferred_read_replica(BrokerId(-1));
    match p.result.and_then(|r| {
        to_kafka_bytes(&r.records)
            .map(|b| (r, b))
            .map_err(Into::into)
    }) {
        Ok((r, records)) => (
            base.with_high_watermark(r.high_watermark)
                .with_last_stable_offset(r.high_watermark)
                .with_log_start_offset(r.log_start)
                .with_records(Some(records)),
            true,
        ),
        Err(e) => (
            base.with_error_code(errors::code(&e, Refused::Topic))
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(Bytes::new())),
            false,
        ),
    }
}

pub fn handle(ctx: &Ctx, req: FetchRequest, _version: i16) -> Reply {
    let mut order: Vec<(TopicName, usize)> = Vec::with_capacity(req.topics.len());
    let mut partitions = Vec::new();
    for t in req.topics {
        order.push((t.topic.clone(), t.partitions.len()));
        let name = t.topic.0.to_string();
        for p in t.partitions {
            partitions.push(FetchPartition {
                topic: name.clone(),
                // A negative index cannot exist: it reads as unknown.
                partition: u32::try_from(p.partition).unwrap_or(u32::MAX),
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
            });
        }
    }
    let op = Op {
        partitions,
        max_wait: Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)),
        min_bytes: usize::try_from(req.min_bytes).unwrap_or(0),
        max_bytes: usize::try_from(req.max_bytes).unwrap_or(0),
    };
    let broker = std::sync::Arc::clone(&ctx.broker);
    let who = ctx.who.clone();
    Reply::Later(Box::pin(async move {
        let read = broker.fetch(&who, &op).await;
        let mut read = read.into_iter();
        let mut ok = true;
        let mut responses = Vec::with_capacity(order.len());
        for (topic, n) in order {
            let parts: Vec<PartitionData> = read
                .by_ref()
                .take(n)
                .map(|p| {
                    let (d, good) = partition_data(p);
                    ok &= good;
                    d
                })
                .collect();
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(topic)
                    .with_partitions(parts),
            );
        }
        (
            Some(Response::Fetch(
                FetchResponse::default().with_responses(responses),
            )),
            ok,
        )
    }))
}

pub async fn list_offsets(ctx: &Ctx, req: ListOffsetsRequest, _version: i16) -> Reply {
    let mut ok = true;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let query = match p.timestamp {
                LATEST => Some(OffsetQuery::Latest),
                EARLIEST => Some(OffsetQuery::Earliest),
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
                Ok(o) => parts.push(
                    base.with_timestamp(o.timestamp)
                        .with_offset(o.offset)
                        .with_leader_epoch(-1),
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
