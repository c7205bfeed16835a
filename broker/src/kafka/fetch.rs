//! Fetch (key 1), through the broker's one fetch path. Stored batches go
//! out with Kafka's prefix (leader epoch = the batch's Raft term) in front
//! of their bodies.
//!
//! Topics are named up to v12 and identified by their ids from v13. The
//! answer is written around shared stored bytes (`fetch_answer`).
//!
//! Fetch sessions (KIP-227) are not kept: every answer carries session id
//! 0 and all asked partitions, which clients treat as "full fetches".

use std::time::Duration;

use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::protocol::StrBytes;
use strata_proto::batch::kafka::to_kafka;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use super::fetch_answer::{FetchAnswer, PartitionAnswer, TopicAnswer};
use super::metadata;
use crate::broker::fetch::{FetchPartition, FetchRequest as Op, FetchedPartition};

fn partition_answer(p: FetchedPartition) -> (PartitionAnswer, bool) {
    let index = i32::try_from(p.partition).unwrap_or(-1);
    match p
        .result
        .and_then(|r| to_kafka(&r.records).map(|b| (r, b)).map_err(Into::into))
    {
        Ok((r, batches)) => (
            PartitionAnswer {
                index,
                error_code: errors::NONE,
                high_watermark: r.high_watermark,
                last_stable_offset: r.high_watermark,
                log_start_offset: r.log_start,
                batches,
            },
            true,
        ),
        Err(e) => (refused(index, errors::code(&e, Refused::Topic)), false),
    }
}

fn refused(index: i32, error_code: i16) -> PartitionAnswer {
    PartitionAnswer {
        index,
        error_code,
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        batches: Vec::new(),
    }
}

/// One asked topic: its name and id, or the id nobody knows.
struct Asked {
    name: Option<String>,
    id: uuid::Uuid,
    partitions: Vec<i32>,
}

pub fn handle(ctx: &Ctx, req: FetchRequest, version: i16) -> Reply {
    let mut asked: Vec<Asked> = Vec::with_capacity(req.topics.len());
    let mut partitions = Vec::new();
    for t in req.topics {
        // Topics are named up to v12 and identified from v13 (the answer
        // carries only what the version names).
        let (name, id) = if version >= 13 {
            (metadata::topic_name_of(&ctx.broker, t.topic_id), t.topic_id)
        } else {
            (Some(t.topic.0.to_string()), uuid::Uuid::nil())
        };
        let indexes: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
        if let Some(name) = &name {
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
        asked.push(Asked {
            name,
            id,
            partitions: indexes,
        });
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
        let mut topics = Vec::with_capacity(asked.len());
        for t in asked {
            let parts: Vec<PartitionAnswer> = match &t.name {
                Some(_) => read
                    .by_ref()
                    .take(t.partitions.len())
                    .map(|p| {
                        let (d, good) = partition_answer(p);
                        ok &= good;
                        d
                    })
                    .collect(),
                None => {
                    ok = false;
                    t.partitions
                        .iter()
                        .map(|i| refused(*i, errors::UNKNOWN_TOPIC_ID))
                        .collect()
                }
            };
            topics.push(TopicAnswer {
                name: TopicName(StrBytes::from_string(t.name.unwrap_or_default())),
                id: t.id,
                partitions: parts,
            });
        }
        (Some(Response::Fetch(FetchAnswer { topics })), ok)
    }))
}
