//! The `Admin` gRPC service: topics, configs, records deletion, metadata,
//! cluster membership and status, ACLs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strata_proto::v1::admin_server::Admin as AdminApi;
use strata_proto::v1::{
    AddBrokerRequest, AddBrokerResponse, BrokerStatus, ClusterStatusRequest, ClusterStatusResponse,
    RemoveBrokerRequest, RemoveBrokerResponse, ReplicaState, TransferLeaderRequest,
    TransferLeaderResponse,
};
use strata_proto::v1::{
    AlterTopicConfigRequest, AlterTopicConfigResponse, BrokerInfo, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicRequest, CreateTopicResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest,
    ListTopicsRequest, ListTopicsResponse, MetadataRequest, MetadataResponse, PartitionDescription,
    PartitionMetadata, TopicDescription, TopicMetadata, TopicSummary,
};
use strata_proto::v1::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, ListAclsRequest,
    ListAclsResponse, WhoAmIRequest, WhoAmIResponse,
};
use strata_proto::v1::{
    DeleteUserRequest, DeleteUserResponse, ListUsersRequest, ListUsersResponse, UpsertUserRequest,
    UpsertUserResponse, UserInfo,
};
use tonic::{Request, Response, Status};

use super::status::error_info;
use crate::broker::{Broker, StatesQuery};
use crate::cluster::metadata::TopicMeta;
use crate::error::{BrokerError, Result};
use crate::security::auth::{Acl, Operation, Resource};

/// The states a reply about one topic needs: its partitions only, in full.
fn topic_states(name: &str) -> StatesQuery<'_> {
    StatesQuery {
        topic: Some(name),
        roles_only: false,
    }
}

pub struct AdminService {
    broker: Arc<Broker>,
}

