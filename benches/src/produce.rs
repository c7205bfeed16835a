//! The produce workload: `producers` independent producers (each with its
//! own connection), at max rate or a fixed total rate. A record's latency
//! runs from its intended send time (its slot in the fixed-rate schedule,
//! or the moment `send` was called at max rate) to its batch's
//! acknowledgement, so a stalled broker shows up in the percentiles.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use strata_client::{ClientError, Producer, ProducerConfig, ProducerRecord, RecordFuture};

use crate::payload::Payload;
use crate::report::{Latency, Report, histogram, record};
use crate::{BenchConfig, Limit};

/// Header carrying the send time (µs since the run's base instant) in e2e.
pub(crate) const SEND_TIME_HEADER: &str = "t";

/// What all producer tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Measured records acknowledged so far (progress, e2e).
    pub acked: AtomicU64,
    /// Records sent after the warmup (e2e: what the consumer must see).
    pub sent_measured: AtomicU64,
    pub stop: AtomicBool,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            acked: AtomicU64::new(0),
            sent_measured: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }
}

/// One producer task's share of the run.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub index: usize,
    /// Records to send after the warmup (`None` = until `until`).
    pub records: Option<u64>,
    pub until: Option<Instant>,
    /// Records per second of this task (0 = max).
    pub rate: f64,
    pub measure_from: Instant,
    /// e2e: stamp each record with its send time relative to this.
    pub e2e_base: Option<Instant>,
}

/// What one producer task measured.
#[derive(Debug)]
pub(crate) struct TaskStats {
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<ClientError>,
    pub hist: Histogram<u64>,
    pub last_ack: Option<Instant>,
    /// When the first measured record was due.
    pub first_send: Option<Instant>,
}

struct Sent {
    intended: Instant,
    measured: bool,
    bytes: u32,
    fut: RecordFuture,
}

/// Splits the measured part of the run among `n` tasks.
pub(crate) fn plan(cfg: &BenchConfig, measure_from: Instant) -> Vec<Task> {
    let n = cfg.producers.max(1);
    let per_record = cfg.record_size.max(1) as u64;
    let total = match cfg.limit {
        Limit::Records(r) => Some(r),
        Limit::Bytes(b) => Some(b.div_ceil(per_record)),
        Limit::Duration(_) | Limit::CatchUp => None,
    };
    let until = match cfg.limit {
        Limit::Duration(d) => Some(measure_from + d),
        _ => None,
    };
    (0..n)
        .map(|i| Task {
            index: i,
            records: total.map(|t| t / n as u64 + u64::from((i as u64) < t % n as u64)),
            until,
            rate: cfg.rate as f64 / n as f64,
            measure_from,
            e2e_base: None,
        })
        .collect()
}

fn drain_ready(q: &mut VecDeque<Sent>, st: &mut TaskStats, shared: &Shared, wait_all: bool) {
    let mut acked = 0;
    while let Some(front) = q.front() {
        if !wait_all && !front.fut.is_done() {
            break;
        }
        let Some(s) = q.pop_front() else { break };
        let Some(result) = s.fut.try_result() else {
            q.push_front(s);
            break;
        };
        if !s.measured {
            continue;
        }
        match result {
            Ok(_) => {
                let at = s.fut.completed_at().unwrap_or_else(Instant::now);
                record(&mut st.hist, at.saturating_duration_since(s.intended));
                st.records += 1;
                st.bytes += u64::from(s.bytes);
                st.last_ack = Some(st.last_ack.map_or(at, |l| l.max(at)));
                acked += 1;
            }
            Err(e) => {
                st.errors += 1;
                if st.first_error.is_none() {
                    st.first_error = Some(e);
                }
            }
        }
    }
    if acked > 0 {
        shared.acked.fetch_add(acked, Ordering::Relaxed);
    }
}

