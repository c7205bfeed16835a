//! The classic group protocol over Kafka: JoinGroup (key 11), SyncGroup
//! (14), Heartbeat (12), LeaveGroup (13) and DescribeGroups (15), on the
//! one group coordinator (`groups::classic_membership`). Joins and syncs
//! that wait for the rest of the group run beside the connection's other
//! requests.

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use super::guard::RequestHead;
use crate::error::BrokerError;
use crate::groups::classic::{Join, MemberProtocol};
use crate::groups::classic_membership::JoinReply;
use crate::security::auth::{Operation, Resource};

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The Kafka code of a coordinator error: a broker that does not lead the
/// group's offsets partition is NOT_COORDINATOR.
pub fn group_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::NotLeader { .. } => errors::NOT_COORDINATOR,
        BrokerError::NotReady(_) | BrokerError::ShuttingDown => errors::COORDINATOR_NOT_AVAILABLE,
        e => errors::code(e, Refused::Group),
    }
}

fn authorize(ctx: &Ctx, group: &str, op: Operation) -> Result<(), BrokerError> {
    crate::groups::offsets::validate_group(group)?;
    ctx.broker.authorize(&ctx.who, op, Resource::Group, group)
}

/// Why `group` cannot be described here (a Kafka code): a bad name, no
/// describe permission, or another broker coordinates it.
pub fn describe_refused(ctx: &Ctx, group: &str) -> Option<i16> {
    if let Err(e) = authorize(ctx, group, Operation::Describe) {
        return Some(group_code(&e));
    }
    ctx.broker.groups().route(group).map(|e| group_code(&e))
}

pub fn join_group(ctx: &Ctx, head: &RequestHead, req: JoinGroupRequest, version: i16) -> Reply {
    let group = req.group_id.0.to_string();
    let failed = |code: i16, member_id: StrBytes| {
        Reply::Now(
            Response::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(code)
                    .with_generation_id(-1)
                    .with_member_id(member_id),
            ),
            false,
        )
    };
    if let Err(e) = authorize(ctx, &group, Operation::Read) {
        return failed(group_code(&e), req.member_id);
    }
    let join = Join {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| MemberProtocol {
                name: p.name.to_string(),
                metadata: p.metadata.to_vec(),
            })
            .collect(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout stands in.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        client_id: head.client_id.clone().unwrap_or_default(),
        client_host: ctx
            .who
            .peer
            .map(|p| format!("/{}", p.ip()))
            .unwrap_or_default(),
        require_known_member: version >= 4,
    };
    let broker = std::sync::Arc::clone(&ctx.broker);
    let member_id = req.member_id;
    Reply::Later(Box::pin(async move {
        let resp = match broker.groups().classic_join(&group, join).await {
            Ok(JoinReply::MemberIdRequired(id)) => JoinGroupResponse::default()
                .with_error_code(errors::MEMBER_ID_REQUIRED)
                .with_generation_id(-1)
                .with_member_id(text(id)),
            Ok(JoinReply::Joined(a)) => JoinGroupResponse::default()
                .with_generation_id(a.generation)
                .with_protocol_type(Some(text(a.protocol_type)))
                .with_protocol_name(Some(text(a.protocol)))
                .with_leader(text(a.leader))
                .with_member_id(text(a.member_id))
                .with_members(
                    a.members
                        .into_iter()
                        .map(|(id, inst, meta)| {
                            JoinGroupResponseMember::default()
                                .with_member_id(text(id))
                                .with_group_instance_id(inst.map(text))
                                .with_metadata(Bytes::from(meta))
                        })
                        .collect(),
                ),
            Err(e) => JoinGroupResponse::default()
                .with_error_code(group_code(&e))
                .with_generation_id(-1)
                .with_member_id(member_id),
        };
        let ok = resp.error_code == errors::NONE;
        (Some(Response::JoinGroup(resp)), ok)
    }))
}

