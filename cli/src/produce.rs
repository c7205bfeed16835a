//! `strata produce TOPIC`: one record per line of standard input.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde::Serialize;
use strata_client::{Acks, Producer, ProducerConfig, ProducerRecord, RecordFuture};
use tokio::io::AsyncBufReadExt;

use crate::Ctx;
use crate::output::{Format, print_json};

/// `--acks` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    All,
    Leader,
    None,
}

impl From<AcksArg> for Acks {
    fn from(a: AcksArg) -> Self {
        match a {
            AcksArg::All => Acks::All,
            AcksArg::Leader => Acks::Leader,
            AcksArg::None => Acks::None,
        }
    }
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key of every record.
    #[arg(long, short = 'k', conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value (a line without
    /// SEP has no key).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Partition to write to (default: by key hash, else sticky).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// When the broker acknowledges.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    pub acks: AcksArg,
}

#[derive(Debug, Default, Serialize)]
struct PartitionSummary {
    first_offset: i64,
    last_offset: i64,
    records: u64,
}

#[derive(Debug, Serialize)]
struct Summary {
    topic: String,
    records: u64,
    partitions: BTreeMap<u32, PartitionSummary>,
}

impl Summary {
    fn add(&mut self, partition: u32, offset: i64) {
        self.records += 1;
        let p = self
            .partitions
            .entry(partition)
            .or_insert(PartitionSummary {
                first_offset: offset,
                last_offset: offset,
                records: 0,
            });
        p.records += 1;
        p.first_offset = p.first_offset.min(offset);
        p.last_offset = p.last_offset.max(offset);
    }
}

/// Splits a line (without its newline) into key and value.
fn split_line(line: &[u8], sep: Option<&[u8]>) -> (Option<Bytes>, Bytes) {
    if let Some(sep) = sep.filter(|s| !s.is_empty())
        && let Some(at) = line.windows(sep.len()).position(|w| w == sep)
    {
        return (
            Some(Bytes::copy_from_slice(&line[..at])),
            Bytes::copy_from_slice(&line[at + sep.len()..]),
        );
    }
    (None, Bytes::copy_from_slice(line))
}

async fn settle(fut: RecordFuture, summary: &mut Summary) -> anyhow::Result<()> {
    let m = fut.await?;
    summary.add(m.partition, m.offset);
    Ok(())
}

pub async fn run(ctx: &Ctx, a: ProduceArgs) -> anyhow::Result<()> {
    let cfg = ProducerConfig {
        acks: a.acks.into(),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(ctx.client.clone(), cfg).await?;
    let topic: Arc<str> = Arc::from(a.topic.as_str());
    // Fail early on an unknown topic or partition.
    let n = producer.partitions(&a.topic).await?;
    if let Some(p) = a.partition
        && p >= n
    {
        anyhow::bail!(strata_client::ClientError::broker(
            strata_client::ErrorCode::UnknownPartition,
            format!("topic '{}' has no partition {p}", a.topic),
        ));
    }
    let fixed_key = a.key.map(Bytes::from);
    let sep = a.key_separator.as_deref().map(str::as_bytes);
    let mut summary = Summary {
        topic: a.topic.clone(),
        records: 0,
        partitions: BTreeMap::new(),
    };
    let mut pending: VecDeque<RecordFuture> = VecDeque::new();
    let mut input = tokio::io::BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let (key, value) = split_line(&line, sep);
        let rec = ProducerRecord {
            topic: Arc::clone(&topic),
            partition: a.partition,
            key: key.or_else(|| fixed_key.clone()),
            value: Some(value),
            headers: Vec::new(),
            timestamp: None,
        };
        pending.push_back(producer.send(rec).await?);
        while pending.front().is_some_and(RecordFuture::is_done) {
            if let Some(f) = pending.pop_front() {
                settle(f, &mut summary).await?;
            }
        }
    }
    producer.flush().await?;
    for f in pending {
        settle(f, &mut summary).await?;
    }
    if ctx.output == Format::Json {
        print_json(&summary)?;
    } else {
        eprintln!("produced {} records to {}", summary.records, summary.topic);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        let (k, v) = split_line(b"k1:a:b", Some(b":"));
        assert_eq!(k.as_deref(), Some(&b"k1"[..]));
        assert_eq!(&v[..], b"a:b");
        let (k, v) = split_line(b"novalue", Some(b"::"));
        assert!(k.is_none());
        assert_eq!(&v[..], b"novalue");
        let (k, v) = split_line(b"x", None);
        assert!(k.is_none());
        assert_eq!(&v[..], b"x");
    }
}
