//! The broker: owns the data directory, the Raft event loop, the
//! controller (a Raft group every broker replicates), the partitions this
//! node hosts (one Raft group each) and the group coordinator, and
//! implements the operations the gRPC services expose. Partitions follow
//! the metadata: after every applied change `reconcile` starts groups for
//! new replicas here and removes deleted ones.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use strata_proto::v1::peer_client::PeerClient;
use strata_proto::v1::{HelloRequest, HelloResponse};
use tonic::transport::Channel;

use crate::cluster::controller::{
    Controller, ControllerOp, ControllerReplica, ControllerReply, ControllerState, METADATA_DIR,
    METADATA_TOPIC,
};
use crate::cluster::metadata::{ClusterState, MetadataCommand, TopicMeta};
use crate::cluster::topic_config;
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::groups::offsets::{GroupCoordinator, OFFSETS_TOPIC, OffsetsReplica};
use crate::log::{Log, LogConfig, checkpoint, now_ms};
use crate::partition::Partition;
use crate::raft::RaftTiming;
use crate::raft::directory::Directory;
use crate::raft::hardstate::{HARD_STATE_FILE, HardStates};
use crate::raft::node::{Cmd, RaftHandle, RaftLoop, Views};
use crate::raft::replica::Replica;
use crate::raft::storage::RaftMeta;
use crate::raft::transport::{Connector, Transport};

/// File in each partition directory naming the topic id it belongs to.
const PARTITION_META: &str = crate::log::OWNER_FILE;
const NODE_META: &str = "node.meta";
const CLUSTER_META: &str = "cluster.meta";
const PRODUCER_ID_BLOCK: i64 = 1000;
const MAX_PARTITIONS_PER_TOPIC: u32 = 100_000;
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

