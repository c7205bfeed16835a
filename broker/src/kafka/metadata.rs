//! Metadata (key 3): brokers with their Kafka addresses, topics with
//! their ids, partitions with their Raft leaders; topics a client asks
//! for that do not exist are created when auto creation is on. And
//! DescribeCluster (key 60): the brokers, the cluster id and controller.

use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use crate::broker::Broker;
use crate::cluster::metadata::TopicMeta;
use crate::error::BrokerError;
use crate::security::auth::{Identity, Operation, Resource};

/// Kafka's "authorized operations were not asked for".
const NOT_ASKED: i32 = i32::MIN;

/// A topic id as Kafka's UUID (strata's ids are 32 hex digits).
pub fn topic_uuid(meta: &TopicMeta) -> uuid::Uuid {
    let mut b = [0u8; 16];
    let hex = meta.id.as_bytes();
    if hex.len() == 32 {
        for (i, byte) in b.iter_mut().enumerate() {
            let pair = std::str::from_utf8(&hex[2 * i..2 * i + 2]).unwrap_or("00");
            *byte = u8::from_str_radix(pair, 16).unwrap_or(0);
        }
    }
    uuid::Uuid::from_bytes(b)
}

/// The topic whose Kafka id is `id` (a topic's id is its strata id, 32
/// lowercase hex digits, as a UUID): one string comparison per topic.
pub fn topic_name_of(broker: &Broker, id: uuid::Uuid) -> Option<String> {
    if id.is_nil() {
        return None;
    }
    let mut hex = [0u8; uuid::fmt::Simple::LENGTH];
    let hex = id.simple().encode_lower(&mut hex);
    broker.with_state(|s| {
        s.topics
            .iter()
            .find(|(_, m)| m.id == *hex)
            .map(|(n, _)| n.clone())
    })
}

/// `HOST:PORT` as Kafka's host and port.
pub fn host_port(addr: &str) -> Option<(String, i32)> {
    let (h, p) = addr.rsplit_once(':')?;
    let host = h.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), p.parse().ok()?))
}

/// Every broker with a Kafka listener.
pub fn brokers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    broker.with_state(|s| {
        s.brokers
            .values()
            .filter_map(|b| {
                let (host, port) = host_port(&b.kafka_addr)?;
                Some(
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id as i32))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port),
                )
            })
            .collect()
    })
}

/// One topic's answer from the metadata.
fn topic_entry(broker: &Broker, name: &str, meta: &TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .map(|p| {
            let (leader, term) = broker.directory.leader_and_term(name, p);
            let replicas: Vec<BrokerId> = meta
                .assignments
                .get(p as usize)
                .map(|r| r.iter().map(|id| BrokerId(*id as i32)).collect())
                .unwrap_or_default();
            let error_code = if leader == 0 {
                errors::LEADER_NOT_AVAILABLE
            } else {
                errors::NONE
            };
            MetadataResponsePartition::default()
                .with_error_code(error_code)
                .with_partition_index(p as i32)
                .with_leader_id(BrokerId(if leader == 0 { -1 } else { leader as i32 }))
                .with_leader_epoch(i32::try_from(term).unwrap_or(-1))
                .with_isr_nodes(replicas.clone())
                .with_replica_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_owned()))))
        .with_topic_id(topic_uuid(meta))
        .with_is_internal(meta.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(NOT_ASKED)
}

fn error_entry(name: Option<String>, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_authorized_operations(NOT_ASKED)
}