pub fn sync_group(ctx: &Ctx, req: SyncGroupRequest) -> Reply {
    let group = req.group_id.0.to_string();
    if let Err(e) = authorize(ctx, &group, Operation::Read) {
        return Reply::Now(
            Response::SyncGroup(SyncGroupResponse::default().with_error_code(group_code(&e))),
            false,
        );
    }
    let broker = std::sync::Arc::clone(&ctx.broker);
    Reply::Later(Box::pin(async move {
        let groups = broker.groups();
        // v5: the protocol the member believes in must be the group's.
        let current = groups.classic_state(&group);
        let mismatch = current.as_ref().is_some_and(|g| {
            req.protocol_type
                .as_ref()
                .is_some_and(|t| t.as_str() != g.protocol_type)
                || req
                    .protocol_name
                    .as_ref()
                    .is_some_and(|n| Some(n.as_str()) != g.protocol.as_deref())
        });
        let outcome = if mismatch {
            Err(BrokerError::InconsistentGroupProtocol(
                "SyncGroup names another protocol".into(),
            ))
        } else {
            groups
                .classic_sync(
                    &group,
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                    req.assignments
                        .into_iter()
                        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
                        .collect(),
                )
                .await
        };
        let state = groups.classic_state(&group);
        let resp = match outcome {
            Ok(assignment) => SyncGroupResponse::default()
                .with_protocol_type(state.as_ref().map(|g| text(g.protocol_type.clone())))
                .with_protocol_name(state.and_then(|g| g.protocol).map(text))
                .with_assignment(Bytes::from(assignment)),
            Err(e) => SyncGroupResponse::default().with_error_code(group_code(&e)),
        };
        let ok = resp.error_code == errors::NONE;
        (Some(Response::SyncGroup(resp)), ok)
    }))
}

pub async fn heartbeat(ctx: &Ctx, req: HeartbeatRequest) -> Reply {
    let group = req.group_id.0.to_string();
    let outcome = match authorize(ctx, &group, Operation::Read) {
        Ok(()) => {
            ctx.broker
                .groups()
                .classic_heartbeat(
                    &group,
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                )
                .await
        }
        Err(e) => Err(e),
    };
    let code = outcome.as_ref().map_or_else(group_code, |()| errors::NONE);
    Reply::Now(
        Response::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
        code == errors::NONE,
    )
}

pub async fn leave_group(ctx: &Ctx, req: LeaveGroupRequest, version: i16) -> Reply {
    let group = req.group_id.0.to_string();
    // v0-2 name one member; v3+ a list (static members by instance id).
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(ToString::to_string),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let outcome = match authorize(ctx, &group, Operation::Read) {
        Ok(()) => ctx.broker.groups().classic_leave(&group, &members).await,
        Err(e) => Err(e),
    };
    let resp = match outcome {
        Err(e) => LeaveGroupResponse::default().with_error_code(group_code(&e)),
        Ok(each) => {
            let codes: Vec<i16> = each
                .iter()
                .map(|r| r.as_ref().map_or_else(group_code, |()| errors::NONE))
                .collect();
            let mut resp = LeaveGroupResponse::default();
            if version >= 3 {
                resp = resp.with_members(
                    members
                        .iter()
                        .zip(&codes)
                        .map(|((id, inst), code)| {
                            MemberResponse::default()
                                .with_member_id(text(id.clone()))
                                .with_group_instance_id(inst.clone().map(text))
                                .with_error_code(*code)
                        })
                        .collect(),
                );
            } else if let Some(code) = codes.first() {
                resp = resp.with_error_code(*code);
            }
            resp
        }
    };
    let ok = resp.error_code == errors::NONE && resp.members.iter().all(|m| m.error_code == 0);
    Reply::Now(Response::LeaveGroup(resp), ok)
}

pub fn describe_groups(ctx: &Ctx, req: DescribeGroupsRequest) -> Reply {
    let groups = ctx.broker.groups();
    let mut ok = true;
    let described = req
        .groups
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
            if let Some(c) = groups.consumer_state(&name).filter(|c| c.has_members()) {
                // A group of the new protocol, seen through the old API.
                return base
                    .with_group_state(text(c.state_name()))
                    .with_protocol_type(text("consumer"));
            }
            match groups.classic_state(&name) {
                Some(c) => {
                    let protocol = c.protocol.clone().unwrap_or_default();
                    let members = c
                        .members
                        .iter()
                        .map(|(id, m)| {
                            let meta = m
                                .protocols
                                .iter()
                                .find(|p| p.name == protocol)
                                .map(|p| p.metadata.clone())
                                .unwrap_or_default();
                            DescribedGroupMember::default()
                                .with_member_id(text(id.clone()))
                                .with_group_instance_id(m.instance_id.clone().map(text))
                                .with_client_id(text(m.client_id.clone()))
                                .with_client_host(text(m.client_host.clone()))
                                .with_member_metadata(Bytes::from(meta))
                                .with_member_assignment(Bytes::from(m.assignment.clone()))
                        })
                        .collect();
                    base.with_group_state(text(c.state.kafka_name()))
                        .with_protocol_type(text(c.protocol_type.clone()))
                        .with_protocol_data(text(protocol))
                        .with_members(members)
                }
                None if groups.exists(&name) => base
                    .with_group_state(text("Empty"))
                    .with_protocol_type(text("consumer")),
                None => base.with_group_state(text("Dead")),
            }
        })
        .collect();
    Reply::Now(
        Response::DescribeGroups(DescribeGroupsResponse::default().with_groups(described)),
        ok,
    )
}
