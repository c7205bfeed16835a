//! Replica states for the status RPCs: what this broker leads, and the
//! merged view of every reachable broker.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1::peer_client::PeerClient;

use super::{Broker, TopicPartition};
use crate::partition::Partition;
use crate::raft::node::ReplicaView;
use crate::security::tls::connect_broker;

/// Which led replicas a status request asks about, and how much of each.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatesQuery<'a> {
    /// Only this topic's partitions.
    pub topic: Option<&'a str>,
    /// Leader, term and ISR only (cluster status, which counts them over
    /// every partition): no look at the logs.
    pub roles_only: bool,
}

impl StatesQuery<'_> {
    fn wants(&self, topic: &str) -> bool {
        self.topic.is_none_or(|t| t == topic)
    }
}

impl Broker {
    /// States of the partitions this broker leads (for status RPCs). Takes
    /// the led views (and their partitions) under the locks and looks at
    /// the logs after: at 100,000 replicas, copying both maps whole was
    /// most of a status request's cost.
    pub fn local_replica_states(&self, q: StatesQuery<'_>) -> Vec<strata_proto::v1::ReplicaState> {
        let me = self.config.node_id;
        let led: Vec<(TopicPartition, ReplicaView)> = self
            .views
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, v)| v.role.leader == me && q.wants(&k.0))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // A quiesced group's view is not refreshed: drop silent brokers.
        let isr_of = |v: &ReplicaView| -> Vec<u64> {
            v.isr
                .iter()
                .copied()
                .filter(|id| *id == me || self.directory.alive(*id))
                .collect()
        };
        if q.roles_only {
            return led
                .into_iter()
                .map(|(key, v)| strata_proto::v1::ReplicaState {
                    isr: isr_of(&v),
                    topic: key.0,
                    partition: key.1,
                    leader: v.role.leader,
                    term: v.role.term,
                    ..Default::default()
                })
                .collect();
        }
        let parts: Vec<Option<Arc<Partition>>> = {
            let parts = self.partitions.read().unwrap_or_else(|e| e.into_inner());
            led.iter().map(|(k, _)| parts.get(k).cloned()).collect()
        };
        let mut out = Vec::with_capacity(led.len());
        for ((key, v), part) in led.into_iter().zip(parts) {
            let Some(part) = part else {
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
            let isr = isr_of(&v);
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
                cleaner: part
                    .cleaner_state()
                    .map(|c| strata_proto::v1::CleanerStatus {
                        dirty_ratio: c.dirty_ratio,
                        cleaned_offset: c.cleaned_offset,
                        bytes_reclaimed: c.bytes_reclaimed,
                        passes: c.passes,
                        cleanable_bytes: c.cleanable_bytes,
                    }),
            });
        }
        out
    }

    /// Partition states from every reachable broker (each reports what it
    /// leads; the highest term wins) and the set of brokers that answered.
    pub async fn replica_states(
        &self,
        q: StatesQuery<'_>,
    ) -> (
        HashMap<(String, u32), strata_proto::v1::ReplicaState>,
        HashSet<u64>,
    ) {
        let mut states: HashMap<(String, u32), strata_proto::v1::ReplicaState> = HashMap::new();
        let mut alive = HashSet::new();
        alive.insert(self.config.node_id);
        let mut merge = |list: Vec<strata_proto::v1::ReplicaState>| {
            for st in list {
                match states.entry((st.topic.clone(), st.partition)) {
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        if o.get().term < st.term {
                            o.insert(st);
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(st);
                    }
                }
            }
        };
        merge(self.local_replica_states(q));
        let request = strata_proto::v1::ReplicaStatesRequest {
            roles_only: q.roles_only,
            topic: q.topic.unwrap_or_default().to_owned(),
        };
        let peers: Vec<(u64, String)> = self
            .transport
            .peer_ids()
            .into_iter()
            .filter_map(|id| self.transport.peer_addr(id).map(|a| (id, a)))
            .collect();
        let tls = &self.config.tls;
        let request = &request;
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
                .replica_states(request.clone())
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
}
