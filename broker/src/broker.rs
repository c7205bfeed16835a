//! The broker: owns the data directory, the controller, the partitions this
//! node hosts and the group coordinator, and implements the operations the
//! gRPC services expose. Partitions follow the metadata: after every change
//! `reconcile` opens partitions that should exist and removes deleted ones.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::cluster::controller::{Controller, METADATA_DIR};
use crate::cluster::metadata::{ClusterState, MetadataCommand, TopicMeta};
use crate::cluster::topic_config;
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::groups::{GroupCoordinator, OFFSETS_TOPIC};
use crate::log::{Log, LogConfig, checkpoint};
use crate::partition::{Partition, now_ms};

/// File in each partition directory naming the topic id it belongs to.
const PARTITION_META: &str = crate::log::OWNER_FILE;
const NODE_META: &str = "node.meta";
const PRODUCER_ID_BLOCK: i64 = 1000;
const MAX_PARTITIONS_PER_TOPIC: u32 = 100_000;

pub type TopicPartition = (String, u32);

pub struct Broker {
    config: BrokerConfig,
    controller: Controller,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    groups: GroupCoordinator,
    producer_ids: Mutex<(i64, i64)>,
    _dir_lock: File,
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

impl Broker {
    /// Opens the data directory, recovers every partition and loads groups.
    pub async fn start(config: BrokerConfig) -> Result<Arc<Self>> {
        let dir = config.data_dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create data directory", &dir, e))?;
        let dir_lock = lock_dir(&dir)?;
        Self::check_node_meta(&dir, config.node_id)?;
        let controller = Controller::open(&dir)?;
        let node = config.node_id;
        let adv = config.advertise.clone();
        let parts = config.offsets_partitions;
        controller.propose(|s| {
            let mut cmds = Vec::new();
            if s.cluster_id.is_empty() {
                cmds.push(MetadataCommand::InitCluster {
                    cluster_id: random_id(),
                });
            }
            if s.brokers.get(&node).is_none_or(|b| b.addr != adv) {
                cmds.push(MetadataCommand::RegisterBroker {
                    id: node,
                    addr: adv.clone(),
                });
            }
            if !s.topics.contains_key(OFFSETS_TOPIC) {
                cmds.push(MetadataCommand::CreateTopic {
                    name: OFFSETS_TOPIC.into(),
                    meta: TopicMeta {
                        id: random_id(),
                        partitions: parts,
                        replication_factor: 1,
                        assignments: vec![vec![node]; parts as usize],
                        configs: offsets_topic_config(),
                        internal: true,
                        created_ms: now_ms(),
                    },
                });
            }
            Ok((cmds, ()))
        })?;
        let partitions = RwLock::new(HashMap::new());
        let state = controller.state();
        let opened = Self::open_partitions(&config, &state, &HashMap::new())?;
        let mut offsets: Vec<(u32, Arc<Partition>)> = Vec::new();
        for ((t, p), part) in &opened {
            if t == OFFSETS_TOPIC {
                offsets.push((*p, Arc::clone(part)));
            }
        }
        offsets.sort_by_key(|(p, _)| *p);
        let groups = GroupCoordinator::load(offsets.into_iter().map(|(_, p)| p).collect())?;
        *partitions.write().unwrap_or_else(|e| e.into_inner()) = opened;
        let broker = Arc::new(Self {
            config,
            controller,
            partitions,
            groups,
            producer_ids: Mutex::new((0, 0)),
            _dir_lock: dir_lock,
        });
        broker.remove_stray_dirs(&state);
        tokio::spawn(Self::maintenance(Arc::downgrade(&broker)));
        Ok(broker)
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

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    pub fn cluster_state(&self) -> ClusterState {
        self.controller.state()
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        self.controller.with_state(f)
    }

    fn log_config_of(&self, meta: &TopicMeta) -> LogConfig {
        topic_config::effective(&self.config.log_defaults, &meta.configs)
            .unwrap_or_else(|_| self.config.log_defaults.clone())
    }

    /// Opens every partition of `state` hosted here that `have` lacks.
    fn open_partitions(
        config: &BrokerConfig,
        state: &ClusterState,
        have: &HashMap<TopicPartition, Arc<Partition>>,
    ) -> Result<HashMap<TopicPartition, Arc<Partition>>> {
        let mut out = HashMap::new();
        for (name, meta) in &state.topics {
            let cfg = topic_config::effective(&config.log_defaults, &meta.configs)
                .unwrap_or_else(|_| config.log_defaults.clone());
            for p in 0..meta.partitions {
                let hosted = meta
                    .assignments
                    .get(p as usize)
                    .is_none_or(|r| r.contains(&config.node_id));
                let key = (name.clone(), p);
                if !hosted || have.contains_key(&key) {
                    continue;
                }
                let dir = partition_dir(&config.data_dir, name, p);
                Self::claim_dir(&dir, &meta.id)?;
                let (log, report) = Log::open(&dir, cfg.clone(), now_ms())
                    .map_err(|e| BrokerError::Storage(e.to_string()))?;
                if report.truncated_bytes > 0 || report.dropped_segments > 0 {
                    tracing::warn!(topic = %name, partition = p, truncated_bytes = report.truncated_bytes,
                        dropped_segments = report.dropped_segments, "recovered a damaged log tail");
                }
                if !report.ignored_files.is_empty() {
                    tracing::warn!(topic = %name, partition = p, files = ?report.ignored_files,
                        "ignoring unknown files in the partition directory");
                }
                out.insert(key, Partition::open(name, p, log));
            }
        }
        Ok(out)
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
        checkpoint::write(&meta, id.as_bytes()).map_err(|e| io_err("cannot write", &meta, e))
    }

    /// Removes partition directories of deleted topics (those carrying a
    /// `partition.meta` of a topic id no longer known); leaves anything
    /// else alone with a warning.
    fn remove_stray_dirs(&self, state: &ClusterState) {
        let Ok(entries) = fs::read_dir(&self.config.data_dir) else {
            return;
        };
        let open: Vec<PathBuf> = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .map(|(t, p)| partition_dir(&self.config.data_dir, t, *p))
            .collect();
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if open.contains(&path) || name == METADATA_DIR || name == NODE_META || name == ".lock"
            {
                continue;
            }
            let owner = checkpoint::read(&path.join(PARTITION_META)).ok().flatten();
            match owner {
                Some(id)
                    if !state
                        .topics
                        .values()
                        .any(|t| t.id.as_bytes() == id.as_slice()) =>
                {
                    tracing::info!(dir = %path.display(), "removing data of a deleted topic");
                    if let Err(err) = fs::remove_dir_all(&path) {
                        tracing::warn!(dir = %path.display(), error = %err, "cannot remove");
                    }
                }
                _ => {
                    tracing::warn!(path = %path.display(), "ignoring unknown entry in the data directory")
                }
            }
        }
    }

