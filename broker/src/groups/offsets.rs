//! Consumer-group offsets, stored durably in the internal partitioned topic
//! `__consumer_offsets` (one record per committed partition, keyed by
//! group/topic/partition; a null value deletes), replicated like any
//! partition. A group always maps to the same offsets partition, whose
//! leader takes its commits. Every replica applies committed entries to its
//! in-memory view (the Raft loop replays the log at start). When a
//! partition's log grows, the leader rewrites its live entries at the end
//! and moves the log start past the old ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_proto::batch::{self, BatchBuilder};

use crate::error::{BrokerError, Result};
use crate::log::now_ms;
use crate::partition::Partition;
use crate::raft::replica::{GroupLog, Replica, ReplicaCore};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Rewrite an offsets partition once it holds this many bytes more than its
/// live entries need.
const COMPACT_AFTER_BYTES: u64 = 16 << 20;
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Key {
    g: String,
    t: String,
    p: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    #[serde(rename = "o")]
    pub offset: i64,
    #[serde(rename = "m", default)]
    pub metadata: String,
    #[serde(rename = "ts", default)]
    pub timestamp: i64,
}

type GroupOffsets = BTreeMap<(String, u32), Committed>;

struct Shard {
    partition: Arc<Partition>,
    /// Serializes commits of this shard so that the in-memory view follows
    /// log order.
    write: tokio::sync::Mutex<()>,
    /// Log size right after the last compaction.
    base_bytes: Mutex<u64>,
}

pub struct GroupCoordinator {
    count: usize,
    shards: std::sync::RwLock<HashMap<u32, Arc<Shard>>>,
    groups: Mutex<HashMap<String, GroupOffsets>>,
}

/// Kafka's rule for the offsets partition of a group (Java `String.hashCode`).
pub fn shard_for(group: &str, n: usize) -> usize {
    let mut h: i32 = 0;
    for c in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(c));
    }
    (h.unsigned_abs() as usize) % n.max(1)
}

pub fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > 255 || group.chars().any(char::is_control) {
        return Err(BrokerError::InvalidGroup(group.to_owned()));
    }
    Ok(())
}

impl GroupCoordinator {
    pub fn new(count: usize) -> Self {
        Self {
            count: count.max(1),
            shards: Default::default(),
            groups: Mutex::default(),
        }
    }

