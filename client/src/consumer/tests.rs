//! The consumer against an in-process mock broker whose Subscribe streams
//! fail on cue: reconnects resume where the stream stopped, out-of-range
//! offsets follow `auto_offset_reset`, seeks restart a partition's stream,
//! and unassigning or dropping the consumer closes its streams.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use strata_proto::batch::{BatchBuilder, stamp};
use strata_proto::v1::admin_server::{Admin as AdminApi, AdminServer};
use strata_proto::v1::broker_server::{Broker as BrokerApi, BrokerServer};
use strata_proto::v1::{
    AddBrokerRequest, AddBrokerResponse, AlterTopicConfigRequest, AlterTopicConfigResponse,
    BrokerInfo, ClusterStatusRequest, ClusterStatusResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicRequest, CreateTopicResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicRequest, DeleteTopicResponse, DescribeTopicRequest,
    ErrorCode, ErrorInfo, FetchPartitionResponse, FetchRequest, FetchResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListTopicsRequest, ListTopicsResponse, MetadataRequest, MetadataResponse, OffsetSpec,
    PartitionMetadata, ProduceRequest, ProduceResponse, RemoveBrokerRequest, RemoveBrokerResponse,
    SubscribeRequest, TopicDescription, TopicMetadata, TransferLeaderRequest,
    TransferLeaderResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::{Consumer, ConsumerConfig, OffsetReset, StartOffset};
use crate::config::ClientConfig;
use crate::record::ConsumerRecord;

const RECORDS: i64 = 100;
const PER_BATCH: i64 = 10;

/// How the mock ends the next Subscribe stream.
#[derive(Debug, Clone, Copy)]
enum End {
    /// After this many messages, an in-stream error with this code.
    Error(usize, ErrorCode),
    /// After this many messages, end the stream without an error.
    Eof(usize),
}

/// One broker (id 1) leading both partitions of topic `t`; both partitions
/// hold the same log: offsets `log_start..100`, ten records per batch, one
/// batch per streamed message.
struct Mock {
    addr: String,
    log_start: i64,
    batches: Vec<(i64, Bytes)>,
    plans: Mutex<VecDeque<End>>,
    /// (partition, offset) of every Subscribe call, in order.
    opens: Mutex<Vec<(u32, i64)>>,
    /// Streams currently open.
    live: Arc<AtomicUsize>,
}

struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn batch_at(base: i64) -> Bytes {
    let mut b = BatchBuilder::new(1000 + base);
    for i in 0..PER_BATCH {
        let v = format!("v{}", base + i);
        b.push(1000 + base + i, Some(b"k"), Some(v.as_bytes()), &[]);
    }
    let mut m = b.finish().to_vec();
    stamp(&mut m, base, 1, 1);
    Bytes::from(m)
}

fn status(code: ErrorCode, msg: &str) -> Status {
    let info = ErrorInfo {
        code: code as i32,
        message: msg.to_owned(),
        ..Default::default()
    };
    Status::with_details(
        tonic::Code::FailedPrecondition,
        msg,
        info.encode_to_vec().into(),
    )
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the mock"))
}

impl Mock {
    async fn start(log_start: i64, plans: Vec<End>) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let mock = Arc::new(Self {
            addr,
            log_start,
            batches: (log_start / PER_BATCH..RECORDS / PER_BATCH)
                .map(|k| (k * PER_BATCH, batch_at(k * PER_BATCH)))
                .collect(),
            plans: Mutex::new(plans.into()),
            opens: Mutex::new(Vec::new()),
            live: Arc::new(AtomicUsize::new(0)),
        });
        let server = tonic::transport::Server::builder()
            .add_service(BrokerServer::from_arc(Arc::clone(&mock)))
            .add_service(AdminServer::from_arc(Arc::clone(&mock)))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        mock
    }

    fn client(&self) -> ClientConfig {
        ClientConfig::builder()
            .bootstrap([self.addr.as_str()])
            .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
            .build()
    }

    fn opens(&self) -> Vec<(u32, i64)> {
        self.opens.lock().map(|o| o.clone()).unwrap_or_default()
    }

    async fn wait_live(&self, n: usize) {
        for _ in 0..500 {
            if self.live.load(Ordering::SeqCst) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {n} open streams, have {}",
            self.live.load(Ordering::SeqCst)
        );
    }
}

