//! What the loop reports about its groups to the rest of the broker: each
//! replica's role, in-sync set and voters ([`ReplicaView`]), shared as
//! [`Views`] for status RPCs and refreshed after every `Ready`.

use std::collections::HashMap;
use std::sync::Arc;

use raft::StateRole;

use super::GroupKey;
use super::groups::GroupId;
use super::node::RaftLoop;
use super::replica::Role;

/// Entries a follower may trail the leader's log end by and stay in sync.
const ISR_MAX_LAG: u64 = 1000;

/// A leadership as reported to the rest of the cluster.
#[derive(Debug, Clone)]
pub struct ReplicaView {
    pub role: Role,
    /// Replicas caught up with the leader (only known on the leader).
    pub isr: Vec<u64>,
    pub voters: Vec<u64>,
}

/// Shared, read-only view of the groups for status RPCs.
pub type Views = Arc<std::sync::RwLock<HashMap<GroupKey, ReplicaView>>>;

impl RaftLoop {
    pub(super) fn publish_view(&self, id: GroupId) {
        let Some((key, g)) = self.groups.entry(id) else {
            return;
        };
        let voters: Vec<u64> = g.node.raft.prs().conf().voters().ids().iter().collect();
        let isr = if g.node.raft.state == StateRole::Leader {
            let last = g.node.raft.raft_log.last_index();
            let committed = g.node.raft.raft_log.committed;
            let mut v: Vec<u64> = g
                .node
                .raft
                .prs()
                .iter()
                // In sync: heard from recently (any message from its broker;
                // raft-rs's `recent_active` is reset at every quorum check
                // and would make the set flap) and caught up with the commit
                // or close behind the log end.
                .filter(|(id, p)| {
                    **id == self.node_id
                        || (self.directory.alive(**id)
                            && (p.matched >= committed || p.matched + ISR_MAX_LAG >= last))
                })
                .map(|(id, _)| *id)
                .filter(|id| voters.contains(id))
                .collect();
            v.sort_unstable();
            v
        } else {
            Vec::new()
        };
        let view = ReplicaView {
            role: g.role,
            isr,
            voters,
        };
        self.views
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), view);
    }
}