    /// Makes an offsets partition hosted here known.
    pub fn register(&self, p: u32, partition: Arc<Partition>) {
        let size = partition.offsets().size_bytes;
        self.shards
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                p,
                Arc::new(Shard {
                    partition,
                    write: tokio::sync::Mutex::new(()),
                    base_bytes: Mutex::new(size),
                }),
            );
    }

    /// Applies one committed entry of an offsets partition.
    pub fn apply_entry(&self, data: &bytes::Bytes) {
        let Ok(recs) = batch::records(data) else {
            return;
        };
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        for r in recs.flatten() {
            let Some(k) = r
                .key
                .as_ref()
                .and_then(|k| serde_json::from_slice::<Key>(k).ok())
            else {
                continue;
            };
            apply(
                &mut groups,
                k,
                r.value
                    .as_ref()
                    .and_then(|v| serde_json::from_slice(v).ok()),
            );
        }
    }

    /// The offsets partition of `group`, which this broker must lead.
    fn shard(&self, group: &str) -> Result<Arc<Shard>> {
        let idx = shard_for(group, self.count) as u32;
        let shard = self
            .shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&idx)
            .cloned();
        match shard {
            Some(s) if s.partition.is_leader() => Ok(s),
            Some(s) => Err(s.partition.not_leader()),
            None => Err(BrokerError::NotLeader {
                topic: OFFSETS_TOPIC.into(),
                partition: idx,
                leader_id: 0,
                leader_addr: String::new(),
            }),
        }
    }

    /// Where requests about `group` belong: `None` when this broker leads
    /// its offsets partition, else the NOT_LEADER error naming the leader.
    pub fn route(&self, group: &str) -> Option<BrokerError> {
        self.shard(group).err()
    }

    /// The offsets partition index of a group.
    pub fn shard_of(&self, group: &str) -> u32 {
        shard_for(group, self.count) as u32
    }

    async fn write(&self, shard: &Shard, entries: &[(Key, Option<Committed>)]) -> Result<()> {
        let now = now_ms();
        let mut batches = Vec::new();
        for chunk in entries.chunks(2000) {
            let mut b = BatchBuilder::new(now);
            for (k, v) in chunk {
                let key = serde_json::to_vec(k).map_err(|e| BrokerError::Storage(e.to_string()))?;
                let val = match v {
                    Some(v) => Some(
                        serde_json::to_vec(v).map_err(|e| BrokerError::Storage(e.to_string()))?,
                    ),
                    None => None,
                };
                b.push(now, Some(&key), val.as_deref(), &[]);
            }
            let bytes = b.finish();
            // Built just above: the header is all that is needed.
            let h = batch::parse_header(&bytes)?;
            batches.push((h, bytes));
        }
        shard
            .partition
            .produce(batches, crate::partition::Acks::All, COMMIT_TIMEOUT)
            .await?;
        Ok(())
    }

    /// Durably commits offsets for a group.
    pub async fn commit(
        &self,
        group: &str,
        offsets: Vec<(String, u32, i64, String)>,
    ) -> Result<()> {
        validate_group(group)?;
        let shard = self.shard(group)?;
        let _w = shard.write.lock().await;
        let now = now_ms();
        let entries: Vec<(Key, Option<Committed>)> = offsets
            .into_iter()
            .map(|(t, p, o, m)| {
                (
                    Key {
                        g: group.to_owned(),
                        t,
                        p,
                    },
                    Some(Committed {
                        offset: o,
                        metadata: m,
                        timestamp: now,
                    }),
                )
            })
            .collect();
        // Committed entries reach the in-memory view through `apply_entry`.
        self.write(&shard, &entries).await?;
        self.maybe_compact(&shard, self.shard_of(group)).await
    }

    /// Rewrites the live entries of a shard and drops what precedes them.
    async fn maybe_compact(&self, shard: &Shard, idx: u32) -> Result<()> {
        let size = shard.partition.offsets().size_bytes;
        let base = *shard.base_bytes.lock().unwrap_or_else(|e| e.into_inner());
        if size < base + COMPACT_AFTER_BYTES {
            return Ok(());
        }
        let live: Vec<(Key, Option<Committed>)> = {
            let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            g.iter()
                .filter(|(name, _)| shard_for(name, self.count) == idx as usize)
                .flat_map(|(name, offs)| {
                    offs.iter().map(|((t, p), c)| {
                        (
                            Key {
                                g: name.clone(),
                                t: t.clone(),
                                p: *p,
                            },
                            Some(c.clone()),
                        )
                    })
                })
                .collect()
        };
        let start = shard.partition.offsets().high_watermark;
        if !live.is_empty() {
            self.write(shard, &live).await?;
        }
        shard
            .partition
            .delete_records(start, COMMIT_TIMEOUT)
            .await?;
        let _ = shard.partition.maintain(None)?;
        *shard.base_bytes.lock().unwrap_or_else(|e| e.into_inner()) =
            shard.partition.offsets().size_bytes;
        Ok(())
    }

    /// Committed offsets of a group, optionally only for some topics.
    pub fn fetch(&self, group: &str, topics: &[String]) -> Result<Vec<(String, u32, Committed)>> {
        validate_group(group)?;
        let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        Ok(g.get(group)
            .map(|offs| {
                offs.iter()
                    .filter(|((t, _), _)| topics.is_empty() || topics.contains(t))
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Every committed offset known here: (group, topic, partition, offset).
    pub fn all_committed(&self) -> Vec<(String, String, u32, i64)> {
        let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        g.iter()
            .flat_map(|(group, offs)| {
                offs.iter()
                    .map(move |((t, p), c)| (group.clone(), t.clone(), *p, c.offset))
            })
            .collect()
    }

    pub fn list(&self) -> Vec<String> {
        let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<String> = g.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn exists(&self, group: &str) -> bool {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(group)
    }

    /// Deletes every committed offset of a group.
    pub async fn delete(&self, group: &str) -> Result<()> {
        validate_group(group)?;
        let keys: Vec<(Key, Option<Committed>)> = {
            let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            let Some(offs) = g.get(group) else {
                return Err(BrokerError::UnknownGroup(group.to_owned()));
            };
            offs.keys()
                .map(|(t, p)| {
                    (
                        Key {
                            g: group.to_owned(),
                            t: t.clone(),
                            p: *p,
                        },
                        None,
                    )
                })
                .collect()
        };
        let shard = self.shard(group)?;
        let _w = shard.write.lock().await;
        self.write(&shard, &keys).await
    }

    /// Deletes every group's offsets of a deleted topic, so that a new
    /// topic of the same name starts clean.
    pub async fn forget_topic(&self, topic: &str) -> Result<()> {
        let doomed: Vec<Key> = {
            let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            g.iter()
                .flat_map(|(name, offs)| {
                    offs.keys().filter(|(t, _)| t == topic).map(|(t, p)| Key {
                        g: name.clone(),
                        t: t.clone(),
                        p: *p,
                    })
                })
                .collect()
        };
        let shards: Vec<(u32, Arc<Shard>)> = self
            .shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| s.partition.is_leader())
            .map(|(i, s)| (*i, Arc::clone(s)))
            .collect();
        for (i, shard) in shards {
            let mine: Vec<(Key, Option<Committed>)> = doomed
                .iter()
                .filter(|k| shard_for(&k.g, self.count) == i as usize)
                .map(|k| (k.clone(), None))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let _w = shard.write.lock().await;
            self.write(&shard, &mine).await?;
        }
        Ok(())
    }
}

fn apply(groups: &mut HashMap<String, GroupOffsets>, k: Key, v: Option<Committed>) {
    match v {
        Some(c) => {
            groups.entry(k.g).or_default().insert((k.t, k.p), c);
        }
        None => {
            if let Some(offs) = groups.get_mut(&k.g) {
                offs.remove(&(k.t, k.p));
                if offs.is_empty() {
                    groups.remove(&k.g);
                }
            }
        }
    }
}

/// A `__consumer_offsets` partition as the Raft loop drives it: committed
/// entries feed the coordinator's view, which is rebuilt from the log's
/// base at start.
pub struct OffsetsReplica {
    pub part: Arc<Partition>,
    pub coordinator: Arc<GroupCoordinator>,
}

impl Replica for OffsetsReplica {
    fn core(&self) -> &Arc<ReplicaCore> {
        self.part.core()
    }

    fn applied_at_start(&self, log: &GroupLog) -> u64 {
        log.log.raft_base().index
    }

    fn apply(&self, _index: u64, data: &bytes::Bytes) {
        self.coordinator.apply_entry(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_shard_rule() {
        // Java: "group".hashCode() == 98629247
        assert_eq!(shard_for("group", 50), 98629247 % 50);
        assert!(validate_group("").is_err());
        assert!(validate_group("a\nb").is_err());
    }
}