impl AdminService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    /// Describes a topic with each partition's state as its leader sees
    /// it (`states` from `Broker::replica_states`).
    fn describe(
        &self,
        name: &str,
        meta: &TopicMeta,
        states: &HashMap<(String, u32), ReplicaState>,
    ) -> TopicDescription {
        let remote = self
            .broker
            .with_state(|s| s.remote.get(name).cloned().unwrap_or_default());
        let partitions = (0..meta.partitions)
            .map(|p| {
                let replicas = meta
                    .assignments
                    .get(p as usize)
                    .cloned()
                    .unwrap_or_default();
                let mut d = PartitionDescription {
                    partition: p,
                    leader: 0,
                    replicas,
                    isr: Vec::new(),
                    log_start_offset: -1,
                    high_watermark: -1,
                    log_end_offset: -1,
                    remote_start_offset: None,
                    size_bytes: 0,
                    segments: 0,
                    local_start_offset: -1,
                    remote_end_offset: None,
                    remote_bytes: 0,
                    remote_segments: 0,
                    upload_lag_bytes: 0,
                    cleaner: None,
                };
                if let Some(st) = states.get(&(name.to_owned(), p)) {
                    d.leader = st.leader;
                    d.isr = st.isr.clone();
                    d.log_start_offset = st.log_start_offset;
                    d.local_start_offset = st.log_start_offset;
                    d.high_watermark = st.high_watermark;
                    d.log_end_offset = st.log_end_offset;
                    d.size_bytes = st.size_bytes;
                    d.segments = st.segments;
                    d.upload_lag_bytes = st.upload_lag_bytes;
                    d.cleaner = st.cleaner;
                }
                if let Some(m) = remote.get(&p).filter(|m| !m.segments.is_empty()) {
                    d.remote_start_offset = Some(m.start);
                    d.remote_end_offset = Some(m.end());
                    d.remote_bytes = m.bytes();
                    d.remote_segments = m.segments.len() as u32;
                    if d.log_start_offset < 0 || m.start < d.log_start_offset {
                        d.log_start_offset = m.start;
                    }
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
        let who = self.broker.identify(&req);
        let r = req.into_inner();
        self.broker.authorize_create_topic(&who, &r.name)?;
        let configs: BTreeMap<String, String> = r.configs.into_iter().collect();
        let meta = self
            .broker
            .create_topic(&r.name, r.partitions, r.replication_factor, configs)
            .await?;
        tracing::info!(topic = %r.name, partitions = meta.partitions, "created topic");
        let states = self.broker.replica_states(topic_states(&r.name)).await;
        Ok(Response::new(CreateTopicResponse {
            topic: Some(self.describe(&r.name, &meta, &states.0)),
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let who = self.broker.identify(&req);
        let name = req.into_inner().name;
        self.broker
            .authorize(&who, Operation::Delete, Resource::Topic, &name)?;
        self.broker.delete_topic(&name).await?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        req: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let who = self.broker.identify(&req);
        let all = req.into_inner().include_internal;
        self.broker.check_ready()?;
        let auth = &self.broker.config().auth;
        let topics = self.broker.with_state(|s| {
            s.topics
                .iter()
                .filter(|(_, m)| all || !m.internal)
                .filter(|(n, _)| {
                    auth.permits(&s.acls, &who, Operation::Describe, Resource::Topic, n)
                })
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
        let who = self.broker.identify(&req);
        let name = req.into_inner().name;
        self.broker
            .authorize(&who, Operation::Describe, Resource::Topic, &name)?;
        self.broker.check_ready()?;
        let meta = self.topic_meta(&name)?;
        let states = self.broker.replica_states(topic_states(&name)).await;
        Ok(Response::new(self.describe(&name, &meta, &states.0)))
    }

    async fn alter_topic_config(
        &self,
        req: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<AlterTopicConfigResponse>, Status> {
        let who = self.broker.identify(&req);
        let r = req.into_inner();
        self.broker
            .alter_topic_config_as(&who, &r.name, r.set.into_iter().collect())
            .await?;
        let meta = self.topic_meta(&r.name)?;
        let states = self.broker.replica_states(topic_states(&r.name)).await;
        Ok(Response::new(AlterTopicConfigResponse {
            topic: Some(self.describe(&r.name, &meta, &states.0)),
        }))
    }

    async fn create_partitions(
        &self,
        req: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let who = self.broker.identify(&req);
        let r = req.into_inner();
        let meta = self
            .broker
            .create_partitions_as(&who, &r.name, r.count, None, false)
            .await?;
        let states = self.broker.replica_states(topic_states(&r.name)).await;
        Ok(Response::new(CreatePartitionsResponse {
            topic: Some(self.describe(&r.name, &meta, &states.0)),
        }))
    }

    async fn delete_records(
        &self,
        req: Request<DeleteRecordsRequest>,
    ) -> Result<Response<DeleteRecordsResponse>, Status> {
        let who = self.broker.identify(&req);
        let r = req.into_inner();
        let start = self
            .broker
            .delete_records_as(&who, &r.topic, r.partition, r.offset)
            .await?;
        Ok(Response::new(DeleteRecordsResponse {
            log_start_offset: start,
        }))
    }

    async fn metadata(
        &self,
        req: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let who = self.broker.identify(&req);
        let auth = &self.broker.config().auth;
        let wanted = req.into_inner().topics;
        self.broker.check_ready()?;
        let node = self.broker.node_id();
        // Computed under the state's read lock: no copy of the whole state
        // (remote manifests included) per request.
        let controller_id = self.broker.controller().leader();
        let resp = self.broker.with_state(|state| {
            let may =
                |n: &str| auth.permits(&state.acls, &who, Operation::Describe, Resource::Topic, n);
            let dir = &self.broker.directory;
            let brokers = state
                .brokers
                .values()
                .filter(|b| !b.addr.is_empty())
                .map(|b| BrokerInfo {
                    id: b.id,
                    addr: b.addr.clone(),
                    alive: b.id == node || dir.alive(b.id),
                })
                .collect();
            let describe = |name: &str, m: &TopicMeta| TopicMetadata {
                name: name.to_owned(),
                error: None,
                partitions: (0..m.partitions)
                    .map(|p| {
                        let replicas = m.assignments.get(p as usize).cloned().unwrap_or_default();
                        PartitionMetadata {
                            partition: p,
                            leader: dir.leader(name, p),
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
                    .filter(|(n, m)| !m.internal && may(n))
                    .map(|(n, m)| describe(n, m))
                    .collect()
            } else {
                wanted
                    .iter()
                    .map(|n| match state.topics.get(n) {
                        Some(_) if !may(n) => TopicMetadata {
                            name: n.clone(),
                            error: Some(error_info(&BrokerError::Unauthorized(format!(
                                "principal '{}' may not describe topic '{n}'",
                                who.principal
                            )))),
                            partitions: Vec::new(),
                        },
                        Some(m) => describe(n, m),
                        None => TopicMetadata {
                            name: n.clone(),
                            error: Some(error_info(&BrokerError::UnknownTopic(n.clone()))),
                            partitions: Vec::new(),
                        },
                    })
                    .collect()
            };
            MetadataResponse {
                brokers,
                controller_id,
                topics,
                cluster_id: state.cluster_id.clone(),
            }
        });
        Ok(Response::new(resp))
    }

    async fn cluster_status(
        &self,
        req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let who = self.broker.identify(&req);
        self.broker
            .authorize(&who, Operation::Describe, Resource::Cluster, "")?;
        self.broker.check_ready()?;
        let (states, alive) = self
            .broker
            .replica_states(StatesQuery {
                topic: None,
                roles_only: true,
            })
            .await;
        let (voters, _) = self.broker.controller().membership();
        // Counted over the led partitions reported, not over every
        // partition's key looked up in them (a key built per partition).
        let (cluster_id, brokers, total, leaderless, under) = self.broker.with_state(|state| {
            let total: u32 = state.topics.values().map(|t| t.partitions).sum();
            let mut led = 0u32;
            let mut under = 0u32;
            let mut leads: HashMap<u64, u32> = HashMap::new();
            for ((name, p), st) in &states {
                let Some(t) = state.topics.get(name).filter(|t| *p < t.partitions) else {
                    continue;
                };
                if st.leader == 0 || !alive.contains(&st.leader) {
                    continue;
                }
                led += 1;
                *leads.entry(st.leader).or_default() += 1;
                let replicas = t.assignments.get(*p as usize).map_or(0, Vec::len);
                if st.isr.len() < replicas {
                    under += 1;
                }
            }
            let brokers: Vec<BrokerStatus> = state
                .brokers
                .values()
                .map(|b| BrokerStatus {
                    id: b.id,
                    addr: b.addr.clone(),
                    alive: alive.contains(&b.id),
                    peer_addr: b.peer_addr.clone(),
                    controller_voter: voters.contains(&b.id),
                    leader_partitions: leads.get(&b.id).copied().unwrap_or(0),
                })
                .collect();
            let leaderless = total - led;
            (
                state.cluster_id.clone(),
                brokers,
                total,
                leaderless,
                under + leaderless,
            )
        });
        Ok(Response::new(ClusterStatusResponse {
            controller: self.broker.controller().leader(),
            brokers,
            leaderless_partitions: leaderless,
            under_replicated_partitions: under,
            cluster_id,
            partitions: total,
        }))
    }

    async fn add_broker(
        &self,
        req: Request<AddBrokerRequest>,
    ) -> Result<Response<AddBrokerResponse>, Status> {
        let who = self.broker.identify(&req);
        self.broker
            .authorize(&who, Operation::Alter, Resource::Cluster, "")?;
        let r = req.into_inner();
        if r.id == 0 || r.peer_addr.rsplit_once(':').is_none() {
            return Err(BrokerError::InvalidRequest(
                "add-broker needs an id >= 1 and a HOST:PORT peer address".into(),
            )
            .into());
        }
        self.broker
            .controller()
            .execute(crate::cluster::controller::ControllerOp::AddBroker {
                id: r.id,
                peer_addr: r.peer_addr.clone(),
            })
            .await?;
        tracing::info!(broker = r.id, peer_addr = %r.peer_addr, "added broker");
        Ok(Response::new(AddBrokerResponse {}))
    }

    async fn remove_broker(
        &self,
        req: Request<RemoveBrokerRequest>,
    ) -> Result<Response<RemoveBrokerResponse>, Status> {
        let who = self.broker.identify(&req);
        self.broker
            .authorize(&who, Operation::Alter, Resource::Cluster, "")?;
        let id = req.into_inner().id;
        self.broker
            .controller()
            .execute(crate::cluster::controller::ControllerOp::RemoveBroker { id })
            .await?;
        tracing::info!(broker = id, "removed broker");
        Ok(Response::new(RemoveBrokerResponse {}))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let who = self.broker.identify(&req);
        self.broker
            .authorize(&who, Operation::Alter, Resource::Cluster, "")?;
        let r = req.into_inner();
        let leader = self
            .broker
            .transfer_leader(&r.topic, r.partition, r.to)
            .await?;
        Ok(Response::new(TransferLeaderResponse { leader }))
    }

    async fn create_acls(
        &self,
        req: Request<CreateAclsRequest>,
    ) -> Result<Response<CreateAclsResponse>, Status> {
        self.change_acls(req.map(|r| r.acls), true).await?;
        Ok(Response::new(CreateAclsResponse {}))
    }

    async fn delete_acls(
        &self,
        req: Request<DeleteAclsRequest>,
    ) -> Result<Response<DeleteAclsResponse>, Status> {
        let deleted = self.change_acls(req.map(|r| r.acls), false).await?;
        Ok(Response::new(DeleteAclsResponse { deleted }))
    }

    async fn list_acls(
        &self,
        req: Request<ListAclsRequest>,
    ) -> Result<Response<ListAclsResponse>, Status> {
        let who = self.broker.identify(&req);
        let principal = req.into_inner().principal;
        let acls = self
            .broker
            .list_acls(&who, |a| principal.is_empty() || a.principal == principal)?
            .iter()
            .map(Acl::to_proto)
            .collect();
        Ok(Response::new(ListAclsResponse { acls }))
    }

    async fn upsert_user(
        &self,
        req: Request<UpsertUserRequest>,
    ) -> Result<Response<UpsertUserResponse>, Status> {
        let who = self.broker.identify(&req);
        let r = req.into_inner();
        let iterations = (r.iterations != 0).then_some(r.iterations);
        self.broker
            .upsert_user(&who, &r.name, &r.password, iterations)
            .await?;
        tracing::info!(target: "strata::audit", principal = %who.principal, user = %r.name,
            "user created or updated");
        Ok(Response::new(UpsertUserResponse {}))
    }

    async fn delete_user(
        &self,
        req: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteUserResponse>, Status> {
        let who = self.broker.identify(&req);
        let name = req.into_inner().name;
        self.broker.delete_user(&who, &name).await?;
        tracing::info!(target: "strata::audit", principal = %who.principal, user = %name,
            "user deleted");
        Ok(Response::new(DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        req: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let who = self.broker.identify(&req);
        let users = self
            .broker
            .list_users(&who)?
            .into_iter()
            .map(|(name, ms)| UserInfo {
                name,
                mechanisms: ms.into_iter().map(str::to_owned).collect(),
            })
            .collect();
        Ok(Response::new(ListUsersResponse { users }))
    }

    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let who = self.broker.identify(&req);
        let authorization = self
            .broker
            .with_state(|s| self.broker.config().auth.enforced(!s.acls.is_empty()));
        Ok(Response::new(WhoAmIResponse {
            principal: who.principal,
            authorization,
        }))
    }
}

impl AdminService {
    /// Adds or removes ACLs (alter on the cluster); every change is logged
    /// to the audit target. Answers how many changed.
    async fn change_acls(
        &self,
        req: Request<Vec<strata_proto::v1::Acl>>,
        add: bool,
    ) -> Result<u32, Status> {
        let who = self.broker.identify(&req);
        let acls = req
            .into_inner()
            .iter()
            .map(Acl::from_proto)
            .collect::<crate::error::Result<Vec<_>>>()?;
        Ok(self.broker.change_acls(&who, acls, add).await?)
    }
}
