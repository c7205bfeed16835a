//! CreateTopics (key 19), DeleteTopics (key 20), DeleteRecords (key 21)
//! and CreatePartitions (key 37), through the broker's topic operations
//! (the controller runs all but DeleteRecords, which the partition leader
//! runs).

use std::collections::BTreeMap;

use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsRequest;
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_request::CreateTopicsRequest;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_records_request::DeleteRecordsRequest;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use super::metadata::topic_uuid;
use crate::error::BrokerError;
use crate::security::auth::{Operation, Resource};

fn message(e: &BrokerError) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.to_string()))
}

pub async fn create(ctx: &Ctx, req: CreateTopicsRequest, _version: i16) -> Reply {
    let broker = &ctx.broker;
    let k = &broker.config().kafka;
    let mut ok = true;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let partitions = match t.num_partitions {
            -1 => Ok(k.num_partitions),
            n => u32::try_from(n)
                .map_err(|_| BrokerError::InvalidPartitions(format!("{n} partitions"))),
        };
        let brokers = broker.with_state(|s| s.brokers.len()).max(1) as u32;
        let rf = match t.replication_factor {
            -1 => Ok(k.default_replication_factor.min(brokers)),
            n => {
                u32::try_from(n).map_err(|_| BrokerError::InvalidReplicationFactor(format!("{n}")))
            }
        };
        let assignments = if t.assignments.is_empty() {
            Ok(())
        } else {
            Err(BrokerError::InvalidRequest(
                "manual replica assignment is not supported; the controller places replicas".into(),
            ))
        };
        let configs: BTreeMap<String, String> = t
            .configs
            .into_iter()
            .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
            .collect();
        let outcome = match (partitions, rf, assignments) {
            (Ok(p), Ok(r), Ok(())) => match broker.authorize_create_topic(&ctx.who, &name) {
                Err(e) => Err(e),
                Ok(()) if req.validate_only => {
                    crate::cluster::topic_config::validate_topic_name(&name, false).map(|()| None)
                }
                Ok(()) => broker.create_topic(&name, p, r, configs).await.map(Some),
            },
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
        };
        results.push(match outcome {
            Ok(meta) => {
                let (p, r, id) = meta.as_ref().map_or((-1, -1, uuid::Uuid::nil()), |m| {
                    (
                        m.partitions as i32,
                        m.replication_factor as i16,
                        topic_uuid(m),
                    )
                });
                result
                    .with_topic_id(id)
                    .with_num_partitions(p)
                    .with_replication_factor(r)
            }
            Err(e) => {
                ok = false;
                result
                    .with_error_code(errors::code(&e, Refused::Topic))
                    .with_error_message(message(&e))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        });
    }
    Reply::Now(
        Response::CreateTopics(CreateTopicsResponse::default().with_topics(results)),
        ok,
    )
}

pub async fn delete(ctx: &Ctx, req: DeleteTopicsRequest, _version: i16) -> Reply {
    let broker = &ctx.broker;
    // v0-5 name topics in `topic_names`, v6+ in `topics` (by name or id).
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .into_iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    wanted.extend(
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)),
    );
    let mut ok = true;
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let name = name.or_else(|| super::metadata::topic_name_of(broker, id));
        let result = DeletableTopicResult::default().with_topic_id(id);
        let Some(name) = name else {
            ok = false;
            responses.push(result.with_error_code(errors::UNKNOWN_TOPIC_ID));
            continue;
        };
        let outcome = match broker.authorize(&ctx.who, Operation::Delete, Resource::Topic, &name) {
            Ok(()) => broker.delete_topic(&name).await,
            Err(e) => Err(e),
        };
        let result = result.with_name(Some(TopicName(StrBytes::from_string(name))));
        responses.push(match outcome {
            Ok(()) => result,
            Err(e) => {
                ok = false;
                result
                    .with_error_code(errors::code(&e, Refused::Topic))
                    .with_error_message(message(&e))
            }
        });
    }
    Reply::Now(
        Response::DeleteTopics(DeleteTopicsResponse::default().with_responses(responses)),
        ok,
    )
}

/// CreatePartitions: each topic grows to its new count, with the replicas
/// the request names or spread as at creation.
pub async fn create_partitions(ctx: &Ctx, req: CreatePartitionsRequest) -> Reply {
    let mut ok = true;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let count = u32::try_from(t.count)
            .map_err(|_| BrokerError::InvalidPartitions(format!("{} partitions", t.count)));
        let manual: Result<Option<Vec<Vec<u64>>>, BrokerError> = t
            .assignments
            .map(|a| {
                a.into_iter()
                    .map(|p| {
                        p.broker_ids
                            .into_iter()
                            .map(|b| {
                                u64::try_from(b.0).map_err(|_| {
                                    BrokerError::InvalidReplicaAssignment(format!("broker {}", b.0))
                                })
                            })
                            .collect()
                    })
                    .collect()
            })
            .transpose();
        let outcome = match (count, manual) {
            (Ok(n), Ok(m)) => {
                ctx.broker
                    .create_partitions_as(&ctx.who, &name, n, m, req.validate_only)
                    .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let result = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(_) => result,
            Err(e) => {
                ok = false;
                result
                    .with_error_code(errors::code(&e, Refused::Topic))
                    .with_error_message(message(&e))
            }
        });
    }
    Reply::Now(
        Response::CreatePartitions(CreatePartitionsResponse::default().with_results(results)),
        ok,
    )
}

pub async fn delete_records(ctx: &Ctx, req: DeleteRecordsRequest) -> Reply {
    let mut ok = true;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in t.partitions {
            let partition = u32::try_from(p.partition_index).unwrap_or(u32::MAX);
            let outcome = ctx
                .broker
                .delete_records_as(&ctx.who, &name, partition, p.offset)
                .await;
            let result =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            parts.push(match outcome {
                Ok(start) => result.with_low_watermark(start),
                Err(e) => {
                    ok = false;
                    result
                        .with_low_watermark(-1)
                        .with_error_code(errors::code(&e, Refused::Topic))
                }
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    Reply::Now(
        Response::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics)),
        ok,
    )
}
