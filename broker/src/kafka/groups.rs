//! The consumer-group APIs over the Kafka protocol: FindCoordinator
//! (key 10), OffsetCommit (8), OffsetFetch (9), ListGroups (16),
//! DeleteGroups (42) and OffsetDelete (47), on the one group coordinator (the leader of the
//! group's `__consumer_offsets` partition). A broker that does not
//! coordinate a group answers NOT_COORDINATOR; Kafka clients then look the
//! coordinator up again.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{BrokerId, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::classic::group_code;
use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use super::metadata::host_port;
use crate::broker::Broker;
use crate::broker::groups::OffsetToCommit;
use crate::error::BrokerError;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::security::auth::{Operation, Resource};

/// FindCoordinator's key types: consumer groups, transactions (share
/// groups, 2, do not exist here either).
const GROUP_KEY: i8 = 0;
const TRANSACTION_KEY: i8 = 1;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The coordinator of `group`: (node id, host, port) or the error code.
fn coordinator_of(broker: &Broker, group: &str) -> Result<(i32, String, i32), i16> {
    if crate::groups::offsets::validate_group(group).is_err() {
        return Err(errors::INVALID_GROUP_ID);
    }
    let shard = broker.groups().shard_of(group);
    let leader = broker.directory.leader(OFFSETS_TOPIC, shard);
    if leader == 0 {
        return Err(errors::COORDINATOR_NOT_AVAILABLE);
    }
    let addr = broker.with_state(|s| s.brokers.get(&leader).map(|b| b.kafka_addr.clone()));
    match addr.as_deref().and_then(host_port) {
        Some((host, port)) => Ok((leader as i32, host, port)),
        None => Err(errors::COORDINATOR_NOT_AVAILABLE),
    }
}

pub fn find_coordinator(ctx: &Ctx, req: FindCoordinatorRequest, version: i16) -> Reply {
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let mut ok = true;
    let coordinators: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| {
            let found = if req.key_type == TRANSACTION_KEY {
                // No transaction coordinator exists until transactions do:
                // a fatal code, so that a transactional producer fails at
                // once instead of retrying until its timeout.
                Err(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else if req.key_type != GROUP_KEY {
                Err(errors::INVALID_REQUEST)
            } else if !ctx
                .broker
                .may(&ctx.who, Operation::Describe, Resource::Group, &key)
            {
                Err(errors::GROUP_AUTHORIZATION_FAILED)
            } else {
                coordinator_of(&ctx.broker, &key)
            };
            let c = Coordinator::default().with_key(text(key));
            let why = |code: i16| {
                (code == errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                    .then(|| text("transactions are not supported by this broker"))
            };
            match found {
                Ok((id, host, port)) => c
                    .with_node_id(BrokerId(id))
                    .with_host(text(host))
                    .with_port(port),
                Err(code) => {
                    ok = false;
                    c.with_error_code(code)
                        .with_error_message(why(code))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                }
            }
        })
        .collect();
    let mut resp = FindCoordinatorResponse::default();
    if version < 4 {
        if let Some(c) = coordinators.first() {
            resp = resp
                .with_error_code(c.error_code)
                .with_error_message(c.error_message.clone())
                .with_node_id(c.node_id)
                .with_host(c.host.clone())
                .with_port(c.port);
        }
    } else {
        resp = resp.with_coordinators(coordinators);
    }
    Reply::Now(Response::FindCoordinator(resp), ok)
}

/// NOT_COORDINATOR when this broker does not coordinate `group`.
fn not_coordinator(broker: &Broker, group: &str) -> Option<i16> {
    broker.groups().route(group).map(|e| group_code(&e))
}

pub async fn offset_commit(ctx: &Ctx, req: OffsetCommitRequest, _version: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            offsets.push(OffsetToCommit {
                topic: t.name.0.to_string(),
                partition: u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                offset: p.committed_offset,
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            });
        }
    }
    let code = match not_coordinator(&ctx.broker, &group) {
        Some(code) => code,
        None => {
            let member = req.member_id.to_string();
            let outcome = ctx
                .broker
                .commit_offsets(
                    &ctx.who,
                    &group,
                    offsets,
                    (&member, req.generation_id_or_member_epoch),
                )
                .await;
            match outcome {
                Ok(()) => errors::NONE,
                Err(e @ BrokerError::Unauthorized(_)) => {
                    // Group or topic: the group check comes first.
                    if ctx
                        .broker
                        .may(&ctx.who, Operation::Read, Resource::Group, &group)
                    {
                        errors::code(&e, Refused::Topic)
                    } else {
                        errors::code(&e, Refused::Group)
                    }
                }
                Err(e) => group_code(&e),
            }
        }
    };
    // A commit is all or nothing: every partition reports the same code.
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    Reply::Now(
        Response::OffsetCommit(OffsetCommitResponse::default().with_topics(topics)),
        code == errors::NONE,
    )
}

