//! The `Groups` gRPC service: committed offsets of consumer groups and the
//! consumer protocol's heartbeat. Requests about a group go to its
//! coordinator (the leader of its offsets partition), forwarded once by a
//! broker that is not.

use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1::groups_server::Groups as GroupsApi;
use strata_proto::v1::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupRequest,
    DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse, GroupListing, GroupMember,
    GroupPartitionLag, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicPartitionOffset,
};

use strata_proto::group::{from_wire, to_wire};
use strata_proto::v1::groups_client::GroupsClient;
use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::broker::groups::OffsetToCommit;
use crate::error::BrokerError;
use crate::groups::consumer::{Heartbeat, Subscription};
use crate::groups::offsets::validate_group;
use crate::security::auth::{Operation, Resource};
use crate::security::tls::connect_broker;

pub struct GroupsService {
    broker: Arc<Broker>,
}

/// Marks a request one broker forwarded to another (never forwarded twice).
const FORWARDED: &str = "strata-forwarded";

impl GroupsService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// The leader's client to forward a request about `group` to, when this
    /// broker does not lead the group's offsets partition.
    async fn forward_to(
        &self,
        group: &str,
        meta: &tonic::metadata::MetadataMap,
    ) -> Result<Option<GroupsClient<tonic::transport::Channel>>, Status> {
        let Some(err) = self.broker.groups().route(group) else {
            return Ok(None);
        };
        let addr = match &err {
            BrokerError::NotLeader { leader_addr, .. } if !leader_addr.is_empty() => {
                leader_addr.clone()
            }
            _ => return Err(err.into()),
        };
        if meta.get(FORWARDED).is_some() {
            return Err(err.into());
        }
        match connect_broker(
            self.broker.config().tls.as_ref(),
            &addr,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        {
            Some(ch) => Ok(Some(GroupsClient::new(ch))),
            None => Err(err.into()),
        }
    }
}

/// A classic-protocol group as `describe` shows it (generation as the
/// epoch, the leader's chosen protocol as the assignor).
fn describe_classic(
    group: String,
    partitions: Vec<GroupPartitionLag>,
    c: &crate::groups::classic::ClassicGroup,
) -> DescribeGroupResponse {
    let members = c
        .members
        .iter()
        .map(|(id, m)| {
            let assigned: Vec<(String, u32)> =
                crate::groups::classic::consumer_assignment(&m.assignment)
                    .into_iter()
                    .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                    .collect();
            GroupMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone().unwrap_or_default(),
                client: format!("{} {}", m.client_id, m.client_host)
                    .trim()
                    .to_owned(),
                member_epoch: c.generation,
                assigned: to_wire(&assigned),
                revoking: Vec::new(),
                subscribed_topics: Vec::new(),
                subscribed_regex: String::new(),
            }
        })
        .collect();
    DescribeGroupResponse {
        group,
        partitions,
        state: c.state.kafka_name().to_owned(),
        protocol: "classic".to_owned(),
        group_epoch: c.generation,
        assignor: c.protocol.clone().unwrap_or_default(),
        members,
    }
}

fn forwarded<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

#[tonic::async_trait]
impl GroupsApi for GroupsService {
    async fn offset_commit(
        &self,
        req: Request<OffsetCommitRequest>,
    ) -> Result<Response<OffsetCommitResponse>, Status> {
        let who = self.broker.identify(&req);
        let (meta, _, r) = req.into_parts();
        let offsets: Vec<OffsetToCommit> = r
            .offsets
            .iter()
            .map(|o| OffsetToCommit {
                topic: o.topic.clone(),
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata.clone(),
            })
            .collect();
        self.broker
            .authorize_offsets_commit(&who, &r.group, &offsets)?;
        if let Some(mut leader) = self.forward_to(&r.group, &meta).await? {
            return leader.offset_commit(forwarded(r)).await;
        }
        self.broker
            .commit_offsets(&who, &r.group, offsets, (&r.member_id, r.member_epoch))
            .await?;
        Ok(Response::new(OffsetCommitResponse {}))
    }

    async fn offset_fetch(
        &self,
        req: Request<OffsetFetchRequest>,
    ) -> Result<Response<OffsetFetchResponse>, Status> {
        let who = self.broker.identify(&req);
        let (meta, _, r) = req.into_parts();
        self.broker.authorize_offsets_fetch(&who, &r.group)?;
        if let Some(mut leader) = self.forward_to(&r.group, &meta).await? {
            return leader.offset_fetch(forwarded(r)).await;
        }
        let offsets = self
            .broker
            .committed_offsets(&who, &r.group, &r.topics)?
            .into_iter()
            .map(|(topic, partition, c)| TopicPartitionOffset {
                topic,
                partition,
                offset: c.offset,
                metadata: c.metadata,
            })
            .collect();
        Ok(Response::new(OffsetFetchResponse { offsets }))
    }

