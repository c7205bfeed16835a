//! The `Groups` gRPC service: committed offsets of consumer groups.

use std::sync::Arc;

use std::time::Duration;
use strata_proto::v1::groups_server::Groups as GroupsApi;
use strata_proto::v1::{
    DeleteGroupRequest, DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse,
    GroupPartitionLag, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicPartitionOffset,
};

use strata_proto::v1::groups_client::GroupsClient;
use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::error::BrokerError;
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
        validate_group(&r.group)?;
        self.broker
            .authorize(&who, Operation::Read, Resource::Group, &r.group)?;
        for o in &r.offsets {
            self.broker
                .authorize(&who, Operation::Read, Resource::Topic, &o.topic)?;
        }
        if let Some(mut leader) = self.forward_to(&r.group, &meta).await? {
            return leader.offset_commit(forwarded(r)).await;
        }
        if r.offsets.is_empty() {
            return Err(BrokerError::InvalidRequest("no offsets to commit".into()).into());
        }
        let mut offsets = Vec::with_capacity(r.offsets.len());
        for o in r.offsets {
            self.broker.partition_exists(&o.topic, o.partition)?;
            if o.offset < 0 {
                return Err(BrokerError::InvalidRequest(format!(
                    "negative offset {} for {}/{}",
                    o.offset, o.topic, o.partition
                ))
                .into());
            }
            if o.metadata.len() > 4096 {
                return Err(BrokerError::InvalidRequest(
                    "offset metadata longer than 4096 bytes".into(),
                )
                .into());
            }
            offsets.push((o.topic, o.partition, o.offset, o.metadata));
        }
        self.broker.groups().commit(&r.group, offsets).await?;
        Ok(Response::new(OffsetCommitResponse {}))
    }

    async fn offset_fetch(
        &self,
        req: Request<OffsetFetchRequest>,
    ) -> Result<Response<OffsetFetchResponse>, Status> {
        let who = self.broker.identify(&req);
        let (meta, _, r) = req.into_parts();
        validate_group(&r.group)?;
        self.broker
            .authorize(&who, Operation::Describe, Resource::Group, &r.group)?;
        if let Some(mut leader) = self.forward_to(&r.group, &meta).await? {
            return leader.offset_fetch(forwarded(r)).await;
        }
        let offsets = self
            .broker
            .groups()
            .fetch(&r.group, &r.topics)?
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
        let groups = self
            .broker
            .groups()
            .list()
            .into_iter()
            .filter(|g| {
                self.broker
                    .may(&who, Operation::Describe, Resource::Group, g)
            })
            .collect();
        Ok(Response::new(ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        req: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let who = self.broker.identify(&req);
        let group = req.into_inner().group;
        validate_group(&group)?;
        self.broker
            .authorize(&who, Operation::Describe, Resource::Group, &group)?;
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
        Ok(Response::new(DescribeGroupResponse { group, partitions }))
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
}
