//! The loop's inbox: the commands it takes ([`Cmd`]), the handle that
//! sends them ([`RaftHandle`]), where a proposal went ([`Proposal`]), and how
//! the loop carries out each command (`RaftLoop::handle`).

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;
use raft::StateRole;
use raft::eraftpb::{ConfChange, Message};
use strata_proto::batch::BatchHeader;

use super::GroupKey;
use super::groups::GroupId;
use super::node::{Group, RaftLoop};
use super::pending::Pending;
use super::quiesce::{VOTE_LEASE_SILENCE, end_lease};
use super::replica::Replica;
use crate::error::{BrokerError, Result};

/// Where a proposal went.
#[derive(Debug, Clone, Copy)]
pub struct Proposal {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The log end after the proposal (what must commit).
    pub end_offset: i64,
    /// Raft index and term of the last entry (0 for a pure duplicate).
    pub index: u64,
    pub term: u64,
}

pub enum Cmd {
    Step(Vec<(GroupKey, Message)>),
    Propose {
        key: GroupKey,
        batches: Vec<(BatchHeader, Bytes)>,
        reply: tokio::sync::oneshot::Sender<Result<Proposal>>,
    },
    /// A controller command batch; answers (index, term).
    ProposeRaw {
        key: GroupKey,
        data: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<(u64, u64)>>,
    },
    ConfChange {
        key: GroupKey,
        cc: ConfChange,
        reply: tokio::sync::oneshot::Sender<Result<(u64, u64)>>,
    },
    AddGroup {
        replica: Arc<dyn Replica>,
        /// For a new group: the replica meant to lead it first. That replica
        /// campaigns at once and the others hold their election timers while
        /// its broker is alive (see `fresh`), so that thousands of
        /// groups created together elect once each instead of racing.
        /// `None` for a group that restarts (or the controller's).
        preferred: Option<u64>,
    },
    RemoveGroup {
        key: GroupKey,
    },
    TransferLeader {
        key: GroupKey,
        to: u64,
    },
    /// Hands every leadership to another replica (shutdown).
    TransferAll,
    /// A peer opened a new stream (restarted, or reconnected): it may have
    /// lost its data, so leaders probe it again instead of trusting the
    /// progress they remember.
    PeerRestarted(u64),
    /// The leader of a group quiesced it.
    Quiesce {
        key: GroupKey,
        from: u64,
        term: u64,
        index: u64,
    },
    Stop,
}

/// Sends commands to the event loop.
#[derive(Clone)]
pub struct RaftHandle {
    pub(super) tx: mpsc::Sender<Cmd>,
}

impl RaftHandle {
    pub fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx.send(cmd).map_err(|_| BrokerError::ShuttingDown)
    }
}

impl RaftLoop {
    /// Steps a peer's message into group `id`.
    pub(super) fn step_peer(&mut self, id: GroupId, mut m: Message, active: &mut Pending) {
        let Some((key, g)) = self.groups.entry_mut(id) else {
            return;
        };
        let from = m.from;
        if !g.node.raft.prs().conf().voters().contains(from)
            && !g.node.raft.prs().conf().learners().contains(&from)
            && g.node.raft.prs().conf().voters().contains(self.node_id)
            && !g.replica.admits_strangers()
        {
            return;
        }
        // A leader may still believe a wiped follower holds
        // entries; never let a heartbeat commit past our log.
        if m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat {
            m.commit = m.commit.min(g.node.raft.raft_log.last_index());
        }
        // A held replica of a new group answers the preferred replica (its
        // vote request, its appends) without waking: it has no timer to run
        // while that replica's broker is heard (`fresh`).
        let held = g.held_for.is_some_and(|(p, _)| p == from) && g.quiesced;
        if matches!(
            m.get_msg_type(),
            raft::eraftpb::MessageType::MsgRequestPreVote
                | raft::eraftpb::MessageType::MsgRequestVote
        ) {
            let leader = g.node.raft.leader_id;
            if leader != 0
                && leader != self.node_id
                && leader != from
                && !self.directory.heard_within(leader, VOTE_LEASE_SILENCE)
            {
                end_lease(&mut g.node.raft);
            }
        }
        if let Err(e) = g.node.step(m) {
            tracing::debug!(topic = %key.0, partition = key.1, error = %e, "step failed");
        }
        // Any message wakes the group, but a held replica that is still a
        // follower (a leadership handed to it makes it campaign, which
        // needs its timer).
        g.quiesced = held && g.node.raft.state == StateRole::Follower;
        active.insert(id);
    }