    async fn list_groups(
        &self,
        req: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let who = self.broker.identify(&req);
        let groups: Vec<String> = self
            .broker
            .groups()
            .list()
            .into_iter()
            .filter(|g| {
                self.broker
                    .may(&who, Operation::Describe, Resource::Group, g)
            })
            .collect();
        let listings = groups
            .iter()
            .map(|g| {
                if let Some(c) = self.broker.groups().classic_state(g) {
                    return GroupListing {
                        group: g.clone(),
                        state: c.state.kafka_name().to_owned(),
                        members: c.members.len() as u32,
                        protocol: "classic".to_owned(),
                    };
                }
                let state = self.broker.groups().consumer_state(g);
                GroupListing {
                    group: g.clone(),
                    state: state
                        .as_ref()
                        .map_or("empty", |s| s.state_name())
                        .to_owned(),
                    members: state.as_ref().map_or(0, |s| s.members.len() as u32),
                    protocol: if state.is_some() { "consumer" } else { "" }.to_owned(),
                }
            })
            .collect();
        Ok(Response::new(ListGroupsResponse { groups, listings }))
    }

    async fn describe_group(
        &self,
        req: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let who = self.broker.identify(&req);
        let (meta, _, r) = req.into_parts();
        let group = r.group.clone();
        validate_group(&group)?;
        self.broker
            .authorize(&who, Operation::Describe, Resource::Group, &group)?;
        if let Some(mut leader) = self.forward_to(&group, &meta).await? {
            return leader.describe_group(forwarded(r)).await;
        }
        if !self.broker.groups().exists(&group) {
            return Err(BrokerError::UnknownGroup(group).into());
        }
        let partitions = self
            .broker
            .groups()
            .fetch(&group, &[])?
            .into_iter()
            .map(|(topic, partition, c)| {
                let hw = self
                    .broker
                    .partition(&topic, partition)
                    .map_or(-1, |p| p.high_watermark());
                GroupPartitionLag {
                    lag: if hw >= 0 { (hw - c.offset).max(0) } else { -1 },
                    topic,
                    partition,
                    committed_offset: c.offset,
                    high_watermark: hw,
                    metadata: c.metadata,
                }
            })
            .collect();
        if let Some(c) = self.broker.groups().classic_state(&group) {
            return Ok(Response::new(describe_classic(group, partitions, &c)));
        }
        let state = self.broker.groups().consumer_state(&group);
        let members = state
            .as_ref()
            .map(|s| {
                s.members
                    .iter()
                    .map(|(id, m)| GroupMember {
                        member_id: id.clone(),
                        instance_id: m.instance_id.clone().unwrap_or_default(),
                        client: m.client.clone(),
                        member_epoch: m.epoch,
                        assigned: to_wire(&m.assigned),
                        revoking: to_wire(&m.revoking),
                        subscribed_topics: m.subscription.topics.iter().cloned().collect(),
                        subscribed_regex: m.subscription.regex.clone().unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(DescribeGroupResponse {
            group,
            partitions,
            state: state
                .as_ref()
                .map_or("empty", |s| s.state_name())
                .to_owned(),
            protocol: if state.is_some() { "consumer" } else { "" }.to_owned(),
            group_epoch: state.as_ref().map_or(0, |s| s.epoch),
            assignor: state
                .as_ref()
                .map(|s| s.assignor_name().to_owned())
                .unwrap_or_default(),
            members,
        }))
    }

    async fn delete_group(
        &self,
        req: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let who = self.broker.identify(&req);
        let (meta, _, r) = req.into_parts();
        validate_group(&r.group)?;
        self.broker
            .authorize(&who, Operation::Delete, Resource::Group, &r.group)?;
        if let Some(mut leader) = self.forward_to(&r.group, &meta).await? {
            return leader.delete_group(forwarded(r)).await;
        }
        self.broker.groups().delete(&r.group).await?;
        Ok(Response::new(DeleteGroupResponse {}))
    }

    async fn consumer_group_heartbeat(
        &self,
        req: Request<ConsumerGroupHeartbeatRequest>,
    ) -> Result<Response<ConsumerGroupHeartbeatResponse>, Status> {
        let who = self.broker.identify(&req);
        let client = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let (meta, _, r) = req.into_parts();
        self.broker
            .authorize_heartbeat(&who, &r.group, &r.subscribed_topics)?;
        if let Some(mut leader) = self.forward_to(&r.group, &meta).await? {
            return leader.consumer_group_heartbeat(forwarded(r)).await;
        }
        let subscription = r.has_subscription.then(|| Subscription {
            topics: r.subscribed_topics.iter().cloned().collect(),
            regex: (!r.subscribed_regex.is_empty()).then(|| r.subscribed_regex.clone()),
        });
        let owned = r.has_owned.then(|| from_wire(&r.owned));
        let hb = Heartbeat {
            member_id: r.member_id,
            member_epoch: r.member_epoch,
            instance_id: (!r.instance_id.is_empty()).then_some(r.instance_id),
            subscription,
            assignor: r.assignor,
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            owned,
            client,
        };
        let reply = self.broker.consumer_heartbeat(&who, &r.group, hb).await?;
        Ok(Response::new(ConsumerGroupHeartbeatResponse {
            member_id: reply.member_id,
            member_epoch: reply.member_epoch,
            heartbeat_interval_ms: reply.heartbeat_interval_ms,
            assignment: to_wire(&reply.assignment),
        }))
    }
}
