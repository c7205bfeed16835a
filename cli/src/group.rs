//! `strata group list|describe|reset-offsets|delete`.

use clap::Subcommand;
use serde::Serialize;
use strata_client::{Admin, ResetTo};

use crate::Ctx;
use crate::output::{Format, Table, print_json, usage};

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List consumer groups.
    List,
    /// Committed offsets and lag per partition.
    Describe { group: String },
    /// Set the group's committed offsets of every partition of a topic.
    ResetOffsets {
        group: String,
        #[arg(long, short = 't')]
        topic: String,
        /// earliest, latest or an offset.
        #[arg(long)]
        to: String,
    },
    /// Forget a group's committed offsets.
    Delete { group: String },
}

fn parse_to(s: &str) -> anyhow::Result<ResetTo> {
    Ok(match s {
        "earliest" => ResetTo::Earliest,
        "latest" => ResetTo::Latest,
        n => match n.parse::<i64>() {
            Ok(o) if o >= 0 => ResetTo::Offset(o),
            _ => {
                return Err(usage(format!(
                    "invalid --to '{n}': expected earliest, latest or a non-negative offset"
                )));
            }
        },
    })
}

#[derive(Serialize)]
struct LagJson {
    topic: String,
    partition: u32,
    committed_offset: i64,
    high_watermark: i64,
    lag: i64,
    metadata: String,
}

pub async fn run(ctx: &Ctx, cmd: GroupCmd) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone())?;
    match cmd {
        GroupCmd::List => {
            let mut groups = admin.list_group_listings().await?;
            groups.sort_by(|a, b| a.group.cmp(&b.group));
            if ctx.output == Format::Json {
                let v: Vec<_> = groups
                    .iter()
                    .map(|g| {
                        serde_json::json!({
                            "group": g.group,
                            "state": g.state,
                            "members": g.members,
                            "protocol": g.protocol,
                        })
                    })
                    .collect();
                return print_json(&v);
            }
            let mut t = Table::new(["GROUP", "STATE", "MEMBERS", "PROTOCOL"]);
            for g in groups {
                t.row(vec![
                    g.group,
                    g.state,
                    g.members.to_string(),
                    if g.protocol.is_empty() {
                        "-".into()
                    } else {
                        g.protocol
                    },
                ]);
            }
            t.print()?;
        }
        GroupCmd::Describe { group } => {
            let d = admin.describe_group(&group).await?;
            let mut parts: Vec<LagJson> = d
                .partitions
                .into_iter()
                .map(|p| LagJson {
                    topic: p.topic,
                    partition: p.partition,
                    committed_offset: p.committed_offset,
                    high_watermark: p.high_watermark,
                    lag: p.lag,
                    metadata: p.metadata,
                })
                .collect();
            parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            let total: i64 = parts.iter().map(|p| p.lag.max(0)).sum();
            let members: Vec<serde_json::Value> = d
                .members
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "member_id": m.member_id,
                        "instance_id": m.instance_id,
                        "client": m.client,
                        "member_epoch": m.member_epoch,
                        "assigned": tps(&m.assigned),
                        "revoking": tps(&m.revoking),
                    })
                })
                .collect();
            if ctx.output == Format::Json {
                return print_json(&serde_json::json!({
                    "group": d.group,
                    "state": d.state,
                    "protocol": d.protocol,
                    "group_epoch": d.group_epoch,
                    "assignor": d.assignor,
                    "members": members,
                    "partitions": parts,
                    "total_lag": total,
                }));
            }
            let mut t = Table::new(["TOPIC", "PARTITION", "COMMITTED", "HIGH_WATERMARK", "LAG"]);
            for p in &parts {
                t.row(vec![
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.committed_offset.to_string(),
                    p.high_watermark.to_string(),
                    p.lag.to_string(),
                ]);
            }
            outln!(
                "group {}  state {}  protocol {}  epoch {}  assignor {}  total lag {total}",
                d.group,
                d.state,
                if d.protocol.is_empty() {
                    "-"
                } else {
                    &d.protocol
                },
                d.group_epoch,
                if d.assignor.is_empty() {
                    "-"
                } else {
                    &d.assignor
                }
            );
            if !d.members.is_empty() {
                let mut mt = Table::new(["MEMBER", "INSTANCE", "CLIENT", "EPOCH", "ASSIGNED"]);
                for m in &d.members {
                    mt.row(vec![
                        m.member_id.clone(),
                        if m.instance_id.is_empty() {
                            "-".into()
                        } else {
                            m.instance_id.clone()
                        },
                        m.client.clone(),
                        m.member_epoch.to_string(),
                        tps(&m.assigned).join(","),
                    ]);
                }
                mt.print()?;
            }
            t.print()?;
        }
        GroupCmd::ResetOffsets { group, topic, to } => {
            let to = parse_to(&to)?;
            let done = admin.reset_group_offsets(&group, &topic, to).await?;
            if ctx.output == Format::Json {
                let parts: Vec<_> = done
                    .iter()
                    .map(|(p, o)| serde_json::json!({"partition": p, "offset": o}))
                    .collect();
                return print_json(&serde_json::json!({
                    "group": group,
                    "topic": topic,
                    "partitions": parts,
                }));
            }
            let mut t = Table::new(["TOPIC", "PARTITION", "NEW_OFFSET"]);
            for (p, o) in done {
                t.row(vec![topic.clone(), p.to_string(), o.to_string()]);
            }
            t.print()?;
        }
        GroupCmd::Delete { group } => {
            admin.delete_group(&group).await?;
            if ctx.output == Format::Json {
                return print_json(&serde_json::json!({ "deleted": group }));
            }
            outln!("deleted group {group}");
        }
    }
    Ok(())
}

/// `topic/partition` names.
fn tps(list: &[strata_client::TopicPartitions]) -> Vec<String> {
    list.iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| format!("{}/{p}", tp.topic))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_targets() {
        assert_eq!(parse_to("earliest").ok(), Some(ResetTo::Earliest));
        assert_eq!(parse_to("latest").ok(), Some(ResetTo::Latest));
        assert_eq!(parse_to("12").ok(), Some(ResetTo::Offset(12)));
        assert!(parse_to("-3").is_err());
        assert!(parse_to("x").is_err());
    }
}
