//! The cluster operations clients ask for (topics, configs, producer ids,
//! leadership moves): each is run by the controller leader
//! (`cluster::operations`), and answered once this broker has applied it
//! and reconciled its replicas.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Broker;
use crate::cluster::controller::{ControllerOp, ControllerReply};
use crate::cluster::metadata::{ClusterState, TopicMeta};
use crate::cluster::topic_config;
use crate::error::{BrokerError, Result};
use crate::raft::node::Cmd;
use crate::security::auth::{Identity, Operation, Resource};

/// Producer ids reserved from the controller at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

impl Broker {
    /// Who may create a topic: create on the cluster, or on the topic.
    pub fn authorize_create_topic(&self, who: &Identity, name: &str) -> Result<()> {
        if self.may(who, Operation::Create, Resource::Cluster, "") {
            return Ok(());
        }
        self.authorize(who, Operation::Create, Resource::Topic, name)
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
        let meta = match self.controller.execute(op).await? {
            ControllerReply::Topic(m) => m,
            _ => return Err(BrokerError::Storage("unexpected controller reply".into())),
        };
        self.wait_applied_here(|s| s.topics.contains_key(name))
            .await;
        // The metadata follower opens the replicas hosted here (the change
        // wakes it). Answer once every partition has elected a leader, so
        // that a produce right after creation finds one, or at the
        // deadline: a topic of many thousands of partitions keeps electing
        // after the answer.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut led = 0;
        while led < meta.partitions && tokio::time::Instant::now() < deadline {
            while led < meta.partitions && self.directory.leader(name, led) != 0 {
                led += 1;
            }
            if led < meta.partitions {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(meta)
    }

    /// Waits (briefly) until this broker's metadata satisfies `f`.
    pub(super) async fn wait_applied_here(&self, f: impl Fn(&ClusterState) -> bool) {
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

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        if name.starts_with("__") {
            return Err(BrokerError::InvalidTopic {
                name: name.into(),
                why: "internal topics cannot be deleted".into(),
            });
        }
        self.controller
            .execute(ControllerOp::DeleteTopic {
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
        self.controller
            .execute(ControllerOp::AlterTopicConfig {
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

    /// Grows topic `name` to `count` partitions as `who` (needs alter on
    /// the topic), with `assignments` for the new ones or spread as at
    /// creation; answers once this broker applied it and opened its
    /// replicas of them. `validate_only` checks without changing.
    pub async fn create_partitions_as(
        &self,
        who: &Identity,
        name: &str,
        count: u32,
        assignments: Option<Vec<Vec<u64>>>,
        validate_only: bool,
    ) -> Result<TopicMeta> {
        self.authorize(who, Operation::Alter, Resource::Topic, name)?;
        let reply = self
            .controller
            .execute(ControllerOp::CreatePartitions {
                name: name.to_owned(),
                count,
                assignments,
                validate_only,
            })
            .await?;
        let ControllerReply::Topic(meta) = reply else {
            return Err(BrokerError::Storage("unexpected controller reply".into()));
        };
        if !validate_only {
            self.wait_applied_here(|s| s.topics.get(name).is_some_and(|t| t.partitions >= count))
                .await;
            self.reconcile_off_runtime()?;
        }
        Ok(meta)
    }

    /// Changes configs of a topic as `who` (needs alter on the topic); an
    /// empty value removes the override.
    pub async fn alter_topic_config_as(
        &self,
        who: &Identity,
        name: &str,
        set: BTreeMap<String, String>,
    ) -> Result<()> {
        self.authorize(who, Operation::Alter, Resource::Topic, name)?;
        self.alter_topic_config(name, set).await
    }

    /// A topic's effective configs as `who` (needs describe on the topic):
    /// (key, value, whether the topic overrides the broker default).
    pub fn describe_topic_config(
        &self,
        who: &Identity,
        name: &str,
    ) -> Result<Vec<(String, String, bool)>> {
        self.authorize(who, Operation::Describe, Resource::Topic, name)?;
        let meta = self
            .with_state(|s| s.topics.get(name).cloned())
            .filter(|m| !m.internal)
            .ok_or_else(|| self.unknown_topic(name))?;
        Ok(self
            .topic_config(&meta)
            .into_iter()
            .map(|(k, v)| {
                let set = meta.configs.contains_key(&k);
                (k, v, set)
            })
            .collect())
    }

    /// Moves a partition's log start to `offset` (-1: the high watermark)
    /// as `who` (needs delete on the topic); answers the new log start.
    pub async fn delete_records_as(
        &self,
        who: &Identity,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<i64> {
        self.authorize(who, Operation::Delete, Resource::Topic, topic)?;
        if topic.starts_with("__") {
            return Err(BrokerError::InvalidTopic {
                name: topic.to_owned(),
                why: "internal topic".into(),
            });
        }
        let part = self.leader_partition(topic, partition)?;
        crate::tier::serve::delete_records(self, &part, offset, Duration::from_secs(30)).await
    }

    /// Partition counts of the topics clients see (internal ones left out).
    pub fn topic_partition_counts(&self) -> BTreeMap<String, u32> {
        self.with_state(|s| {
            s.topics
                .iter()
                .filter(|(_, t)| !t.internal)
                .map(|(n, t)| (n.clone(), t.partitions))
                .collect()
        })
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
                .controller
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
}
