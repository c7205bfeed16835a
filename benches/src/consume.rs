//! The consume workload (catch-up reads from `earliest` at max rate,
//! throughput only) and the end-to-end workload (producers and a consumer
//! together; latency from each record's send time to its delivery).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_client::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, OffsetSpec, StartOffset,
};

use crate::payload::Payload;
use crate::produce::{self, SEND_TIME_HEADER, Shared};
use crate::report::{Latency, Report, histogram, record};
use crate::{BenchConfig, Limit};

/// A catch-up read that reached the start's high watermarks stops after
/// this long without new records, even if its limit is not reached.
const IDLE_STOP: Duration = Duration::from_secs(2);

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        group: None,
        max_wait: Duration::from_millis(200),
        min_bytes: 1,
        max_bytes: 32 << 20,
        max_partition_bytes: 16 << 20,
        auto_offset_reset: OffsetReset::Earliest,
        prefetch: 4,
        ..ConsumerConfig::default()
    }
}

fn record_bytes(r: &ConsumerRecord) -> u64 {
    (r.value.as_ref().map_or(0, Bytes::len) + r.key.as_ref().map_or(0, Bytes::len)) as u64
}

/// Reads from `earliest` until the limit, or (CatchUp) the high watermarks
/// seen at start.
pub(crate) async fn run(cfg: &BenchConfig) -> anyhow::Result<Report> {
    let (n, list) = produce::check_partitions(cfg).await?;
    let parts: Vec<u32> = list.unwrap_or_else(|| (0..n).collect());
    let admin = Admin::new(cfg.client.clone())?;
    let mut targets: HashMap<u32, i64> = HashMap::new();
    for &p in &parts {
        let o = admin
            .list_offsets(&cfg.topic, p, OffsetSpec::Latest, 0)
            .await?;
        targets.insert(p, o.high_watermark);
    }
    let mut consumer = Consumer::new(cfg.client.clone(), consumer_config())?;
    let mut remaining = 0usize;
    for &p in &parts {
        let start = consumer
            .assign(&cfg.topic, p, StartOffset::Earliest)
            .await?;
        if targets.get(&p).is_some_and(|&hw| hw > start) {
            remaining += 1;
        } else {
            targets.remove(&p);
        }
    }
    let shared = Shared::new();
    let progress = cfg
        .progress
        .then(|| produce::progress(Arc::clone(&shared), cfg.record_size as u64, "consumed"));
    let warm_until = Instant::now() + cfg.warmup;
    let mut measure_from: Option<Instant> = None;
    let mut last_at: Option<Instant> = None;
    let (mut records, mut bytes) = (0u64, 0u64);
    let deadline = match cfg.limit {
        Limit::Duration(d) => Some(warm_until + d),
        _ => None,
    };
    let read_start = Instant::now();
    let result: anyhow::Result<()> = async {
        loop {
            if cfg.limit == Limit::CatchUp && remaining == 0 {
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            let mut wait = deadline.map_or(Duration::from_secs(3600), |d| d - now);
            if remaining == 0 && matches!(cfg.limit, Limit::Records(_) | Limit::Bytes(_)) {
                // Caught up with what existed at start: stop once idle.
                wait = wait.min(IDLE_STOP);
            }
            let batch = match tokio::time::timeout(wait, consumer.next_batch()).await {
                Err(_) => break,
                Ok(None) => break,
                Ok(Some(b)) => b?,
            };
            let now = Instant::now();
            let Some(last) = batch.last() else { continue };
            let (p, last_offset) = (last.partition, last.offset);
            if now >= warm_until {
                measure_from.get_or_insert(read_start.max(warm_until));
                last_at = Some(now);
                records += batch.len() as u64;
                bytes += batch.iter().map(record_bytes).sum::<u64>();
                shared
                    .acked
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            if let Some(&hw) = targets.get(&p)
                && last_offset + 1 >= hw
            {
                targets.remove(&p);
                remaining = remaining.saturating_sub(1);
            }
            match cfg.limit {
                Limit::Records(n) if records >= n => break,
                Limit::Bytes(b) if bytes >= b => break,
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    if let Some(p) = progress {
        p.abort();
    }
    result?;
    let elapsed = crate::report::span(measure_from, last_at);
    let mut r = Report::new(
        "consume",
        &cfg.topic,
        records,
        bytes,
        elapsed,
        Latency::default(),
    );
    r.record_size = cfg.record_size;
    Ok(r)
}

/// Seeks to `--records` offsets spread evenly over each partition, from
/// the last to the first (read-ahead only goes forward, so no sample warms
/// the next), and times each from the seek to its first record.
pub(crate) async fn run_fetch(cfg: &BenchConfig) -> anyhow::Result<Report> {
    let (n, list) = produce::check_partitions(cfg).await?;
    let parts: Vec<u32> = list.unwrap_or_else(|| (0..n).collect());
    let samples = match cfg.limit {
        Limit::Records(r) => r.max(1),
        _ => 100,
    };
    let admin = Admin::new(cfg.client.clone())?;
    let mut plan: Vec<(u32, i64)> = Vec::new();
    for &p in &parts {
        let lo = admin
            .list_offsets(&cfg.topic, p, OffsetSpec::Earliest, 0)
            .await?;
        let hw = lo.high_watermark;
        let start = lo.offset;
        if hw <= start {
            continue;
        }
        let per = samples.div_ceil(parts.len() as u64) as i64;
        for i in (0..per).rev() {
            plan.push((p, start + (hw - start) * i / per));
        }
    }
    if plan.is_empty() {
        anyhow::bail!("topic {} holds no records to fetch", cfg.topic);
    }
    let mut consumer = Consumer::new(cfg.client.clone(), consumer_config())?;
    let mut hist = histogram();
    let (mut records, mut bytes) = (0u64, 0u64);
    let began = Instant::now();
    for (p, offset) in plan {
        let t0 = Instant::now();
        if consumer.position(&cfg.topic, p).is_none() {
            consumer
                .assign(&cfg.topic, p, StartOffset::Offset(offset))
                .await?;
        } else {
            consumer.seek(&cfg.topic, p, offset)?;
        }
        loop {
            let batch = tokio::time::timeout(Duration::from_secs(30), consumer.next_batch())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("no record at offset {offset} of partition {p} in 30 s")
                })?
                .ok_or_else(|| anyhow::anyhow!("the consumer closed"))??;
            // Records before the seek (still in flight) do not count.
            if batch
                .first()
                .is_some_and(|r| r.partition == p && r.offset >= offset)
            {
                record(&mut hist, t0.elapsed());
                records += 1;
                bytes += batch.first().map_or(0, record_bytes);
                break;
            }
        }
    }
    let mut r = Report::new(
        "fetch",
        &cfg.topic,
        records,
        bytes,
        began.elapsed(),
        Latency::from_micros(&hist),
    );
    r.record_size = cfg.record_size;
    Ok(r)
}

/// Producers and a consumer together: latency from send to delivery.
pub(crate) async fn run_e2e(cfg: &BenchConfig) -> anyhow::Result<Report> {
    let (n, list) = produce::check_partitions(cfg).await?;
    let parts: Vec<u32> = list.clone().unwrap_or_else(|| (0..n).collect());
    let mut consumer = Consumer::new(cfg.client.clone(), consumer_config())?;
    for &p in &parts {
        consumer.assign(&cfg.topic, p, StartOffset::Latest).await?;
    }
    let base = Instant::now();
    let measure_from = base + cfg.warmup;
    let shared = Shared::new();
    let payload = Payload::new(cfg.record_size);
    let keys: Arc<Vec<Bytes>> = Arc::new(
        (0..cfg.keys)
            .map(|k| Bytes::from(format!("key-{k}")))
            .collect(),
    );
    let partitions = list.map(Arc::new);
    let handles: Vec<_> = produce::plan(cfg, measure_from)
        .into_iter()
        .map(|mut t| {
            t.e2e_base = Some(base);
            tokio::spawn(produce::task(
                cfg.clone(),
                t,
                payload.clone(),
                Arc::clone(&keys),
                partitions.clone(),
                Arc::clone(&shared),
            ))
        })
        .collect();
    let producers_done = async move {
        let mut err = None;
        for h in handles {
            match h.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    err.get_or_insert(e);
                }
                Err(e) => {
                    err.get_or_insert(anyhow::anyhow!("producer task failed: {e}"));
                }
            }
        }
        err
    };
    tokio::pin!(producers_done);
    let progress = cfg
        .progress
        .then(|| produce::progress(Arc::clone(&shared), cfg.record_size as u64, "delivered"));
    let mut hist = histogram();
    let warm_us = cfg.warmup.as_micros() as u64;
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut produced_all: Option<Instant> = None;
    let mut failure: Option<anyhow::Error> = None;
    loop {
        if let Some(done_at) = produced_all {
            let want = shared.sent_measured.load(Ordering::Relaxed);
            if records >= want || done_at.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        tokio::select! {
            err = &mut producers_done, if produced_all.is_none() => {
                produced_all = Some(Instant::now());
                if let Some(e) = err {
                    failure = Some(e);
                    break;
                }
            }
            batch = consumer.next_batch() => {
                let Some(batch) = batch else { break };
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        failure = Some(e.into());
                        break;
                    }
                };
                let now_us = base.elapsed().as_micros() as u64;
                let now = Instant::now();
                for r in &batch {
                    let Some(sent) = send_time(r) else { continue };
                    if sent < warm_us {
                        continue;
                    }
                    record(&mut hist, Duration::from_micros(now_us.saturating_sub(sent)));
                    records += 1;
                    bytes += record_bytes(r);
                    first.get_or_insert(base + Duration::from_micros(sent));
                    last = Some(now);
                }
                shared.acked.store(records, Ordering::Relaxed);
            }
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(e) = failure {
        return Err(e);
    }
    let elapsed = crate::report::span(first, last);
    let mut r = Report::new(
        "e2e",
        &cfg.topic,
        records,
        bytes,
        elapsed,
        Latency::from_micros(&hist),
    );
    r.record_size = cfg.record_size;
    r.producers = cfg.producers;
    r.errors = shared
        .sent_measured
        .load(Ordering::Relaxed)
        .saturating_sub(records);
    Ok(r)
}

fn send_time(r: &ConsumerRecord) -> Option<u64> {
    let (_, v) = r.headers.iter().find(|(k, _)| k == SEND_TIME_HEADER)?;
    let v = v.as_ref()?;
    let arr: [u8; 8] = v.as_ref().try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_header_roundtrips() {
        let r = ConsumerRecord {
            topic: Arc::from("t"),
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: None,
            value: None,
            headers: vec![(
                SEND_TIME_HEADER.into(),
                Some(Bytes::copy_from_slice(&1234u64.to_be_bytes())),
            )],
        };
        assert_eq!(send_time(&r), Some(1234));
        let mut r2 = r.clone();
        r2.headers.clear();
        assert_eq!(send_time(&r2), None);
    }
}
