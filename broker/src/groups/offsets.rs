//! Consumer-group offsets, stored durably in the internal partitioned topic
//! `__consumer_offsets` (one record per committed partition, keyed by
//! group/topic/partition; a null value deletes), replicated like any
//! partition. A group always maps to the same offsets partition, whose
//! leader takes its commits. Every replica applies committed entries to its
//! in-memory view (the Raft loop replays the log at start). The topic is
//! compacted (`cleanup.policy=compact`): every replica's cleaner keeps the
//! latest record per key, so a replay reads what is live, and the log stays
//! the size of the live state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_proto::batch::{self, BatchBuilder};

use super::classic::ClassicGroup;
use super::consumer::GroupState;
use super::membership::{Liveness, Record};
use crate::error::{BrokerError, Result};
use crate::log::now_ms;
use crate::partition::Partition;
use crate::raft::replica::{GroupLog, Replica, ReplicaCore};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
struct Key {
    g: String,
    t: String,
    p: u32,
}

/// The key of a group's membership record (`k`: the protocol).
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub(super) struct StateKey {
    pub g: String,
    pub k: String,
}

/// `k` of a consumer-protocol group's state record.
pub(super) const CONSUMER_STATE: &str = "consumer";
/// `k` of a classic-protocol group's state record.
pub(super) const CLASSIC_STATE: &str = "classic";

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

pub(super) struct Shard {
    pub(super) partition: Arc<Partition>,
    /// Serializes commits of this shard so that the in-memory view follows
    /// log order.
    pub(super) write: tokio::sync::Mutex<()>,
}