/// Committed offsets per topic: `(partition, offset, metadata)`.
type TopicOffsets = Vec<(String, Vec<(i32, i64, String)>)>;

/// One group's committed offsets as OffsetFetch answers them: per topic,
/// `(partition, offset, metadata)`; `asked`: `None` for every committed
/// partition. Err: the group's error code.
fn committed_of(
    ctx: &Ctx,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
) -> Result<TopicOffsets, i16> {
    if let Some(code) = not_coordinator(&ctx.broker, group) {
        return Err(code);
    }
    let committed = ctx
        .broker
        .committed_offsets(&ctx.who, group, &[])
        .map_err(|e| errors::code(&e, Refused::Group))?;
    let mut by_topic: BTreeMap<String, BTreeMap<u32, (i64, String)>> = BTreeMap::new();
    for (t, p, c) in committed {
        by_topic
            .entry(t)
            .or_default()
            .insert(p, (c.offset, c.metadata));
    }
    Ok(match asked {
        None => by_topic
            .into_iter()
            .map(|(t, parts)| {
                let ps = parts
                    .into_iter()
                    .map(|(p, (o, m))| (p as i32, o, m))
                    .collect();
                (t, ps)
            })
            .collect(),
        Some(asked) => asked
            .into_iter()
            .map(|(t, ps)| {
                let known = by_topic.get(&t);
                let ps = ps
                    .into_iter()
                    .map(|p| {
                        let (o, m) = u32::try_from(p)
                            .ok()
                            .and_then(|i| known.and_then(|k| k.get(&i)))
                            .cloned()
                            .unwrap_or((-1, String::new()));
                        (p, o, m)
                    })
                    .collect();
                (t, ps)
            })
            .collect(),
    })
}

pub fn offset_fetch(ctx: &Ctx, req: OffsetFetchRequest, version: i16) -> Reply {
    // v8+ ask for several groups at once.
    if version >= 8 {
        let mut ok = true;
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let asked = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let base = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match committed_of(ctx, &g.group_id, asked) {
                    Ok(topics) => base.with_topics(
                        topics
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(text(t)))
                                    .with_partitions(
                                        ps.into_iter()
                                            .map(|(p, o, m)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(-1)
                                                    .with_metadata(Some(text(m)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(code) => {
                        ok = false;
                        base.with_error_code(code)
                    }
                }
            })
            .collect();
        return Reply::Now(
            Response::OffsetFetch(OffsetFetchResponse::default().with_groups(groups)),
            ok,
        );
    }
    let asked = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    match committed_of(ctx, &req.group_id, asked) {
        Ok(topics) => {
            let topics = topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(text(t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|(p, o, m)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(-1)
                                        .with_metadata(Some(text(m)))
                                })
                                .collect(),
                        )
                })
                .collect();
            Reply::Now(
                Response::OffsetFetch(OffsetFetchResponse::default().with_topics(topics)),
                true,
            )
        }
        Err(code) => Reply::Now(
            Response::OffsetFetch(OffsetFetchResponse::default().with_error_code(code)),
            false,
        ),
    }
}

