//! Start-up checks: the data directory's lock, the node and cluster
//! identity it was created with, and the hello exchanged with peers (the
//! same cluster, no other broker with this id); plus the pieces `start`
//! builds from the configuration (peer connector, bootstrap membership).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1::peer_client::PeerClient;
use strata_proto::v1::{HelloRequest, HelloResponse};

use super::{Broker, TopicPartition};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::log::checkpoint;
use crate::raft::hardstate::HardStates;
use crate::raft::storage::RaftMeta;
use crate::raft::transport::Connector;
use crate::security::tls::connect_broker;

pub(super) const NODE_META: &str = "node.meta";
pub(super) const CLUSTER_META: &str = "cluster.meta";

/// Peer links connect with the broker's TLS settings (files read again at
/// every connect, so rotated certificates take effect).
pub(super) fn peer_connector(tls: Option<crate::security::tls::TlsSettings>) -> Connector {
    Arc::new(move |addr| crate::security::tls::peer_endpoint(tls.as_ref(), addr))
}

pub(super) fn io_err(what: &str, path: &Path, e: std::io::Error) -> BrokerError {
    BrokerError::Storage(format!("{what} {}: {e}", path.display()))
}

/// Takes an exclusive advisory lock on the data directory.
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("cannot open", &path, e))?;
    // SAFETY: flock on a valid, owned file descriptor has no memory effects.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(BrokerError::Storage(format!(
            "data directory {} is in use by another stratad process",
            dir.display()
        )));
    }
    Ok(f)
}

/// Asks the broker whose peer listener is `addr` who it is.
pub(super) async fn hello(config: &BrokerConfig, addr: &str) -> Option<HelloResponse> {
    let ch = connect_broker(
        config.tls.as_ref(),
        addr,
        Duration::from_millis(500),
        Duration::from_secs(1),
    )
    .await?;
    let req = HelloRequest {
        node_id: config.node_id,
        cluster: config.cluster_fingerprint(),
        peer_addr: config.peer_listen.to_string(),
    };
    Some(PeerClient::new(ch).hello(req).await.ok()?.into_inner())
}

/// The newest term/vote: the broker-wide table is written every cycle, the
/// partition's own file lazily.
pub(super) fn with_hard_state(meta: &mut RaftMeta, hs: &HardStates, key: &TopicPartition) {
    if let Some((term, vote)) = hs.get(key)
        && term >= meta.term
    {
        meta.term = term;
        meta.vote = vote;
    }
}

pub(super) fn bootstrap_meta(config: &BrokerConfig) -> RaftMeta {
    let ids: Vec<u64> = config.initial_cluster.iter().map(|(i, _)| *i).collect();
    let (voters, learners) = ids.split_at(config.controller_voters.min(ids.len()));
    RaftMeta {
        voters: voters.to_vec(),
        learners: learners.to_vec(),
        ..RaftMeta::default()
    }
}

impl Broker {
    /// The initial cluster a data directory was created with may not change.
    pub(super) fn check_cluster_meta(dir: &Path, config: &BrokerConfig) -> Result<()> {
        let path = dir.join(CLUSTER_META);
        let fp = config.cluster_fingerprint();
        match checkpoint::read(&path) {
            Ok(Some(b)) if b == fp.as_bytes() => Ok(()),
            Ok(Some(b)) => Err(BrokerError::InvalidConfig(format!(
                "--initial-cluster (members/voters {fp}) does not match the cluster this data directory belongs to ({})",
                String::from_utf8_lossy(&b)
            ))),
            Ok(None) => checkpoint::write(&path, fp.as_bytes())
                .map_err(|e| io_err("cannot write", &path, e)),
            Err(e) => Err(io_err("cannot read", &path, e)),
        }
    }

    /// Asks the reachable peers who they are: refuses to start with a node
    /// id that a running broker already uses, with a different initial
    /// cluster, or after being removed.
    pub(super) async fn check_peers(config: &BrokerConfig) -> Result<()> {
        let fp = config.cluster_fingerprint();
        let me = config.node_id;
        let own_addr = config.peer_listen.to_string();
        for (id, addr) in &config.initial_cluster {
            if *id == me && *addr == own_addr {
                continue;
            }
            let Some(r) = hello(config, addr).await else {
                continue;
            };
            if r.node_id == me {
                return Err(BrokerError::InvalidConfig(format!(
                    "node id {me} is already in use by the running broker at {addr}"
                )));
            }
            if r.cluster != fp {
                return Err(BrokerError::InvalidConfig(format!(
                    "--initial-cluster mismatch: broker {} at {addr} has members/voters {}, this broker {fp}",
                    r.node_id, r.cluster
                )));
            }
            if r.removed {
                return Err(BrokerError::InvalidConfig(format!(
                    "node {me} was removed from the cluster and cannot rejoin with this id"
                )));
            }
        }
        Ok(())
    }

    pub(super) fn check_node_meta(dir: &Path, node_id: u64) -> Result<()> {
        let path = dir.join(NODE_META);
        match checkpoint::read(&path) {
            Ok(Some(bytes)) => {
                let stored = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok());
                match stored {
                    Some(id) if id == node_id => Ok(()),
                    Some(id) => Err(BrokerError::InvalidConfig(format!(
                        "data directory {} belongs to node {id}, not node {node_id}",
                        dir.display()
                    ))),
                    None => Err(BrokerError::Storage(format!(
                        "{} is not a node id",
                        path.display()
                    ))),
                }
            }
            Ok(None) => checkpoint::write(&path, node_id.to_string().as_bytes())
                .map_err(|e| io_err("cannot write", &path, e)),
            Err(e) => Err(io_err("cannot read", &path, e)),
        }
    }
}
