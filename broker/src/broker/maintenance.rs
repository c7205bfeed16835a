//! Background maintenance: housekeeping (registering this broker, the
//! cluster id, the offsets topic), retention and rolling of every hosted
//! partition, and handing leaderships off before a shutdown.

use std::collections::BTreeMap;

use std::time::Duration;

use super::Broker;
use crate::cluster::controller::ControllerOp;
use crate::cluster::metadata::{MetadataCommand, TopicMeta};
use crate::cluster::operations::random_id;
use crate::cluster::placement::assign;
use crate::error::Result;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::log::now_ms;
use crate::raft::node::Cmd;

/// The offsets topic: durable at every commit, and compacted (the latest
/// commit per group and partition, the latest state per group).
pub(super) fn offsets_topic_config(segment_bytes: u64) -> BTreeMap<String, String> {
    [
        ("fsync".to_string(), "always".to_string()),
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("segment.bytes".to_string(), segment_bytes.to_string()),
    ]
    .into()
}

impl Broker {
    pub(super) async fn housekeeping(&self) {
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
        let kafka_addr = self.kafka_advertised().unwrap_or_default();
        let known = self.with_state(|s| {
            s.brokers.get(&id).is_some_and(|b| {
                b.addr == addr && b.peer_addr == peer_addr && b.kafka_addr == kafka_addr
            })
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
                kafka_addr,
            };
            if let Err(e) = self.controller.execute(op).await {
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
        if self.controller.is_leader() {
            self.compact_offsets_topic().await;
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

    /// An offsets topic created before it was compacted becomes compacted.
    async fn compact_offsets_topic(&self) {
        let compacted = self.with_state(|s| {
            s.topics.get(OFFSETS_TOPIC).is_none_or(|t| {
                t.configs
                    .get("cleanup.policy")
                    .is_some_and(|p| p.contains("compact"))
            })
        });
        if compacted {
            return;
        }
        let r = self
            .controller
            .propose(|_| {
                let set = [("cleanup.policy".to_string(), "compact".to_string())].into();
                Ok((
                    vec![MetadataCommand::AlterTopicConfig {
                        name: OFFSETS_TOPIC.into(),
                        set,
                    }],
                    (),
                ))
            })
            .await;
        match r {
            Ok(()) => tracing::info!("the offsets topic is compacted from now on"),
            Err(e) => tracing::debug!(error = %e, "offsets topic not switched to compaction yet"),
        }
    }

    pub(super) async fn create_offsets_topic(&self) -> Result<()> {
        let parts = self.config.offsets_partitions;
        let segment_bytes = self.config.offsets_segment_bytes;
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
                            configs: offsets_topic_config(segment_bytes),
                            internal: true,
                            created_ms: now_ms(),
                        },
                    }],
                    (),
                ))
            })
            .await
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
    pub(super) async fn maintenance(me: std::sync::Weak<Self>) {
        loop {
            let interval = match me.upgrade() {
                Some(b) => b.config.retention_check_interval,
                None => return,
            };
            tokio::time::sleep(interval).await;
            let Some(b) = me.upgrade() else { return };
            let parts = b.all_partitions();
            for (i, p) in parts.into_iter().enumerate() {
                // A pass over 100,000 partitions takes a worker for a while:
                // the other tasks (peer links, requests) get turns.
                if i % 256 == 255 {
                    tokio::task::yield_now().await;
                }
                // Only tiered partitions have a manifest to look up (under
                // the metadata lock, once per partition and pass).
                let tiered = p.with_log(|log, _| log.config().remote_storage);
                let remote = tiered
                    .then(|| {
                        b.with_state(|s| {
                            s.manifest(p.topic(), p.id())
                                .filter(|m| m.start > 0 || !m.segments.is_empty())
                                .map(|m| (m.start, m.end()))
                        })
                    })
                    .flatten();
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

    /// Takes out members of the groups coordinated here whose session or
    /// rebalance timeout ran out (every 100 ms).
    pub(super) async fn group_sessions(me: std::sync::Weak<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some(b) = me.upgrade() else { return };
            let topics = b.topic_partition_counts();
            b.groups.expire_members(&topics).await;
            b.groups.classic_tick().await;
        }
    }
}
