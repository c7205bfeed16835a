//! `strata cluster status` (brokers, controller, partition health) and the
//! cluster-membership and TLS commands that this build does not support yet.

use clap::Subcommand;
use serde::Serialize;
use strata_client::{Admin, TopicDescription};

use crate::Ctx;
use crate::output::{Format, Table, print_json, usage};

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Brokers, controller, leaderless and under-replicated partitions.
    Status,
    /// Add a broker to the cluster.
    AddBroker { id: u64, addr: String },
    /// Remove a broker from the cluster.
    RemoveBroker { id: u64 },
    /// Move a partition's leadership to another broker.
    TransferLeader {
        topic: String,
        partition: u32,
        to_id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// Write a development CA plus broker and client certificates.
    Gen {
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        #[arg(long, default_value = "client")]
        client_name: String,
    },
}

#[derive(Debug, Serialize)]
struct BrokerJson {
    id: u64,
    addr: String,
    alive: bool,
}

#[derive(Debug, Serialize)]
struct StatusJson {
    controller: u64,
    brokers: Vec<BrokerJson>,
    leaderless_partitions: u64,
    under_replicated_partitions: u64,
    cluster_id: String,
    topics: usize,
    partitions: u64,
}

/// `(leaderless, under-replicated, total)` partitions of the topics.
fn health(topics: &[TopicDescription]) -> (u64, u64, u64) {
    let mut leaderless = 0;
    let mut under = 0;
    let mut total = 0;
    for t in topics {
        for p in &t.partitions {
            total += 1;
            if p.leader == 0 {
                leaderless += 1;
            }
            if p.isr.len() < p.replicas.len() {
                under += 1;
            }
        }
    }
    (leaderless, under, total)
}

pub async fn run(ctx: &Ctx, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Status => status(ctx).await,
        ClusterCmd::AddBroker { .. }
        | ClusterCmd::RemoveBroker { .. }
        | ClusterCmd::TransferLeader { .. } => Err(usage(
            "cluster membership and leadership changes are not supported by this build yet",
        )),
    }
}

pub fn run_tls(cmd: TlsCmd) -> anyhow::Result<()> {
    match cmd {
        TlsCmd::Gen { .. } => Err(usage("TLS is not supported by this build yet")),
    }
}

async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone())?;
    let meta = admin.metadata(&[]).await?;
    let mut described = Vec::with_capacity(meta.topics.len());
    for t in &meta.topics {
        match admin.describe_topic(&t.name).await {
            Ok(d) => described.push(d),
            // Deleted between the two calls.
            Err(e) if e.code() == Some(strata_client::ErrorCode::UnknownTopic) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (leaderless, under, total) = health(&described);
    let mut brokers: Vec<BrokerJson> = meta
        .brokers
        .iter()
        .map(|b| BrokerJson {
            id: b.id,
            addr: b.addr.clone(),
            alive: b.alive,
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    let s = StatusJson {
        controller: meta.controller_id,
        brokers,
        leaderless_partitions: leaderless,
        under_replicated_partitions: under,
        cluster_id: meta.cluster_id,
        topics: described.len(),
        partitions: total,
    };
    if ctx.output == Format::Json {
        return print_json(&s);
    }
    println!(
        "cluster {}  controller {}  topics {}  partitions {}  leaderless {}  under-replicated {}",
        if s.cluster_id.is_empty() {
            "-"
        } else {
            &s.cluster_id
        },
        s.controller,
        s.topics,
        s.partitions,
        s.leaderless_partitions,
        s.under_replicated_partitions
    );
    let mut t = Table::new(["ID", "ADDRESS", "ALIVE", "CONTROLLER"]);
    for b in &s.brokers {
        t.row(vec![
            b.id.to_string(),
            b.addr.clone(),
            b.alive.to_string(),
            if b.id == s.controller {
                "*".into()
            } else {
                String::new()
            },
        ]);
    }
    t.print()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_client::PartitionDescription;

    #[test]
    fn health_counts() {
        let p = |leader, replicas: Vec<u64>, isr: Vec<u64>| PartitionDescription {
            leader,
            replicas,
            isr,
            ..Default::default()
        };
        let t = TopicDescription {
            partitions: vec![
                p(1, vec![1, 2, 3], vec![1, 2, 3]),
                p(0, vec![1, 2, 3], vec![]),
                p(2, vec![1, 2, 3], vec![2, 3]),
            ],
            ..Default::default()
        };
        assert_eq!(health(&[t]), (1, 2, 3));
        let j = serde_json::to_value(StatusJson {
            controller: 1,
            brokers: vec![BrokerJson {
                id: 1,
                addr: "a".into(),
                alive: true,
            }],
            leaderless_partitions: 0,
            under_replicated_partitions: 0,
            cluster_id: String::new(),
            topics: 0,
            partitions: 0,
        })
        .expect("json");
        for k in [
            "controller",
            "brokers",
            "leaderless_partitions",
            "under_replicated_partitions",
        ] {
            assert!(j.get(k).is_some());
        }
        assert_eq!(j["brokers"][0]["alive"], true);
    }
}
