//! The controller operations: what each change of the cluster metadata
//! checks against the applied state and proposes, run on the controller
//! leader (`execute_local`) or forwarded to it over the peer link
//! (`execute`). Topic creation, growth and deletion, configs, ACLs, broker
//! membership, producer-id blocks and the remote manifests all change here,
//! next to the state machine (`metadata`) they change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1::peer_client::PeerClient;

use super::controller::{Controller, ControllerOp, ControllerReply};
use super::metadata::{MetadataCommand, TopicMeta};
use super::placement::{assign, plan_partitions};
use super::topic_config;
use crate::error::{BrokerError, Result};
use crate::log::{LogConfig, now_ms};
use crate::raft::directory::Directory;
use crate::raft::transport::Transport;
use crate::security::tls::{TlsSettings, connect_broker};

use super::placement::MAX_PARTITIONS_PER_TOPIC;

/// What the operations need of the broker that runs them.
pub struct OperationsEnv {
    pub node_id: u64,
    /// Topic configs are checked against these defaults.
    pub log_defaults: LogConfig,
    /// Forwarding to the controller leader uses the peer link's TLS.
    pub tls: Option<TlsSettings>,
    pub transport: Arc<Transport>,
    pub directory: Arc<Directory>,
    /// A deleted topic's objects are removed from object storage.
    pub tier: Arc<crate::tier::Tier>,
}

