//! The `Broker` gRPC service: the data path (produce, fetch, subscribe,
//! list offsets, producer ids).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use strata_proto::v1::broker_server::Broker as BrokerApi;
use strata_proto::v1::{
    Acks, FetchPartitionResponse, FetchRequest, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetSpec, ProduceRequest,
    ProduceResponse, SubscribeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::error_info;
use crate::broker::Broker;
use crate::broker::fetch::{self, MAX_FETCH_BYTES};
use crate::broker::list_offsets::OffsetQuery;
use crate::broker::produce::{self, Prepared, Produced};
use crate::error::{BrokerError, Result};
use crate::security::auth::{Identity, Operation, Resource};

const DEFAULT_SUBSCRIBE_BYTES: usize = 1 << 20;

pub struct DataService {
    broker: Arc<Broker>,
}

impl DataService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

/// Translates a gRPC produce request into the broker's operation.
fn prepare(broker: &Broker, who: &Identity, req: ProduceRequest) -> Result<(u64, Prepared)> {
    let acks = match Acks::try_from(req.acks) {
        Ok(Acks::All) => crate::partition::Acks::All,
        Ok(Acks::Leader) => crate::partition::Acks::Leader,
        Ok(Acks::None) => crate::partition::Acks::None,
        Err(_) => {
            return Err(BrokerError::InvalidRequest(format!(
                "unknown acks {}",
                req.acks
            )));
        }
    };
    let timeout = (req.timeout_ms != 0).then(|| Duration::from_millis(u64::from(req.timeout_ms)));
    let prepared = broker.prepare_produce(
        who,
        produce::ProduceRequest {
            topic: req.topic,
            partition: req.partition,
            records: req.records,
            acks,
            timeout,
        },
    )?;
    Ok((req.correlation_id, prepared))
}

fn produce_response(correlation_id: u64, p: Produced) -> ProduceResponse {
    ProduceResponse {
        correlation_id,
        base_offset: p.base_offset,
        last_offset: p.last_offset,
        log_start_offset: p.log_start_offset,
        error: None,
    }
}

fn error_response(correlation_id: u64, e: &BrokerError) -> ProduceResponse {
    ProduceResponse {
        correlation_id,
        base_offset: -1,
        last_offset: -1,
        log_start_offset: -1,
        error: Some(error_info(e)),
    }
}

fn partition_error(topic: &str, partition: u32, e: &BrokerError) -> FetchPartitionResponse {
    FetchPartitionResponse {
        topic: topic.to_owned(),
        partition,
        error: Some(error_info(e)),
        high_watermark: -1,
        log_start_offset: -1,
        records: Default::default(),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl BrokerApi for DataService {
    async fn produce(
        &self,
        req: Request<ProduceRequest>,
    ) -> std::result::Result<Response<ProduceResponse>, Status> {
        let who = self.broker.identify(&req);
        let (cid, prepared) = prepare(&self.broker, &who, req.into_inner())?;
        let produced = prepared.append()?.finish().await?;
        Ok(Response::new(produce_response(cid, produced)))
    }

    type ProduceStreamStream = BoxStream<ProduceResponse>;

    /// Two stages so that decoding and checksumming the next request
    /// overlaps with appending the previous one; appends keep stream order.
    async fn produce_stream(
        &self,
        req: Request<Streaming<ProduceRequest>>,
    ) -> std::result::Result<Response<Self::ProduceStreamStream>, Status> {
        let who = self.broker.identify(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel::<std::result::Result<ProduceResponse, Status>>(256);
        let (stage_tx, mut stage_rx) = mpsc::channel::<(u64, Result<(u64, Prepared)>)>(8);
        let broker = Arc::clone(&self.broker);
        tokio::spawn(async move {
            while let Some(Ok(r)) = inbound.next().await {
                let cid = r.correlation_id;
                if stage_tx
                    .send((cid, prepare(&broker, &who, r)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some((cid, prepared)) = stage_rx.recv().await {
                match prepared.and_then(|(_, p)| p.append()) {
                    Ok(p) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let resp = match p.finish().await {
                                Ok(produced) => produce_response(cid, produced),
                                Err(e) => error_response(cid, &e),
                            };
                            let _ = tx.send(Ok(resp)).await;
                        });
                    }
                    Err(e) => {
                        if tx.send(Ok(error_response(cid, &e))).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch(
        &self,
        req: Request<FetchRequest>,
    ) -> std::result::Result<Response<FetchResponse>, Status> {
        let who = self.broker.identify(&req);
        let req = req.into_inner();
        if req.partitions.is_empty() {
            return Err(BrokerError::InvalidRequest("fetch names no partition".into()).into());
        }
        let op = fetch::FetchRequest {
            partitions: req
                .partitions
                .iter()
                .map(|p| fetch::FetchPartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: p.offset,
                    max_bytes: p.max_bytes as usize,
                })
                .collect(),
            max_wait: Duration::from_millis(u64::from(req.max_wait_ms)),
            min_bytes: req.min_bytes as usize,
            max_bytes: req.max_bytes as usize,
        };
        let read = self.broker.fetch(&who, &op).await;
        // This API fails the whole request on a partition it may not read.
        if let Some(e) = fetch::FetchedPartition::denied(&read) {
            return Err(BrokerError::Unauthorized(e.to_string()).into());
        }
        let partitions = read
            .into_iter()
            .map(|p| match p.result {
                Ok(r) => FetchPartitionResponse {
                    topic: p.topic,
                    partition: p.partition,
                    error: None,
                    high_watermark: r.high_watermark,
                    log_start_offset: r.log_start,
                    records: r.records,
                },
                Err(e) => partition_error(&p.topic, p.partition, &e),
            })
            .collect();
        Ok(Response::new(FetchResponse { partitions }))
    }

    type SubscribeStream = BoxStream<FetchPartitionResponse>;

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        let who = self.broker.identify(&req);
        let req = req.into_inner();
        self.broker
            .authorize(&who, Operation::Read, Resource::Topic, &req.topic)?;
        let part = self.broker.leader_partition(&req.topic, req.partition)?;
        let max = match req.max_bytes {
            0 => DEFAULT_SUBSCRIBE_BYTES,
            n => (n as usize).min(MAX_FETCH_BYTES),
        };
        // Fail fast on a bad starting offset.
        crate::tier::serve::read(self.broker.as_ref(), &part, req.offset, 1, true).await?;
        let term = part.role().term;
        let (tx, rx) = mpsc::channel(4);
        let broker = Arc::clone(&self.broker);
        tokio::spawn(async move {
            let mut offset = req.offset;
            let mut hw = part.subscribe_hw();
            loop {
                if !part.leads_in(term) {
                    // Stepped down: the consumer resubscribes at the new leader.
                    let e = part.not_leader();
                    let _ = tx
                        .send(Ok(partition_error(&req.topic, req.partition, &e)))
                        .await;
                    return;
                }
                hw.mark_unchanged();
                match crate::tier::serve::read(broker.as_ref(), &part, offset, max, true).await {
                    Ok((info, offs)) if !info.records.is_empty() => {
                        offset = info.next_offset;
                        crate::metrics::global().fetched(&req.topic, info.records.len() as u64);
                        let msg = FetchPartitionResponse {
                            topic: req.topic.clone(),
                            partition: req.partition,
                            error: None,
                            high_watermark: offs.high_watermark,
                            log_start_offset: offs.log_start,
                            records: info.records,
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {
                        tokio::select! {
                            r = hw.changed() => if r.is_err() { return },
                            () = part.leadership_lost(term) => {}
                            () = tx.closed() => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Ok(partition_error(&req.topic, req.partition, &e)))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_offsets(
        &self,
        req: Request<ListOffsetsRequest>,
    ) -> std::result::Result<Response<ListOffsetsResponse>, Status> {
        let who = self.broker.identify(&req);
        let req = req.into_inner();
        let spec = OffsetSpec::try_from(req.spec).map_err(|_| {
            BrokerError::InvalidRequest(format!("unknown offset spec {}", req.spec))
        })?;
        let query = match spec {
            OffsetSpec::Latest => OffsetQuery::Latest,
            OffsetSpec::Earliest => OffsetQuery::Earliest,
            OffsetSpec::Timestamp => OffsetQuery::Timestamp(req.timestamp),
        };
        let o = self
            .broker
            .list_offset(&who, &req.topic, req.partition, query)
            .await?;
        Ok(Response::new(ListOffsetsResponse {
            offset: o.offset,
            timestamp: o.timestamp,
            log_start_offset: o.log_start,
            high_watermark: o.high_watermark,
        }))
    }

    async fn init_producer_id(
        &self,
        req: Request<InitProducerIdRequest>,
    ) -> std::result::Result<Response<InitProducerIdResponse>, Status> {
        let who = self.broker.identify(&req);
        self.broker.authorize_idempotent_write(&who)?;
        let id = self.broker.allocate_producer_id().await?;
        Ok(Response::new(InitProducerIdResponse {
            producer_id: id,
            producer_epoch: 0,
        }))
    }
}
