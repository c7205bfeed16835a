//! The metadata controller: one Raft group (`__cluster_metadata`, KRaft
//! style) whose entries are batches of `MetadataCommand`s and whose state
//! machine is `ClusterState`. Every broker replicates it: the first
//! brokers of `--initial-cluster` (three by default) vote, the others are
//! learners. Changes are proposed on the controller leader, one at a time:
//! validate against the applied state, propose, wait until applied.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_proto::batch::{self, BatchBuilder};
use tokio::sync::watch;

use super::metadata::{ClusterState, MetadataCommand, TopicMeta};
use super::operations::OperationsEnv;
use crate::error::{BrokerError, Result};
use crate::log::now_ms;
use crate::log::{FsyncPolicy, LogConfig};
use crate::partition::Partition;
use crate::raft::node::{Cmd, RaftHandle};
use crate::raft::replica::{GroupLog, Replica, ReplicaCore};

/// Topic name and directory of the metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
pub const METADATA_DIR: &str = "__cluster_metadata-0";
const APPLY_TIMEOUT: Duration = Duration::from_secs(15);

pub fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 20,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        max_message_bytes: 16 << 20,
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

/// The controller's group as the Raft loop drives it: the metadata log,
/// with the metadata state machine over it. Brokers join it by catching up
/// as learners, so it hears brokers outside its membership.
pub struct ControllerReplica {
    pub part: Arc<Partition>,
    pub state: Arc<ControllerState>,
    /// Applied entries between snapshots of the metadata state.
    pub snapshot_every: u64,
}

impl Replica for ControllerReplica {
    fn core(&self) -> &Arc<ReplicaCore> {
        self.part.core()
    }

    /// The state is rebuilt from the log's base at start; a group rebuilt
    /// after a suspension has applied more: commands must not run twice.
    fn applied_at_start(&self, log: &GroupLog) -> u64 {
        log.log.raft_base().index.max(self.state.applied())
    }

    fn admits_strangers(&self) -> bool {
        true
    }

    fn apply(&self, index: u64, data: &Bytes) {
        self.state.apply_entry(index, data);
    }

    fn snapshot_every(&self) -> Option<u64> {
        Some(self.snapshot_every)
    }

    fn snapshot_state(&self) -> Option<Bytes> {
        self.state.encode()
    }

    fn restore_state(&self, index: u64, state: &Bytes) -> std::result::Result<(), String> {
        self.state.restore(index, state)?;
        tracing::info!(index, "installed the metadata state from a snapshot");
        Ok(())
    }

    fn applied(&self, index: u64) {
        self.state.set_applied(index);
    }

    fn refuse(&self, leader: u64) -> BrokerError {
        BrokerError::NotController {
            leader_id: leader,
            leader_addr: String::new(),
        }
    }
}

/// The replicated state as applied on this broker.
pub struct ControllerState {
    state: RwLock<ClusterState>,
    applied: watch::Sender<u64>,
    /// Counts applied commands that change what brokers host (all but the
    /// remote-manifest updates, which come with every segment upload).
    topology: std::sync::atomic::AtomicU64,
}

impl Default for ControllerState {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            applied: watch::Sender::new(0),
            topology: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl ControllerState {
    /// Applies one committed entry (a batch of JSON commands).
    pub fn apply_entry(&self, index: u64, data: &Bytes) {
        let Ok(records) = batch::records(data) else {
            tracing::error!(index, "undecodable metadata entry");
            return;
        };
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        for r in records {
            match r
                .ok()
                .and_then(|r| r.value)
                .map(|v| serde_json::from_slice::<MetadataCommand>(&v))
            {
                Some(Ok(cmd)) => {
                    if !matches!(
                        cmd,
                        MetadataCommand::AddRemoteSegment { .. }
                            | MetadataCommand::TrimRemote { .. }
                            | MetadataCommand::ReplaceRemoteSegments { .. }
                    ) {
                        self.topology
                            .fetch_add(1, std::sync::atomic::Ordering::Release);
                    }
                    st.apply(cmd)
                }
                _ => tracing::error!(index, "undecodable metadata command"),
            }
        }
    }

    /// The whole state, encoded for a snapshot.
    pub fn encode(&self) -> Option<Bytes> {
        let st = self.state.read().unwrap_or_else(|e| e.into_inner());
        match serde_json::to_vec(&*st) {
            Ok(v) => Some(Bytes::from(v)),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the metadata state");
                None
            }
        }
    }

    /// Replaces the state with a snapshot's, taken at entry `index`.
    pub fn restore(&self, index: u64, data: &[u8]) -> std::result::Result<(), String> {
        let st: ClusterState = serde_json::from_slice(data)
            .map_err(|e| format!("undecodable metadata snapshot: {e}"))?;
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = st;
        self.topology
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        self.set_applied(index);
        Ok(())
    }