pub fn random_id() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if ok.is_err() {
        b = (now_ms() as u128 ^ u128::from(std::process::id()) << 64).to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How long an operation rides out a controller election (no leader
/// known, or the known one unreachable, as right after the leader's broker
/// died): longer than an election takes, so that the caller gets an answer
/// rather than a `NOT_CONTROLLER` it would have to retry.
const LEADER_WAIT: Duration = Duration::from_secs(2);

impl Controller {
    /// Runs a controller operation on the controller leader: here, or
    /// forwarded over the peer link. While there is no reachable leader it
    /// waits for a new one, up to [`LEADER_WAIT`], then answers
    /// `NOT_CONTROLLER`.
    pub async fn execute(&self, op: ControllerOp) -> Result<ControllerReply> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let failed = self.leader();
            match self.execute_once(op.clone()).await {
                Err(BrokerError::NotController { .. })
                | Err(BrokerError::Remote {
                    code: strata_proto::v1::ErrorCode::NotController,
                    ..
                }) if tokio::time::Instant::now() < deadline => {
                    let mut role = self.part.subscribe_role();
                    let moved = role.wait_for(|r| r.leader != 0 && r.leader != failed);
                    if tokio::time::timeout_at(deadline, moved).await.is_err() {
                        // No other leader in time: one last try.
                        return self.execute_once(op).await;
                    }
                }
                r => return r,
            }
        }
    }

    /// One attempt of [`execute`](Self::execute).
    async fn execute_once(&self, op: ControllerOp) -> Result<ControllerReply> {
        if self.is_leader() {
            return self.execute_local(op).await;
        }
        let leader = self.leader();
        let addr = (leader != 0)
            .then(|| self.env.transport.peer_addr(leader))
            .flatten()
            .ok_or_else(|| BrokerError::NotController {
                leader_id: leader,
                leader_addr: self.env.directory.client_addr(leader),
            })?;
        let body = serde_json::to_vec(&op).map_err(|e| BrokerError::Storage(e.to_string()))?;
        let ch = connect_broker(
            self.env.tls.as_ref(),
            &addr,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        .ok_or_else(|| BrokerError::NotController {
            leader_id: leader,
            leader_addr: self.env.directory.client_addr(leader),
        })?;
        let mut client = PeerClient::new(ch);
        let call = client.controller(strata_proto::v1::ControllerRequest {
            request: body.into(),
        });
        // A controller that stops answering (paused, cut off) is replaced
        // within an election: answer then, retriably, instead of waiting
        // out the call's timeout.
        let mut role = self.part.subscribe_role();
        let moved = role.wait_for(|r| r.leader != leader);
        let resp = tokio::select! {
            r = call => r.map_err(|st| BrokerError::Remote {
                code: crate::error::code_of(&st),
                message: st.message().to_owned(),
            })?,
            _ = moved => {
                let now = self.leader();
                return Err(BrokerError::NotController {
                    leader_id: now,
                    leader_addr: self.env.directory.client_addr(now),
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
                    let tier = Arc::clone(&self.env.tier);
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
            ControllerOp::CreatePartitions {
                name,
                count,
                assignments,
                validate_only,
            } => self
                .propose(|s| {
                    let (cmd, meta) = plan_partitions(s, &name, count, assignments.as_deref())?;
                    let cmds = if validate_only { Vec::new() } else { vec![cmd] };
                    Ok((cmds, meta))
                })
                .await
                .map(ControllerReply::Topic),
            ControllerOp::AlterTopicConfig { name, set } => {
                let defaults = self.env.log_defaults.clone();
                self.propose(|s| {
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
            ControllerOp::UpsertUser { name, credentials } => {
                self.propose(|_| {
                    Ok((
                        vec![MetadataCommand::UpsertUser {
                            name: name.clone(),
                            credentials: credentials.clone(),
                        }],
                        (),
                    ))
                })
                .await?;
                Ok(ControllerReply::Unit)
            }
            ControllerOp::DeleteUser { name } => {
                let n = self
                    .propose(|s| {
                        if !s.users.contains_key(&name) {
                            return Ok((vec![], 0));
                        }
                        Ok((vec![MetadataCommand::DeleteUser { name: name.clone() }], 1))
                    })
                    .await?;
                Ok(ControllerReply::Count(n))
            }
            ControllerOp::ChangeCredentials {
                name,
                upsert,
                remove,
            } => {
                let n = self
                    .propose(|s| {
                        let has = |m: &crate::security::scram::Mechanism| {
                            s.users
                                .get(&name)
                                .is_some_and(|cs| cs.iter().any(|c| c.mechanism == *m))
                        };
                        if !remove.iter().all(has) {
                            return Ok((vec![], 0));
                        }
                        let mut cmds = Vec::new();
                        if !remove.is_empty() {
                            cmds.push(MetadataCommand::RemoveCredentials {
                                name: name.clone(),
                                mechanisms: remove.clone(),
                            });
                        }
                        if !upsert.is_empty() {
                            cmds.push(MetadataCommand::UpsertUser {
                                name: name.clone(),
                                credentials: upsert.clone(),
                            });
                        }
                        Ok((cmds, 1))
                    })
                    .await?;
                Ok(ControllerReply::Count(n))
            }
            ControllerOp::ChangeAcls { add, acls } => {
                let changed = self
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
            ControllerOp::ReplaceRemoteSegments {
                topic,
                topic_id,
                partition,
                replacement,
            } => {
                let cmd = MetadataCommand::ReplaceRemoteSegments {
                    topic: topic.clone(),
                    topic_id: topic_id.clone(),
                    partition,
                    replacement: replacement.clone(),
                };
                self.propose_manifest_change(&topic, &topic_id, partition, cmd, |m| {
                    m.replace(&replacement)
                })
                .await
            }
            ControllerOp::AllocateProducerIds { count } => {
                let start = self
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
                kafka_addr,
            } => {
                self.propose(|s| {
                    if s.removed_brokers.contains(&id) {
                        return Err(BrokerError::UnknownBroker(id));
                    }
                    Ok((
                        vec![MetadataCommand::RegisterBroker {
                            id,
                            addr: addr.clone(),
                            peer_addr: peer_addr.clone(),
                            kafka_addr: kafka_addr.clone(),
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
                let (voters, learners) = self.membership();
                if !voters.contains(&id) && !learners.contains(&id) {
                    self.env.transport.add_peer(id, &peer_addr);
                    let mut cc = raft::eraftpb::ConfChange::default();
                    cc.set_change_type(raft::eraftpb::ConfChangeType::AddLearnerNode);
                    cc.node_id = id;
                    self.conf_change(cc).await?;
                }
                let addr_known = self.with_state(|s| s.brokers.contains_key(&id));
                if !addr_known {
                    self.propose(|_| {
                        Ok((
                            vec![MetadataCommand::RegisterBroker {
                                id,
                                addr: String::new(),
                                peer_addr: peer_addr.clone(),
                                kafka_addr: String::new(),
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
                let (voters, learners) = self.membership();
                if !voters.contains(&id) && !learners.contains(&id) {
                    return Err(BrokerError::UnknownBroker(id));
                }
                if id == self.env.node_id {
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
                self.conf_change(cc).await?;
                self.propose(|_| Ok((vec![MetadataCommand::UnregisterBroker { id }], ())))
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
        topic_config::effective(&self.env.log_defaults, &configs)?;
        self.propose(|s| {
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
}
