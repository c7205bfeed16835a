//! The new consumer group protocol over Kafka (KIP-848):
//! ConsumerGroupHeartbeat (key 68) and ConsumerGroupDescribe (69), on the
//! coordinator's consumer-protocol state machine, the same one the gRPC
//! `Groups.ConsumerGroupHeartbeat` drives. Kafka names topics by id here;
//! the translation maps ids to names both ways.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::consumer_group_describe_request::ConsumerGroupDescribeRequest;
use kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, ConsumerGroupDescribeResponse, DescribedGroup, Member,
};
use kafka_protocol::messages::consumer_group_heartbeat_request::ConsumerGroupHeartbeatRequest;
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment, ConsumerGroupHeartbeatResponse, TopicPartitions,
};
use kafka_protocol::protocol::StrBytes;

use super::classic::{describe_refused, group_code};
use super::dispatch::{Ctx, Reply, Response};
use super::errors;
use super::guard::RequestHead;
use super::metadata::topic_uuid;
use crate::broker::Broker;
use crate::groups::consumer::{Heartbeat, Subscription};

type Tp = (String, u32);

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Topic id → name and name → id of every topic.
fn topic_ids(broker: &Broker) -> (BTreeMap<uuid::Uuid, String>, BTreeMap<String, uuid::Uuid>) {
    broker.with_state(|s| {
        let by_id = s
            .topics
            .iter()
            .map(|(n, m)| (topic_uuid(m), n.clone()))
            .collect();
        let by_name = s
            .topics
            .iter()
            .map(|(n, m)| (n.clone(), topic_uuid(m)))
            .collect();
        (by_id, by_name)
    })
}

/// Partitions grouped by topic id, as the responses carry them.
fn by_topic(
    tps: &BTreeSet<Tp>,
    ids: &BTreeMap<String, uuid::Uuid>,
) -> BTreeMap<uuid::Uuid, (String, Vec<i32>)> {
    let mut out: BTreeMap<uuid::Uuid, (String, Vec<i32>)> = BTreeMap::new();
    for (t, p) in tps {
        if let Some(id) = ids.get(t) {
            out.entry(*id)
                .or_insert_with(|| (t.clone(), Vec::new()))
                .1
                .push(*p as i32);
        }
    }
    out
}

pub async fn heartbeat(ctx: &Ctx, head: &RequestHead, req: ConsumerGroupHeartbeatRequest) -> Reply {
    let group = req.group_id.0.to_string();
    let failed = |code: i16, msg: String| {
        Reply::Now(
            Response::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(msg)))
                    .with_member_epoch(-1),
            ),
            false,
        )
    };
    if let Some(e) = ctx.broker.groups().route(&group) {
        return failed(group_code(&e), e.to_string());
    }
    let (by_id, by_name) = topic_ids(&ctx.broker);
    let names = req.subscribed_topic_names.as_ref();
    let regex = req
        .subscribed_topic_regex
        .as_ref()
        .filter(|r| !r.is_empty())
        .map(ToString::to_string);
    let subscription = (names.is_some() || regex.is_some()).then(|| Subscription {
        topics: names
            .map(|n| n.iter().map(|t| t.0.to_string()).collect())
            .unwrap_or_default(),
        regex,
    });
    let owned = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .filter_map(|t| Some((by_id.get(&t.topic_id)?.clone(), &t.partitions)))
            .flat_map(|(name, ps)| {
                ps.iter()
                    .filter_map(move |p| u32::try_from(*p).ok().map(|p| (name.clone(), p)))
            })
            .collect()
    });
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(ToString::to_string),
        subscription,
        assignor: req
            .server_assignor
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        session_timeout_ms: 0,
        rebalance_timeout_ms: u32::try_from(req.rebalance_timeout_ms).unwrap_or(0),
        owned,
        client: format!(
            "{} {}",
            head.client_id.clone().unwrap_or_default(),
            ctx.who
                .peer
                .map(|p| format!("/{}", p.ip()))
                .unwrap_or_default()
        )
        .trim()
        .to_owned(),
    };
    match ctx.broker.consumer_heartbeat(&ctx.who, &group, hb).await {
        Ok(reply) => {
            let assignment = by_topic(&reply.assignment, &by_name)
                .into_iter()
                .map(|(id, (_, ps))| {
                    TopicPartitions::default()
                        .with_topic_id(id)
                        .with_partitions(ps)
                })
                .collect();
            let leaving = reply.member_epoch < 0;
            Reply::Now(
                Response::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatResponse::default()
                        .with_member_id(Some(text(reply.member_id)))
                        .with_member_epoch(reply.member_epoch)
                        .with_heartbeat_interval_ms(reply.heartbeat_interval_ms as i32)
                        .with_assignment(
                            (!leaving)
                                .then(|| Assignment::default().with_topic_partitions(assignment)),
                        ),
                ),
                true,
            )
        }
        Err(e) => failed(group_code(&e), e.to_string()),
    }
}

/// Kafka's names of the consumer protocol's group states.
fn state_name(s: &str) -> &'static str {
    match s {
        "stable" => "Stable",
        "reconciling" => "Reconciling",
        _ => "Empty",
    }
}

fn described(tps: &BTreeSet<Tp>, ids: &BTreeMap<String, uuid::Uuid>) -> describe::Assignment {
    describe::Assignment::default().with_topic_partitions(
        by_topic(tps, ids)
            .into_iter()
            .map(|(id, (name, ps))| {
                describe::TopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(TopicName(text(name)))
                    .with_partitions(ps)
            })
            .collect(),
    )
}

pub fn describe(ctx: &Ctx, req: ConsumerGroupDescribeRequest) -> Reply {
    let groups = ctx.broker.groups();
    let (_, by_name) = topic_ids(&ctx.broker);
    let mut ok = true;
    let out = req
        .group_ids
        .into_iter()
        .map(|g| {
            let name = g.0.to_string();
            let base = DescribedGroup::default()
                .with_group_id(g)
                .with_authorized_operations(i32::MIN);
            if let Some(code) = describe_refused(ctx, &name) {
                ok = false;
                return base.with_error_code(code);
            }
            let Some(state) = groups.consumer_state(&name) else {
                ok = false;
                return base
                    .with_error_code(errors::GROUP_ID_NOT_FOUND)
                    .with_error_message(Some(text(format!(
                        "group '{name}' is not a consumer-protocol group"
                    ))));
            };
            let members = state
                .members
                .iter()
                .map(|(id, m)| {
                    let target = state.target.get(id).cloned().unwrap_or_default();
                    Member::default()
                        .with_member_id(text(id.clone()))
                        .with_instance_id(m.instance_id.clone().map(text))
                        .with_member_epoch(m.epoch)
                        .with_client_id(text(m.client.clone()))
                        .with_subscribed_topic_names(
                            m.subscription
                                .topics
                                .iter()
                                .map(|t| TopicName(text(t.clone())))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(m.subscription.regex.clone().map(text))
                        .with_assignment(described(&m.assigned, &by_name))
                        .with_target_assignment(described(&target, &by_name))
                        .with_member_type(1)
                })
                .collect();
            base.with_group_state(text(state_name(state.state_name())))
                .with_group_epoch(state.epoch)
                .with_assignment_epoch(state.epoch)
                .with_assignor_name(text(state.assignor_name()))
                .with_members(members)
        })
        .collect();
    Reply::Now(
        Response::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default().with_groups(out)),
        ok,
    )
}
