//! `strata topic create|list|describe|delete|alter`.

use std::collections::{BTreeMap, HashMap};

use clap::{Args, Subcommand};
use serde::Serialize;
use strata_client::{Admin, TopicDescription};

use crate::Ctx;
use crate::output::{Format, Table, join_ids, print_json, usage};

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics.
    List {
        /// Include internal topics (`__consumer_offsets`, ...).
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions (leader, replicas, offsets) and configuration.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Change configuration overrides.
    Alter(AlterArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Number of partitions.
    #[arg(long, short = 'p', default_value_t = 1)]
    pub partitions: u32,
    /// Replicas per partition (default: the broker's default).
    #[arg(long, short = 'r')]
    pub replication_factor: Option<u32>,
    /// Topic configuration `key=value` (repeatable).
    #[arg(long = "config", short = 'c', value_name = "K=V")]
    pub configs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AlterArgs {
    pub name: String,
    /// Set `key=value` (repeatable); `key=` removes the override.
    #[arg(long = "config", short = 'c', value_name = "K=V")]
    pub configs: Vec<String>,
    /// Remove the override of `key` (repeatable).
    #[arg(long = "delete-config", value_name = "K")]
    pub delete: Vec<String>,
    /// Grow the topic to N partitions (a topic never loses partitions).
    #[arg(long, value_name = "N")]
    pub partitions: Option<u32>,
}

/// Parses `k=v` pairs.
pub fn parse_configs(items: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for it in items {
        let Some((k, v)) = it.split_once('=') else {
            return Err(usage(format!("--config expects key=value, got '{it}'")));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(usage(format!("--config expects key=value, got '{it}'")));
        }
        out.insert(k.to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

/// The JSON shape of `topic describe` (DESIGN §8; extra keys allowed).
#[derive(Debug, Serialize)]
pub struct TopicJson {
    pub name: String,
    pub partitions: Vec<PartitionJson>,
    pub config: BTreeMap<String, String>,
    pub replication_factor: u32,
    pub internal: bool,
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct PartitionJson {
    pub partition: u32,
    pub leader: u64,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub remote_start_offset: Option<i64>,
    pub size_bytes: u64,
    pub segments: u32,
    /// Tiered storage: first offset on the leader's disk, the offset after
    /// the last remote segment, remote size and what awaits upload.
    pub local_start_offset: i64,
    pub remote_end_offset: Option<i64>,
    pub remote_bytes: u64,
    pub remote_segments: u32,
    pub upload_lag_bytes: u64,
    /// Compacted topics: the leader's cleaner state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleaner: Option<CleanerJson>,
}

#[derive(Debug, Serialize)]
pub struct CleanerJson {
    pub dirty_ratio: f64,
    pub cleaned_offset: i64,
    pub bytes_reclaimed: u64,
    pub passes: u64,
    pub cleanable_bytes: u64,
}

impl From<&TopicDescription> for TopicJson {
    fn from(t: &TopicDescription) -> Self {
        Self {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| PartitionJson {
                    partition: p.partition,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start_offset: p.log_start_offset,
                    high_watermark: p.high_watermark,
                    log_end_offset: p.log_end_offset,
                    remote_start_offset: p.remote_start_offset,
                    size_bytes: p.size_bytes,
                    segments: p.segments,
                    local_start_offset: p.local_start_offset,
                    remote_end_offset: p.remote_end_offset,
                    remote_bytes: p.remote_bytes,
                    remote_segments: p.remote_segments,
                    upload_lag_bytes: p.upload_lag_bytes,
                    cleaner: p.cleaner.as_ref().map(|c| CleanerJson {
                        dirty_ratio: c.dirty_ratio,
                        cleaned_offset: c.cleaned_offset,
                        bytes_reclaimed: c.bytes_reclaimed,
                        passes: c.passes,
                        cleanable_bytes: c.cleanable_bytes,
                    }),
                })
                .collect(),
            config: t
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            replication_factor: t.replication_factor,
            internal: t.internal,
            id: t.id.clone(),
        }
    }
}

fn print_description(ctx: &Ctx, t: &TopicDescription) -> anyhow::Result<()> {
    let j = TopicJson::from(t);
    if ctx.output == Format::Json {
        return print_json(&j);
    }
    outln!(
        "topic {}  partitions {}  replication factor {}{}",
        j.name,
        j.partitions.len(),
        j.replication_factor,
        if j.internal { "  (internal)" } else { "" }
    );
    let tiered = j
        .config
        .get("remote.storage.enable")
        .is_some_and(|v| v == "true")
        || j.partitions.iter().any(|p| p.remote_start_offset.is_some());
    let mut head = vec![
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "LOG_START",
        "HIGH_WATERMARK",
        "LOG_END",
        "SIZE",
        "SEGMENTS",
    ];
    if tiered {
        head.extend(["LOCAL_START", "REMOTE_START", "REMOTE_SIZE", "UPLOAD_LAG"]);
    }
    let compacted = j.partitions.iter().any(|p| p.cleaner.is_some());
    if compacted {
        head.extend(["DIRTY", "CLEANED_TO", "RECLAIMED"]);
    }
    let mut tbl = Table::new(head);
    for p in &j.partitions {
        let mut row = vec![
            p.partition.to_string(),
            p.leader.to_string(),
            join_ids(&p.replicas),
            join_ids(&p.isr),
            p.log_start_offset.to_string(),
            p.high_watermark.to_string(),
            p.log_end_offset.to_string(),
            human_bytes(p.size_bytes),
            p.segments.to_string(),
        ];
        if tiered {
            row.extend([
                p.local_start_offset.to_string(),
                p.remote_start_offset
                    .map_or_else(|| "-".to_string(), |o| o.to_string()),
                format!(
                    "{} ({} seg)",
                    human_bytes(p.remote_bytes),
                    p.remote_segments
                ),
                human_bytes(p.upload_lag_bytes),
            ]);
        }
        if compacted {
            match &p.cleaner {
                Some(c) => row.extend([
                    format!("{:.0}%", c.dirty_ratio * 100.0),
                    c.cleaned_offset.to_string(),
                    human_bytes(c.bytes_reclaimed),
                ]),
                None => row.extend(["-".into(), "-".into(), "-".into()]),
            }
        }
        tbl.row(row);
    }
    out!("{}", tbl.render());
    if !j.config.is_empty() {
        outln!();
        let mut cfg = Table::new(["CONFIG", "VALUE"]);
        for (k, v) in &j.config {
            cfg.row(vec![k.clone(), v.clone()]);
        }
        out!("{}", cfg.render());
    }
    Ok(())
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub async fn run(ctx: &Ctx, cmd: TopicCmd) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone())?;
    match cmd {
        TopicCmd::Create(a) => {
            let configs = parse_configs(&a.configs)?;
            let t = admin
                .create_topic(
                    &a.name,
                    a.partitions,
                    a.replication_factor.unwrap_or(0),
                    configs,
                )
                .await?;
            if ctx.output == Format::Json {
                return print_json(&TopicJson::from(&t));
            }
            outln!(
                "created topic {} with {} partitions (replication factor {})",
                t.name,
                t.partitions.len(),
                t.replication_factor
            );
        }
        TopicCmd::List { internal } => {
            let mut topics = admin.list_topics(internal).await?;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            if ctx.output == Format::Json {
                #[derive(Serialize)]
                struct T<'a> {
                    name: &'a str,
                    partitions: u32,
                    replication_factor: u32,
                    internal: bool,
                }
                let v: Vec<T<'_>> = topics
                    .iter()
                    .map(|t| T {
                        name: &t.name,
                        partitions: t.partitions,
                        replication_factor: t.replication_factor,
                        internal: t.internal,
                    })
                    .collect();
                return print_json(&v);
            }
            let mut tbl = Table::new(["NAME", "PARTITIONS", "REPLICATION_FACTOR"]);
            for t in &topics {
                tbl.row(vec![
                    t.name.clone(),
                    t.partitions.to_string(),
                    t.replication_factor.to_string(),
                ]);
            }
            tbl.print()?;
        }
        TopicCmd::Describe { name } => {
            let t = admin.describe_topic(&name).await?;
            print_description(ctx, &t)?;
        }
        TopicCmd::Delete { name } => {
            admin.delete_topic(&name).await?;
            if ctx.output == Format::Json {
                return print_json(&serde_json::json!({ "deleted": name }));
            }
            outln!("deleted topic {name}");
        }
        TopicCmd::Alter(a) => {
            let mut set = parse_configs(&a.configs)?;
            for k in a.delete {
                set.insert(k, String::new());
            }
            if set.is_empty() && a.partitions.is_none() {
                return Err(usage(
                    "nothing to alter: give --partitions N, --config k=v or --delete-config k",
                ));
            }
            let mut t = None;
            if let Some(n) = a.partitions {
                t = Some(admin.create_partitions(&a.name, n).await?);
            }
            if !set.is_empty() {
                t = Some(admin.alter_topic_config(&a.name, set).await?);
            }
            if let Some(t) = t {
                print_description(ctx, &t)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse() {
        let c = parse_configs(&["a=1".into(), "b=x=y".into(), "c=".into()]).expect("ok");
        assert_eq!(c.get("b").map(String::as_str), Some("x=y"));
        assert_eq!(c.get("c").map(String::as_str), Some(""));
        assert!(parse_configs(&["nope".into()]).is_err());
        assert!(parse_configs(&["=v".into()]).is_err());
    }

    #[test]
    fn describe_json_has_the_contract_keys() {
        let t = TopicDescription {
            name: "t".into(),
            replication_factor: 1,
            partitions: vec![strata_client::PartitionDescription {
                partition: 0,
                leader: 1,
                replicas: vec![1],
                isr: vec![1],
                log_start_offset: 0,
                high_watermark: 42,
                log_end_offset: 42,
                remote_start_offset: None,
                size_bytes: 10,
                segments: 1,
                ..Default::default()
            }],
            config: [("k".to_string(), "v".to_string())].into_iter().collect(),
            internal: false,
            id: "x".into(),
        };
        let v = serde_json::to_value(TopicJson::from(&t)).expect("json");
        let p = &v["partitions"][0];
        for k in [
            "partition",
            "leader",
            "replicas",
            "isr",
            "log_start_offset",
            "high_watermark",
            "log_end_offset",
            "remote_start_offset",
        ] {
            assert!(p.get(k).is_some(), "missing {k}");
        }
        assert!(p["remote_start_offset"].is_null());
        assert_eq!(v["config"]["k"], "v");
        assert_eq!(v["name"], "t");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
