//! The `Admin` gRPC service: topics, configs, records deletion, metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_proto::v1::admin_server::Admin as AdminApi;
use strata_proto::v1::{
    AlterTopicConfigRequest, AlterTopicConfigResponse, BrokerInfo, CreateTopicRequest,
    CreateTopicResponse, DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicRequest,
    DeleteTopicResponse, DescribeTopicRequest, ListTopicsRequest, ListTopicsResponse,
    MetadataRequest, MetadataResponse, PartitionDescription, PartitionMetadata, TopicDescription,
    TopicMetadata, TopicSummary,
};
use tonic::{Request, Response, Status};

use super::status::error_info;
use crate::broker::Broker;
use crate::cluster::metadata::TopicMeta;
use crate::error::{BrokerError, Result};

pub struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    fn describe(&self, name: &str, meta: &TopicMeta) -> TopicDescription {
        let parts = self.broker.topic_partitions(name);
        let node = self.broker.node_id();
        let partitions = (0..meta.partitions)
            .map(|p| {
                let replicas = meta
                    .assignments
                    .get(p as usize)
                    .cloned()
                    .unwrap_or_else(|| vec![node]);
                let mut d = PartitionDescription {
                    partition: p,
                    leader: 0,
                    replicas: replicas.clone(),
                    isr: Vec::new(),
                    log_start_offset: -1,
                    high_watermark: -1,
                    log_end_offset: -1,
                    remote_start_offset: None,
                    size_bytes: 0,
                    segments: 0,
                };
                if let Some(part) = parts.iter().find(|x| x.id() == p) {
                    let o = part.offsets();
                    d.leader = node;
                    d.isr = replicas;
                    d.log_start_offset = o.log_start;
                    d.high_watermark = o.high_watermark;
                    d.log_end_offset = o.log_end;
                    d.size_bytes = o.size_bytes;
                    d.segments = o.segments as u32;
                }
                d
            })
            .collect();
        TopicDescription {
            name: name.to_owned(),
            replication_factor: meta.replication_factor,
            partitions,
            config: self.broker.topic_config(meta).into_iter().collect(),
            internal: meta.internal,
            id: meta.id.clone(),
        }
    }

    fn topic_meta(&self, name: &str) -> Result<TopicMeta> {
        self.broker
            .with_state(|s| s.topics.get(name).cloned())
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))
    }
}

#[tonic::async_trait]
impl AdminApi for AdminService {
    async fn create_topic(
        &self,
        req: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let r = req.into_inner();
        let configs: BTreeMap<String, String> = r.configs.into_iter().collect();
        let meta =
            self.broker
                .create_topic(&r.name, r.partitions, r.replication_factor, configs)?;
        tracing::info!(topic = %r.name, partitions = meta.partitions, "created topic");
        Ok(Response::new(CreateTopicResponse {
            topic: Some(self.describe(&r.name, &meta)),
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let name = req.into_inner().name;
        self.broker.delete_topic(&name).await?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        req: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let all = req.into_inner().include_internal;
        let topics = self.broker.with_state(|s| {
            s.topics
                .iter()
                .filter(|(_, m)| all || !m.internal)
                .map(|(n, m)| TopicSummary {
                    name: n.clone(),
                    partitions: m.partitions,
                    replication_factor: m.replication_factor,
                    internal: m.internal,
                })
                .collect()
        });
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        req: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let name = req.into_inner().name;
        let meta = self.topic_meta(&name)?;
        Ok(Response::new(self.describe(&name, &meta)))
    }

    async fn alter_topic_config(
        &self,
        req: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<AlterTopicConfigResponse>, Status> {
        let r = req.into_inner();
        self.broker
            .alter_topic_config(&r.name, r.set.into_iter().collect())?;
        let meta = self.topic_meta(&r.name)?;
        Ok(Response::new(AlterTopicConfigResponse {
            topic: Some(self.describe(&r.name, &meta)),
        }))
    }

    async fn delete_records(
        &self,
        req: Request<DeleteRecordsRequest>,
    ) -> Result<Response<DeleteRecordsResponse>, Status> {
        let r = req.into_inner();
        if r.topic.starts_with("__") {
            return Err(BrokerError::InvalidTopic {
                name: r.topic,
                why: "internal topic".into(),
            }
            .into());
        }
        let part = self.broker.partition(&r.topic, r.partition)?;
        let start = part.delete_records(r.offset)?;
        Ok(Response::new(DeleteRecordsResponse {
            log_start_offset: start,
        }))
    }

    async fn metadata(
        &self,
        req: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let wanted = req.into_inner().topics;
        let node = self.broker.node_id();
        let state = self.broker.cluster_state();
        let brokers = state
            .brokers
            .values()
            .map(|b| BrokerInfo {
                id: b.id,
                addr: b.addr.clone(),
                alive: b.id == node,
            })
            .collect();
        let describe = |name: &str, m: &TopicMeta| TopicMetadata {
            name: name.to_owned(),
            error: None,
            partitions: (0..m.partitions)
                .map(|p| {
                    let replicas = m
                        .assignments
                        .get(p as usize)
                        .cloned()
                        .unwrap_or_else(|| vec![node]);
                    PartitionMetadata {
                        partition: p,
                        leader: node,
                        isr: replicas.clone(),
                        replicas,
                    }
                })
                .collect(),
        };
        let topics = if wanted.is_empty() {
            state
                .topics
                .iter()
                .filter(|(_, m)| !m.internal)
                .map(|(n, m)| describe(n, m))
                .collect()
        } else {
            wanted
                .iter()
                .map(|n| match state.topics.get(n) {
                    Some(m) => describe(n, m),
                    None => TopicMetadata {
                        name: n.clone(),
                        error: Some(error_info(&BrokerError::UnknownTopic(n.clone()))),
                        partitions: Vec::new(),
                    },
                })
                .collect()
        };
        Ok(Response::new(MetadataResponse {
            brokers,
            controller_id: node,
            topics,
            cluster_id: state.cluster_id,
        }))
    }
}