/// Kafka's name of a group state.
fn kafka_state(state: &str) -> &'static str {
    match state {
        "stable" => "Stable",
        "reconciling" => "Reconciling",
        _ => "Empty",
    }
}

pub fn list_groups(ctx: &Ctx, req: ListGroupsRequest) -> Reply {
    let groups = ctx.broker.groups();
    let listed = groups
        .list()
        .into_iter()
        .filter(|g| groups.route(g).is_none())
        .filter(|g| {
            ctx.broker
                .may(&ctx.who, Operation::Describe, Resource::Group, g)
        })
        .filter_map(|g| {
            let (name, protocol_type, group_type) = match groups.classic_state(&g) {
                Some(c) => (c.state.kafka_name(), c.protocol_type.clone(), "classic"),
                None => {
                    let state = groups.consumer_state(&g);
                    let kind = if state.is_some() {
                        "consumer"
                    } else {
                        "classic"
                    };
                    let name = kafka_state(state.as_ref().map_or("empty", |s| s.state_name()));
                    (name, "consumer".to_owned(), kind)
                }
            };
            let wanted = (req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(name)))
                && (req.types_filter.is_empty()
                    || req
                        .types_filter
                        .iter()
                        .any(|f| f.eq_ignore_ascii_case(group_type)));
            wanted.then(|| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(g)))
                    .with_protocol_type(text(protocol_type))
                    .with_group_state(text(name))
                    .with_group_type(text(group_type))
            })
        })
        .collect();
    Reply::Now(
        Response::ListGroups(ListGroupsResponse::default().with_groups(listed)),
        true,
    )
}

pub async fn delete_groups(ctx: &Ctx, req: DeleteGroupsRequest) -> Reply {
    let mut ok = true;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let group = g.0.to_string();
        let code = if let Some(code) = not_coordinator(&ctx.broker, &group) {
            code
        } else {
            let outcome =
                match ctx
                    .broker
                    .authorize(&ctx.who, Operation::Delete, Resource::Group, &group)
                {
                    Ok(()) => ctx.broker.groups().delete(&group).await,
                    Err(e) => Err(e),
                };
            match outcome {
                Ok(()) => errors::NONE,
                Err(e) => errors::code(&e, Refused::Group),
            }
        };
        ok &= code == errors::NONE;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code),
        );
    }
    Reply::Now(
        Response::DeleteGroups(DeleteGroupsResponse::default().with_results(results)),
        ok,
    )
}

/// OffsetDelete: a group's committed offsets of some partitions go, unless
/// the group still consumes their topic (GROUP_SUBSCRIBED_TO_TOPIC).
pub async fn offset_delete(ctx: &Ctx, req: OffsetDeleteRequest) -> Reply {
    let group = req.group_id.0.to_string();
    let asked: Vec<(String, u32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                )
            })
        })
        .collect();
    let outcome = match not_coordinator(&ctx.broker, &group) {
        Some(code) => Err(code),
        None => ctx
            .broker
            .delete_offsets(&ctx.who, &group, asked)
            .await
            .map_err(|e| errors::code(&e, Refused::Group)),
    };
    let (top, mut each) = match outcome {
        Ok(r) => (errors::NONE, r.into_iter()),
        Err(code) => (code, Vec::new().into_iter()),
    };
    let mut ok = top == errors::NONE;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let code = match each.next() {
                        Some(Ok(())) | None => errors::NONE,
                        Some(Err(e)) => errors::code(&e, Refused::Topic),
                    };
                    ok &= code == errors::NONE;
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts)
        })
        .collect();
    let topics = if top == errors::NONE {
        topics
    } else {
        Vec::new()
    };
    Reply::Now(
        Response::OffsetDelete(
            OffsetDeleteResponse::default()
                .with_error_code(top)
                .with_topics(topics),
        ),
        ok,
    )
}