    /// Brings the hosted partitions in line with the metadata.
    fn reconcile(&self) -> Result<()> {
        let state = self.controller.state();
        let have = self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let new = Self::open_partitions(&self.config, &state, &have)?;
        let mut gone = Vec::new();
        {
            let mut map = self.partitions.write().unwrap_or_else(|e| e.into_inner());
            map.extend(new);
            map.retain(|(t, p), part| {
                let keep = state.topics.get(t).is_some_and(|m| *p < m.partitions);
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
            let _ = part.close();
            let dir = partition_dir(&self.config.data_dir, part.topic(), part.id());
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted partition");
            }
        }
        Ok(())
    }

    /// The hosted partition, or UNKNOWN_TOPIC / UNKNOWN_PARTITION.
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
            None => Err(BrokerError::UnknownTopic(topic.to_owned())),
            Some(_) => Err(BrokerError::UnknownPartition {
                topic: topic.to_owned(),
                partition: p,
            }),
        }
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

    pub fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta> {
        topic_config::validate_topic_name(name, false)?;
        let partitions = if partitions == 0 {
            return Err(BrokerError::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        } else {
            partitions
        };
        if partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(BrokerError::InvalidPartitions(format!(
                "{partitions} partitions exceed the limit of {MAX_PARTITIONS_PER_TOPIC}"
            )));
        }
        let rf = if replication_factor == 0 {
            1
        } else {
            replication_factor
        };
        topic_config::effective(&self.config.log_defaults, &configs)?;
        let node = self.config.node_id;
        let meta = self.controller.propose(|s| {
            if s.topics.contains_key(name) {
                return Err(BrokerError::TopicExists(name.to_owned()));
            }
            let brokers = s.brokers.len().max(1) as u32;
            if rf > brokers {
                return Err(BrokerError::InvalidReplicationFactor(format!(
                    "replication factor {rf} exceeds the {brokers} available broker(s)"
                )));
            }
            let meta = TopicMeta {
                id: random_id(),
                partitions,
                replication_factor: rf,
                assignments: vec![vec![node]; partitions as usize],
                configs,
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
        })?;
        self.reconcile()?;
        Ok(meta)
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        if name.starts_with("__") {
            return Err(BrokerError::InvalidTopic {
                name: name.into(),
                why: "internal topics cannot be deleted".into(),
            });
        }
        self.controller.propose(|s| {
            if !s.topics.contains_key(name) {
                return Err(BrokerError::UnknownTopic(name.to_owned()));
            }
            Ok((
                vec![MetadataCommand::DeleteTopic {
                    name: name.to_owned(),
                }],
                (),
            ))
        })?;
        self.reconcile()?;
        self.groups.forget_topic(name).await
    }

    pub fn alter_topic_config(&self, name: &str, set: BTreeMap<String, String>) -> Result<()> {
        if set.is_empty() {
            return Err(BrokerError::InvalidRequest("no config to set".into()));
        }
        let defaults = self.config.log_defaults.clone();
        self.controller.propose(|s| {
            let Some(t) = s.topics.get(name) else {
                return Err(BrokerError::UnknownTopic(name.to_owned()));
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
            topic_config::effective(&defaults, &merged)?;
            Ok((
                vec![MetadataCommand::AlterTopicConfig {
                    name: name.to_owned(),
                    set: set.clone(),
                }],
                (),
            ))
        })?;
        self.reconcile()
    }

    /// The effective configuration of a topic as strings.
    pub fn topic_config(&self, meta: &TopicMeta) -> BTreeMap<String, String> {
        topic_config::render(&self.log_config_of(meta))
    }

    /// Hands out a producer id, reserving blocks through the controller.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|e| e.into_inner());
        if ids.0 >= ids.1 {
            let start = self.controller.propose(|s| {
                Ok((
                    vec![MetadataCommand::AllocateProducerIds {
                        count: PRODUCER_ID_BLOCK,
                    }],
                    s.next_producer_id,
                ))
            })?;
            *ids = (start, start + PRODUCER_ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
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
                match p.maintain() {
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

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let map = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// Flushes and closes every partition and the metadata log.
    pub fn shutdown(&self) {
        for p in self.all_partitions() {
            if let Err(e) = p.close() {
                tracing::error!(topic = %p.topic(), partition = p.id(), error = %e, "close failed");
            }
        }
        if let Err(e) = self.controller.close() {
            tracing::error!(error = %e, "metadata log close failed");
        }
    }
}
