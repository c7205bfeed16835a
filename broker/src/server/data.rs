//! The `Broker` gRPC service: the data path (produce, fetch, subscribe,
//! list offsets, producer ids).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use strata_proto::batch;
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
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use crate::security::auth::{Identity, Operation, Resource};

const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_WAIT_CAP: Duration = Duration::from_secs(60);
/// Cap of one fetch response (stays well below the gRPC message limit).
pub const MAX_FETCH_BYTES: usize = 48 << 20;
const DEFAULT_SUBSCRIBE_BYTES: usize = 1 << 20;

pub struct DataService {
    broker: Arc<Broker>,
}

impl DataService {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }
}

/// A produce request handed to the Raft loop; what is left is waiting.
struct Pending {
    part: Arc<Partition>,
    started: Instant,
    records: u64,
    bytes: u64,
    acks: Acks,
    rx: tokio::sync::oneshot::Receiver<Result<crate::raft::node::Proposal>>,
    timeout: Duration,
    correlation_id: u64,
}

impl Pending {
    async fn finish(self) -> Result<ProduceResponse> {
        let acks = match self.acks {
            Acks::All => crate::partition::Acks::All,
            Acks::Leader => crate::partition::Acks::Leader,
            Acks::None => crate::partition::Acks::None,
        };
        let done = self
            .part
            .complete_produce(self.rx, acks, self.timeout)
            .await;
        let m = crate::metrics::global();
        m.request("produce", self.started.elapsed(), done.is_ok());
        let a = done?;
        m.produced(self.part.topic(), self.records, self.bytes);
        let (base, last) = if self.acks == Acks::None {
            (-1, -1)
        } else {
            (a.base_offset, a.last_offset)
        };
        Ok(ProduceResponse {
            correlation_id: self.correlation_id,
            base_offset: base,
            last_offset: last,
            log_start_offset: a.log_start_offset,
            error: None,
        })
    }
}

/// A produce request that passed validation (done outside any lock).
struct Prepared {
    part: Arc<Partition>,
    started: Instant,
    acks: Acks,
    batches: Vec<(strata_proto::batch::BatchHeader, bytes::Bytes)>,
    timeout: Duration,
    correlation_id: u64,
}

/// Checks a produce request: topic, partition, acks, batch framing and CRC.
fn prepare(broker: &Broker, who: &Identity, req: ProduceRequest) -> Result<Prepared> {
    let started = Instant::now();
    prepare_inner(broker, who, req, started).inspect_err(|_| {
        crate::metrics::global().request("produce", started.elapsed(), false);
    })
}

fn prepare_inner(
    broker: &Broker,
    who: &Identity,
    req: ProduceRequest,
    started: Instant,
) -> Result<Prepared> {
    broker.authorize(who, Operation::Write, Resource::Topic, &req.topic)?;
    if req.topic.starts_with("__") {
        return Err(BrokerError::InvalidTopic {
            name: req.topic,
            why: "internal topics are written by the broker only".into(),
        });
    }
    let acks = Acks::try_from(req.acks)
        .map_err(|_| BrokerError::InvalidRequest(format!("unknown acks {}", req.acks)))?;
    let part = broker.leader_partition(&req.topic, req.partition)?;
    let batches = batch::split_validated(&req.records)?;
    let max = part.config().max_message_bytes;
    if let Some((h, _)) = batches.iter().find(|(h, _)| h.total_len() > max as usize) {
        return Err(BrokerError::BatchTooLarge {
            size: h.total_len(),
            max,
        });
    }
    if batches.iter().any(|(h, _)| h.is_control()) {
        return Err(BrokerError::InvalidRequest(
            "control batches are written by the broker only".into(),
        ));
    }
    let timeout = match req.timeout_ms {
        0 => DEFAULT_ACK_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)).min(MAX_WAIT_CAP),
    };
    Ok(Prepared {
        part,
        started,
        acks,
        batches,
        timeout,
        correlation_id: req.correlation_id,
    })
}