/// Runs one producer until its share is sent and acknowledged.
pub(crate) async fn task(
    cfg: BenchConfig,
    t: Task,
    payload: Payload,
    keys: Arc<Vec<Bytes>>,
    partitions: Option<Arc<Vec<u32>>>,
    shared: Arc<Shared>,
) -> anyhow::Result<TaskStats> {
    let pcfg = ProducerConfig {
        linger: cfg.linger,
        batch_size: cfg.batch_size,
        acks: cfg.acks,
        max_in_flight: cfg.max_in_flight,
        idempotent: cfg.idempotent,
        idle_send: cfg.idle_send,
        busy_linger: cfg.busy_linger,
        buffer_memory: (64usize << 20).max(cfg.batch_size * 8),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(cfg.client.clone(), pcfg).await?;
    let topic: Arc<str> = Arc::from(cfg.topic.as_str());
    let per_batch = (cfg.batch_size / (cfg.record_size + 16).max(1)).max(1) as u64;
    let interval = (t.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / t.rate));
    let mut st = TaskStats {
        records: 0,
        bytes: 0,
        errors: 0,
        first_error: None,
        hist: histogram(),
        last_ack: None,
        first_send: None,
    };
    let mut q: VecDeque<Sent> = VecDeque::with_capacity(1 << 16);
    let start = Instant::now();
    let mut i: u64 = 0;
    let mut measured_sent: u64 = 0;
    let seed = (t.index as u64) << 40;
    loop {
        let now = Instant::now();
        let measuring = now >= t.measure_from;
        if shared.stop.load(Ordering::Relaxed)
            || (measuring
                && (t.records.is_some_and(|r| measured_sent >= r)
                    || t.until.is_some_and(|u| now >= u)))
        {
            break;
        }
        let intended = match interval {
            Some(iv) => {
                let at = start + iv.mul_f64(i as f64);
                if at > now + Duration::from_millis(1) {
                    drain_ready(&mut q, &mut st, &shared, false);
                    tokio::time::sleep_until(at.into()).await;
                }
                at
            }
            None => now,
        };
        let measured = intended >= t.measure_from;
        let partition = partitions
            .as_ref()
            .map(|ps| ps[((i / per_batch + t.index as u64) % ps.len() as u64) as usize]);
        let key = (!keys.is_empty()).then(|| keys[(i % keys.len() as u64) as usize].clone());
        let value = payload.value(seed + i);
        let bytes = (value.len() + key.as_ref().map_or(0, Bytes::len)) as u32;
        let headers = match t.e2e_base {
            Some(base) => {
                let us = base.elapsed().as_micros() as u64;
                vec![(
                    SEND_TIME_HEADER.to_owned(),
                    Some(Bytes::copy_from_slice(&us.to_be_bytes())),
                )]
            }
            None => Vec::new(),
        };
        let rec = ProducerRecord {
            topic: Arc::clone(&topic),
            partition,
            key,
            value: Some(value),
            headers,
            timestamp: None,
        };
        let fut = producer.send(rec).await?;
        q.push_back(Sent {
            intended,
            measured,
            bytes,
            fut,
        });
        i += 1;
        if measured {
            if measured_sent == 0 {
                st.first_send = Some(intended);
            }
            measured_sent += 1;
            if t.e2e_base.is_some() {
                shared.sent_measured.fetch_add(1, Ordering::Relaxed);
            }
        }
        if i.is_multiple_of(64) {
            drain_ready(&mut q, &mut st, &shared, false);
        }
    }
    producer.flush().await?;
    drain_ready(&mut q, &mut st, &shared, true);
    if !q.is_empty() {
        anyhow::bail!("{} records were never acknowledged", q.len());
    }
    Ok(st)
}

/// Partitions to write (`None` = let the partitioner choose among all).
pub(crate) async fn check_partitions(cfg: &BenchConfig) -> anyhow::Result<(u32, Option<Vec<u32>>)> {
    let admin = strata_client::Admin::new(cfg.client.clone())?;
    let desc = admin.describe_topic(&cfg.topic).await?;
    let n = desc.partitions.len() as u32;
    if let Some(list) = &cfg.partitions {
        if list.is_empty() {
            anyhow::bail!("--partitions lists no partition");
        }
        if let Some(bad) = list.iter().find(|&&p| p >= n) {
            anyhow::bail!(ClientError::broker(
                strata_client::ErrorCode::UnknownPartition,
                format!("topic '{}' has no partition {bad}", cfg.topic),
            ));
        }
    }
    Ok((n, cfg.partitions.clone()))
}

/// Prints a progress line every second until stopped.
pub(crate) fn progress(
    shared: Arc<Shared>,
    bytes_per_record: u64,
    label: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut last = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let n = shared.acked.load(Ordering::Relaxed);
            let d = n - last.min(n);
            last = n;
            eprintln!(
                "[{:>4.0}s] {label} {n} records, {:.1} MB/s",
                start.elapsed().as_secs_f64(),
                (d * bytes_per_record) as f64 / 1e6
            );
        }
    })
}

/// The produce workload.
pub(crate) async fn run(cfg: &BenchConfig) -> anyhow::Result<Report> {
    let (_, partitions) = check_partitions(cfg).await?;
    let partitions = partitions.map(Arc::new);
    let payload = Payload::new(cfg.record_size);
    let keys: Arc<Vec<Bytes>> = Arc::new(
        (0..cfg.keys)
            .map(|k| Bytes::from(format!("key-{k}")))
            .collect(),
    );
    let shared = Shared::new();
    let measure_from = Instant::now() + cfg.warmup;
    let tasks = plan(cfg, measure_from);
    let progress = cfg
        .progress
        .then(|| progress(Arc::clone(&shared), cfg.record_size as u64, "produced"));
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|t| {
            tokio::spawn(task(
                cfg.clone(),
                t,
                payload.clone(),
                Arc::clone(&keys),
                partitions.clone(),
                Arc::clone(&shared),
            ))
        })
        .collect();
    let mut hist = histogram();
    let (mut records, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut first_error = None;
    let mut last_ack: Option<Instant> = None;
    let mut first_send: Option<Instant> = None;
    let mut failure = None;
    for h in handles {
        match h.await {
            Ok(Ok(st)) => {
                hist.add(&st.hist).ok();
                records += st.records;
                bytes += st.bytes;
                errors += st.errors;
                first_error = first_error.or(st.first_error);
                last_ack = match (last_ack, st.last_ack) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                first_send = match (first_send, st.first_send) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(Err(e)) => {
                shared.stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(anyhow::anyhow!("producer task failed: {e}"));
            }
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if records == 0
        && let Some(e) = first_error
    {
        return Err(e.into());
    }
    let elapsed = crate::report::span(first_send, last_ack);
    let mut r = Report::new(
        "produce",
        &cfg.topic,
        records,
        bytes,
        elapsed,
        Latency::from_micros(&hist),
    );
    r.record_size = cfg.record_size;
    r.producers = cfg.producers;
    r.errors = errors;
    Ok(r)
}
