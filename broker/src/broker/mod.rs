//! The broker: owns the data directory, the Raft event loop, the
//! controller (a Raft group every broker replicates), the partitions this
//! node hosts (one Raft group each) and the group coordinator; the front
//! ends (gRPC services, HTTP) call its operations. This file holds the
//! `Broker`, its lifecycle (start, readiness, shutdown), partition lookup
//! and the authorization check; the rest is split by concern:
//! - `startup`: data-directory lock, node and cluster identity, peer hello;
//! - `replicas`: opening, claiming and removing replicas as the metadata
//!   changes (`reconcile`), and following the metadata log;
//! - `maintenance`: housekeeping (registration, cluster id, the offsets
//!   topic), retention and leadership hand-off;
//! - `cleaner`: the log cleaner pool (compaction of compacted topics);
//! - `topics`: the client-facing cluster operations, each run by the
//!   controller (`cluster::operations`) and awaited here;
//! - `status`: replica states for the status RPCs;
//! - `produce`, `fetch`, `list_offsets`: the data path, one operation
//!   each, called by every front end (gRPC and Kafka);
//! - `groups`: the group operations (offsets, heartbeats);
//! - `users`: access: SASL users and their credentials, ACL changes.

mod cleaner;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
mod maintenance;
pub mod produce;
mod replicas;
pub mod scrape;
mod startup;
mod status;
pub use status::StatesQuery;
mod tiering;
mod topics;
pub mod users;

use std::collections::HashMap;
use std::fs::{self, File};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::cluster::controller::{
    Controller, ControllerReplica, ControllerState, METADATA_DIR, METADATA_TOPIC,
};
use crate::cluster::metadata::ClusterState;
use crate::cluster::operations::OperationsEnv;
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::groups::offsets::GroupCoordinator;
use crate::log::{Log, now_ms};
use crate::partition::Partition;
use crate::raft::RaftTiming;
use crate::raft::directory::Directory;
use crate::raft::hardstate::HardStates;
use crate::raft::node::{Cmd, RaftHandle, RaftLoop, Views};
use crate::raft::snapshot::StateSnapshot;
use crate::raft::storage::RaftMeta;
use crate::raft::transport::Transport;
use startup::{bootstrap_meta, io_err, lock_dir, peer_connector};

/// How long after start a broker waits for its partitions' leaders before
/// it serves anyway.
const READY_WAIT: Duration = Duration::from_secs(10);

pub type TopicPartition = (String, u32);

pub struct Broker {
    config: BrokerConfig,
    controller: Controller,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    groups: Arc<GroupCoordinator>,
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    raft: RaftHandle,
    views: Views,
    pub directory: Arc<Directory>,
    pub transport: Arc<Transport>,
    loop_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Serializes `reconcile` (metadata follower and admin calls).
    reconcile_lock: Mutex<()>,
    hard_states: Arc<HardStates>,
    /// The controller commit index this broker must apply before it serves
    /// (learned from the controller leader after start; MAX = not yet).
    catch_up_to: std::sync::atomic::AtomicU64,
    /// Set once the broker was ready (start-up conditions met).
    was_ready: std::sync::atomic::AtomicBool,
    started: std::time::Instant,
    tier: Arc<crate::tier::Tier>,
    _dir_lock: File,
}

