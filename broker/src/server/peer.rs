//! The `Peer` gRPC service on the peer listener: Raft traffic, identity
//! checks, partition states for status RPCs, and controller operations
//! forwarded by other brokers.

use std::sync::Arc;

use strata_proto::v1::peer_server::Peer as PeerApi;
use strata_proto::v1::{
    ControllerRequest, ControllerResponse, HelloRequest, HelloResponse, RaftBatch,
    RaftStreamSummary, ReplicaStatesRequest, ReplicaStatesResponse,
};
use tonic::{Request, Response, Status, Streaming};

use crate::broker::{Broker, StatesQuery};
use crate::cluster::controller::{ControllerOp, ControllerReply};
use crate::raft::node::Cmd;
use crate::raft::transport::deliver;

pub struct PeerService {
    broker: Arc<Broker>,
}

impl PeerService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    fn check_sender(&self, from: u64, cluster: &str) -> Result<(), Status> {
        let fp = self.broker.transport.fingerprint();
        if cluster != fp {
            return Err(Status::failed_precondition(format!(
                "initial-cluster mismatch: broker {from} has members/voters {cluster}, broker {} has {fp}",
                self.broker.node_id()
            )));
        }
        if self
            .broker
            .with_state(|s| s.removed_brokers.contains(&from))
        {
            return Err(Status::failed_precondition(format!(
                "broker {from} was removed from the cluster"
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl PeerApi for PeerService {
    async fn raft(
        &self,
        req: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftStreamSummary>, Status> {
        let mut inbound = req.into_inner();
        let me = self.broker.node_id();
        let mut first = true;
        while let Some(b) = inbound.message().await? {
            self.check_sender(b.from, &b.cluster)?;
            if first {
                first = false;
                let _ = self.broker.raft_handle().send(Cmd::PeerRestarted(b.from));
            }
            if b.to != me {
                return Err(Status::failed_precondition(format!(
                    "this is broker {me}, not broker {}",
                    b.to
                )));
            }
            let from = b.from;
            let dropped = deliver(me, b, &self.broker.directory, self.broker.raft_handle())
                .map_err(|_| Status::unavailable("shutting down"))?;
            for why in dropped {
                tracing::warn!(from, "dropping a Raft message: {why}");
            }
        }
        Ok(Response::new(RaftStreamSummary {}))
    }

    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        let r = req.into_inner();
        let removed = self
            .broker
            .with_state(|s| s.removed_brokers.contains(&r.node_id));
        Ok(Response::new(HelloResponse {
            node_id: self.broker.node_id(),
            cluster: self.broker.transport.fingerprint().to_owned(),
            cluster_id: self.broker.with_state(|s| s.cluster_id.clone()),
            removed,
            controller_commit: self.broker.controller().part.with_log(|_, m| m.commit),
        }))
    }

    async fn replica_states(
        &self,
        req: Request<ReplicaStatesRequest>,
    ) -> Result<Response<ReplicaStatesResponse>, Status> {
        let r = req.into_inner();
        let q = StatesQuery {
            topic: (!r.topic.is_empty()).then_some(r.topic.as_str()),
            roles_only: r.roles_only,
        };
        Ok(Response::new(ReplicaStatesResponse {
            node_id: self.broker.node_id(),
            replicas: self.broker.local_replica_states(q),
            controller_leader: self.broker.controller().leader(),
        }))
    }

    async fn controller(
        &self,
        req: Request<ControllerRequest>,
    ) -> Result<Response<ControllerResponse>, Status> {
        let op: ControllerOp = serde_json::from_slice(&req.into_inner().request)
            .map_err(|e| Status::invalid_argument(format!("bad controller request: {e}")))?;
        let reply = match self.broker.controller().execute_local(op).await {
            Ok(r) => r,
            Err(e) => ControllerReply::Error {
                code: e.code() as i32,
                message: e.to_string(),
            },
        };
        let body = serde_json::to_vec(&reply).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ControllerResponse {
            response: body.into(),
        }))
    }
}
