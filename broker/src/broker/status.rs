//! Replica states for the status RPCs: what this broker leads, and the
//! merged view of every reachable broker.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use strata_proto::v1::peer_client::PeerClient;

use super::Broker;
use crate::security::tls::connect_broker;

impl Broker {
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
    ) -> (
        HashMap<(String, u32), strata_proto::v1::ReplicaState>,
        HashSet<u64>,
    ) {
        let mut states: HashMap<(String, u32), strata_proto::v1::ReplicaState> = HashMap::new();
        let mut alive = HashSet::new();
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
}