/// Peer links connect with the broker's TLS settings (files read again at
/// every connect, so rotated certificates take effect).
fn peer_connector(tls: Option<crate::security::tls::TlsSettings>) -> Connector {
    Arc::new(move |addr| crate::security::tls::peer_endpoint(tls.as_ref(), addr))
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BrokerError {
    BrokerError::Storage(format!("{what} {}: {e}", path.display()))
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    let ok = File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if ok.is_err() {
        b = (now_ms() as u128 ^ u128::from(std::process::id()) << 64).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Takes an exclusive advisory lock on the data directory.
fn lock_dir(dir: &Path) -> Result<File> {
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

fn partition_dir(data: &Path, topic: &str, p: u32) -> PathBuf {
    data.join(format!("{topic}-{p}"))
}

fn offsets_topic_config() -> BTreeMap<String, String> {
    [
        ("fsync".to_string(), "always".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("segment.bytes".to_string(), (64u64 << 20).to_string()),
    ]
    .into()
}

/// Replica sets for `partitions` partitions over `brokers` (sorted ids):
/// consecutive brokers from a rotating start, so that preferred leaders
/// (the first replica) spread evenly.
pub fn assign(brokers: &[u64], partitions: u32, rf: u32, offset: usize) -> Vec<Vec<u64>> {
    let n = brokers.len().max(1);
    (0..partitions as usize)
        .map(|p| {
            (0..rf as usize)
                .map(|r| brokers[(offset + p + r) % n])
                .collect()
        })
        .collect()
}

/// Connects to another broker's listener at `addr` (HOST:PORT); `None` when
/// it cannot be reached within `connect`. Calls on the channel time out
/// after `call`.
pub async fn connect_broker(
    tls: Option<&crate::security::tls::TlsSettings>,
    addr: &str,
    connect: Duration,
    call: Duration,
) -> Option<Channel> {
    let ep = crate::security::tls::peer_endpoint(tls, addr)
        .ok()?
        .connect_timeout(connect)
        .timeout(call);
    // The connect timeout covers TCP only: a listener that is bound but not
    // serving yet would hold a TLS handshake forever.
    tokio::time::timeout(connect * 2, ep.connect())
        .await
        .ok()?
        .ok()
}

/// Asks the broker whose peer listener is `addr` who it is.
async fn hello(config: &BrokerConfig, addr: &str) -> Option<HelloResponse> {
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
fn with_hard_state(meta: &mut RaftMeta, hs: &HardStates, key: &TopicPartition) {
    if let Some((term, vote)) = hs.get(key)
        && term >= meta.term
    {
        meta.term = term;
        meta.vote = vote;
    }
}

fn bootstrap_meta(config: &BrokerConfig) -> RaftMeta {
    let ids: Vec<u64> = config.initial_cluster.iter().map(|(i, _)| *i).collect();
    let (voters, learners) = ids.split_at(config.controller_voters.min(ids.len()));
    RaftMeta {
        voters: voters.to_vec(),
        learners: learners.to_vec(),
        ..RaftMeta::default()
    }
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
        let (log, _) = Log::open(&mdir, crate::cluster::controller::log_config(), now_ms())
            .map_err(|e| BrokerError::Storage(format!("metadata log: {e}")))?;
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
        let shared = Arc::new(ControllerState::default());
        raft.send(Cmd::AddGroup {
            replica: Arc::new(ControllerReplica {
                part: Arc::clone(&cpart),
                state: Arc::clone(&shared),
            }),
            campaign: false,
        })?;
        let controller = Controller::new(shared, cpart, raft.clone());
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
        tokio::spawn(crate::tier::uploader::run(Arc::downgrade(&broker)));
        Ok(broker)
    }

    /// The initial cluster a data directory was created with may not change.
    fn check_cluster_meta(dir: &Path, config: &BrokerConfig) -> Result<()> {
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
    async fn check_peers(config: &BrokerConfig) -> Result<()> {
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

    fn check_node_meta(dir: &Path, node_id: u64) -> Result<()> {
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
    fn unknown_topic(&self, topic: &str) -> BrokerError {
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
    fn unknown_partition(&self, topic: &str, partition: u32) -> BrokerError {
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

    fn log_config_of(&self, meta: &TopicMeta) -> LogConfig {
        topic_config::effective(&self.config.log_defaults, &meta.configs)
            .unwrap_or_else(|_| self.config.log_defaults.clone())
    }

    /// Opens a replica hosted here and starts its Raft group.
    fn open_partition(&self, name: &str, meta: &TopicMeta, p: u32) -> Result<Arc<Partition>> {
        let cfg = self.log_config_of(meta);
        let dir = partition_dir(&self.config.data_dir, name, p);
        Self::claim_dir(&dir, &meta.id)?;
        let (log, report) =
            Log::open(&dir, cfg, now_ms()).map_err(|e| BrokerError::Storage(e.to_string()))?;
        if report.truncated_bytes > 0 || report.dropped_segments > 0 {
            tracing::warn!(topic = %name, partition = p, truncated_bytes = report.truncated_bytes,
                dropped_segments = report.dropped_segments, "recovered a damaged log tail");
        }
        if !report.ignored_files.is_empty() {
            tracing::warn!(topic = %name, partition = p, files = ?report.ignored_files,
                "ignoring unknown files in the partition directory");
        }
        let replicas = meta
            .assignments
            .get(p as usize)
            .cloned()
            .unwrap_or_default();
        let (mut rmeta, fresh) =
            match RaftMeta::load(&dir).map_err(|e| io_err("cannot read", &dir, e))? {
                Some(m) => (m, false),
                None => {
                    let m = RaftMeta {
                        voters: replicas.clone(),
                        ..RaftMeta::default()
                    };
                    m.store_initial(&dir)
                        .map_err(|e| io_err("cannot write", &dir, e))?;
                    (m, true)
                }
            };
        with_hard_state(&mut rmeta, &self.hard_states, &(name.to_owned(), p));
        let part = Partition::open(
            name,
            p,
            log,
            rmeta,
            self.config.node_id,
            self.raft.clone(),
            Arc::clone(&self.directory),
        );
        let replica: Arc<dyn Replica> = if name == OFFSETS_TOPIC {
            Arc::new(OffsetsReplica {
                part: Arc::clone(&part),
                coordinator: Arc::clone(&self.groups),
            })
        } else {
            Arc::clone(&part) as Arc<dyn Replica>
        };
        self.raft.send(Cmd::AddGroup {
            replica,
            campaign: fresh && replicas.first() == Some(&self.config.node_id),
        })?;
        if name == OFFSETS_TOPIC {
            self.groups.register(p, Arc::clone(&part));
        }
        Ok(part)
    }

    /// Makes `dir` belong to topic `id`: a leftover directory of an older
    /// topic with the same name is removed first.
    fn claim_dir(dir: &Path, id: &str) -> Result<()> {
        let meta = dir.join(PARTITION_META);
        match checkpoint::read(&meta) {
            Ok(Some(b)) if b == id.as_bytes() => return Ok(()),
            Ok(Some(_)) => {
                tracing::info!(dir = %dir.display(), "removing the data of a deleted topic with the same name");
                fs::remove_dir_all(dir).map_err(|e| io_err("cannot remove", dir, e))?;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable partition.meta; rewriting it")
            }
        }
        fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
        // Rewritten from the metadata if a crash loses it.
        checkpoint::write_relaxed(&meta, id.as_bytes())
            .map_err(|e| io_err("cannot write", &meta, e))
    }

    /// Removes partition directories of deleted topics (those carrying a
    /// `partition.meta` of a topic id no longer known); leaves anything
    /// else alone with a warning.
    fn remove_stray_dirs(&self, state: &ClusterState) {
        let Ok(entries) = fs::read_dir(&self.config.data_dir) else {
            return;
        };
        let open: std::collections::HashSet<PathBuf> = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|(t, p)| partition_dir(&self.config.data_dir, t, *p))
            .collect();
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if open.contains(&path)
                || name == METADATA_DIR
                || name == NODE_META
                || name == CLUSTER_META
                || name == HARD_STATE_FILE
                || name == ".lock"
            {
                continue;
            }
            let owner = checkpoint::read(&path.join(PARTITION_META)).ok().flatten();
            // Only data of topics the metadata says were deleted goes: a
            // broker that has not caught up yet must not drop live replicas.
            match owner {
                Some(id)
                    if state
                        .deleted_topic_ids
                        .iter()
                        .any(|t| t.as_bytes() == id.as_slice()) =>
                {
                    tracing::info!(dir = %path.display(), "removing data of a deleted topic");
                    if let Err(err) = fs::remove_dir_all(&path) {
                        tracing::warn!(dir = %path.display(), error = %err, "cannot remove");
                    }
                }
                _ => {}
            }
        }
    }

    /// [`Self::reconcile`] from async code: opening thousands of
    /// partitions must not stall the runtime's workers (and with them the
    /// peer links and every RPC).
    fn reconcile_off_runtime(&self) -> Result<()> {
        tokio::task::block_in_place(|| self.reconcile())
    }

    /// Brings the hosted partitions in line with the metadata.
    fn reconcile(&self) -> Result<()> {
        let _serial = self
            .reconcile_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let started = std::time::Instant::now();
        let mut opened = 0usize;
        let state = self.controller.state();
        let me = self.config.node_id;
        for b in state.brokers.values() {
            self.directory.set_client_addr(b.id, &b.addr);
            if !b.peer_addr.is_empty() {
                self.transport.add_peer(b.id, &b.peer_addr);
            }
        }
        for id in &state.removed_brokers {
            self.transport.remove_peer(*id);
        }
        let have: std::collections::HashSet<TopicPartition> = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for (name, meta) in &state.topics {
            for p in 0..meta.partitions {
                let hosted = meta
                    .assignments
                    .get(p as usize)
                    .is_some_and(|r| r.contains(&me));
                let key = (name.clone(), p);
                if !hosted || have.contains(&key) {
                    continue;
                }
                let part = self.open_partition(name, meta, p)?;
                self.partitions
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, part);
                opened += 1;
            }
        }
        if opened > 0 {
            tracing::info!(
                partitions = opened,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "opened replicas assigned to this broker"
            );
        }
        let mut gone = Vec::new();
        {
            let mut map = self.partitions.write().unwrap_or_else(|e| e.into_inner());
            map.retain(|(t, p), part| {
                let keep = state.topics.get(t).is_some_and(|m| {
                    *p < m.partitions
                        && m.assignments
                            .get(*p as usize)
                            .is_some_and(|r| r.contains(&me))
                });
                if !keep {
                    gone.push(Arc::clone(part));
                }
                keep
            });
            for (name, meta) in &state.topics {
                let cfg = self.log_config_of(meta);
                for p in 0..meta.partitions {
                    if let Some(part) = map.get(&(name.clone(), p))
                        && part.config() != cfg
                    {
                        part.set_config(cfg.clone());
                    }
                }
            }
        }
        for part in gone {
            let _ = self.raft.send(Cmd::RemoveGroup {
                key: (part.topic().to_owned(), part.id()),
            });
            let _ = part.close();
            self.directory.forget_topic(part.topic());
            let dir = partition_dir(&self.config.data_dir, part.topic(), part.id());
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted partition");
            }
        }
        self.remove_stray_dirs(&state);
        Ok(())
    }

    /// Follows the applied metadata: reconciles partitions, registers this
    /// broker, and on the controller leader creates the internal topics.
    async fn follow_metadata(me: std::sync::Weak<Self>) {
        let Some(b) = me.upgrade() else { return };
        let mut rx = b.controller.shared.subscribe();
        drop(b);
        // Metadata applied at the last complete reconcile: with thousands
        // of partitions a pass is not free, so it runs only on change (or
        // again after a failure).
        // Remote-manifest updates (one per segment upload) do not count.
        let mut reconciled: Option<u64> = None;
        loop {
            let Some(b) = me.upgrade() else { return };
            let applied = b.controller.shared.topology();
            if reconciled != Some(applied) {
                match b.reconcile_off_runtime() {
                    Ok(()) => reconciled = Some(applied),
                    Err(e) => tracing::error!(error = %e, "cannot open partitions"),
                }
            }
            if b.controller.leader() != 0 {
                b.housekeeping().await;
            }
            drop(b);
            let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
        }
    }

    /// Learns how far the controller log was committed when this broker
    /// started, from the controller leader, so that it does not serve
    /// metadata older than what clients may already have seen.
    async fn learn_catch_up_target(&self) {
        use std::sync::atomic::Ordering;
        if self.catch_up_to.load(Ordering::Acquire) != u64::MAX {
            return;
        }
        let leader = self.controller.leader();
        let target = if leader == self.config.node_id {
            Some(self.controller.part.with_log(|_, m| m.commit))
        } else {
            match self.transport.peer_addr(leader) {
                Some(addr) => hello(&self.config, &addr)
                    .await
                    .map(|r| r.controller_commit),
                None => None,
            }
        };
        if let Some(t) = target {
            self.catch_up_to.store(t, Ordering::Release);
        }
    }

    async fn housekeeping(&self) {
        self.learn_catch_up_target().await;
        let id = self.config.node_id;
        let addr = self.config.advertise.clone();
        let peer_addr = self
            .config
            .initial_cluster
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| self.config.peer_listen.to_string());
        let known = self.with_state(|s| {
            s.brokers
                .get(&id)
                .is_some_and(|b| b.addr == addr && b.peer_addr == peer_addr)
        });
        let removed = self.with_state(|s| s.removed_brokers.contains(&id));
        if removed {
            tracing::error!("this broker was removed from the cluster");
            return;
        }
        if !known {
            let op = ControllerOp::RegisterBroker {
                id,
                addr,
                peer_addr,
            };
            if let Err(e) = self.execute(op).await {
                tracing::debug!(error = %e, "broker registration pending");
            }
        }
        if self.controller.is_leader() && self.with_state(|s| s.cluster_id.is_empty()) {
            let r = self
                .controller
                .propose(|s| {
                    if !s.cluster_id.is_empty() {
                        return Ok((vec![], ()));
                    }
                    Ok((
                        vec![MetadataCommand::InitCluster {
                            cluster_id: random_id(),
                        }],
                        (),
                    ))
                })
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "cluster id not set yet");
            }
        }
        if self.controller.is_leader() && !self.with_state(|s| s.topics.contains_key(OFFSETS_TOPIC))
        {
            let brokers = self.with_state(|s| s.brokers.len());
            let expected = self.config.initial_cluster.len().min(3);
            if brokers >= expected
                && let Err(e) = self.create_offsets_topic().await
            {
                tracing::debug!(error = %e, "offsets topic not created yet");
            }
        }
    }

    async fn create_offsets_topic(&self) -> Result<()> {
        let parts = self.config.offsets_partitions;
        self.controller
            .propose(|s| {
                if s.topics.contains_key(OFFSETS_TOPIC) {
                    return Ok((vec![], ()));
                }
                let ids: Vec<u64> = s.brokers.keys().copied().collect();
                let rf = ids.len().min(3) as u32;
                Ok((
                    vec![MetadataCommand::CreateTopic {
                        name: OFFSETS_TOPIC.into(),
                        meta: TopicMeta {
                            id: random_id(),
                            partitions: parts,
                            replication_factor: rf,
                            assignments: assign(&ids, parts, rf, 0),
                            configs: offsets_topic_config(),
                            internal: true,
                            created_ms: now_ms(),
                        },
                    }],
                    (),
                ))
            })
            .await
    }

    /// Runs a controller operation on the controller leader: here, or
    /// forwarded over the peer link.
    pub async fn execute(&self, op: ControllerOp) -> Result<ControllerReply> {
        if self.controller.is_leader() {
            return self.execute_local(op).await;
        }
        let leader = self.controller.leader();
        let addr = (leader != 0)
            .then(|| self.transport.peer_addr(leader))
            .flatten()
            .ok_or_else(|| BrokerError::NotController {
                leader_id: leader,
                leader_addr: self.directory.client_addr(leader),
            })?;
        let body = serde_json::to_vec(&op).map_err(|e| BrokerError::Storage(e.to_string()))?;
        let ch = connect_broker(
            self.config.tls.as_ref(),
            &addr,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        .ok_or_else(|| BrokerError::NotController {
            leader_id: leader,
            leader_addr: self.directory.client_addr(leader),
        })?;
        let mut client = PeerClient::new(ch);
        let call = client.controller(strata_proto::v1::ControllerRequest {
            request: body.into(),
        });
        // A controller that stops answering (paused, cut off) is replaced
        // within an election: answer then, retriably, instead of waiting
        // out the call's timeout.
        let mut role = self.controller.part.subscribe_role();
        let moved = role.wait_for(|r| r.leader != leader);
        let resp = tokio::select! {
            r = call => r.map_err(|st| BrokerError::Remote {
                code: crate::server::status::code_of(&st),
                message: st.message().to_owned(),
            })?,
            _ = moved => {
                let now = self.controller.leader();
                return Err(BrokerError::NotController {
                    leader_id: now,
                    leader_addr: self.directory.client_addr(now),
                });
            }
        };
        let reply: ControllerReply = serde_json::from_slice(&resp.into_inner().response)
            .map_err(|e| BrokerError::Storage(format!("bad controller reply: {e}")))?;
        match reply {
            ControllerReply::Error { code, message } => Err(BrokerError::Remote {
                code: strata_proto::v1::ErrorCode::try_from(code)
                    .unwrap_or(strata_proto::v1::ErrorCode::Unknown),
                message,
            }),
            r => Ok(r),
        }
    }

    /// Runs a controller operation on this broker, which must lead the
    /// controller group.
    pub async fn execute_local(&self, op: ControllerOp) -> Result<ControllerReply> {
        match op {
            ControllerOp::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => self
                .create_topic_local(&name, partitions, replication_factor, configs)
                .await
                .map(ControllerReply::Topic),
            ControllerOp::DeleteTopic { name } => {
                let remote = self
                    .controller
                    .propose(|s| {
                        let Some(t) = s.topics.get(&name) else {
                            return Err(BrokerError::UnknownTopic(name.clone()));
                        };
                        let remote: Vec<crate::tier::RemoteLoc> = s
                            .remote
                            .get(&name)
                            .map(|m| {
                                m.keys()
                                    .map(|p| crate::tier::RemoteLoc {
                                        topic: name.clone(),
                                        topic_id: t.id.clone(),
                                        partition: *p,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        Ok((
                            vec![MetadataCommand::DeleteTopic { name: name.clone() }],
                            remote,
                        ))
                    })
                    .await?;
                // The topic's objects go with it (in the background).
                if !remote.is_empty() {
                    let tier = Arc::clone(&self.tier);
                    tokio::spawn(async move {
                        for loc in remote {
                            if let Err(e) = tier.delete_partition(&loc).await {
                                tracing::warn!(topic = %loc.topic, partition = loc.partition,
                                    error = %e, "objects of a deleted topic not deleted");
                            }
                        }
                    });
                }
                Ok(ControllerReply::Unit)
            }
            ControllerOp::AlterTopicConfig { name, set } => {
                let defaults = self.config.log_defaults.clone();
                self.controller
                    .propose(|s| {
                        let Some(t) = s.topics.get(&name) else {
                            return Err(BrokerError::UnknownTopic(name.clone()));
                        };
                        let mut merged = t.configs.clone();
                        for (k, v) in &set {
                            if v.is_empty() {
                                if !topic_config::KEYS.contains(&k.as_str()) {
                                    return Err(BrokerError::InvalidConfig(format!(
                                        "unknown topic config '{k}'"
                                    )));
                                }
                                merged.remove(k);
                            } else {
                                merged.insert(k.clone(), v.clone());
                            }
                        }
                        let cfg = topic_config::effective(&defaults, &merged)?;
                        let has_remote = s
                            .remote
                            .get(&name)
                            .is_some_and(|m| m.values().any(|m| !m.segments.is_empty()));
                        if !cfg.remote_storage && has_remote {
                            return Err(BrokerError::InvalidConfig(
                                "remote.storage.enable cannot be turned off while object \
                                 storage holds data of the topic"
                                    .into(),
                            ));
                        }
                        Ok((
                            vec![MetadataCommand::AlterTopicConfig {
                                name: name.clone(),
                                set: set.clone(),
                            }],
                            (),
                        ))
                    })
                    .await?;
                Ok(ControllerReply::Unit)
            }
            ControllerOp::ChangeAcls { add, acls } => {
                let changed = self
                    .controller
                    .propose(|s| {
                        let changed: Vec<crate::security::auth::Acl> = acls
                            .iter()
                            .filter(|a| s.acls.contains(a) != add)
                            .cloned()
                            .collect();
                        let n = changed.len() as u32;
                        if changed.is_empty() {
                            return Ok((vec![], n));
                        }
                        let cmd = if add {
                            MetadataCommand::AddAcls { acls: changed }
                        } else {
                            MetadataCommand::RemoveAcls { acls: changed }
                        };
                        Ok((vec![cmd], n))
                    })
                    .await?;
                Ok(ControllerReply::Count(changed))
            }
            ControllerOp::AddRemoteSegment {
                topic,
                topic_id,
                partition,
                segment,
            } => {
                let cmd = MetadataCommand::AddRemoteSegment {
                    topic: topic.clone(),
                    topic_id: topic_id.clone(),
                    partition,
                    segment: segment.clone(),
                };
                self.propose_manifest_change(&topic, &topic_id, partition, cmd, |m| {
                    m.append(segment.clone())
                })
                .await
            }
            ControllerOp::TrimRemote {
                topic,
                topic_id,
                partition,
                start,
            } => {
                let cmd = MetadataCommand::TrimRemote {
                    topic: topic.clone(),
                    topic_id: topic_id.clone(),
                    partition,
                    start,
                };
                self.propose_manifest_change(&topic, &topic_id, partition, cmd, |m| {
                    let before = m.start;
                    m.trim(start);
                    m.start != before
                })
                .await
            }
            ControllerOp::AllocateProducerIds { count } => {
                let start = self
                    .controller
                    .propose(|s| {
                        Ok((
                            vec![MetadataCommand::AllocateProducerIds { count }],
                            s.next_producer_id,
                        ))
                    })
                    .await?;
                Ok(ControllerReply::ProducerIds(start))
            }
            ControllerOp::RegisterBroker {
                id,
                addr,
                peer_addr,
            } => {
                self.controller
                    .propose(|s| {
                        if s.removed_brokers.contains(&id) {
                            return Err(BrokerError::UnknownBroker(id));
                        }
                        Ok((
                            vec![MetadataCommand::RegisterBroker {
                                id,
                                addr: addr.clone(),
                                peer_addr: peer_addr.clone(),
                            }],
                            (),
                        ))
                    })
                    .await?;
                Ok(ControllerReply::Unit)
            }
            ControllerOp::AddBroker { id, peer_addr } => {
                if self.with_state(|s| s.removed_brokers.contains(&id)) {
                    return Err(BrokerError::InvalidRequest(format!(
                        "broker {id} was removed; a removed id cannot come back"
                    )));
                }
                let (voters, learners) = self.controller.membership();
                if !voters.contains(&id) && !learners.contains(&id) {
                    self.transport.add_peer(id, &peer_addr);
                    let mut cc = raft::eraftpb::ConfChange::default();
                    cc.set_change_type(raft::eraftpb::ConfChangeType::AddLearnerNode);
                    cc.node_id = id;
                    self.controller.conf_change(cc).await?;
                }
                let addr_known = self.with_state(|s| s.brokers.contains_key(&id));
                if !addr_known {
                    self.controller
                        .propose(|_| {
                            Ok((
                                vec![MetadataCommand::RegisterBroker {
                                    id,
                                    addr: String::new(),
                                    peer_addr: peer_addr.clone(),
                                }],
                                (),
                            ))
                        })
                        .await?;
                }
                Ok(ControllerReply::Unit)
            }
            ControllerOp::RemoveBroker { id } => {
                if self.with_state(|s| s.removed_brokers.contains(&id)) {
                    return Ok(ControllerReply::Unit);
                }
                let (voters, learners) = self.controller.membership();
                if !voters.contains(&id) && !learners.contains(&id) {
                    return Err(BrokerError::UnknownBroker(id));
                }
                if id == self.config.node_id {
                    return Err(BrokerError::InvalidRequest(
                        "the controller leader cannot remove itself; transfer the controller first"
                            .into(),
                    ));
                }
                let hosting: Vec<String> = self.with_state(|s| {
                    s.topics
                        .iter()
                        .filter(|(_, t)| t.assignments.iter().any(|r| r.contains(&id)))
                        .map(|(n, _)| n.clone())
                        .collect()
                });
                if !hosting.is_empty() {
                    return Err(BrokerError::InvalidRequest(format!(
                        "broker {id} still hosts replicas of {}; reassign or delete them first",
                        hosting.join(", ")
                    )));
                }
                let mut cc = raft::eraftpb::ConfChange::default();
                cc.set_change_type(raft::eraftpb::ConfChangeType::RemoveNode);
                cc.node_id = id;
                self.controller.conf_change(cc).await?;
                self.controller
                    .propose(|_| Ok((vec![MetadataCommand::UnregisterBroker { id }], ())))
                    .await?;
                Ok(ControllerReply::Unit)
            }
        }
    }

    /// On the controller leader: proposes `cmd`, a change of one
    /// partition's remote manifest, if `change` (the same change tried on a
    /// copy of the manifest) says it changes anything. Answers 1 or 0.
    async fn propose_manifest_change(
        &self,
        topic: &str,
        topic_id: &str,
        partition: u32,
        cmd: MetadataCommand,
        change: impl FnOnce(&mut crate::tier::RemoteManifest) -> bool,
    ) -> Result<ControllerReply> {
        let n = self
            .controller
            .propose(|s| {
                if !s.topic_is(topic, topic_id) {
                    return Err(BrokerError::UnknownTopic(topic.to_owned()));
                }
                let mut m = s.manifest(topic, partition).cloned().unwrap_or_default();
                Ok(if change(&mut m) {
                    (vec![cmd], 1)
                } else {
                    (vec![], 0)
                })
            })
            .await?;
        Ok(ControllerReply::Count(n))
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

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        topic_config::validate_topic_name(name, false)?;
        let op = ControllerOp::CreateTopic {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs,
        };
        let meta = match self.execute(op).await? {
            ControllerReply::Topic(m) => m,
            _ => return Err(BrokerError::Storage("unexpected controller reply".into())),
        };
        self.wait_applied_here(|s| s.topics.contains_key(name))
            .await;
        self.reconcile_off_runtime()?;
        // Answer once every partition has elected a leader, so that a
        // produce right after creation finds one.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (0..meta.partitions).any(|p| self.directory.leader(name, p) == 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(meta)
    }

    /// Waits (briefly) until this broker's metadata satisfies `f`.
    async fn wait_applied_here(&self, f: impl Fn(&ClusterState) -> bool) {
        let mut rx = self.controller.shared.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.with_state(&f) {
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    async fn create_topic_local(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        topic_config::validate_topic_name(name, false)?;
        if partitions == 0 {
            return Err(BrokerError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        if partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(BrokerError::InvalidPartitions(format!(
                "{partitions} partitions exceed the limit of {MAX_PARTITIONS_PER_TOPIC}"
            )));
        }
        topic_config::effective(&self.config.log_defaults, &configs)?;
        self.controller
            .propose(|s| {
                if s.topics.contains_key(name) {
                    return Err(BrokerError::TopicExists(name.to_owned()));
                }
                let ids: Vec<u64> = s.brokers.keys().copied().collect();
                let brokers = ids.len().max(1) as u32;
                let rf = if replication_factor == 0 {
                    brokers.min(3)
                } else {
                    replication_factor
                };
                if rf > brokers {
                    return Err(BrokerError::InvalidReplicationFactor(format!(
                        "replication factor {rf} exceeds the {brokers} available broker(s)"
                    )));
                }
                // Rotate the first preferred leader by topic count so that
                // single-partition topics spread too.
                let offset = s.topics.len();
                let meta = TopicMeta {
                    id: random_id(),
                    partitions,
                    replication_factor: rf,
                    assignments: assign(&ids, partitions, rf, offset),
                    configs: configs.clone(),
                    internal: false,
                    created_ms: now_ms(),
                };
                Ok((
                    vec![MetadataCommand::CreateTopic {
                        name: name.to_owned(),
                        meta: meta.clone(),
                    }],
                    meta,
                ))
            })
            .await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        if name.starts_with("__") {
            return Err(BrokerError::InvalidTopic {
                name: name.into(),
                why: "internal topics cannot be deleted".into(),
            });
        }
        self.execute(ControllerOp::DeleteTopic {
            name: name.to_owned(),
        })
        .await?;
        self.wait_applied_here(|s| !s.topics.contains_key(name))
            .await;
        self.reconcile_off_runtime()?;
        if let Err(e) = self.groups.forget_topic(name).await {
            tracing::debug!(error = %e, "group offsets of the deleted topic are kept");
        }
        Ok(())
    }

    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
    ) -> Result<()> {
        if set.is_empty() {
            return Err(BrokerError::InvalidRequest("no config to set".into()));
        }
        self.execute(ControllerOp::AlterTopicConfig {
            name: name.to_owned(),
            set: set.clone(),
        })
        .await?;
        self.wait_applied_here(|s| {
            s.topics.get(name).is_some_and(|t| {
                set.iter().all(|(k, v)| {
                    if v.is_empty() {
                        !t.configs.contains_key(k)
                    } else {
                        t.configs.get(k) == Some(v)
                    }
                })
            })
        })
        .await;
        self.reconcile_off_runtime()
    }

    /// The effective configuration of a topic as strings.
    pub fn topic_config(&self, meta: &TopicMeta) -> BTreeMap<String, String> {
        topic_config::render(&self.log_config_of(meta))
    }

    /// Hands out a producer id, reserving blocks through the controller.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let start = match self
                .execute(ControllerOp::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                })
                .await?
            {
                ControllerReply::ProducerIds(s) => s,
                _ => return Err(BrokerError::Storage("unexpected controller reply".into())),
            };
            *ids = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Moves a partition's leadership (this broker must lead it).
    pub async fn transfer_leader(&self, topic: &str, p: u32, to: u64) -> Result<u64> {
        let part = self.leader_partition(topic, p)?;
        let replicas = self.with_state(|s| {
            s.topics
                .get(topic)
                .and_then(|t| t.assignments.get(p as usize).cloned())
                .unwrap_or_default()
        });
        if !replicas.contains(&to) {
            return Err(BrokerError::InvalidRequest(format!(
                "broker {to} holds no replica of {topic}/{p} (replicas: {replicas:?})"
            )));
        }
        if to == self.config.node_id {
            return Ok(to);
        }
        let mut rx = part.subscribe_role();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.raft.send(Cmd::TransferLeader {
                key: (topic.to_owned(), p),
                to,
            })?;
            let wait =
                tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|r| r.leader == to));
            if let Ok(Ok(_)) = wait.await {
                return Ok(to);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::Timeout(format!(
                    "broker {to} did not take over {topic}/{p}; is it in sync?"
                )));
            }
        }
    }

    /// Hands every leadership this broker holds to an in-sync follower and
    /// waits (bounded) until they moved.
    pub async fn hand_off_leaderships(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let leading = self
                .all_partitions()
                .iter()
                .chain(std::iter::once(&self.controller.part))
                .filter(|p| p.is_leader())
                .filter(|p| p.with_log(|_, m| m.voters.iter().any(|v| *v != self.config.node_id)))
                .count();
            if leading == 0 || tokio::time::Instant::now() >= deadline {
                if leading > 0 {
                    tracing::warn!(leading, "stopping while still leading partitions");
                }
                return;
            }
            let _ = self.raft.send(Cmd::TransferAll);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Retention and time-based rolls, periodically.
    async fn maintenance(me: std::sync::Weak<Self>) {
        loop {
            let interval = match me.upgrade() {
                Some(b) => b.config.retention_check_interval,
                None => return,
            };
            tokio::time::sleep(interval).await;
            let Some(b) = me.upgrade() else { return };
            let parts = b.all_partitions();
            for p in parts {
                let remote = b.with_state(|s| {
                    s.manifest(p.topic(), p.id())
                        .filter(|m| m.start > 0 || !m.segments.is_empty())
                        .map(|m| (m.start, m.end()))
                });
                match p.maintain(remote) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(topic = %p.topic(), partition = p.id(), segments = n, "retention deleted segments")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %p.topic(), partition = p.id(), error = %e, "maintenance failed")
                    }
                }
            }
        }
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
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

    /// States of the partitions this broker leads (for status RPCs).
    pub fn local_replica_states(&self) -> Vec<strata_proto::v1::ReplicaState> {
        let views = self.views.read().unwrap_or_else(|e| e.into_inner()).clone();
        let parts = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = Vec::new();
        for (key, v) in views {
            if v.role.leader != self.config.node_id {
                continue;
            }
            let Some(part) = parts.get(&key) else {
                continue;
            };
            let o = part.offsets();
            let upload_lag_bytes = if part.config().remote_storage {
                let end = self.with_state(|s| {
                    s.manifest(&key.0, key.1)
                        .filter(|m| !m.segments.is_empty() || m.start > 0)
                        .map_or(i64::MIN, |m| m.end())
                });
                part.with_log(|log, _| log.bytes_from(end))
            } else {
                0
            };
            // A quiesced group's view is not refreshed: drop silent brokers.
            let me = self.config.node_id;
            let isr: Vec<u64> = v
                .isr
                .iter()
                .copied()
                .filter(|id| *id == me || self.directory.alive(*id))
                .collect();
            out.push(strata_proto::v1::ReplicaState {
                topic: key.0.clone(),
                partition: key.1,
                leader: v.role.leader,
                term: v.role.term,
                isr,
                log_start_offset: o.log_start,
                high_watermark: o.high_watermark,
                log_end_offset: o.log_end,
                size_bytes: o.size_bytes,
                segments: o.segments as u32,
                upload_lag_bytes,
            });
        }
        out
    }

    /// Partition states from every reachable broker (each reports what it
    /// leads; the highest term wins) and the set of brokers that answered.
    pub async fn replica_states(
        &self,
    ) -> (
        HashMap<(String, u32), strata_proto::v1::ReplicaState>,
        std::collections::HashSet<u64>,
    ) {
        let mut states: HashMap<(String, u32), strata_proto::v1::ReplicaState> = HashMap::new();
        let mut alive = std::collections::HashSet::new();
        alive.insert(self.config.node_id);
        let mut merge = |list: Vec<strata_proto::v1::ReplicaState>| {
            for st in list {
                let key = (st.topic.clone(), st.partition);
                if states.get(&key).is_none_or(|o| o.term < st.term) {
                    states.insert(key, st);
                }
            }
        };
        merge(self.local_replica_states());
        let peers: Vec<(u64, String)> = self
            .transport
            .peer_ids()
            .into_iter()
            .filter_map(|id| self.transport.peer_addr(id).map(|a| (id, a)))
            .collect();
        let tls = &self.config.tls;
        let calls = peers.into_iter().map(|(id, addr)| async move {
            let ch = connect_broker(
                tls.as_ref(),
                &addr,
                Duration::from_millis(500),
                Duration::from_secs(2),
            )
            .await?;
            let r = PeerClient::new(ch)
                .max_decoding_message_size(256 << 20)
                .replica_states(strata_proto::v1::ReplicaStatesRequest {})
                .await
                .ok()?;
            Some((id, r.into_inner()))
        });
        for (id, r) in futures::future::join_all(calls).await.into_iter().flatten() {
            alive.insert(id);
            merge(r.replicas);
        }
        (states, alive)
    }

    /// Checks that a partition exists (wherever it is hosted).
    pub fn partition_exists(&self, topic: &str, p: u32) -> Result<()> {
        match self.with_state(|s| s.topics.get(topic).map(|t| t.partitions)) {
            None => Err(self.unknown_topic(topic)),
            Some(n) if p < n => Ok(()),
            Some(_) => Err(self.unknown_partition(topic, p)),
        }
    }
}