/// Proposes a prepared request (keeping call order); what is left is
/// waiting for the acks.
fn append(p: Prepared) -> Result<Pending> {
    let records = p.batches.iter().map(|(h, _)| h.records_count as u64).sum();
    let bytes = p.batches.iter().map(|(h, _)| h.total_len() as u64).sum();
    let started = p.started;
    let rx = p.part.start_produce(p.batches).inspect_err(|_| {
        crate::metrics::global().request("produce", started.elapsed(), false);
    })?;
    Ok(Pending {
        part: p.part,
        started,
        records,
        bytes,
        acks: p.acks,
        rx,
        timeout: p.timeout,
        correlation_id: p.correlation_id,
    })
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
        let prepared = prepare(&self.broker, &who, req.into_inner())?;
        Ok(Response::new(append(prepared)?.finish().await?))
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
        let (stage_tx, mut stage_rx) = mpsc::channel::<(u64, Result<Prepared>)>(8);
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
                match prepared.and_then(append) {
                    Ok(p) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let resp = p.finish().await.unwrap_or_else(|e| error_response(cid, &e));
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
        let started = Instant::now();
        let who = self.broker.identify(&req);
        let req = req.into_inner();
        for p in &req.partitions {
            self.broker
                .authorize(&who, Operation::Read, Resource::Topic, &p.topic)
                .inspect_err(|_| {
                    crate::metrics::global().request("fetch", started.elapsed(), false);
                })?;
        }
        if req.partitions.is_empty() {
            return Err(BrokerError::InvalidRequest("fetch names no partition".into()).into());
        }
        let max_total = match req.max_bytes {
            0 => MAX_FETCH_BYTES,
            n => (n as usize).min(MAX_FETCH_BYTES),
        };
        let deadline =
            Instant::now() + Duration::from_millis(u64::from(req.max_wait_ms)).min(MAX_WAIT_CAP);
        let parts: Vec<Result<Arc<Partition>>> = req
            .partitions
            .iter()
            .map(|p| self.broker.leader_partition(&p.topic, p.partition))
            .collect();
        // The term each partition is led in: a long poll on a replica that
        // steps down ends at once with NOT_LEADER for that partition.
        let terms: Vec<u64> = parts
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.role().term))
            .collect();
        loop {
            // Subscribe before reading so that no append slips between.
            let mut watches: Vec<_> = parts.iter().flatten().map(|p| p.subscribe_hw()).collect();
            let mut out = Vec::with_capacity(req.partitions.len());
            let mut total = 0usize;
            let mut failed = false;
            for ((fp, part), term) in req.partitions.iter().zip(&parts).zip(&terms) {
                let part = match part {
                    Ok(p) if p.leads_in(*term) => p,
                    Ok(p) => {
                        failed = true;
                        out.push(partition_error(&fp.topic, fp.partition, &p.not_leader()));
                        continue;
                    }
                    Err(e) => {
                        failed = true;
                        out.push(partition_error(&fp.topic, fp.partition, e));
                        continue;
                    }
                };
                let room = max_total.saturating_sub(total);
                let cap = match fp.max_bytes {
                    0 => room,
                    n => (n as usize).min(room),
                };
                // The first batch of the response always goes out whole so
                // that a consumer progresses; later ones only if they fit.
                let first_whole = total == 0;
                if cap == 0 && !first_whole {
                    let o = crate::tier::serve::offsets(self.broker.as_ref(), part);
                    out.push(FetchPartitionResponse {
                        topic: fp.topic.clone(),
                        partition: fp.partition,
                        error: None,
                        high_watermark: o.high_watermark,
                        log_start_offset: o.log_start,
                        records: Default::default(),
                    });
                    continue;
                }
                let read = crate::tier::serve::read(
                    self.broker.as_ref(),
                    part,
                    fp.offset,
                    cap.max(1),
                    first_whole,
                )
                .await;
                match read {
                    Ok((info, offs)) => {
                        total += info.records.len();
                        out.push(FetchPartitionResponse {
                            topic: fp.topic.clone(),
                            partition: fp.partition,
                            error: None,
                            high_watermark: offs.high_watermark,
                            log_start_offset: offs.log_start,
                            records: info.records,
                        });
                    }
                    Err(e) => {
                        failed = true;
                        out.push(partition_error(&fp.topic, fp.partition, &e));
                    }
                }
            }
            let now = Instant::now();
            if failed
                || total >= (req.min_bytes as usize).max(1)
                || now >= deadline
                || watches.is_empty()
            {
                let m = crate::metrics::global();
                for p in &out {
                    m.fetched(&p.topic, p.records.len() as u64);
                }
                m.request("fetch", started.elapsed(), !failed);
                return Ok(Response::new(FetchResponse { partitions: out }));
            }
            let changed =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            let lost = futures::future::select_all(
                parts
                    .iter()
                    .zip(&terms)
                    .filter_map(|(p, t)| p.as_ref().ok().map(|p| Box::pin(p.leadership_lost(*t)))),
            );
            // A deadline, a new high watermark or a lost leadership: the
            // next turn reads (or reports) again.
            tokio::select! {
                _ = tokio::time::timeout(deadline - now, changed) => {}
                _ = lost => {}
            }
        }
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
        self.broker
            .authorize(&who, Operation::Describe, Resource::Topic, &req.topic)?;
        let part = self.broker.leader_partition(&req.topic, req.partition)?;
        let spec = OffsetSpec::try_from(req.spec).map_err(|_| {
            BrokerError::InvalidRequest(format!("unknown offset spec {}", req.spec))
        })?;
        let o = crate::tier::serve::offsets(self.broker.as_ref(), &part);
        let (offset, timestamp) = match spec {
            OffsetSpec::Latest => (o.high_watermark, -1),
            OffsetSpec::Earliest => (o.log_start, -1),
            OffsetSpec::Timestamp => {
                crate::tier::serve::offset_for_timestamp(self.broker.as_ref(), &part, req.timestamp)
                    .await?
                    .filter(|(off, _)| *off < o.high_watermark)
                    .unwrap_or((o.high_watermark, -1))
            }
        };
        Ok(Response::new(ListOffsetsResponse {
            offset,
            timestamp,
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
