//! Produce (key 0; topics named up to v12, identified by id from v13):
//! Kafka batches get strata's prefix and go through the
//! broker's one produce path; acks=0 gets no answer at all.
//!
//! Partitions are checked and proposed in request order while the
//! connection waits (so pipelined requests of an idempotent producer are
//! appended in the order sent); the wait for acks runs on its own.

use std::time::Duration;

use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use strata_proto::batch::kafka::from_kafka;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use crate::broker::produce::{Pending, ProduceRequest as Op};
use crate::error::BrokerError;
use crate::partition::Acks;

/// A partition's outcome: waiting for acks, or already failed.
enum Outcome {
    Waiting(Pending),
    Failed(i16, String),
}

fn partition_response(
    index: i32,
    o: Result<crate::broker::produce::Produced, (i16, String)>,
) -> PartitionProduceResponse {
    match o {
        Ok(p) => PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(p.base_offset)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(p.log_start_offset),
        Err((code, msg)) => PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(code)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(Some(StrBytes::from_string(msg))),
    }
}

fn failure(e: &BrokerError) -> (i16, String) {
    (errors::code(e, Refused::Topic), e.to_string())
}

pub async fn handle(ctx: &Ctx, req: ProduceRequest, version: i16) -> Reply {
    if version < 3 {
        return Reply::Close(format!(
            "Produce v{version} (message format v0/v1) is not served; use v3 or later"
        ));
    }
    let (acks, bad_acks) = match req.acks {
        0 => (Acks::None, false),
        1 => (Acks::Leader, false),
        -1 => (Acks::All, false),
        _ => (Acks::All, true),
    };
    let timeout = (req.timeout_ms > 0).then(|| Duration::from_millis(req.timeout_ms as u64));
    let transactional = req.transactional_id.is_some();
    let mut topics: Vec<(TopicProduceResponse, Vec<(i32, Outcome)>)> = Vec::new();
    for t in req.topic_data {
        // Topics are named up to v12 and identified from v13.
        let name = if version >= 13 {
            super::metadata::topic_name_of(&ctx.broker, t.topic_id)
        } else {
            Some(t.name.0.to_string())
        };
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let outcome = if bad_acks {
                Outcome::Failed(errors::INVALID_REQUIRED_ACKS, format!("acks {}", req.acks))
            } else if transactional {
                Outcome::Failed(
                    errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                    "transactions are not supported".into(),
                )
            } else if name.is_none() {
                Outcome::Failed(errors::UNKNOWN_TOPIC_ID, "no topic has this id".into())
            } else if p.index < 0 {
                Outcome::Failed(
                    errors::UNKNOWN_TOPIC_OR_PARTITION,
                    "negative partition".into(),
                )
            } else {
                let records = p.records.unwrap_or_default();
                let prepared = from_kafka(&records)
                    .map_err(|e| BrokerError::CorruptBatch(e.to_string()))
                    .and_then(|records| {
                        ctx.broker.prepare_produce(
                            &ctx.who,
                            Op {
                                topic: name.clone().unwrap_or_default(),
                                partition: p.index as u32,
                                records,
                                acks,
                                timeout,
                            },
                        )
                    })
                    .and_then(|prepared| prepared.append());
                match prepared {
                    Ok(pending) => Outcome::Waiting(pending),
                    Err(e) => {
                        let (c, m) = failure(&e);
                        Outcome::Failed(c, m)
                    }
                }
            };
            parts.push((p.index, outcome));
        }
        topics.push((
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id),
            parts,
        ));
    }
    let answer = async move {
        let mut ok = true;
        let mut responses = Vec::with_capacity(topics.len());
        for (topic, parts) in topics {
            let mut out = Vec::with_capacity(parts.len());
            for (index, outcome) in parts {
                let r = match outcome {
                    Outcome::Waiting(p) => p.finish().await.map_err(|e| failure(&e)),
                    Outcome::Failed(c, m) => Err((c, m)),
                };
                ok &= r.is_ok();
                out.push(partition_response(index, r));
            }
            responses.push(topic.with_partition_responses(out));
        }
        (
            Response::Produce(ProduceResponse::default().with_responses(responses)),
            ok,
        )
    };
    if acks == Acks::None {
        // Nothing is sent back; the appends still complete.
        tokio::spawn(answer);
        return Reply::None;
    }
    Reply::Later(Box::pin(async move {
        let (r, ok) = answer.await;
        (Some(r), ok)
    }))
}