    pub(super) fn handle(&mut self, cmd: Cmd, active: &mut Pending) -> bool {
        match cmd {
            Cmd::Step(msgs) => {
                let now = Instant::now();
                for (key, m) in msgs {
                    match self.groups.id(&key) {
                        Some(id) => self.step_peer(id, m, active),
                        // Not open here yet (or suspended: nothing to keep).
                        None if !self.suspended.contains_key(&key) => self.early.keep(key, m, now),
                        None => {}
                    }
                }
            }
            Cmd::Propose {
                key,
                batches,
                reply,
            } => {
                let r = self.propose(&key, batches);
                let _ = reply.send(r);
                if let Some(id) = self.groups.id(&key) {
                    active.insert(id);
                }
            }
            Cmd::ProposeRaw { key, data, reply } => {
                let id = self.groups.id(&key);
                let r = match id.and_then(|id| self.groups.get_mut(id)) {
                    Some(g) if g.node.raft.state == StateRole::Leader => {
                        g.quiesced = false;
                        g.last_proposal = Some(Instant::now());
                        match g.node.propose(vec![], data) {
                            Ok(()) => Ok((g.node.raft.raft_log.last_index(), g.node.raft.term)),
                            Err(_) => Err(refuse(g)),
                        }
                    }
                    Some(g) => Err(refuse(g)),
                    None => Err(BrokerError::ShuttingDown),
                };
                let _ = reply.send(r);
                active.extend(id);
            }
            Cmd::ConfChange { key, cc, reply } => {
                let id = self.groups.id(&key);
                let r = match id.and_then(|id| self.groups.get_mut(id)) {
                    Some(g) if g.node.raft.state == StateRole::Leader => {
                        g.quiesced = false;
                        g.last_proposal = Some(Instant::now());
                        match g.node.propose_conf_change(vec![], cc) {
                            Ok(()) => Ok((g.node.raft.raft_log.last_index(), g.node.raft.term)),
                            Err(e) => Err(BrokerError::InvalidRequest(format!(
                                "membership change refused: {e}"
                            ))),
                        }
                    }
                    Some(g) => Err(refuse(g)),
                    None => Err(BrokerError::ShuttingDown),
                };
                let _ = reply.send(r);
                active.extend(id);
            }
            Cmd::AddGroup { replica, preferred } => {
                let key = replica.core().key();
                if self.groups.contains_key(&key) || self.suspended.contains_key(&key) {
                    return true;
                }
                match self.new_group(replica, preferred) {
                    Err(e) => {
                        tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot start the Raft group")
                    }
                    Ok(g) => {
                        let waits = g.quiesced;
                        let early = self.early.take(&key);
                        let id = self.groups.insert(key, g);
                        if waits && preferred == Some(self.node_id) {
                            self.fresh.push_back(id);
                        } else if !waits {
                            active.insert(id);
                        }
                        for m in early {
                            self.step_peer(id, m, active);
                        }
                    }
                }
            }
            Cmd::RemoveGroup { key } => {
                if let Some(g) = self.groups.remove_key(&key) {
                    // Whoever still waits on the replica is answered now.
                    g.core().drop_leadership();
                }
                self.suspended.remove(&key);
                self.early.forget(&key);
                self.hard_states.remove(&key);
                self.views
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            }
            Cmd::TransferLeader { key, to } => {
                if let Some(id) = self.groups.id(&key)
                    && let Some(g) = self.groups.get_mut(id)
                {
                    g.quiesced = false;
                    g.last_proposal = Some(Instant::now());
                    g.node.transfer_leader(to);
                    active.insert(id);
                }
            }
            Cmd::TransferAll => {
                for (id, _, g) in self.groups.iter_mut() {
                    if g.node.raft.state != StateRole::Leader {
                        continue;
                    }
                    g.quiesced = false;
                    g.last_proposal = Some(Instant::now());
                    active.insert(id);
                    let last = g.node.raft.raft_log.last_index();
                    let best = g
                        .node
                        .raft
                        .prs()
                        .iter()
                        .filter(|(id, _)| **id != self.node_id)
                        .filter(|(id, _)| g.node.raft.prs().conf().voters().contains(**id))
                        .max_by_key(|(_, p)| p.matched)
                        .map(|(id, p)| (*id, p.matched));
                    if let Some((to, matched)) = best
                        && matched + 16 >= last
                    {
                        g.node.transfer_leader(to);
                    }
                }
            }
            Cmd::Quiesce {
                key,
                from,
                term,
                index,
            } => {
                if let Some(g) = self.groups.get_mut_by_key(&key) {
                    let r = &g.node.raft;
                    if r.term == term
                        && r.leader_id == from
                        && r.raft_log.last_index() == index
                        && r.raft_log.committed == index
                    {
                        g.quiesced = true;
                        // It has its leader: nothing to wait for.
                        g.held_for = None;
                    }
                }
            }
            Cmd::PeerRestarted(peer) => {
                for (id, _, g) in self.groups.iter_mut() {
                    if g.node.raft.state != StateRole::Leader {
                        continue;
                    }
                    let last = g.node.raft.raft_log.last_index();
                    g.quiesced = false;
                    active.insert(id);
                    if let Some(pr) = g.node.raft.mut_prs().get_mut(peer) {
                        pr.matched = 0;
                        pr.become_probe();
                        pr.next_idx = last + 1;
                    }
                }
            }
            Cmd::Stop => {
                // Requests still waiting on a replica here get NOT_LEADER
                // at once (retriable elsewhere) instead of their timeout.
                for g in self.groups.values() {
                    g.core().drop_leadership();
                }
                return false;
            }
        }
        true
    }
}

/// What a group that does not lead answers a proposal with.
fn refuse(g: &Group) -> BrokerError {
    g.replica.refuse(g.node.raft.leader_id)
}
