//! `strata cluster status|add-broker|remove-broker|transfer-leader` through
//! the Admin RPCs (`ClusterStatus`, `AddBroker`, `RemoveBroker`,
//! `TransferLeader`).

use clap::Subcommand;
use serde::Serialize;
use strata_client::{Admin, ClusterStatusResponse};

use crate::Ctx;
use crate::output::{Format, Table, print_json, usage};

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Brokers, controller, leaderless and under-replicated partitions.
    Status,
    /// Add a broker to the cluster.
    AddBroker {
        /// Id of the new broker (its --node-id, 1 or more).
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Its peer address (host:port of its --peer-listen).
        addr: String,
    },
    /// Remove a broker that hosts no replicas any more.
    RemoveBroker {
        /// Id of the broker to remove.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
    },
    /// Move a partition's leadership to another in-sync replica.
    TransferLeader {
        topic: String,
        partition: u32,
        /// Id of the broker that should lead the partition.
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        to_id: u64,
    },
}

#[derive(Debug, Serialize)]
struct BrokerJson {
    id: u64,
    addr: String,
    alive: bool,
    peer_addr: String,
    controller_voter: bool,
    leader_partitions: u32,
}

/// The JSON shape of `cluster status` (DESIGN §8; extra keys allowed).
#[derive(Debug, Serialize)]
struct StatusJson {
    controller: u64,
    brokers: Vec<BrokerJson>,
    leaderless_partitions: u32,
    under_replicated_partitions: u32,
    cluster_id: String,
    partitions: u32,
}

impl From<ClusterStatusResponse> for StatusJson {
    fn from(r: ClusterStatusResponse) -> Self {
        let mut brokers: Vec<BrokerJson> = r
            .brokers
            .into_iter()
            .map(|b| BrokerJson {
                id: b.id,
                addr: b.addr,
                alive: b.alive,
                peer_addr: b.peer_addr,
                controller_voter: b.controller_voter,
                leader_partitions: b.leader_partitions,
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Self {
            controller: r.controller,
            brokers,
            leaderless_partitions: r.leaderless_partitions,
            under_replicated_partitions: r.under_replicated_partitions,
            cluster_id: r.cluster_id,
            partitions: r.partitions,
        }
    }
}

/// A broker id for display; 0 means none.
fn broker_id(id: u64) -> String {
    if id == 0 {
        "none".into()
    } else {
        id.to_string()
    }
}

/// Rejects a peer address that is not `host:port`.
fn check_peer_addr(addr: &str) -> anyhow::Result<()> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "invalid broker address '{addr}': expected the peer address as host:port"
        )))
    }
}

pub async fn run(ctx: &Ctx, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Status => status(ctx).await,
        ClusterCmd::AddBroker { id, addr } => {
            check_peer_addr(&addr)?;
            Admin::new(ctx.client.clone())?
                .add_broker(id, &addr)
                .await?;
            if ctx.output == Format::Json {
                return print_json(&serde_json::json!({ "added_broker": id, "peer_addr": addr }));
            }
            outln!("added broker {id} (peer address {addr})");
            Ok(())
        }
        ClusterCmd::RemoveBroker { id } => {
            Admin::new(ctx.client.clone())?.remove_broker(id).await?;
            if ctx.output == Format::Json {
                return print_json(&serde_json::json!({ "removed_broker": id }));
            }
            outln!("removed broker {id}");
            Ok(())
        }
        ClusterCmd::TransferLeader {
            topic,
            partition,
            to_id,
        } => {
            let leader = Admin::new(ctx.client.clone())?
                .transfer_leader(&topic, partition, to_id)
                .await?;
            if ctx.output == Format::Json {
                return print_json(&serde_json::json!({
                    "topic": topic,
                    "partition": partition,
                    "requested": to_id,
                    "leader": leader,
                }));
            }
            if leader == to_id {
                outln!("leader of {topic}/{partition} is now broker {leader}");
            } else {
                outln!(
                    "requested leadership of {topic}/{partition} for broker {to_id}; current leader: {}",
                    broker_id(leader)
                );
            }
            Ok(())
        }
    }
}