/// Creates `name` with the broker's defaults (Kafka's auto creation).
pub async fn auto_create(broker: &Broker, who: &Identity, name: &str) -> Result<(), BrokerError> {
    broker.authorize_create_topic(who, name)?;
    let k = &broker.config().kafka;
    let brokers = broker.with_state(|s| s.brokers.len()).max(1) as u32;
    let rf = k.default_replication_factor.min(brokers);
    match broker
        .create_topic(name, k.num_partitions, rf, Default::default())
        .await
    {
        Ok(_) | Err(BrokerError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn handle(ctx: &Ctx, req: MetadataRequest, version: i16) -> Reply {
    let broker = &ctx.broker;
    // Before v4 every Metadata request allowed auto creation.
    let may_create =
        broker.config().kafka.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let wanted: Option<Vec<(Option<String>, uuid::Uuid)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    });
    let mut topics = Vec::new();
    match wanted {
        // v0 asked for every topic with an empty list.
        Some(list) if !(list.is_empty() && version == 0) => {
            for (name, id) in list {
                let name = match name {
                    Some(n) => n,
                    None => match topic_name_of(broker, id) {
                        Some(n) => n,
                        None => {
                            topics.push(error_entry(None, errors::UNKNOWN_TOPIC_ID));
                            continue;
                        }
                    },
                };
                if !broker.may(&ctx.who, Operation::Describe, Resource::Topic, &name) {
                    topics.push(error_entry(Some(name), errors::TOPIC_AUTHORIZATION_FAILED));
                    continue;
                }
                let mut meta = broker.with_state(|s| s.topics.get(&name).cloned());
                if meta.is_none() && may_create && !name.starts_with("__") {
                    match auto_create(broker, &ctx.who, &name).await {
                        Ok(()) => meta = broker.with_state(|s| s.topics.get(&name).cloned()),
                        Err(e) => {
                            topics.push(error_entry(Some(name), errors::code(&e, Refused::Topic)));
                            continue;
                        }
                    }
                }
                match meta {
                    Some(m) => topics.push(topic_entry(broker, &name, &m)),
                    None => {
                        topics.push(error_entry(Some(name), errors::UNKNOWN_TOPIC_OR_PARTITION))
                    }
                }
            }
        }
        _ => {
            let all: Vec<(String, TopicMeta)> = broker.with_state(|s| {
                s.topics
                    .iter()
                    .filter(|(_, m)| !m.internal)
                    .map(|(n, m)| (n.clone(), m.clone()))
                    .collect()
            });
            for (name, m) in all {
                if broker.may(&ctx.who, Operation::Describe, Resource::Topic, &name) {
                    topics.push(topic_entry(broker, &name, &m));
                }
            }
        }
    }
    let controller = broker.controller().leader();
    let resp = MetadataResponse::default()
        .with_brokers(brokers(broker))
        .with_cluster_id(Some(StrBytes::from_string(
            broker.with_state(|s| s.cluster_id.clone()),
        )))
        .with_controller_id(BrokerId(if controller == 0 {
            -1
        } else {
            controller as i32
        }))
        .with_topics(topics)
        .with_cluster_authorized_operations(NOT_ASKED);
    Reply::Now(Response::Metadata(resp), true)
}

/// DescribeCluster's endpoint type of brokers (2 = controllers, which
/// strata does not expose apart).
const BROKERS: i8 = 1;

pub fn describe_cluster(ctx: &Ctx, req: DescribeClusterRequest) -> Reply {
    let broker = &ctx.broker;
    if req.endpoint_type != BROKERS && req.endpoint_type != 0 {
        return Reply::Now(
            Response::DescribeCluster(
                DescribeClusterResponse::default()
                    .with_error_code(errors::UNSUPPORTED_ENDPOINT_TYPE)
                    .with_endpoint_type(req.endpoint_type),
            ),
            false,
        );
    }
    let controller = broker.controller().leader();
    let brokers = brokers(broker)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
        })
        .collect();
    Reply::Now(
        Response::DescribeCluster(
            DescribeClusterResponse::default()
                .with_endpoint_type(BROKERS)
                .with_cluster_id(StrBytes::from_string(
                    broker.with_state(|s| s.cluster_id.clone()),
                ))
                .with_controller_id(BrokerId(if controller == 0 {
                    -1
                } else {
                    controller as i32
                }))
                .with_brokers(brokers)
                .with_cluster_authorized_operations(NOT_ASKED),
        ),
        true,
    )
}
