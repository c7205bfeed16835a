//! strata-bench: the load generator behind `strata bench` (see
//! BENCHMARKS.md). Workloads: `produce` (max rate or fixed `--rate`,
//! per-record send→ack latency measured against the intended send time so
//! that a stall cannot hide: no coordinated omission), `consume` (catch-up
//! reads from `earliest`, throughput only) and `e2e` (producer and consumer
//! together, latency from send to delivery).
//!
//! Reports use MB = 10^6 bytes (`mb_per_sec = bytes / 1e6 / seconds`) and
//! count record payload bytes (key + value).

mod consume;
mod payload;
mod produce;
mod report;

use std::time::Duration;

use strata_client::{Acks, ClientConfig, ProducerConfig};

pub use payload::Payload;
pub use report::{Latency, Report};

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Produce,
    Consume,
    E2e,
    /// Seeks spread over the log (last first): first-record latency of
    /// reads that find nothing cached (cold reads of tiered data).
    Fetch,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Produce => "produce",
            Self::Consume => "consume",
            Self::E2e => "e2e",
            Self::Fetch => "fetch",
        }
    }
}

/// When a run stops (after the warmup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Records(u64),
    Bytes(u64),
    Duration(Duration),
    /// Consume only: everything up to the high watermarks seen at start.
    CatchUp,
}

/// A benchmark run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub client: ClientConfig,
    pub workload: Workload,
    pub topic: String,
    pub limit: Limit,
    /// Value bytes per record.
    pub record_size: usize,
    /// Records per second over all producers; 0 = as fast as possible.
    pub rate: u64,
    pub producers: usize,
    /// Partitions to use; `None` = all of the topic's.
    pub partitions: Option<Vec<u32>>,
    pub acks: Acks,
    pub batch_size: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
    pub idempotent: bool,
    /// Batch by the round trip (`ProducerConfig::idle_send`).
    pub idle_send: bool,
    /// `ProducerConfig::busy_linger`.
    pub busy_linger: Duration,
    /// Distinct keys (0 = keyless records).
    pub keys: u64,
    /// Time run before measuring.
    pub warmup: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

impl BenchConfig {
    /// Defaults of `strata bench` for a workload and topic.
    pub fn new(client: ClientConfig, workload: Workload, topic: impl Into<String>) -> Self {
        Self {
            client,
            workload,
            topic: topic.into(),
            limit: match workload {
                Workload::Consume => Limit::CatchUp,
                Workload::Fetch => Limit::Records(100),
                _ => Limit::Records(1_000_000),
            },
            record_size: 1024,
            rate: 0,
            producers: 1,
            partitions: None,
            acks: Acks::All,
            batch_size: 1 << 20,
            linger: ProducerConfig::default().linger,
            max_in_flight: 5,
            idempotent: true,
            idle_send: ProducerConfig::default().idle_send,
            busy_linger: ProducerConfig::default().busy_linger,
            keys: 0,
            warmup: Duration::ZERO,
            progress: false,
        }
    }
}

/// Runs the configured workload.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<Report> {
    if cfg.producers == 0 {
        anyhow::bail!("--producers must be at least 1");
    }
    match cfg.workload {
        Workload::Produce => produce::run(&cfg).await,
        Workload::Consume => consume::run(&cfg).await,
        Workload::E2e => consume::run_e2e(&cfg).await,
        Workload::Fetch => consume::run_fetch(&cfg).await,
    }
}

/// Parses a size such as `1GB`, `512MiB`, `100k` or `4096`. Decimal units
/// are powers of 1000 (`KB`, `MB`, `GB`, `TB`, also `K`, `M`, `G`, `T`);
/// binary units powers of 1024 (`KiB`, `MiB`, `GiB`, `TiB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("invalid size '{s}'"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("invalid size unit in '{s}'")),
    };
    let v = num * mult;
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(format!("size '{s}' out of range"));
    }
    Ok(v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("100k"), Ok(100_000));
        assert!(parse_size("GB").is_err());
        assert!(parse_size("1XB").is_err());
    }
}