#[tonic::async_trait]
impl BrokerApi for Mock {
    async fn produce(
        &self,
        _: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        unimplemented()
    }

    type ProduceStreamStream = Pin<Box<dyn Stream<Item = Result<ProduceResponse, Status>> + Send>>;

    async fn produce_stream(
        &self,
        _: Request<Streaming<ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        unimplemented()
    }

    async fn fetch(&self, _: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        unimplemented()
    }

    type SubscribeStream = ReceiverStream<Result<FetchPartitionResponse, Status>>;

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let req = req.into_inner();
        if let Ok(mut o) = self.opens.lock() {
            o.push((req.partition, req.offset));
        }
        if req.offset < self.log_start || req.offset > RECORDS {
            return Err(status(ErrorCode::OffsetOutOfRange, "out of range"));
        }
        let plan = self.plans.lock().ok().and_then(|mut p| p.pop_front());
        let batches: Vec<Bytes> = self
            .batches
            .iter()
            .filter(|(base, _)| base + PER_BATCH > req.offset)
            .map(|(_, b)| b.clone())
            .collect();
        let msg = move |records: Bytes, error: Option<ErrorInfo>| FetchPartitionResponse {
            topic: req.topic.clone(),
            partition: req.partition,
            error,
            high_watermark: RECORDS,
            log_start_offset: 0,
            records,
        };
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(Arc::clone(&self.live));
        let leader_addr = self.addr.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let _guard = guard;
            let limit = match plan {
                Some(End::Error(n, _) | End::Eof(n)) => n,
                None => usize::MAX,
            };
            for b in batches.into_iter().take(limit) {
                if tx.send(Ok(msg(b, None))).await.is_err() {
                    return;
                }
            }
            match plan {
                Some(End::Error(_, code)) => {
                    let info = ErrorInfo {
                        code: code as i32,
                        message: "stream failed on cue".into(),
                        leader_id: 1,
                        leader_addr,
                    };
                    let _ = tx.send(Ok(msg(Bytes::new(), Some(info)))).await;
                }
                Some(End::Eof(_)) => {}
                None => tx.closed().await,
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_offsets(
        &self,
        req: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let req = req.into_inner();
        let offset = if req.spec == OffsetSpec::Earliest as i32 {
            self.log_start
        } else {
            RECORDS
        };
        Ok(Response::new(ListOffsetsResponse {
            offset,
            timestamp: -1,
            log_start_offset: self.log_start,
            high_watermark: RECORDS,
        }))
    }

    async fn init_producer_id(
        &self,
        _: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        unimplemented()
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
            brokers: vec![BrokerInfo {
                id: 1,
                addr: self.addr.clone(),
                alive: true,
            }],
            controller_id: 1,
            topics: vec![TopicMetadata {
                name: "t".into(),
                error: None,
                partitions: (0..2)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        leader: 1,
                        replicas: vec![1],
                        isr: vec![1],
                    })
                    .collect(),
            }],
            cluster_id: "mock".into(),
        }))
    }

    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        unimplemented()
    }

    async fn add_broker(
        &self,
        _: Request<AddBrokerRequest>,
    ) -> Result<Response<AddBrokerResponse>, Status> {
        unimplemented()
    }

    async fn remove_broker(
        &self,
        _: Request<RemoveBrokerRequest>,
    ) -> Result<Response<RemoveBrokerResponse>, Status> {
        unimplemented()
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
        _: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        unimplemented()
    }
}

async fn take(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::with_capacity(n);
    let mut stream = consumer.records();
    while out.len() < n {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("records keep coming")
            .expect("stream open")
            .expect("record");
        out.push(r);
    }
    out
}

fn offsets(recs: &[ConsumerRecord]) -> Vec<i64> {
    recs.iter().map(|r| r.offset).collect()
}

#[tokio::test]
async fn reconnects_and_resumes_where_the_stream_stopped() {
    let mock = Mock::start(0, vec![End::Error(3, ErrorCode::NotLeader), End::Eof(2)]).await;
    let mut c = Consumer::new(mock.client(), ConsumerConfig::default()).expect("consumer");
    c.assign("t", 0, StartOffset::Earliest)
        .await
        .expect("assign");
    let got = take(&mut c, RECORDS as usize).await;
    assert_eq!(offsets(&got), (0..RECORDS).collect::<Vec<_>>());
    assert_eq!(got[42].value.as_deref(), Some(&b"v42"[..]));
    assert_eq!(got[42].timestamp, 1042);
    assert_eq!(c.position("t", 0), Some(RECORDS));
    assert_eq!(mock.opens(), vec![(0, 0), (0, 30), (0, 50)]);
}

