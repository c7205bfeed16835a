//! The broker's Raft event loop: one thread drives every group hosted here.
//!
//! Each cycle: take commands (peer messages, proposals, group changes),
//! tick when due, then for every group with a `Ready`: send the leader's
//! messages at once, install a snapshot if one came, write the new entries
//! to the partition log, record term/vote changes (fsynced); then one sync
//! pass for every log under `fsync=always` (group commit across groups);
//! then send the messages that required persistence, apply what committed
//! (the high watermark, or the metadata state machine for the controller)
//! and advance. This is raft-rs's Ready contract: nothing that depends on
//! persisted entries or hard state leaves before they are on disk.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use raft::{Config, RawNode, StateRole};
use strata_proto::batch::BatchHeader;
use strata_proto::v1::{LeaderNotice, RaftEnvelope};

use super::directory::Directory;
use super::hardstate::HardStates;
use super::replica::{Admission, Replica, ReplicaCore, Role};
use super::storage::{LogStorage, delete_records_target, entry_to_batch, snapshot_base};
use super::transport::Transport;
use super::{GroupKey, RaftTiming};
use crate::error::{BrokerError, Result};
use crate::log::{FsyncPolicy, SyncPlan, now_ms};

/// A leader quiesces a group idle this long with every follower caught up.
const QUIESCE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// A follower whose leader's broker was silent this long (several missed
/// broker heartbeats) treats its leader as gone: a quiesced group wakes, and
/// every such group campaigns within one more (randomized) election
/// timeout instead of waiting out a whole one first.
const WAKE_AFTER: std::time::Duration = std::time::Duration::from_millis(350);
/// Ticks between broker-to-broker heartbeats (one empty batch per peer,
/// which keeps liveness known while groups are quiesced).
const PEER_HEARTBEAT_TICKS: u64 = 2;

/// A follower asked for its (pre-)vote treats its leader's lease as over
/// when the leader's broker has been silent this long (two broker
/// heartbeats missed): the candidate saw the leader go silent a moment
/// earlier, and waiting for this replica's own detection would cost a
/// whole second election round. A replica that still hears the leader
/// keeps refusing, which is what the lease is for.
const VOTE_LEASE_SILENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// A cycle longer than this is reported (a tenth of the default
/// election timeout's lower bound would be 50 ms; this flags real stalls).
const SLOW_CYCLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Entries a follower may trail the leader's log end by and stay in sync.
const ISR_MAX_LAG: u64 = 1000;

/// How often a replica suspended after a failed write checks for room.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes the room probe writes (and removes) next to the log.
const PROBE_BYTES: usize = 1 << 20;

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
        campaign: bool,
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
    tx: mpsc::Sender<Cmd>,
}

impl RaftHandle {
    pub fn send(&self, cmd: Cmd) -> Result<()> {
        self.tx.send(cmd).map_err(|_| BrokerError::ShuttingDown)
    }
}

/// A leadership as reported to the rest of the cluster.
#[derive(Debug, Clone)]
pub struct ReplicaView {
    pub role: Role,
    /// Replicas caught up with the leader (only known on the leader).
    pub isr: Vec<u64>,
    pub voters: Vec<u64>,
}

struct Group {
    node: RawNode<LogStorage>,
    replica: Arc<dyn Replica>,
    role: Role,
    /// Not ticked until a message arrives (or the leader goes silent).
    quiesced: bool,
    /// Last proposal or replication traffic.
    last_active: Instant,
}

/// A group taken out of the loop after its storage failed: it leads and
/// acknowledges nothing; once its disk has room again it is rebuilt from
/// what is on disk, as a restart of that one replica would.
struct Suspended {
    replica: Arc<dyn Replica>,
}

pub struct RaftLoop {
    node_id: u64,
    timing: RaftTiming,
    groups: HashMap<GroupKey, Group>,
    rx: mpsc::Receiver<Cmd>,
    transport: Arc<Transport>,
    directory: Arc<Directory>,
    logger: slog::Logger,
    views: Arc<std::sync::RwLock<HashMap<GroupKey, ReplicaView>>>,
    outbox: HashMap<u64, Vec<RaftEnvelope>>,
    notices: Vec<LeaderNotice>,
    hard_states: Arc<HardStates>,
    suspended: HashMap<GroupKey, Suspended>,
    next_probe: Instant,
}

