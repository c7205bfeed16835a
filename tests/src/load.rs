//! A tracked `acks=all` load and the checks run on it afterwards.
//!
//! [`ProduceLoad`] runs one task per partition that produces small batches
//! with raw `Produce` RPCs, one request in flight per partition, following
//! `NOT_LEADER` hints and moving to another broker on timeouts and
//! connection errors. Every attempt carries fresh values (never a resend of
//! the same bytes), so an acknowledged value must appear in the log exactly
//! once, at its acknowledged offset; unacknowledged attempts may or may not
//! appear. [`read_partition`] reads a partition back from its leader,
//! [`check_acked`] compares, and [`assert_replicas_identical`] compares the
//! replicas' segment files byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::{self, BatchBuilder, BatchIter};
use strata_proto::v1::broker_client::BrokerClient;
use strata_proto::v1::{Acks, ErrorCode, FetchPartition, FetchRequest, ProduceRequest};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::{Cluster, describe_status, error_code, error_info, summarize};

/// One acknowledged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub partition: u32,
    pub offset: i64,
    pub value: String,
}

/// What a stopped [`ProduceLoad`] produced.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Per partition, in acknowledgement (= produce) order.
    pub acked: Vec<Vec<Acked>>,
    /// Failed attempts by error kind (code name, "TRANSPORT", "DEADLINE").
    pub errors: BTreeMap<String, u64>,
    /// Acknowledgements whose offsets did not match the batch size.
    pub anomalies: Vec<String>,
}

impl LoadReport {
    pub fn total_acked(&self) -> usize {
        self.acked.iter().map(Vec::len).sum()
    }
}

/// Distinguishes the values of loads within one test process.
static LOAD_TAG: AtomicU64 = AtomicU64::new(1);

/// Continuous `acks=all` produce to every partition of a topic. Values are
/// `{topic}/{load tag}/{partition}/{sequence}`, unique across loads.
pub struct ProduceLoad {
    topic: String,
    stop: Arc<AtomicBool>,
    progress: Arc<Vec<AtomicU64>>,
    tasks: Vec<JoinHandle<PartitionResult>>,
}

struct PartitionResult {
    acked: Vec<Acked>,
    errors: BTreeMap<String, u64>,
    anomalies: Vec<String>,
}