    pub fn set_applied(&self, index: u64) {
        self.applied.send_if_modified(|a| {
            let changed = index > *a;
            *a = (*a).max(index);
            changed
        });
    }

    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Changes of hosting-relevant metadata applied so far.
    pub fn topology(&self) -> u64 {
        self.topology.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn state(&self) -> ClusterState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A controller operation, executed on the controller leader (forwarded
/// there as JSON by other brokers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerOp {
    CreateTopic {
        name: String,
        partitions: u32,
        replication_factor: u32,
        configs: std::collections::BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows topic `name` to `count` partitions; `assignments` names the
    /// replicas of the new ones (else they are spread as at creation);
    /// `validate_only` checks without changing anything.
    CreatePartitions {
        name: String,
        count: u32,
        assignments: Option<Vec<Vec<u64>>>,
        validate_only: bool,
    },
    AlterTopicConfig {
        name: String,
        set: std::collections::BTreeMap<String, String>,
    },
    AllocateProducerIds {
        count: i64,
    },
    RegisterBroker {
        id: u64,
        addr: String,
        peer_addr: String,
        kafka_addr: String,
    },
    AddBroker {
        id: u64,
        peer_addr: String,
    },
    RemoveBroker {
        id: u64,
    },
    /// Records an uploaded segment in the partition's remote manifest;
    /// answers 1, or 0 when it does not continue the manifest (another
    /// upload of the range is recorded).
    AddRemoteSegment {
        topic: String,
        topic_id: String,
        partition: u32,
        segment: crate::tier::RemoteSegment,
    },
    /// Moves a partition's remote start forward; answers 1 if it moved.
    TrimRemote {
        topic: String,
        topic_id: String,
        partition: u32,
        start: i64,
    },
    /// Swaps a remote compaction pass's cleaned segments in; answers 1, or
    /// 0 when the manifest moved on meanwhile.
    ReplaceRemoteSegments {
        topic: String,
        topic_id: String,
        partition: u32,
        replacement: crate::tier::RemoteReplacement,
    },
    /// Adds (`add`) or removes ACLs; answers how many changed.
    ChangeAcls {
        add: bool,
        acls: Vec<crate::security::auth::Acl>,
    },
    UpsertUser {
        name: String,
        credentials: Vec<crate::security::scram::ScramCredential>,
    },
    /// Replies `Count(1)` when the user existed, `Count(0)` otherwise.
    DeleteUser {
        name: String,
    },
    /// Removes a user's credentials of `remove`, then sets `upsert`.
    /// Replies `Count(0)`, changing nothing, when a removed credential
    /// does not exist; `Count(1)` otherwise.
    ChangeCredentials {
        name: String,
        upsert: Vec<crate::security::scram::ScramCredential>,
        remove: Vec<crate::security::scram::Mechanism>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    Topic(TopicMeta),
    Unit,
    ProducerIds(i64),
    Count(u32),
    Error { code: i32, message: String },
}

pub struct Controller {
    pub shared: Arc<ControllerState>,
    pub part: Arc<Partition>,
    raft: RaftHandle,
    /// What the operations (`operations`) need of this broker.
    pub(super) env: OperationsEnv,
    /// One change at a time on the leader: check and write do not interleave.
    serial: tokio::sync::Mutex<()>,
}

impl Controller {
    pub fn new(
        shared: Arc<ControllerState>,
        part: Arc<Partition>,
        raft: RaftHandle,
        env: OperationsEnv,
    ) -> Self {
        Self {
            shared,
            part,
            raft,
            env,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    pub fn state(&self) -> ClusterState {
        self.shared.state()
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        self.shared.with_state(f)
    }

    pub fn is_leader(&self) -> bool {
        self.part.is_leader()
    }

    pub fn leader(&self) -> u64 {
        self.part.role().leader
    }

    fn key() -> (String, u32) {
        (METADATA_TOPIC.to_owned(), 0)
    }

    /// Waits until entry `index` of `term` is applied here.
    async fn wait_applied(&self, index: u64, term: u64) -> Result<()> {
        let mut rx = self.shared.subscribe();
        match tokio::time::timeout(APPLY_TIMEOUT, rx.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(BrokerError::ShuttingDown),
            Err(_) => return Err(BrokerError::Timeout("metadata change not committed".into())),
        }
        let t = self.part.with_log(|log, _| log.raft_term(index));
        if t.is_some_and(|t| t != term) {
            return Err(BrokerError::NotController {
                leader_id: self.leader(),
                leader_addr: String::new(),
            });
        }
        Ok(())
    }

    /// On the leader: validates with `check` against the applied state,
    /// then proposes the commands it returns and waits until they apply.
    pub async fn propose<T>(
        &self,
        check: impl FnOnce(&ClusterState) -> Result<(Vec<MetadataCommand>, T)>,
    ) -> Result<T> {
        let _serial = self.serial.lock().await;
        if !self.is_leader() {
            return Err(BrokerError::NotController {
                leader_id: self.leader(),
                leader_addr: String::new(),
            });
        }
        let (cmds, out) = self.shared.with_state(check)?;
        if cmds.is_empty() {
            return Ok(out);
        }
        let now = now_ms();
        let mut b = BatchBuilder::new(now);
        for c in &cmds {
            let v = serde_json::to_vec(c).map_err(|e| BrokerError::Storage(e.to_string()))?;
            b.push(now, None, Some(&v), &[]);
        }
        let data = b.finish().to_vec();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.raft.send(Cmd::ProposeRaw {
            key: Self::key(),
            data,
            reply: tx,
        })?;
        let (index, term) = rx.await.map_err(|_| BrokerError::ShuttingDown)??;
        self.wait_applied(index, term).await?;
        Ok(out)
    }

    /// On the leader: a membership change of the controller group.
    pub async fn conf_change(&self, cc: raft::eraftpb::ConfChange) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.raft.send(Cmd::ConfChange {
            key: Self::key(),
            cc,
            reply: tx,
        })?;
        let (index, term) = rx.await.map_err(|_| BrokerError::ShuttingDown)??;
        self.wait_applied(index, term).await
    }

    /// Controller voters and learners as applied.
    pub fn membership(&self) -> (Vec<u64>, Vec<u64>) {
        self.part
            .with_log(|_, meta| (meta.voters.clone(), meta.learners.clone()))
    }
}