/// Shared, read-only view of the groups for status RPCs.
pub type Views = Arc<std::sync::RwLock<HashMap<GroupKey, ReplicaView>>>;

impl Group {
    fn core(&self) -> &ReplicaCore {
        self.replica.core()
    }
}

impl RaftLoop {
    pub fn new(
        node_id: u64,
        timing: RaftTiming,
        transport: Arc<Transport>,
        directory: Arc<Directory>,
        hard_states: Arc<HardStates>,
    ) -> (Self, RaftHandle, Views) {
        let (tx, rx) = mpsc::channel();
        let views: Views = Arc::default();
        (
            Self {
                node_id,
                timing,
                groups: HashMap::new(),
                rx,
                transport,
                directory,
                logger: super::logger(),
                views: Arc::clone(&views),
                outbox: HashMap::new(),
                notices: Vec::new(),
                hard_states,
                suspended: HashMap::new(),
                next_probe: Instant::now(),
            },
            RaftHandle { tx },
            views,
        )
    }

    /// Runs the loop on its own thread until `Cmd::Stop`.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("raft-loop".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let mut next_tick = Instant::now() + self.timing.tick;
        let mut active: HashSet<GroupKey> = HashSet::new();
        let mut ticks: u64 = 0;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => {
                    if !self.handle(cmd, &mut active) {
                        return;
                    }
                    let mut n = 0;
                    while n < 4096 {
                        let Ok(cmd) = self.rx.try_recv() else { break };
                        if !self.handle(cmd, &mut active) {
                            return;
                        }
                        n += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                ticks += 1;
                self.tick(&mut active);
                self.probe_suspended(&mut active);
                if ticks.is_multiple_of(PEER_HEARTBEAT_TICKS) {
                    for peer in self.transport.peer_ids() {
                        self.outbox.entry(peer).or_default();
                    }
                }
                next_tick += self.timing.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.timing.tick;
                }
            }
            if !active.is_empty() {
                let started = Instant::now();
                let groups = active.len();
                self.process(&mut active);
                let took = started.elapsed();
                if took > SLOW_CYCLE {
                    tracing::warn!(
                        groups,
                        elapsed_ms = took.as_millis() as u64,
                        "slow Raft cycle: elections may time out"
                    );
                }
            } else if !self.outbox.is_empty() {
                self.flush_outbox();
            }
        }
    }

    fn handle(&mut self, cmd: Cmd, active: &mut HashSet<GroupKey>) -> bool {
        match cmd {
            Cmd::Step(msgs) => {
                for (key, mut m) in msgs {
                    if let Some(g) = self.groups.get_mut(&key) {
                        let from = m.from;
                        if !g.node.raft.prs().conf().voters().contains(from)
                            && !g.node.raft.prs().conf().learners().contains(&from)
                            && g.node.raft.prs().conf().voters().contains(self.node_id)
                            && !g.replica.admits_strangers()
                        {
                            continue;
                        }
                        // A leader may still believe a wiped follower holds
                        // entries; never let a heartbeat commit past our log.
                        if m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat {
                            m.commit = m.commit.min(g.node.raft.raft_log.last_index());
                        }
                        g.quiesced = false;
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
                        if !matches!(
                            m.get_msg_type(),
                            raft::eraftpb::MessageType::MsgHeartbeat
                                | raft::eraftpb::MessageType::MsgHeartbeatResponse
                        ) {
                            g.last_active = Instant::now();
                        }
                        if let Err(e) = g.node.step(m) {
                            tracing::debug!(topic = %key.0, partition = key.1, error = %e, "step failed");
                        }
                        active.insert(key);
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
                active.insert(key);
            }
            Cmd::ProposeRaw { key, data, reply } => {
                let r = match self.groups.get_mut(&key) {
                    Some(g) if g.node.raft.state == StateRole::Leader => {
                        g.quiesced = false;
                        g.last_active = Instant::now();
                        match g.node.propose(vec![], data) {
                            Ok(()) => Ok((g.node.raft.raft_log.last_index(), g.node.raft.term)),
                            Err(_) => Err(refuse(g)),
                        }
                    }
                    Some(g) => Err(refuse(g)),
                    None => Err(BrokerError::ShuttingDown),
                };
                let _ = reply.send(r);
                active.insert(key);
            }
            Cmd::ConfChange { key, cc, reply } => {
                let r = match self.groups.get_mut(&key) {
                    Some(g) if g.node.raft.state == StateRole::Leader => {
                        g.quiesced = false;
                        g.last_active = Instant::now();
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
                active.insert(key);
            }
            Cmd::AddGroup { replica, campaign } => {
                let key = replica.core().key();
                if self.groups.contains_key(&key) || self.suspended.contains_key(&key) {
                    return true;
                }
                match self.new_group(replica, campaign) {
                    Ok(g) => {
                        self.groups.insert(key.clone(), g);
                        active.insert(key);
                    }
                    Err(e) => {
                        tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot start the Raft group")
                    }
                }
            }
            Cmd::RemoveGroup { key } => {
                if let Some(g) = self.groups.remove(&key) {
                    // Whoever still waits on the replica is answered now.
                    g.core().drop_leadership();
                }
                self.suspended.remove(&key);
                self.hard_states.remove(&key);
                self.views
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
            }
            Cmd::TransferLeader { key, to } => {
                if let Some(g) = self.groups.get_mut(&key) {
                    g.quiesced = false;
                    g.last_active = Instant::now();
                    g.node.transfer_leader(to);
                    active.insert(key);
                }
            }
            Cmd::TransferAll => {
                for (k, g) in &mut self.groups {
                    if g.node.raft.state != StateRole::Leader {
                        continue;
                    }
                    g.quiesced = false;
                    g.last_active = Instant::now();
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
                        active.insert(k.clone());
                    }
                }
            }
            Cmd::Quiesce {
                key,
                from,
                term,
                index,
            } => {
                if let Some(g) = self.groups.get_mut(&key) {
                    let r = &g.node.raft;
                    if r.term == term
                        && r.leader_id == from
                        && r.raft_log.last_index() == index
                        && r.raft_log.committed == index
                    {
                        g.quiesced = true;
                    }
                }
            }
            Cmd::PeerRestarted(peer) => {
                for (k, g) in &mut self.groups {
                    if g.node.raft.state != StateRole::Leader {
                        continue;
                    }
                    let last = g.node.raft.raft_log.last_index();
                    g.quiesced = false;
                    if let Some(pr) = g.node.raft.mut_prs().get_mut(peer) {
                        pr.matched = 0;
                        pr.become_probe();
                        pr.next_idx = last + 1;
                        active.insert(k.clone());
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

    /// Ticks every group that is not quiesced; quiesces idle led groups and
    /// wakes quiesced followers whose leader's broker went silent.
    fn tick(&mut self, active: &mut HashSet<GroupKey>) {
        let me = self.node_id;
        // A broken link: leaders stop streaming appends to that peer and
        // probe it again instead.
        let broken = self.transport.take_unreachable();
        for &peer in &broken {
            for g in self.groups.values_mut() {
                if g.node.raft.state == StateRole::Leader {
                    g.node.report_unreachable(peer);
                }
            }
        }
        // Silent: not heard from lately, or the link to it just broke (a
        // killed broker refuses connections at once). Pre-vote keeps this
        // from disturbing a leader that the other replicas still hear.
        let silent: HashSet<u64> = self
            .transport
            .peer_ids()
            .into_iter()
            .filter(|p| broken.contains(p) || !self.directory.heard_within(*p, WAKE_AFTER))
            .collect();
        let mut failed = Vec::new();
        for (k, g) in &mut self.groups {
            if g.core().has_failed() {
                // The background flusher's fsync failed.
                failed.push(k.clone());
                continue;
            }
            let leader = g.node.raft.leader_id;
            let leader_silent = leader != me && silent.contains(&leader);
            if g.quiesced {
                if !leader_silent {
                    continue;
                }
                g.quiesced = false;
            }
            if leader_silent {
                end_lease(&mut g.node.raft);
            }
            g.node.tick();
            active.insert(k.clone());
            if can_quiesce(g, me) {
                g.quiesced = true;
                let term = g.node.raft.term;
                let index = g.node.raft.raft_log.last_index();
                let followers: Vec<u64> = g
                    .node
                    .raft
                    .prs()
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| *id != me)
                    .collect();
                for to in followers {
                    self.outbox.entry(to).or_default().push(RaftEnvelope {
                        topic: k.0.clone(),
                        partition: k.1,
                        quiesce: true,
                        quiesce_term: term,
                        quiesce_index: index,
                        ..Default::default()
                    });
                }
            }
        }
        for key in failed {
            self.suspend(&key);
        }
    }

    fn new_group(&self, replica: Arc<dyn Replica>, campaign: bool) -> Result<Group> {
        let core = Arc::clone(replica.core());
        let applied = replica.applied_at_start(&core.lock());
        let cfg = Config {
            id: self.node_id,
            election_tick: self.timing.election_ticks,
            heartbeat_tick: self.timing.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            // Bounded in-flight appends per follower: deep queues only add
            // latency (and delay heartbeats behind bulk data).
            max_inflight_msgs: 8,
            check_quorum: true,
            pre_vote: true,
            max_committed_size_per_ready: 16 << 20,
            ..Config::default()
        };
        let logger = self
            .logger
            .new(slog::o!("topic" => core.topic().to_owned(), "partition" => core.id()));
        let storage = LogStorage::new(core);
        let mut node = RawNode::new(&cfg, storage, &logger)
            .map_err(|e| BrokerError::Storage(format!("raft: {e}")))?;
        let voters: Vec<u64> = node.raft.prs().conf().voters().ids().iter().collect();
        let sole = voters == [self.node_id];
        if (campaign || sole) && voters.contains(&self.node_id) {
            let _ = node.campaign();
        }
        Ok(Group {
            node,
            replica,
            role: Role::default(),
            quiesced: false,
            last_active: Instant::now(),
        })
    }

    fn propose(&mut self, key: &GroupKey, batches: Vec<(BatchHeader, Bytes)>) -> Result<Proposal> {
        let Some(g) = self.groups.get_mut(key) else {
            return Err(BrokerError::UnknownPartition {
                topic: key.0.clone(),
                partition: key.1,
            });
        };
        if g.node.raft.state != StateRole::Leader || g.node.raft.lead_transferee.is_some() {
            return Err(g.replica.refuse(g.core().role().leader));
        }
        g.quiesced = false;
        g.last_active = Instant::now();
        // Offsets are a function of the log prefix: what is written plus
        // what is proposed but not yet written.
        let pending: i64 = g
            .node
            .raft
            .raft_log
            .unstable
            .entries
            .iter()
            .map(|e| records_in(&e.data))
            .sum();
        // The storage locks the log too: never hold its lock across a call
        // into raft-rs.
        let mut next = g.core().lock().log.next_offset() + pending;
        let (mut base, mut last) = (-1i64, -1i64);
        let mut index = 0;
        for (h, bytes) in batches {
            let (b, l) = match g.replica.admit(&h)? {
                Admission::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    // Committed or still in flight: answer once the offsets commit.
                    (base_offset, last_offset)
                }
                Admission::Append => {
                    let stamped = BatchHeader {
                        base_offset: next,
                        ..h
                    };
                    if g.node.propose(vec![], bytes.to_vec()).is_err() {
                        return Err(g.replica.refuse(g.core().role().leader));
                    }
                    g.replica.record(&stamped);
                    index = g.node.raft.raft_log.last_index();
                    let b = next;
                    next += i64::from(h.records_count);
                    (b, stamped.last_offset())
                }
            };
            if base < 0 {
                base = b;
            }
            last = l;
        }
        Ok(Proposal {
            base_offset: base,
            last_offset: last,
            end_offset: next.max(last + 1),
            index,
            term: g.node.raft.term,
        })
    }

    fn process(&mut self, active: &mut HashSet<GroupKey>) {
        let now = now_ms();
        let mut readies = Vec::new();
        let mut plans: Vec<(GroupKey, SyncPlan)> = Vec::new();
        let mut broken: Vec<GroupKey> = Vec::new();
        for key in active.drain() {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            if !g.node.has_ready() {
                continue;
            }
            let mut rd = g.node.ready();
            queue(&mut self.outbox, &key, rd.take_messages());
            if let Err(e) = persist(g, &mut rd, now, &mut plans, &key, &self.hard_states) {
                // Nothing that is not on disk is acknowledged: the replica
                // leaves the loop until its disk has room.
                tracing::error!(topic = %key.0, partition = key.1, error = %e,
                    "cannot persist Raft entries; suspending the replica");
                broken.push(key);
                continue;
            }
            readies.push((key, rd));
        }
        // Term and vote changes of every group, in one durable write.
        if let Err(e) = self.hard_states.flush() {
            tracing::error!(error = %e, "cannot persist Raft term/vote; suspending these replicas");
            broken.extend(readies.drain(..).map(|(key, _)| key));
            plans.clear();
        }
        // One sync pass for everything written in this cycle.
        for (key, plan) in plans {
            match plan.run() {
                Ok(()) => {
                    if let Some(g) = self.groups.get(&key) {
                        g.core().lock().log.mark_synced(plan.up_to);
                    }
                }
                Err(e) => {
                    // Written pages may be lost: offline until a restart
                    // recovers the log from what reached the disk.
                    tracing::error!(topic = %key.0, partition = key.1, error = %e,
                        "fsync failed; taking the replica offline");
                    if let Some(g) = self.groups.get(&key) {
                        g.core().fail();
                    }
                    readies.retain(|(k, _)| *k != key);
                    broken.push(key);
                }
            }
        }
        for key in &broken {
            self.suspend(key);
        }
        for (key, mut rd) in readies {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            queue(&mut self.outbox, &key, rd.take_persisted_messages());
            let committed = rd.take_committed_entries();
            apply(g, committed);
            let mut light = g.node.advance(rd);
            if let Some(c) = light.commit_index() {
                g.core().lock().meta.commit = c;
            }
            queue(&mut self.outbox, &key, light.take_messages());
            let committed = light.take_committed_entries();
            apply(g, committed);
            g.node.advance_apply();
            let role = Role {
                leader: g.node.raft.leader_id,
                term: g.node.raft.term,
            };
            if role != g.role {
                if g.role.leader == self.node_id && role.leader != self.node_id {
                    forget_unwritten(&*g.replica);
                }
                g.role = role;
                g.last_active = Instant::now();
                g.core().set_role(role);
                self.directory
                    .set_leader(&key.0, key.1, role.leader, role.term);
                if role.leader != 0 {
                    self.notices.push(LeaderNotice {
                        topic: key.0.clone(),
                        partition: key.1,
                        leader: role.leader,
                        term: role.term,
                    });
                }
                if role.leader == self.node_id {
                    tracing::info!(topic = %key.0, partition = key.1, term = role.term, "became leader");
                }
            }
            self.publish_view(&key);
            if g_needs_more(&self.groups, &key) {
                active.insert(key);
            }
        }
        self.flush_outbox();
    }

    /// Takes a group whose storage failed out of the loop (see
    /// [`Suspended`]). Its raft-rs node is dropped: what it had not made
    /// durable was never acknowledged, and the node is rebuilt from disk.
    fn suspend(&mut self, key: &GroupKey) {
        let Some(g) = self.groups.remove(key) else {
            return;
        };
        hold_out(&*g.replica);
        self.directory.set_leader(&key.0, key.1, 0, g.role.term);
        self.views
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.suspended
            .insert(key.clone(), Suspended { replica: g.replica });
    }

    /// Rebuilds suspended groups once a probe write next to their logs
    /// succeeds (checked every `PROBE_EVERY`). Groups whose fsync failed
    /// stay out until the broker restarts.
    fn probe_suspended(&mut self, active: &mut HashSet<GroupKey>) {
        if self.suspended.is_empty() || Instant::now() < self.next_probe {
            return;
        }
        self.next_probe = Instant::now() + PROBE_EVERY;
        let Some(dir) = self
            .suspended
            .values()
            .find(|s| !s.replica.core().has_failed())
            .map(|s| s.replica.core().with_log(|log, _| log.dir().to_owned()))
        else {
            return;
        };
        if let Err(e) = probe_room(&dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "still no room to write");
            return;
        }
        let keys: Vec<GroupKey> = self
            .suspended
            .iter()
            .filter(|(_, s)| !s.replica.core().has_failed())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(s) = self.suspended.remove(&key) else {
                continue;
            };
            s.replica.core().resume();
            match self.new_group(Arc::clone(&s.replica), false) {
                Ok(g) => {
                    tracing::info!(topic = %key.0, partition = key.1, "disk has room again; replica resumed");
                    self.groups.insert(key.clone(), g);
                    active.insert(key);
                }
                Err(e) => {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot resume the replica");
                    hold_out(&*s.replica);
                    self.suspended.insert(key, s);
                }
            }
        }
    }

    fn publish_view(&self, key: &GroupKey) {
        let Some(g) = self.groups.get(key) else {
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

    fn flush_outbox(&mut self) {
        let notices = std::mem::take(&mut self.notices);
        let mut outbox = std::mem::take(&mut self.outbox);
        if !notices.is_empty() {
            for peer in self.transport.peer_ids() {
                outbox.entry(peer).or_default();
            }
        }
        for (to, messages) in outbox {
            if to == self.node_id {
                continue;
            }
            self.transport.send(to, messages, notices.clone());
        }
    }
}

/// Ends a follower's view of its leader's lease: what is left before it
/// campaigns is the randomized part of the election timeout (spreading the
/// candidates), and it grants (pre-)votes at once.
fn end_lease(r: &mut raft::Raft<LogStorage>) {
    if r.state != StateRole::Follower {
        return;
    }
    let et = r.election_timeout();
    if r.election_elapsed < et {
        r.election_elapsed = et;
    }
}

/// Makes the state machine forget what it recorded past the log end:
/// proposals of a leader that never reached the log may not answer a retry
/// as duplicates.
fn forget_unwritten(replica: &dyn Replica) {
    let end = replica.core().lock().log.next_offset();
    replica.truncated(end);
}

/// Holds a replica out after its storage failed (see [`Suspended`]).
fn hold_out(replica: &dyn Replica) {
    replica.core().suspend();
    forget_unwritten(replica);
}

/// Writes and removes `PROBE_BYTES` in `dir`: whether a write would fit.
fn probe_room(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".room-probe");
    let r = std::fs::File::create(&path).and_then(|mut f| f.write_all(&vec![0u8; PROBE_BYTES]));
    let _ = std::fs::remove_file(&path);
    r
}

/// An idle led group whose followers all hold and know the whole log.
fn can_quiesce(g: &Group, me: u64) -> bool {
    let r = &g.node.raft;
    if r.state != StateRole::Leader
        || r.lead_transferee.is_some()
        || g.last_active.elapsed() < QUIESCE_AFTER
        || !r.raft_log.unstable.entries.is_empty()
    {
        return false;
    }
    let last = r.raft_log.last_index();
    r.raft_log.committed == last
        && r.prs()
            .iter()
            .all(|(id, p)| *id == me || (p.matched == last && p.committed_index == last))
}

fn g_needs_more(groups: &HashMap<GroupKey, Group>, key: &GroupKey) -> bool {
    groups.get(key).is_some_and(|g| g.node.has_ready())
}

/// What a group that does not lead answers a proposal with.
fn refuse(g: &Group) -> BrokerError {
    g.replica.refuse(g.node.raft.leader_id)
}

/// Records a batch would take (0 for empty entries).
fn records_in(data: &[u8]) -> i64 {
    strata_proto::batch::parse_header(data).map_or(0, |h| i64::from(h.records_count.max(0)))
}

fn queue(outbox: &mut HashMap<u64, Vec<RaftEnvelope>>, key: &GroupKey, msgs: Vec<Message>) {
    for m in msgs {
        let to = m.to;
        let bytes = match m.write_to_bytes() {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a Raft message");
                continue;
            }
        };
        outbox.entry(to).or_default().push(RaftEnvelope {
            topic: key.0.clone(),
            partition: key.1,
            message: bytes,
            ..Default::default()
        });
    }
}

/// Writes a ready's snapshot, entries and hard state; queues the fsyncs
/// `fsync=always` needs.
fn persist(
    g: &mut Group,
    rd: &mut raft::Ready,
    now: i64,
    plans: &mut Vec<(GroupKey, SyncPlan)>,
    key: &GroupKey,
    hard_states: &HardStates,
) -> std::result::Result<(), String> {
    let core = Arc::clone(g.replica.core());
    let mut inner = core.lock();
    let dir = inner.log.dir().to_owned();
    let mut meta_dirty = false;
    if !rd.snapshot().is_empty() {
        let s = rd.snapshot();
        let base = snapshot_base(s)?;
        inner.log.reset_to(base, now).map_err(|e| e.to_string())?;
        g.replica.restored();
        inner.meta.set_conf(s.get_metadata().get_conf_state());
        inner.meta.commit = base.index;
        meta_dirty = true;
        core.reset_hw(base.next_offset);
        tracing::info!(topic = %key.0, partition = key.1, index = base.index, offset = base.next_offset,
            "installed a snapshot from the leader");
    }
    let entries = rd.take_entries();
    if !entries.is_empty() {
        // The idempotence table describes the log: forget what it holds
        // from where these entries land (a suffix a new leader replaced, or
        // proposals of ours that never reached the log), then record the
        // entries as they are written.
        // (A leader appending its own proposals at the end has nothing to
        // forget: they were recorded as proposed.)
        let first = entries[0].index;
        let replaces = first <= inner.log.raft_last_index();
        if replaces || g.node.raft.state != StateRole::Leader {
            let from = if replaces {
                inner.log.offset_after_index(first - 1)
            } else {
                None
            };
            let from = from.unwrap_or_else(|| inner.log.next_offset());
            g.replica.truncated(from);
        }
        for e in &entries {
            let b = entry_to_batch(e);
            let info = inner
                .log
                .append_entry(&b, e.term, e.index, now)
                .map_err(|err| err.to_string())?;
            if e.get_entry_type() == EntryType::EntryNormal
                && !e.data.is_empty()
                && let Ok(h) = strata_proto::batch::parse_header(&e.data)
            {
                g.replica.record(&BatchHeader {
                    base_offset: info.base_offset,
                    ..h
                });
            }
        }
        core.mark_written(inner.log.next_offset());
        if inner.log.config().fsync == FsyncPolicy::Always {
            plans.push((key.clone(), inner.log.sync_plan()));
        }
    }
    if let Some(hs) = rd.hs() {
        if hs.term != inner.meta.term || hs.vote != inner.meta.vote {
            // Made durable for all groups at once before any persisted
            // message leaves (see `process`).
            hard_states.set(key, hs.term, hs.vote);
        }
        inner.meta.term = hs.term;
        inner.meta.vote = hs.vote;
        inner.meta.commit = hs.commit;
    }
    if meta_dirty {
        inner.meta.store(&dir).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Applies committed entries: for a partition, the high watermark moves
/// past them; for the controller, the commands run against the metadata.
fn apply(g: &mut Group, committed: Vec<Entry>) {
    let Some(last) = committed.last() else {
        return;
    };
    let last_index = last.index;
    for e in &committed {
        match e.get_entry_type() {
            EntryType::EntryConfChange => {
                if let Ok(cc) = ConfChange::parse_from_bytes(&e.data) {
                    match g.node.apply_conf_change(&cc) {
                        Ok(cs) => {
                            let mut inner = g.core().lock();
                            inner.meta.set_conf(&cs);
                            let dir = inner.log.dir().to_owned();
                            if let Err(err) = inner.meta.store(&dir) {
                                tracing::error!(error = %err, "cannot store the membership");
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "membership change not applied"),
                    }
                }
            }
            EntryType::EntryConfChangeV2 => {
                if let Ok(cc) = ConfChangeV2::parse_from_bytes(&e.data)
                    && let Ok(cs) = g.node.apply_conf_change(&cc)
                {
                    let mut inner = g.core().lock();
                    inner.meta.set_conf(&cs);
                    let dir = inner.log.dir().to_owned();
                    let _ = inner.meta.store(&dir);
                }
            }
            EntryType::EntryNormal => {
                if let Some(target) = delete_records_target(&e.data) {
                    g.core().apply_delete_records(target, now_ms());
                } else if !e.data.is_empty() {
                    g.replica.apply(e.index, &e.data);
                }
            }
        }
    }
    let hw = g
        .core()
        .with_log(|log, _| log.offset_after_index(last_index));
    if let Some(hw) = hw {
        g.core().advance_hw(hw);
    }
    g.replica.applied(last_index);
}