async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone())?;
    let s = StatusJson::from(admin.cluster_status().await?);
    if ctx.output == Format::Json {
        return print_json(&s);
    }
    outln!(
        "cluster {}  controller {}  partitions {}  leaderless {}  under-replicated {}",
        if s.cluster_id.is_empty() {
            "-"
        } else {
            &s.cluster_id
        },
        broker_id(s.controller),
        s.partitions,
        s.leaderless_partitions,
        s.under_replicated_partitions
    );
    status_table(&s).print()
}

/// One row per broker; CONTROLLER is `leader`, `voter` or `learner`.
fn status_table(s: &StatusJson) -> Table {
    let mut t = Table::new([
        "ID",
        "ADDRESS",
        "PEER_ADDRESS",
        "ALIVE",
        "CONTROLLER",
        "LEADERS",
    ]);
    for b in &s.brokers {
        let role = if b.id == s.controller {
            "leader"
        } else if b.controller_voter {
            "voter"
        } else {
            "learner"
        };
        t.row(vec![
            b.id.to_string(),
            if b.addr.is_empty() {
                "-".into()
            } else {
                b.addr.clone()
            },
            if b.peer_addr.is_empty() {
                "-".into()
            } else {
                b.peer_addr.clone()
            },
            if b.alive { "yes" } else { "no" }.into(),
            role.into(),
            b.leader_partitions.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_client::BrokerStatus;

    fn sample() -> ClusterStatusResponse {
        let b = |id, alive, voter, leaders| BrokerStatus {
            id,
            addr: format!("10.0.0.{id}:9292"),
            alive,
            peer_addr: format!("10.0.0.{id}:9293"),
            controller_voter: voter,
            leader_partitions: leaders,
        };
        ClusterStatusResponse {
            controller: 1,
            brokers: vec![
                b(4, true, false, 0),
                b(2, false, true, 0),
                b(1, true, true, 3),
            ],
            leaderless_partitions: 1,
            under_replicated_partitions: 2,
            cluster_id: "c1".into(),
            partitions: 4,
        }
    }

    #[test]
    fn status_json_has_the_contract_keys() {
        let j = serde_json::to_value(StatusJson::from(sample())).expect("json");
        assert_eq!(j["controller"], 1);
        assert_eq!(j["leaderless_partitions"], 1);
        assert_eq!(j["under_replicated_partitions"], 2);
        assert_eq!(j["cluster_id"], "c1");
        assert_eq!(j["partitions"], 4);
        let ids: Vec<u64> = j["brokers"]
            .as_array()
            .expect("brokers")
            .iter()
            .map(|b| b["id"].as_u64().expect("id"))
            .collect();
        assert_eq!(ids, [1, 2, 4]);
        let b = &j["brokers"][0];
        for k in [
            "id",
            "addr",
            "alive",
            "peer_addr",
            "controller_voter",
            "leader_partitions",
        ] {
            assert!(b.get(k).is_some(), "missing {k}");
        }
        assert_eq!(b["alive"], true);
        assert_eq!(j["brokers"][1]["alive"], false);
    }

    #[test]
    fn status_table_shows_roles_and_leaders() {
        let out = status_table(&StatusJson::from(sample())).render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[0].starts_with("ID"), "{out}");
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[1]),
            ["1", "10.0.0.1:9292", "10.0.0.1:9293", "yes", "leader", "3"]
        );
        assert_eq!(cells(lines[2])[3..], ["no", "voter", "0"]);
        assert_eq!(cells(lines[3])[3..], ["yes", "learner", "0"]);
    }

    #[test]
    fn peer_addresses_are_checked() {
        assert!(check_peer_addr("10.0.0.4:9293").is_ok());
        assert!(check_peer_addr("[::1]:9293").is_ok());
        assert!(check_peer_addr("broker-4.strata:9293").is_ok());
        for bad in ["", "host", ":9293", "host:", "host:0", "host:port"] {
            assert!(check_peer_addr(bad).is_err(), "{bad}");
        }
        assert_eq!(broker_id(0), "none");
    }
}
