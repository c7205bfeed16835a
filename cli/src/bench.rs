//! `strata bench produce|consume|e2e TOPIC`: runs the strata-bench load
//! generator and prints its report (one line plus percentiles, or JSON).

use std::io::IsTerminal;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use strata_bench::{BenchConfig, Limit, Workload, parse_size};

use crate::Ctx;
use crate::output::{Format, print_json, usage};
use crate::produce::AcksArg;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Produce at max rate (or --rate); send→ack latency per record.
    Produce(BenchArgs),
    /// Read from earliest at max rate (to the current end unless limited).
    Consume(BenchArgs),
    /// Produce and consume together; send→delivery latency per record.
    E2e(BenchArgs),
    /// Seek to --records offsets spread over the log (default 100) and
    /// time each seek's first record (cold reads of tiered data).
    Fetch(BenchArgs),
}

/// Throughput is reported in MB/s with MB = 10^6 bytes of record payload.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("limit").args(["records", "bytes", "duration"]).multiple(false)))]
pub struct BenchArgs {
    pub topic: String,
    /// Records to send (or read) after the warmup [default: 1000000; consume:
    /// up to the current end].
    #[arg(long)]
    pub records: Option<u64>,
    /// Payload bytes instead of a record count, e.g. 1GB (10^9) or 1GiB.
    #[arg(long, value_parser = parse_size)]
    pub bytes: Option<u64>,
    /// Run time after the warmup, in seconds (or e.g. 90s, 2m).
    #[arg(long, value_parser = parse_secs)]
    pub duration: Option<Duration>,
    /// Value bytes per record.
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    pub record_size: u64,
    /// Records per second over all producers (0 = as fast as possible).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Independent producers (each with its own connection).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Partitions to use: `all` or a list such as 0,1,2.
    #[arg(long, default_value = "all")]
    pub partitions: String,
    /// When the broker acknowledges.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
    /// Batch size in bytes.
    #[arg(long, default_value = "1048576", value_parser = parse_size)]
    pub batch_size: u64,
    /// With --no-idle-send: how long a batch waits for more records (e.g.
    /// 5ms; a bare number is ms).
    #[arg(long, default_value = "5ms", value_parser = parse_millis)]
    pub linger: Duration,
    /// Batches in flight per partition.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// Distinct keys (0 = keyless records, sticky partitioning).
    #[arg(long, default_value_t = 0)]
    pub keys: u64,
    /// Seconds run before measuring.
    #[arg(long, default_value = "0", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Disable idempotent produce.
    #[arg(long)]
    pub no_idempotence: bool,
    /// Batch by a timer (--linger) instead of by the round trip (the
    /// producer's `idle_send`, on by default).
    #[arg(long)]
    pub no_idle_send: bool,
    /// With idle send: the longest a batch waits for the partition's
    /// earlier batches (the producer's `busy_linger`).
    #[arg(long, default_value = "50ms", value_parser = parse_millis)]
    pub busy_linger: Duration,
}

/// Seconds: `10`, `1.5` or a humantime duration (`90s`, `2m`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    if let Ok(v) = s.trim().parse::<f64>() {
        return if v.is_finite() && v >= 0.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("invalid duration '{s}'"))
        };
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration '{s}': {e}"))
}

/// Milliseconds: `5` or a humantime duration (`5ms`, `1s`).
fn parse_millis(s: &str) -> Result<Duration, String> {
    if let Ok(v) = s.trim().parse::<u64>() {
        return Ok(Duration::from_millis(v));
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration '{s}': {e}"))
}

fn parse_partitions(s: &str) -> anyhow::Result<Option<Vec<u32>>> {
    if s.trim() == "all" {
        return Ok(None);
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = part
            .parse::<u32>()
            .map_err(|_| usage(format!("invalid --partitions '{s}': expected all or 0,1,2")))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(usage(format!("invalid --partitions '{s}'")));
    }
    Ok(Some(out))
}

fn config(ctx: &Ctx, workload: Workload, a: BenchArgs) -> anyhow::Result<BenchConfig> {
    let mut c = BenchConfig::new(ctx.client.clone(), workload, a.topic);
    if let Some(n) = a.records {
        c.limit = Limit::Records(n);
    } else if let Some(b) = a.bytes {
        c.limit = Limit::Bytes(b);
    } else if let Some(d) = a.duration {
        c.limit = Limit::Duration(d);
    }
    if a.producers == 0 {
        return Err(usage("--producers must be at least 1"));
    }
    if a.max_in_flight == 0 {
        return Err(usage("--max-in-flight must be at least 1"));
    }
    c.record_size = usize::try_from(a.record_size)
        .ok()
        .filter(|&s| s <= 32 << 20)
        .ok_or_else(|| usage("--record-size must be at most 32 MiB"))?;
    c.batch_size = usize::try_from(a.batch_size)
        .ok()
        .filter(|&s| (1024..=64 << 20).contains(&s))
        .ok_or_else(|| usage("--batch-size must be between 1 KiB and 64 MiB"))?;
    c.rate = a.rate;
    c.producers = a.producers;
    c.partitions = parse_partitions(&a.partitions)?;
    c.acks = a.acks.into();
    c.linger = a.linger;
    c.max_in_flight = a.max_in_flight;
    c.idempotent = !a.no_idempotence;
    c.idle_send = !a.no_idle_send;
    c.busy_linger = a.busy_linger;
    c.keys = a.keys;
    c.warmup = a.warmup;
    c.progress = ctx.output == Format::Table && std::io::stderr().is_terminal();
    Ok(c)
}

pub async fn run(ctx: &Ctx, cmd: BenchCmd) -> anyhow::Result<()> {
    let (workload, args) = match cmd {
        BenchCmd::Produce(a) => (Workload::Produce, a),
        BenchCmd::Consume(a) => (Workload::Consume, a),
        BenchCmd::E2e(a) => (Workload::E2e, a),
        BenchCmd::Fetch(a) => (Workload::Fetch, a),
    };
    let cfg = config(ctx, workload, args)?;
    let report = strata_bench::run(cfg).await?;
    if ctx.output == Format::Json {
        print_json(&report)
    } else {
        outln!("{}", report.to_text());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_parsers() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_secs("-1").is_err());
        assert_eq!(parse_millis("5"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_millis("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_partitions("all").ok(), Some(None));
        assert_eq!(parse_partitions("0, 2,2").ok(), Some(Some(vec![0, 2])));
        assert!(parse_partitions("x").is_err());
    }
}
