//! Replica lifecycle: opening the replicas the metadata assigns here
//! (claiming their directories), removing deleted ones and stray
//! directories, and following the metadata log so that every applied
//! change is reconciled.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::startup::{CLUSTER_META, NODE_META, hello, io_err, with_hard_state};
use super::{Broker, TopicPartition};
use crate::cluster::controller::METADATA_DIR;
use crate::cluster::metadata::{ClusterState, TopicMeta};
use crate::cluster::topic_config;
use crate::error::{BrokerError, Result};
use crate::groups::offsets::{OFFSETS_TOPIC, OffsetsReplica};
use crate::log::{Log, LogConfig, checkpoint, now_ms};
use crate::partition::Partition;
use crate::raft::hardstate::{HARD_STATE_FILE, HARD_STATE_JOURNAL};
use crate::raft::node::Cmd;
use crate::raft::replica::Replica;
use crate::raft::storage::RaftMeta;

/// File in each partition directory naming the topic id it belongs to.
const PARTITION_META: &str = crate::log::OWNER_FILE;

/// Threads that open replicas at start-up (and when many are assigned at
/// once). Opening waits on the disk far more than it computes, so more
/// threads than cores pay off; past the disk's queue depth they do not.
const OPEN_THREADS: usize = 8;

/// Niceness of the threads that open replicas: the lowest, so that under
/// CPU contention all of them together get less than the event loop (each
/// weighs 15 against its 1024).
const OPEN_NICE: libc::c_int = 19;

/// Lowers the calling thread's priority to [`OPEN_NICE`]: a burst of
/// thousands of replicas to open (a topic created, a restart) then takes
/// the CPU that serving leaves, instead of starving the event loop until
/// heartbeats go unanswered and the new leaders step down.
fn lower_this_thread_priority() {
    // SAFETY: setpriority only changes scheduling; on Linux PRIO_PROCESS
    // with id 0 names the calling thread alone.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, OPEN_NICE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the opener's priority");
    }
}

pub(super) fn partition_dir(data: &Path, topic: &str, p: u32) -> PathBuf {
    data.join(format!("{topic}-{p}"))
}

impl Broker {
    pub(super) fn log_config_of(&self, meta: &TopicMeta) -> LogConfig {
        topic_config::effective(&self.config.log_defaults, &meta.configs)
            .unwrap_or_else(|_| self.config.log_defaults.clone())
    }

    /// Opens a replica hosted here and starts its Raft group.
    pub(super) fn open_partition(
        &self,
        name: &str,
        meta: &TopicMeta,
        p: u32,
    ) -> Result<Arc<Partition>> {
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
            preferred: if fresh {
                replicas.first().copied()
            } else {
                None
            },
        })?;
        if name == OFFSETS_TOPIC {
            self.groups.register(p, Arc::clone(&part));
        }
        Ok(part)
    }

    /// Opens replicas on `OPEN_THREADS` threads and adds each to the
    /// hosted set as it opens; returns how many opened. Opening is mostly
    /// waiting for the disk (index pages, the tail of the active segment,
    /// small state files), so a restart with thousands of replicas is
    /// bounded by the disk's parallelism, not by one read after another.
    /// After a failure no further replica is started; the error of the
    /// first failure is returned.
    fn open_partitions(&self, todo: &[(&str, &TopicMeta, u32)]) -> Result<usize> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let opened = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let first_error = std::sync::Mutex::new(None);
        // Partition start-up may spawn tasks: workers run inside the runtime.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let work = || {
            let _entered = runtime.as_ref().map(|h| h.enter());
            while !stop.load(Ordering::Acquire) {
                let Some(&(name, meta, p)) = todo.get(next.fetch_add(1, Ordering::AcqRel)) else {
                    return;
                };
                match self.open_partition(name, meta, p) {
                    Ok(part) => {
                        self.partitions
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((name.to_owned(), p), part);
                        opened.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Release);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                }
            }
        };
        let threads = OPEN_THREADS.min(todo.len());
        if threads <= 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        lower_this_thread_priority();
                        work()
                    });
                }
            });
        }
        match first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(opened.into_inner()),
        }
    }

    /// Makes `dir` belong to topic `id`: a leftover directory of an older
    /// topic with the same name is removed first.
    pub(super) fn claim_dir(dir: &Path, id: &str) -> Result<()> {
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
    pub(super) fn remove_stray_dirs(&self, state: &ClusterState) {
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
                || name == HARD_STATE_JOURNAL
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
    pub(super) fn reconcile_off_runtime(&self) -> Result<()> {
        tokio::task::block_in_place(|| self.reconcile())
    }

    /// Brings the hosted partitions in line with the metadata.
    pub(super) fn reconcile(&self) -> Result<()> {
        let _serial = self
            .reconcile_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let started = std::time::Instant::now();
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
        let mut todo = Vec::new();
        for (name, meta) in &state.topics {
            for p in 0..meta.partitions {
                let hosted = meta
                    .assignments
                    .get(p as usize)
                    .is_some_and(|r| r.contains(&me));
                if hosted && !have.contains(&(name.clone(), p)) {
                    todo.push((name.as_str(), meta, p));
                }
            }
        }
        let opened = self.open_partitions(&todo)?;
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
    pub(super) async fn follow_metadata(me: std::sync::Weak<Self>) {
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
    pub(super) async fn learn_catch_up_target(&self) {
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
}