impl Broker {
    /// Opens the data directory, checks the cluster identity against the
    /// peers, starts the Raft loop and the controller group; partitions
    /// open as the metadata arrives.
    pub async fn start(config: BrokerConfig) -> Result<Arc<Self>> {
        crate::metrics::install();
        let dir = config.data_dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create data directory", &dir, e))?;
        let dir_lock = lock_dir(&dir)?;
        Self::check_node_meta(&dir, config.node_id)?;
        Self::check_cluster_meta(&dir, &config)?;
        Self::check_peers(&config).await?;
        let tier = Arc::new(
            crate::tier::Tier::open(config.tier.clone())
                .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?,
        );
        let directory = Arc::new(Directory::default());
        let addrs: HashMap<u64, String> = config
            .initial_cluster
            .iter()
            .filter(|(id, _)| *id != config.node_id)
            .cloned()
            .collect();
        let transport = Arc::new(Transport::new(
            config.node_id,
            config.cluster_fingerprint(),
            tokio::runtime::Handle::current(),
            addrs,
            peer_connector(config.tls.clone()),
        ));
        transport.spawn_keepalive();
        let hard_states =
            Arc::new(HardStates::load(&dir).map_err(|e| BrokerError::Storage(e.to_string()))?);
        let (rloop, raft, views) = RaftLoop::new(
            config.node_id,
            RaftTiming::default(),
            Arc::clone(&transport),
            Arc::clone(&directory),
            Arc::clone(&hard_states),
        );
        let thread = rloop
            .spawn()
            .map_err(|e| BrokerError::Storage(format!("cannot start the Raft loop: {e}")))?;
        // The controller group over the metadata log.
        let mdir = dir.join(METADATA_DIR);
        let (mut log, _) = Log::open(&mdir, crate::cluster::controller::log_config(), now_ms())
            .map_err(|e| BrokerError::Storage(format!("metadata log: {e}")))?;
        // The metadata state as of its last snapshot; the log replays the rest.
        let shared = Arc::new(ControllerState::default());
        let snapshot = StateSnapshot::load(&mdir).map_err(|e| io_err("cannot read", &mdir, e))?;
        if let Some(s) = &snapshot {
            shared
                .restore(s.index, &s.data)
                .map_err(BrokerError::Storage)?;
            if log.raft_last_index() < s.index {
                // Installed from a leader, and the log not reset yet.
                let base = crate::log::RaftBase {
                    index: s.index,
                    term: s.term,
                    next_offset: log.next_offset(),
                };
                log.reset_to(base, now_ms())
                    .map_err(|e| BrokerError::Storage(format!("metadata log: {e}")))?;
            }
        }
        let meta = match RaftMeta::load(&mdir).map_err(|e| io_err("cannot read", &mdir, e))? {
            Some(m) => m,
            None => {
                let m = bootstrap_meta(&config);
                m.store(&mdir)
                    .map_err(|e| io_err("cannot write", &mdir, e))?;
                m
            }
        };
        let cpart = Partition::open(
            METADATA_TOPIC,
            0,
            log,
            meta,
            config.node_id,
            raft.clone(),
            Arc::clone(&directory),
        );
        if let Some(s) = snapshot {
            // Taken when its file was written.
            let taken_ms = std::fs::metadata(mdir.join(crate::raft::snapshot::SNAPSHOT_FILE))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or_else(now_ms, |d| d.as_millis() as i64);
            cpart.core().set_state_snapshot(s, taken_ms);
        }
        raft.send(Cmd::AddGroup {
            replica: Arc::new(ControllerReplica {
                part: Arc::clone(&cpart),
                state: Arc::clone(&shared),
                snapshot_every: config.metadata_snapshot_entries,
            }),
            preferred: None,
        })?;
        let env = OperationsEnv {
            node_id: config.node_id,
            log_defaults: config.log_defaults.clone(),
            tls: config.tls.clone(),
            transport: Arc::clone(&transport),
            directory: Arc::clone(&directory),
            tier: Arc::clone(&tier),
        };
        let controller = Controller::new(shared, cpart, raft.clone(), env);
        directory.set_client_addr(config.node_id, &config.advertise);
        let groups = Arc::new(GroupCoordinator::new(config.offsets_partitions as usize));
        let broker = Arc::new(Self {
            config,
            controller,
            partitions: RwLock::new(HashMap::new()),
            groups,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            raft,
            views,
            directory,
            transport,
            loop_thread: Mutex::new(Some(thread)),
            reconcile_lock: Mutex::new(()),
            hard_states,
            catch_up_to: std::sync::atomic::AtomicU64::new(u64::MAX),
            was_ready: std::sync::atomic::AtomicBool::new(false),
            started: std::time::Instant::now(),
            tier,
            _dir_lock: dir_lock,
        });
        tokio::spawn(Self::follow_metadata(Arc::downgrade(&broker)));
        tokio::spawn(Self::maintenance(Arc::downgrade(&broker)));
        tokio::spawn(Self::group_sessions(Arc::downgrade(&broker)));
        tokio::spawn(crate::tier::uploader::run(Arc::downgrade(&broker)));
        cleaner::start(&broker);
        Ok(broker)
    }