impl ProduceLoad {
    /// Starts producing to `partitions` partitions of `topic`, trying the
    /// brokers in `brokers` (id, client address).
    pub fn start(brokers: Vec<(u64, SocketAddr)>, topic: &str, partitions: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let progress: Arc<Vec<AtomicU64>> =
            Arc::new((0..partitions).map(|_| AtomicU64::new(0)).collect());
        let tag = LOAD_TAG.fetch_add(1, Ordering::Relaxed);
        let tasks = (0..partitions)
            .map(|p| {
                let w = PartitionWriter {
                    topic: topic.to_string(),
                    tag,
                    partition: p,
                    brokers: brokers.clone(),
                    clients: HashMap::new(),
                    target: brokers[p as usize % brokers.len()].0,
                };
                tokio::spawn(w.run(stop.clone(), progress.clone()))
            })
            .collect();
        Self {
            topic: topic.to_string(),
            stop,
            progress,
            tasks,
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Acknowledged records so far, per partition.
    pub fn progress(&self) -> Vec<u64> {
        self.progress
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits until every partition has `n` more acknowledged records than
    /// when called; false on timeout.
    pub async fn wait_progress(&self, n: u64, timeout: Duration) -> bool {
        let base = self.progress();
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .progress()
                .iter()
                .zip(&base)
                .all(|(now, b)| *now >= b + n)
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops producing (in-flight attempts finish or time out) and reports.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = LoadReport::default();
        for t in self.tasks {
            let r = t.await.expect("producer task panicked");
            report.acked.push(r.acked);
            for (k, v) in r.errors {
                *report.errors.entry(k).or_default() += v;
            }
            report.anomalies.extend(r.anomalies);
        }
        report
    }
}

struct PartitionWriter {
    topic: String,
    tag: u64,
    partition: u32,
    brokers: Vec<(u64, SocketAddr)>,
    clients: HashMap<u64, BrokerClient<Channel>>,
    target: u64,
}

impl PartitionWriter {
    fn client(&mut self, id: u64) -> BrokerClient<Channel> {
        let addr = self
            .brokers
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| *a)
            .expect("known broker");
        self.clients
            .entry(id)
            .or_insert_with(|| {
                let ch = Endpoint::from_shared(format!("http://{addr}"))
                    .expect("endpoint")
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(4))
                    .connect_lazy();
                BrokerClient::new(ch)
            })
            .clone()
    }

    fn rotate(&mut self) {
        let i = self
            .brokers
            .iter()
            .position(|(id, _)| *id == self.target)
            .unwrap_or(0);
        self.target = self.brokers[(i + 1) % self.brokers.len()].0;
    }

    async fn run(
        mut self,
        stop: Arc<AtomicBool>,
        progress: Arc<Vec<AtomicU64>>,
    ) -> PartitionResult {
        let mut res = PartitionResult {
            acked: Vec::new(),
            errors: BTreeMap::new(),
            anomalies: Vec::new(),
        };
        let mut seq = 0u64;
        let mut attempt = 0u64;
        while !stop.load(Ordering::SeqCst) {
            attempt += 1;
            let n = 1 + attempt % 4;
            let values: Vec<String> = (seq..seq + n)
                .map(|s| format!("{}/{}/{}/{s:010}", self.topic, self.tag, self.partition))
                .collect();
            seq += n;
            let req = ProduceRequest {
                topic: self.topic.clone(),
                partition: self.partition,
                acks: Acks::All as i32,
                records: batch_of(&values),
                timeout_ms: 2_000,
                correlation_id: attempt,
            };
            let target = self.target;
            let mut client = self.client(target);
            let outcome = tokio::time::timeout(Duration::from_secs(5), client.produce(req)).await;
            let failure = match outcome {
                Ok(Ok(resp)) => {
                    let r = resp.into_inner();
                    match r.error.filter(|e| e.code != 0) {
                        Some(e) => ErrorCode::try_from(e.code).map_or_else(
                            |_| format!("code {}", e.code),
                            |c| c.as_str_name().into(),
                        ),
                        None => {
                            if r.last_offset - r.base_offset + 1 != n as i64 {
                                res.anomalies.push(format!(
                                    "partition {}: {n} records acked at {}..={} by broker {target}",
                                    self.partition, r.base_offset, r.last_offset
                                ));
                            }
                            for (k, v) in values.into_iter().enumerate() {
                                res.acked.push(Acked {
                                    partition: self.partition,
                                    offset: r.base_offset + k as i64,
                                    value: v,
                                });
                            }
                            progress[self.partition as usize].fetch_add(n, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            continue;
                        }
                    }
                }
                Ok(Err(st)) => {
                    let code = error_code(&st);
                    let hint = error_info(&st).map_or(0, |i| i.leader_id);
                    if code == "NOT_LEADER"
                        && hint != 0
                        && hint != target
                        && self.brokers.iter().any(|(i, _)| *i == hint)
                    {
                        self.target = hint;
                    } else {
                        self.rotate();
                    }
                    if code.is_empty() {
                        // A transport failure: reconnect next time.
                        self.clients.remove(&target);
                        "TRANSPORT".to_string()
                    } else {
                        code
                    }
                }
                Err(_) => {
                    self.clients.remove(&target);
                    self.rotate();
                    "DEADLINE".to_string()
                }
            };
            *res.errors.entry(failure).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        res
    }
}

/// Every record of a partition from offset 0 up to the high watermark, as
/// (offset, value), read from the current leader with raw `Fetch` calls.
/// Control batches and records without a UTF-8 value are skipped.
pub async fn read_partition(c: &Cluster, topic: &str, partition: u32) -> Vec<(i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let mut offset = 0i64;
    let mut last_error = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "could not read {topic}-{partition} past offset {offset}: {last_error}"
        );
        let leader = c
            .wait_leader(topic, partition, Duration::from_secs(30))
            .await;
        let Ok(mut api) = c.get(leader).try_data().await else {
            last_error = format!("cannot connect to leader {leader}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let r = api
            .fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 4 << 20,
                partitions: vec![FetchPartition {
                    topic: topic.into(),
                    partition,
                    offset,
                    max_bytes: 0,
                }],
            })
            .await;
        let p = match r {
            Ok(r) => r.into_inner().partitions.into_iter().next(),
            Err(st) => {
                last_error = format!("fetch from {leader}: {}", describe_status(&st));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(p) = p else {
            last_error = format!("fetch from {leader}: no partition in the response");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if let Some(e) = p.error.filter(|e| e.code != 0) {
            last_error = format!("fetch from {leader}: {e:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if p.records.is_empty() {
            assert!(
                offset >= p.high_watermark,
                "{topic}-{partition}: empty fetch at offset {offset} below the high watermark {}",
                p.high_watermark
            );
            return out;
        }
        let before = offset;
        for b in BatchIter::new(p.records) {
            let (h, bytes) = b.unwrap_or_else(|e| {
                panic!("{topic}-{partition}: corrupt batch from {leader} near offset {offset}: {e}")
            });
            if !h.is_control() {
                let records = batch::records(&bytes).expect("decodable batch");
                for r in records {
                    let r = r.expect("decodable record");
                    if r.offset < offset {
                        continue;
                    }
                    if let Some(v) = r.value.and_then(|v| String::from_utf8(v.to_vec()).ok()) {
                        out.push((r.offset, v));
                    }
                }
            }
            offset = offset.max(h.last_offset() + 1);
        }
        assert!(
            offset > before,
            "{topic}-{partition}: fetch at {before} made no progress"
        );
    }
}

/// Checks a partition's log against what was acknowledged: offsets only
/// grow, no value appears twice, every acknowledged value is there exactly
/// at its acknowledged offset, and acknowledged offsets follow produce
/// order. Panics naming the first violation.
pub fn check_acked(partition: u32, log: &[(i64, String)], acked: &[Acked]) {
    for w in log.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "partition {partition}: offsets go backwards in the log: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    let mut at: HashMap<&str, i64> = HashMap::with_capacity(log.len());
    for (o, v) in log {
        if let Some(prev) = at.insert(v.as_str(), *o) {
            panic!("partition {partition}: value {v} is in the log twice, at {prev} and {o}");
        }
    }
    let range = (log.first().map(|r| r.0), log.last().map(|r| r.0));
    for a in acked {
        assert_eq!(
            a.partition, partition,
            "acked record filed under another partition"
        );
        match at.get(a.value.as_str()) {
            Some(&o) => assert_eq!(
                o, a.offset,
                "partition {partition}: acknowledged {} at offset {} but it is at {o}",
                a.value, a.offset
            ),
            None => panic!(
                "partition {partition}: acknowledged record {} (offset {}) was lost; \
                 the log has {} records in offsets {range:?}; at that offset: {:?}",
                a.value,
                a.offset,
                log.len(),
                log.iter().find(|r| r.0 == a.offset)
            ),
        }
    }
    for w in acked.windows(2) {
        assert!(
            w[0].offset < w[1].offset,
            "partition {partition}: {} was acknowledged before {} but at offset {} >= {}",
            w[0].value,
            w[1].value,
            w[0].offset,
            w[1].offset
        );
    }
}

/// Compares the batches below `hw` of one partition across `replicas`:
/// `Err` describes the first difference (or a replica that does not hold
/// every offset below `hw`).
pub fn replicas_converged(
    c: &Cluster,
    topic: &str,
    partition: u32,
    replicas: &[u64],
    hw: i64,
) -> Result<usize, String> {
    let below = |id: u64| -> Vec<Vec<u8>> {
        c.partition_batches(id, topic, partition)
            .into_iter()
            .filter(|b| summarize(b).is_some_and(|s| s.base_offset < hw))
            .collect()
    };
    let Some((&first, rest)) = replicas.split_first() else {
        return Err("no replicas".into());
    };
    let reference = below(first);
    let covers = |bs: &[Vec<u8>]| -> Result<(), String> {
        if hw == 0 {
            return Ok(());
        }
        let start = bs.first().and_then(|b| summarize(b)).map(|s| s.base_offset);
        let end = bs
            .last()
            .and_then(|b| summarize(b))
            .map(|s| s.last_offset + 1);
        if start != Some(0) || end.is_none_or(|e| e < hw) {
            return Err(format!("covers {start:?}..{end:?}, needs 0..{hw}"));
        }
        Ok(())
    };
    covers(&reference).map_err(|e| format!("{topic}-{partition} on broker {first}: {e}"))?;
    for &id in rest {
        let other = below(id);
        covers(&other).map_err(|e| format!("{topic}-{partition} on broker {id}: {e}"))?;
        if other != reference {
            let i = reference
                .iter()
                .zip(&other)
                .position(|(a, b)| a != b)
                .unwrap_or(reference.len().min(other.len()));
            return Err(format!(
                "{topic}-{partition}: brokers {first} and {id} differ at batch #{i} \
                 ({} vs {} batches below hw {hw}): {:?} vs {:?}",
                reference.len(),
                other.len(),
                reference.get(i).and_then(|b| summarize(b)),
                other.get(i).and_then(|b| summarize(b)),
            ));
        }
    }
    Ok(reference.len())
}

/// Polls [`replicas_converged`] for every partition (`hw` per partition)
/// until all agree; the last difference on timeout.
pub async fn wait_replicas_converged(
    c: &Cluster,
    topic: &str,
    replicas: &[u64],
    hw: &[i64],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let diff = hw
            .iter()
            .enumerate()
            .find_map(|(p, &h)| replicas_converged(c, topic, p as u32, replicas, h).err());
        match diff {
            None => return Ok(()),
            Some(e) if Instant::now() > deadline => return Err(e),
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Asserts [`replicas_converged`] for every partition, `hw` per partition.
pub fn assert_replicas_identical(c: &Cluster, topic: &str, replicas: &[u64], hw: &[i64]) {
    for (p, &h) in hw.iter().enumerate() {
        if let Err(e) = replicas_converged(c, topic, p as u32, replicas, h) {
            panic!("replica logs differ: {e}");
        }
    }
}

/// A batch holding `values` (no keys, current timestamps).
pub fn batch_of(values: &[String]) -> Bytes {
    let mut b = BatchBuilder::new(strata_client::now_ms());
    for v in values {
        b.push(strata_client::now_ms(), None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}