pub struct GroupCoordinator {
    pub(super) count: usize,
    pub(super) shards: std::sync::RwLock<HashMap<u32, Arc<Shard>>>,
    groups: Mutex<HashMap<String, GroupOffsets>>,
    /// Groups with membership, as applied from their state records.
    pub(super) consumers: Mutex<HashMap<String, GroupState>>,
    /// When each member (group, member id) was last heard from, and since
    /// when it has had partitions to give up; this coordinator's own.
    pub(super) liveness: Mutex<HashMap<(String, String), Liveness>>,
    /// Classic-protocol groups, as applied from their state records.
    pub(super) classics: Mutex<HashMap<String, ClassicGroup>>,
    /// The coordinator's working copies of classic groups, with the
    /// leadership term they were loaded in.
    pub(super) classic_live: Mutex<HashMap<String, (u64, ClassicGroup)>>,
    /// Bumped on every change of a classic group (waiting joins and syncs
    /// re-read their group).
    pub(super) classic_changed: tokio::sync::watch::Sender<u64>,
    /// When the rebalance in progress of each coordinated group began.
    pub(super) rebalancing_since: Mutex<HashMap<String, std::time::Instant>>,
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
            consumers: Mutex::default(),
            liveness: Mutex::default(),
            classics: Mutex::default(),
            classic_live: Mutex::default(),
            classic_changed: tokio::sync::watch::Sender::new(0),
            rebalancing_since: Mutex::default(),
        }
    }

    /// Makes an offsets partition hosted here known.
    pub fn register(&self, p: u32, partition: Arc<Partition>) {
        self.shards
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                p,
                Arc::new(Shard {
                    partition,
                    write: tokio::sync::Mutex::new(()),
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
            if let Some(sk) = r
                .key
                .as_ref()
                .and_then(|k| serde_json::from_slice::<StateKey>(k).ok())
            {
                if sk.k == CONSUMER_STATE {
                    self.apply_state(sk.g, r.value.as_deref());
                } else if sk.k == CLASSIC_STATE {
                    self.apply_classic(sk.g, r.value.as_deref());
                }
                continue;
            }
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
    pub(super) fn shard(&self, group: &str) -> Result<Arc<Shard>> {
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

    /// Notes a group's rebalance beginning (`started`) and the group being
    /// stable (`stable`): the time between is the rebalance's duration.
    pub(super) fn note_rebalance(&self, group: &str, protocol: &str, started: bool, stable: bool) {
        let mut r = self
            .rebalancing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if started {
            crate::metrics::global().rebalance(group);
            r.entry(group.to_owned())
                .or_insert_with(std::time::Instant::now);
        }
        if stable && let Some(since) = r.remove(group) {
            crate::metrics::global().rebalance_done(protocol, since.elapsed());
        }
    }

    /// The offsets partitions this broker leads, by index.
    pub(super) fn led_shards(&self) -> Vec<(u32, Arc<Shard>)> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| s.partition.is_leader())
            .map(|(i, s)| (*i, Arc::clone(s)))
            .collect()
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
        let mut raw = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            raw.push((to_json(k)?, v.as_ref().map(to_json).transpose()?));
        }
        self.write_raw(shard, &raw).await
    }

    /// Writes records (key, value; `None` deletes) to a shard and waits
    /// until they committed (and so were applied here).
    pub(super) async fn write_raw(&self, shard: &Shard, entries: &[Record]) -> Result<()> {
        let now = now_ms();
        let mut batches = Vec::new();
        for chunk in entries.chunks(2000) {
            let mut b = BatchBuilder::new(now);
            for (key, val) in chunk {
                b.push(now, Some(key), val.as_deref(), &[]);
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

    /// Durably commits offsets for a group. A member of a group with
    /// membership commits as `(member id, epoch)` and only partitions it
    /// owns; without a member, only groups without members take commits.
    pub async fn commit(
        &self,
        group: &str,
        offsets: Vec<(String, u32, i64, String)>,
        member: (&str, i32),
    ) -> Result<()> {
        validate_group(group)?;
        let shard = self.shard(group)?;
        let _w = shard.write.lock().await;
        let tps: Vec<(String, u32)> = offsets.iter().map(|(t, p, ..)| (t.clone(), *p)).collect();
        self.check_commit(group, member.0, member.1, &tps)?;
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
        self.write(&shard, &entries).await
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

    /// Every group known here: with committed offsets or with membership.
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        v.extend(
            self.consumers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned(),
        );
        v.extend(
            self.classics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned(),
        );
        v.sort();
        v.dedup();
        v
    }

    pub fn exists(&self, group: &str) -> bool {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(group)
            || self
                .consumers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(group)
            || self.classic_state(group).is_some()
    }

    /// Deletes a group without members: its committed offsets and its
    /// membership record.
    pub async fn delete(&self, group: &str) -> Result<()> {
        validate_group(group)?;
        let shard = self.shard(group)?;
        let _w = shard.write.lock().await;
        let state = self.consumer_state(group);
        if state.as_ref().is_some_and(GroupState::has_members) {
            return Err(BrokerError::NonEmptyGroup(group.to_owned()));
        }
        let classic = self.classic_state(group);
        if classic.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(BrokerError::NonEmptyGroup(group.to_owned()));
        }
        if state.is_some() {
            self.write_raw(&shard, &[(state_key(group)?, None)]).await?;
        }
        if classic.is_some() {
            self.write_raw(&shard, &[(classic_key(group)?, None)])
                .await?;
            self.classic_live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(group);
        }
        let keys: Vec<(Key, Option<Committed>)> = {
            let g = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            let Some(offs) = g.get(group) else {
                if state.is_some() || classic.is_some() {
                    return Ok(());
                }
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
        self.write(&shard, &keys).await
    }

    /// Deletes the committed offsets of `partitions` for `group` (Kafka's
    /// OffsetDelete). A partition of a topic the group's members consume
    /// is refused (`GroupSubscribedToTopic`); a group with members whose
    /// subscriptions cannot be read is refused as a whole. Partitions
    /// without an offset succeed.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<Vec<Result<()>>> {
        validate_group(group)?;
        let shard = self.shard(group)?;
        let _w = shard.write.lock().await;
        let consumer = self.consumer_state(group);
        let classic = self.classic_state(group);
        let committed = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned();
        if consumer.is_none() && classic.is_none() && committed.is_none() {
            return Err(BrokerError::UnknownGroup(group.to_owned()));
        }
        let mut consumed = std::collections::BTreeSet::new();
        if let Some(s) = consumer.filter(GroupState::has_members) {
            consumed.extend(s.subscribed.into_keys());
        }
        if let Some(c) = classic.filter(|c| !c.is_empty()) {
            let Some(topics) = c.subscribed_topics() else {
                return Err(BrokerError::NonEmptyGroup(group.to_owned()));
            };
            consumed.extend(topics);
        }
        let mut doomed = Vec::new();
        let results = partitions
            .iter()
            .map(|(t, p)| {
                if consumed.contains(t) {
                    return Err(BrokerError::GroupSubscribedToTopic {
                        group: group.to_owned(),
                        topic: t.clone(),
                    });
                }
                if committed
                    .as_ref()
                    .is_some_and(|c| c.contains_key(&(t.clone(), *p)))
                {
                    let key = Key {
                        g: group.to_owned(),
                        t: t.clone(),
                        p: *p,
                    };
                    doomed.push((key, None));
                }
                Ok(())
            })
            .collect();
        if !doomed.is_empty() {
            self.write(&shard, &doomed).await?;
        }
        Ok(results)
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
        for (i, shard) in self.led_shards() {
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

pub(super) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| BrokerError::Storage(e.to_string()))
}

/// The record key of a group's consumer-protocol state.
pub(super) fn classic_key(group: &str) -> Result<Vec<u8>> {
    to_json(&StateKey {
        g: group.to_owned(),
        k: CLASSIC_STATE.to_owned(),
    })
}

pub(super) fn state_key(group: &str) -> Result<Vec<u8>> {
    to_json(&StateKey {
        g: group.to_owned(),
        k: CONSUMER_STATE.to_owned(),
    })
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