    /// Who sent a client request (certificate, token or anonymous).
    pub fn identify<T>(&self, req: &tonic::Request<T>) -> crate::security::auth::Identity {
        self.config.auth.identify(req)
    }

    /// Lets `who` do `op` on a resource, or answers UNAUTHORIZED.
    pub fn authorize(
        &self,
        who: &crate::security::auth::Identity,
        op: crate::security::auth::Operation,
        resource: crate::security::auth::Resource,
        name: &str,
    ) -> Result<()> {
        self.with_state(|s| self.config.auth.check(&s.acls, who, op, resource, name))
    }

    /// A producer id is for principals that may write somewhere: write on
    /// the cluster, or an allowed write on some topic.
    pub fn authorize_idempotent_write(&self, who: &crate::security::auth::Identity) -> Result<()> {
        use crate::security::auth::{Operation, Permission, Resource};
        let writes_somewhere = self.with_state(|s| {
            s.acls.iter().any(|a| {
                (a.principal == who.principal || a.principal == "*")
                    && a.resource == Resource::Topic
                    && a.permission == Permission::Allow
                    && matches!(a.operation, Operation::Write | Operation::All)
            })
        });
        if writes_somewhere {
            return Ok(());
        }
        self.authorize(who, Operation::Write, Resource::Cluster, "")
    }

