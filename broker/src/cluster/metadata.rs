//! The replicated cluster metadata: a deterministic state machine over
//! `MetadataCommand`s. Commands are validated by the caller against the
//! current state before they are appended; `apply` never fails.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tier::{RemoteManifest, RemoteReplacement, RemoteSegment};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub id: String,
    pub partitions: u32,
    pub replication_factor: u32,
    /// Replica broker ids per partition; the first is the preferred leader.
    pub assignments: Vec<Vec<u64>>,
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
    pub created_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BrokerMeta {
    pub id: u64,
    /// Client address (advertised).
    pub addr: String,
    /// Peer (Raft) address.
    #[serde(default)]
    pub peer_addr: String,
    /// Kafka-protocol address (advertised; empty: no Kafka listener).
    #[serde(default)]
    pub kafka_addr: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterState {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    pub brokers: BTreeMap<u64, BrokerMeta>,
    /// Next producer id not yet handed to any broker.
    pub next_producer_id: i64,
    /// Brokers removed from the cluster; they may not come back.
    #[serde(default)]
    pub removed_brokers: std::collections::BTreeSet<u64>,
    /// Ids of deleted topics: replicas still on disk may be removed.
    #[serde(default)]
    pub deleted_topic_ids: std::collections::BTreeSet<String>,
    /// Access control lists.
    #[serde(default)]
    pub acls: std::collections::BTreeSet<crate::security::auth::Acl>,
    /// Tiered storage: what object storage holds, per topic and partition.
    #[serde(default)]
    pub remote: BTreeMap<String, BTreeMap<u32, RemoteManifest>>,
    /// SASL users: their SCRAM credentials (salted keys, never passwords).
    #[serde(default)]
    pub users: BTreeMap<String, Vec<crate::security::scram::ScramCredential>>,
}

impl ClusterState {
    /// The remote manifest of a partition (empty when nothing is remote).
    pub fn manifest(&self, topic: &str, partition: u32) -> Option<&RemoteManifest> {
        self.remote.get(topic).and_then(|m| m.get(&partition))
    }

    /// Whether `topic` exists with id `id`.
    pub fn topic_is(&self, topic: &str, id: &str) -> bool {
        self.topics.get(topic).is_some_and(|t| t.id == id)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetadataCommand {
    InitCluster {
        cluster_id: String,
    },
    RegisterBroker {
        id: u64,
        addr: String,
        #[serde(default)]
        peer_addr: String,
        #[serde(default)]
        kafka_addr: String,
    },
    UnregisterBroker {
        id: u64,
    },
    CreateTopic {
        name: String,
        meta: TopicMeta,
    },
    DeleteTopic {
        name: String,
    },
    /// Adds partitions to topic `name` of id `topic_id`: the replicas of
    /// each new one, in partition order.
    AddPartitions {
        name: String,
        topic_id: String,
        assignments: Vec<Vec<u64>>,
    },
    /// Sets overrides; an empty value removes the key.
    AlterTopicConfig {
        name: String,
        set: BTreeMap<String, String>,
    },
    /// Reserves `[next_producer_id, next_producer_id + count)`.
    AllocateProducerIds {
        count: i64,
    },
    /// Sets a user's credentials (replacing those of the same mechanisms).
    UpsertUser {
        name: String,
        credentials: Vec<crate::security::scram::ScramCredential>,
    },
    DeleteUser {
        name: String,
    },
    /// Removes a user's credentials of `mechanisms` (the user goes with
    /// its last one).
    RemoveCredentials {
        name: String,
        mechanisms: Vec<crate::security::scram::Mechanism>,
    },
    AddAcls {
        acls: Vec<crate::security::auth::Acl>,
    },
    RemoveAcls {
        acls: Vec<crate::security::auth::Acl>,
    },
    /// Records an uploaded segment (ignored unless it continues the
    /// partition's manifest: a concurrent upload of the range won).
    AddRemoteSegment {
        topic: String,
        topic_id: String,
        partition: u32,
        segment: RemoteSegment,
    },
    /// Moves the remote start (retention, DeleteRecords); segments below
    /// it leave the manifest before their objects are deleted.
    TrimRemote {
        topic: String,
        topic_id: String,
        partition: u32,
        start: i64,
    },
    /// Swaps cleaned segments in for the ones a remote compaction pass
    /// read (ignored unless they are all still there, as they were).
    ReplaceRemoteSegments {
        topic: String,
        topic_id: String,
        partition: u32,
        replacement: RemoteReplacement,
    },
    /// Replaces the whole state (written when the metadata log is compacted).
    Snapshot {
        state: ClusterState,
    },
}

impl ClusterState {
    pub fn apply(&mut self, cmd: MetadataCommand) {
        match cmd {
            MetadataCommand::InitCluster { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id;
                }
            }
            MetadataCommand::RegisterBroker {
                id,
                addr,
                peer_addr,
                kafka_addr,
            } => {
                self.brokers.insert(
                    id,
                    BrokerMeta {
                        id,
                        addr,
                        peer_addr,
                        kafka_addr,
                    },
                );
            }
            MetadataCommand::UnregisterBroker { id } => {
                self.brokers.remove(&id);
                self.removed_brokers.insert(id);
            }
            MetadataCommand::CreateTopic { name, meta } => {
                self.topics.entry(name).or_insert(meta);
            }
            MetadataCommand::DeleteTopic { name } => {
                if let Some(t) = self.topics.remove(&name) {
                    self.deleted_topic_ids.insert(t.id);
                }
                self.remote.remove(&name);
            }
            MetadataCommand::AddPartitions {
                name,
                topic_id,
                assignments,
            } => {
                if let Some(t) = self.topics.get_mut(&name).filter(|t| t.id == topic_id) {
                    t.assignments.truncate(t.partitions as usize);
                    t.partitions = t
                        .partitions
                        .saturating_add(u32::try_from(assignments.len()).unwrap_or(u32::MAX));
                    t.assignments.extend(assignments);
                }
            }
            MetadataCommand::AlterTopicConfig { name, set } => {
                if let Some(t) = self.topics.get_mut(&name) {
                    for (k, v) in set {
                        if v.is_empty() {
                            t.configs.remove(&k);
                        } else {
                            t.configs.insert(k, v);
                        }
                    }
                }
            }
            MetadataCommand::AllocateProducerIds { count } => {
                self.next_producer_id = self.next_producer_id.saturating_add(count.max(0));
            }
            MetadataCommand::UpsertUser { name, credentials } => {
                let creds = self.users.entry(name).or_default();
                creds.retain(|c| !credentials.iter().any(|n| n.mechanism == c.mechanism));
                creds.extend(credentials);
            }
            MetadataCommand::DeleteUser { name } => {
                self.users.remove(&name);
            }
            MetadataCommand::RemoveCredentials { name, mechanisms } => {
                if let Some(creds) = self.users.get_mut(&name) {
                    creds.retain(|c| !mechanisms.contains(&c.mechanism));
                    if creds.is_empty() {
                        self.users.remove(&name);
                    }
                }
            }
            MetadataCommand::AddAcls { acls } => self.acls.extend(acls),
            MetadataCommand::RemoveAcls { acls } => {
                for a in &acls {
                    self.acls.remove(a);
                }
            }
            MetadataCommand::AddRemoteSegment {
                topic,
                topic_id,
                partition,
                segment,
            } => {
                if self.topic_is(&topic, &topic_id) {
                    let m = self.remote.entry(topic).or_default().entry(partition);
                    m.or_default().append(segment);
                }
            }
            MetadataCommand::TrimRemote {
                topic,
                topic_id,
                partition,
                start,
            } => {
                if self.topic_is(&topic, &topic_id) {
                    let m = self.remote.entry(topic).or_default().entry(partition);
                    m.or_default().trim(start);
                }
            }
            MetadataCommand::ReplaceRemoteSegments {
                topic,
                topic_id,
                partition,
                replacement,
            } => {
                if self.topic_is(&topic, &topic_id) {
                    let m = self.remote.entry(topic).or_default().entry(partition);
                    m.or_default().replace(&replacement);
                }
            }
            MetadataCommand::Snapshot { state } => *self = state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_is_deterministic_and_serializable() {
        let cmds = vec![
            MetadataCommand::InitCluster {
                cluster_id: "c1".into(),
            },
            MetadataCommand::CreateTopic {
                name: "t".into(),
                meta: TopicMeta {
                    partitions: 3,
                    ..Default::default()
                },
            },
            MetadataCommand::AlterTopicConfig {
                name: "t".into(),
                set: [("retention.ms".to_string(), "5".to_string())].into(),
            },
            MetadataCommand::AllocateProducerIds { count: 1000 },
        ];
        let mut a = ClusterState::default();
        let mut b = ClusterState::default();
        for c in &cmds {
            a.apply(c.clone());
            let json = serde_json::to_vec(c).unwrap();
            b.apply(serde_json::from_slice(&json).unwrap());
        }
        assert_eq!(a, b);
        assert_eq!(a.topics["t"].configs["retention.ms"], "5");
        assert_eq!(a.next_producer_id, 1000);
        a.apply(MetadataCommand::DeleteTopic { name: "t".into() });
        assert!(a.topics.is_empty());
    }

    #[test]
    fn remote_manifests_follow_their_topic() {
        let mut s = ClusterState::default();
        s.apply(MetadataCommand::CreateTopic {
            name: "t".into(),
            meta: TopicMeta {
                id: "id1".into(),
                partitions: 1,
                ..Default::default()
            },
        });
        let seg = |base: i64, next: i64, id: &str| MetadataCommand::AddRemoteSegment {
            topic: "t".into(),
            topic_id: id.into(),
            partition: 0,
            segment: RemoteSegment {
                base,
                next,
                size: 1,
                max_ts: 0,
                upload_id: format!("u{base}"),
            },
        };
        s.apply(seg(0, 10, "id1"));
        s.apply(seg(10, 20, "old-id"));
        s.apply(seg(20, 30, "id1"));
        assert_eq!(s.manifest("t", 0).map(|m| m.end()), Some(10), "{s:?}");
        s.apply(seg(10, 20, "id1"));
        s.apply(MetadataCommand::TrimRemote {
            topic: "t".into(),
            topic_id: "id1".into(),
            partition: 0,
            start: 12,
        });
        let m = s.manifest("t", 0).cloned().unwrap();
        assert_eq!((m.start, m.segments.len()), (12, 1));
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(serde_json::from_slice::<ClusterState>(&json).unwrap(), s);
        s.apply(MetadataCommand::DeleteTopic { name: "t".into() });
        assert!(s.remote.is_empty());
    }
}
