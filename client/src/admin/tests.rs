//! The cluster-membership and leadership calls of [`Admin`] against an
//! in-process mock Admin service that fails on cue: retriable codes are
//! retried, `UNKNOWN_BROKER` is not, `transfer_leader` follows a
//! `NOT_LEADER` hint and updates the cached leader, and zero broker ids
//! never reach the wire.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use strata_proto::v1::admin_server::{Admin as AdminApi, AdminServer};
use strata_proto::v1::{
    AddBrokerRequest, AddBrokerResponse, AlterTopicConfigRequest, AlterTopicConfigResponse,
    BrokerInfo, BrokerStatus, ClusterStatusRequest, ClusterStatusResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicRequest, CreateTopicResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest,
    ErrorCode, ErrorInfo, ListTopicsRequest, ListTopicsResponse, MetadataRequest, MetadataResponse,
    PartitionMetadata, RemoveBrokerRequest, RemoveBrokerResponse, TopicDescription, TopicMetadata,
    TransferLeaderRequest, TransferLeaderResponse,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use super::Admin;
use crate::config::ClientConfig;
use crate::error::ClientError;

/// Brokers 1 and 2 (both served by this mock); topic `t` has one partition
/// led by broker 1. The next calls of the membership and leadership RPCs
/// fail with the queued codes, in order.
struct Mock {
    addr: String,
    fail: Mutex<VecDeque<ErrorCode>>,
    /// One line per membership or leadership call, in order.
    calls: Mutex<Vec<String>>,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the mock"))
}

impl Mock {
    async fn start(fail: Vec<ErrorCode>) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let mock = Arc::new(Self {
            addr,
            fail: Mutex::new(fail.into()),
            calls: Mutex::new(Vec::new()),
        });
        let server = tonic::transport::Server::builder()
            .add_service(AdminServer::from_arc(Arc::clone(&mock)))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        mock
    }

    fn admin(&self) -> Admin {
        let cfg = ClientConfig::builder()
            .bootstrap([self.addr.as_str()])
            .retries(3)
            .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
            .build();
        Admin::new(cfg).expect("admin")
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Records the call, then fails it if a failure is queued.
    fn call(&self, line: String) -> Result<(), Status> {
        if let Ok(mut c) = self.calls.lock() {
            c.push(line);
        }
        let code = self.fail.lock().ok().and_then(|mut f| f.pop_front());
        let Some(code) = code else {
            return Ok(());
        };
        let mut info = ErrorInfo {
            code: code as i32,
            message: format!("mock {}", code.as_str_name()),
            ..Default::default()
        };
        if code == ErrorCode::NotLeader {
            info.leader_id = 2;
            info.leader_addr = self.addr.clone();
        }
        Err(Status::with_details(
            tonic::Code::FailedPrecondition,
            info.message.clone(),
            info.encode_to_vec().into(),
        ))
    }
}

#[tonic::async_trait]
impl AdminApi for Mock {
    async fn create_topic(
        &self,
        _: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        unimplemented()
    }

    async fn delete_topic(
        &self,
        _: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        unimplemented()
    }

    async fn list_topics(
        &self,
        _: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        unimplemented()
    }

    async fn describe_topic(
        &self,
        _: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        unimplemented()
    }

    async fn alter_topic_config(
        &self,
        _: Request<AlterTopicConfigRequest>,
    ) -> Result<Response<AlterTopicConfigResponse>, Status> {
        unimplemented()
    }

    async fn create_partitions(
        &self,
        _: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        unimplemented()
    }

    async fn delete_records(
        &self,
        _: Request<DeleteRecordsRequest>,
    ) -> Result<Response<DeleteRecordsResponse>, Status> {
        unimplemented()
    }

    async fn metadata(
        &self,
        _: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        Ok(Response::new(MetadataResponse {
            brokers: [1, 2]
                .map(|id| BrokerInfo {
                    id,
                    addr: self.addr.clone(),
                    alive: true,
                })
                .to_vec(),
            controller_id: 1,
            topics: vec![TopicMetadata {
                name: "t".into(),
                error: None,
                partitions: vec![PartitionMetadata {
                    partition: 0,
                    leader: 1,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                }],
            }],
            cluster_id: "mock".into(),
        }))
    }

    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        self.call("cluster_status".into())?;
        Ok(Response::new(ClusterStatusResponse {
            controller: 1,
            brokers: vec![BrokerStatus {
                id: 1,
                addr: self.addr.clone(),
                alive: true,
                peer_addr: "127.0.0.1:9293".into(),
                controller_voter: true,
                leader_partitions: 1,
            }],
            leaderless_partitions: 0,
            under_replicated_partitions: 1,
            cluster_id: "mock".into(),
            partitions: 1,
        }))
    }

    async fn add_broker(
        &self,
        req: Request<AddBrokerRequest>,
    ) -> Result<Response<AddBrokerResponse>, Status> {
        let r = req.into_inner();
        self.call(format!("add_broker {} {}", r.id, r.peer_addr))?;
        Ok(Response::new(AddBrokerResponse {}))
    }

    async fn remove_broker(
        &self,
        req: Request<RemoveBrokerRequest>,
    ) -> Result<Response<RemoveBrokerResponse>, Status> {
        self.call(format!("remove_broker {}", req.into_inner().id))?;
        Ok(Response::new(RemoveBrokerResponse {}))
    }

    async fn create_acls(
        &self,
        _: Request<strata_proto::v1::CreateAclsRequest>,
    ) -> Result<Response<strata_proto::v1::CreateAclsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn list_acls(
        &self,
        _: Request<strata_proto::v1::ListAclsRequest>,
    ) -> Result<Response<strata_proto::v1::ListAclsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn delete_acls(
        &self,
        _: Request<strata_proto::v1::DeleteAclsRequest>,
    ) -> Result<Response<strata_proto::v1::DeleteAclsResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn upsert_user(
        &self,
        _: Request<strata_proto::v1::UpsertUserRequest>,
    ) -> Result<Response<strata_proto::v1::UpsertUserResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn delete_user(
        &self,
        _: Request<strata_proto::v1::DeleteUserRequest>,
    ) -> Result<Response<strata_proto::v1::DeleteUserResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn list_users(
        &self,
        _: Request<strata_proto::v1::ListUsersRequest>,
    ) -> Result<Response<strata_proto::v1::ListUsersResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn who_am_i(
        &self,
        _: Request<strata_proto::v1::WhoAmIRequest>,
    ) -> Result<Response<strata_proto::v1::WhoAmIResponse>, Status> {
        Err(Status::unimplemented("mock"))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let r = req.into_inner();
        self.call(format!(
            "transfer_leader {}/{} {}",
            r.topic, r.partition, r.to
        ))?;
        Ok(Response::new(TransferLeaderResponse { leader: r.to }))
    }
}