    /// Whether `who` may do `op` (for filtering lists).
    pub fn may(
        &self,
        who: &crate::security::auth::Identity,
        op: crate::security::auth::Operation,
        resource: crate::security::auth::Resource,
        name: &str,
    ) -> bool {
        self.with_state(|s| self.config.auth.permits(&s.acls, who, op, resource, name))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn tier(&self) -> &Arc<crate::tier::Tier> {
        &self.tier
    }

    /// The Kafka address this broker advertises (`None`: no Kafka listener).
    pub fn kafka_advertised(&self) -> Option<String> {
        let k = &self.config.kafka;
        k.advertise
            .clone()
            .or_else(|| k.listen.map(|a| a.to_string()))
    }

    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    pub fn groups(&self) -> &Arc<GroupCoordinator> {
        &self.groups
    }

    pub fn cluster_state(&self) -> ClusterState {
        self.controller.state()
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        self.controller.with_state(f)
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn raft_handle(&self) -> &RaftHandle {
        &self.raft
    }

    /// Whether this broker serves: it has caught up with the metadata (it
    /// sees itself registered with its current address), opened every
    /// replica it hosts, and each has a leader (one led here has committed
    /// and applied its whole log). After `READY_WAIT` a broker serves even if
    /// some partitions have no leader yet.
    pub fn ready(&self) -> bool {
        let id = self.config.node_id;
        let addr = &self.config.advertise;
        let target = self.catch_up_to.load(std::sync::atomic::Ordering::Acquire);
        if target == u64::MAX || self.controller.shared.applied() < target {
            return false;
        }
        if !self.with_state(|s| s.brokers.get(&id).is_some_and(|b| &b.addr == addr)) {
            return false;
        }
        if self.started.elapsed() > READY_WAIT
            || self.was_ready.load(std::sync::atomic::Ordering::Acquire)
        {
            // The partition conditions gate start-up only: a replica that
            // loses its leader (or its disk) later does not make the whole
            // broker refuse service.
            return true;
        }
        let hosted = self.with_state(|s| {
            s.topics
                .values()
                .map(|t| t.assignments.iter().filter(|r| r.contains(&id)).count())
                .sum::<usize>()
        });
        let parts = self.all_partitions();
        let ready = parts.len() >= hosted
            && parts.iter().all(|p| {
                let role = p.role();
                role.leader != 0 && (role.leader != id || p.high_watermark() >= p.log_end())
            });
        if ready {
            self.was_ready
                .store(true, std::sync::atomic::Ordering::Release);
        }
        ready
    }

    /// Whether this broker applied the controller's log up to what was
    /// committed when it started: before that, a topic missing from its
    /// view may well exist, and it answers NOT_READY instead of
    /// UNKNOWN_TOPIC.
    pub fn metadata_caught_up(&self) -> bool {
        let target = self.catch_up_to.load(std::sync::atomic::Ordering::Acquire);
        target != u64::MAX && self.controller.shared.applied() >= target
    }

    /// UNKNOWN_TOPIC, or NOT_READY while behind the metadata.
    pub(super) fn unknown_topic(&self, topic: &str) -> BrokerError {
        if self.metadata_caught_up() {
            BrokerError::UnknownTopic(topic.to_owned())
        } else {
            BrokerError::NotReady(format!(
                "catching up with the cluster metadata; topic '{topic}' not known yet"
            ))
        }
    }

    /// UNKNOWN_PARTITION, or NOT_READY while behind the metadata (a
    /// partition count may have grown).
    pub(super) fn unknown_partition(&self, topic: &str, partition: u32) -> BrokerError {
        if self.metadata_caught_up() {
            BrokerError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            }
        } else {
            BrokerError::NotReady(format!(
                "catching up with the cluster metadata; {topic}/{partition} not known yet"
            ))
        }
    }

    pub fn check_ready(&self) -> Result<()> {
        if self.ready() {
            return Ok(());
        }
        let leader = self.controller.leader();
        Err(BrokerError::NotController {
            leader_id: leader,
            leader_addr: self.directory.client_addr(leader),
        })
    }

    /// The hosted partition, or UNKNOWN_TOPIC / UNKNOWN_PARTITION /
    /// NOT_LEADER (hosted elsewhere).
    pub fn partition(&self, topic: &str, p: u32) -> Result<Arc<Partition>> {
        if let Some(part) = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_owned(), p))
        {
            return Ok(Arc::clone(part));
        }
        match self
            .controller
            .with_state(|s| s.topics.get(topic).map(|t| t.partitions))
        {
            None => Err(self.unknown_topic(topic)),
            Some(n) if p < n => {
                let leader = self.directory.leader(topic, p);
                Err(BrokerError::NotLeader {
                    topic: topic.to_owned(),
                    partition: p,
                    leader_id: leader,
                    leader_addr: self.directory.client_addr(leader),
                })
            }
            Some(_) => Err(self.unknown_partition(topic, p)),
        }
    }

    /// The partition if this broker leads it, else NOT_LEADER.
    pub fn leader_partition(&self, topic: &str, p: u32) -> Result<Arc<Partition>> {
        let part = self.partition(topic, p)?;
        if !part.is_leader() {
            return Err(part.not_leader());
        }
        Ok(part)
    }

    /// Hosted partitions of a topic, in partition order.
    pub fn topic_partitions(&self, topic: &str) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, p)| Arc::clone(p))
            .collect();
        v.sort_by_key(|p| p.id());
        v
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Checks that a partition exists (wherever it is hosted).
    pub fn partition_exists(&self, topic: &str, p: u32) -> Result<()> {
        match self.with_state(|s| s.topics.get(topic).map(|t| t.partitions)) {
            None => Err(self.unknown_topic(topic)),
            Some(n) if p < n => Ok(()),
            Some(_) => Err(self.unknown_partition(topic, p)),
        }
    }

    /// Whether `shutdown` has begun.
    pub fn is_stopping(&self) -> bool {
        self.loop_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Stops the Raft loop, then flushes and closes every partition and the
    /// metadata log.
    pub fn shutdown(&self) {
        let _ = self.raft.send(Cmd::Stop);
        if let Some(t) = self
            .loop_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = t.join();
        }
        for p in self.all_partitions() {
            if let Err(e) = p.close() {
                tracing::error!(topic = %p.topic(), partition = p.id(), error = %e, "close failed");
            }
        }
        if let Err(e) = self.controller.part.close() {
            tracing::error!(error = %e, "metadata log close failed");
        }
    }
}