#[tokio::test]
async fn out_of_range_follows_auto_offset_reset() {
    let mock = Mock::start(20, Vec::new()).await;
    let mut c = Consumer::new(mock.client(), ConsumerConfig::default()).expect("consumer");
    c.assign("t", 0, StartOffset::Offset(500))
        .await
        .expect("assign");
    let got = take(&mut c, 80).await;
    assert_eq!(offsets(&got), (20..RECORDS).collect::<Vec<_>>());
    assert_eq!(mock.opens(), vec![(0, 500), (0, 20)]);

    let cfg = ConsumerConfig {
        auto_offset_reset: OffsetReset::None,
        ..Default::default()
    };
    let mut c = Consumer::new(mock.client(), cfg).expect("consumer");
    c.assign("t", 0, StartOffset::Offset(5))
        .await
        .expect("assign");
    let mut stream = c.records();
    let e = stream
        .next()
        .await
        .expect("an error")
        .expect_err("out of range");
    assert_eq!(e.code(), Some(ErrorCode::OffsetOutOfRange));
    assert!(stream.next().await.is_none(), "the only partition failed");
    drop(stream);
    // A seek restarts the failed partition.
    c.seek("t", 0, 95).expect("seek");
    assert_eq!(offsets(&take(&mut c, 5).await), vec![95, 96, 97, 98, 99]);
}

#[tokio::test]
async fn seek_restarts_the_stream_and_skips_records_below_the_offset() {
    let mock = Mock::start(0, Vec::new()).await;
    let mut c = Consumer::new(mock.client(), ConsumerConfig::default()).expect("consumer");
    c.assign("t", 0, StartOffset::Offset(3))
        .await
        .expect("assign");
    let got = take(&mut c, 12).await;
    assert_eq!(offsets(&got), (3..15).collect::<Vec<_>>());
    assert_eq!(c.position("t", 0), Some(15));
    c.seek("t", 0, 7).expect("seek");
    assert_eq!(c.position("t", 0), Some(7));
    let batch = tokio::time::timeout(Duration::from_secs(10), c.next_batch())
        .await
        .expect("a batch")
        .expect("open")
        .expect("records");
    assert_eq!(offsets(&batch), vec![7, 8, 9]);
    assert_eq!(c.position("t", 0), Some(10));
    assert_eq!(mock.opens(), vec![(0, 3), (0, 7)]);
    mock.wait_live(1).await;
}

#[tokio::test]
async fn partitions_take_turns_and_unassign_or_drop_stop_streams() {
    let mock = Mock::start(0, Vec::new()).await;
    let cfg = ConsumerConfig {
        prefetch: 1,
        ..Default::default()
    };
    let mut c = Consumer::new(mock.client(), cfg).expect("consumer");
    assert_eq!(
        c.assign_topic("t", StartOffset::Earliest).await.ok(),
        Some(2)
    );
    // Once both streams have data buffered, neither starves the other.
    let mut got = take(&mut c, 1).await;
    mock.wait_live(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    got.extend(take(&mut c, 40).await);
    for p in 0..2u32 {
        let mine: Vec<i64> = got
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert!(mine.len() >= 10, "partition {p} had turns");
        assert_eq!(mine, (0..mine.len() as i64).collect::<Vec<_>>());
    }
    c.unassign("t", 0);
    mock.wait_live(1).await;
    let before = c.position("t", 1).expect("assigned");
    let rest = take(&mut c, (RECORDS - before) as usize).await;
    assert!(rest.iter().all(|r| r.partition == 1));
    assert_eq!(rest[0].offset, before);
    assert_eq!(c.assignment().len(), 1);
    c.unassign("t", 1);
    assert!(c.records().next().await.is_none(), "nothing assigned");
    mock.wait_live(0).await;

    c.assign("t", 1, StartOffset::Offset(50))
        .await
        .expect("assign");
    assert_eq!(take(&mut c, 1).await[0].offset, 50);
    mock.wait_live(1).await;
    drop(c);
    mock.wait_live(0).await;
}
