//! The `Groups` gRPC service: committed offsets of consumer groups.

use std::sync::Arc;

use strata_proto::v1::groups_server::Groups as GroupsApi;
use strata_proto::v1::{
    DeleteGroupRequest, DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse,
    GroupPartitionLag, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicPartitionOffset,
};
use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::groups::validate_group;

pub struct GroupsService {
    broker: Arc<Broker>,
}

impl GroupsService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

#[tonic::async_trait]
impl GroupsApi for GroupsService {
    async fn offset_commit(
        &self,
        req: Request<OffsetCommitRequest>,
    ) -> Result<Response<OffsetCommitResponse>, Status> {
        let r = req.into_inner();
        validate_group(&r.group)?;
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
        let r = req.into_inner();
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
        _req: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        Ok(Response::new(ListGroupsResponse {
            groups: self.broker.groups().list(),
        }))
    }

    async fn describe_group(
        &self,
        req: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let group = req.into_inner().group;
        validate_group(&group)?;
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
        let group = req.into_inner().group;
        self.broker.groups().delete(&group).await?;
        Ok(Response::new(DeleteGroupResponse {}))
    }
}