#[tokio::test]
async fn cluster_status_passes_the_answer_through() {
    let mock = Mock::start(vec![ErrorCode::ShuttingDown]).await;
    let s = mock.admin().cluster_status().await.expect("status");
    assert_eq!(s.controller, 1);
    assert_eq!(s.brokers.len(), 1);
    assert!(s.brokers[0].controller_voter);
    assert_eq!(s.under_replicated_partitions, 1);
    assert_eq!(s.cluster_id, "mock");
    assert_eq!(mock.calls(), ["cluster_status", "cluster_status"]);
}

#[tokio::test]
async fn add_broker_retries_not_controller() {
    let mock = Mock::start(vec![ErrorCode::NotController]).await;
    mock.admin()
        .add_broker(4, " 10.0.0.4:9293 ")
        .await
        .expect("added");
    assert_eq!(
        mock.calls(),
        ["add_broker 4 10.0.0.4:9293", "add_broker 4 10.0.0.4:9293"]
    );
}

#[tokio::test]
async fn unknown_broker_is_not_retried() {
    let mock = Mock::start(vec![ErrorCode::UnknownBroker]).await;
    let e = mock.admin().remove_broker(9).await.expect_err("unknown");
    assert_eq!(e.code(), Some(ErrorCode::UnknownBroker));
    assert_eq!(e.to_string(), "UNKNOWN_BROKER: mock UNKNOWN_BROKER");
    assert_eq!(mock.calls(), ["remove_broker 9"]);
}

#[tokio::test]
async fn transfer_leader_follows_the_leader_hint_and_updates_the_cache() {
    let mock = Mock::start(vec![ErrorCode::NotLeader]).await;
    let admin = mock.admin();
    assert_eq!(admin.transfer_leader("t", 0, 2).await.expect("moved"), 2);
    assert_eq!(
        mock.calls(),
        ["transfer_leader t/0 2", "transfer_leader t/0 2"]
    );
    let cached = admin.cluster.cached_topic("t").expect("cached");
    assert_eq!(cached.leaders, [2]);

    let e = admin.transfer_leader("t", 1, 2).await.expect_err("no p1");
    assert_eq!(e.code(), Some(ErrorCode::UnknownPartition));
    assert_eq!(mock.calls().len(), 2);
}

#[tokio::test]
async fn zero_ids_and_empty_addresses_never_reach_the_broker() {
    let mock = Mock::start(Vec::new()).await;
    let admin = mock.admin();
    for e in [
        admin
            .add_broker(0, "10.0.0.4:9293")
            .await
            .expect_err("id 0"),
        admin.add_broker(4, "  ").await.expect_err("no addr"),
        admin.remove_broker(0).await.expect_err("id 0"),
        admin.transfer_leader("t", 0, 0).await.expect_err("to 0"),
    ] {
        assert!(matches!(e, ClientError::InvalidArgument(_)), "{e}");
    }
    assert!(mock.calls().is_empty());
}
