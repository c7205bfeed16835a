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
//!
//! The loop's inbox and how it carries out each command are in `command`;
//! one group's `Ready` is written and applied in `ready`; quiescing and the
//! leader lease in `quiesce`; groups whose storage failed in `suspend`; the
//! views published for status RPCs in `view`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::{Config, RawNode, StateRole};
use strata_proto::batch::BatchHeader;
use strata_proto::v1::{LeaderNotice, RaftEnvelope};

pub use super::command::{Cmd, Proposal, RaftHandle};
use super::directory::Directory;
use super::early::Early;
use super::fresh::{FRESH_HOLD, hold_over};
use super::groups::{GroupId, Groups, PhasedSet};
use super::hardstate::HardStates;
use super::pending::Pending;
use super::quiesce::{WAKE_AFTER, can_quiesce, credit_heard_voters, end_lease, lost_quorum};
use super::ready::{apply, persist, queue, records_in};
use super::replica::{Admission, Replica, ReplicaCore, Role};
use super::storage::LogStorage;
use super::suspend::{Suspended, forget_unwritten};
use super::transport::Transport;
pub use super::view::{ReplicaView, Views};
use super::{GroupHasher, GroupKey, GroupMap, RaftTiming};
use crate::error::{BrokerError, Result};
use crate::log::{SyncPlan, now_ms};

/// Ticks between broker-to-broker heartbeats (one empty batch per peer,
/// which keeps liveness known while groups are quiesced).
const PEER_HEARTBEAT_TICKS: u64 = 2;

/// Ticks between checks of quiesced groups for a failed background fsync
/// (groups that tick are checked every tick).
const FAILED_SWEEP_TICKS: u64 = 20;

/// A cycle longer than this is reported (a tenth of the default
/// election timeout's lower bound would be 50 ms; this flags real stalls).
const SLOW_CYCLE: Duration = Duration::from_millis(200);

/// A cycle takes due groups for about this long, then leaves the rest to
/// the next one: commands (peer messages, proposals) and ticks are taken in
/// between, so that thousands of groups due at once (a topic created, a
/// broker back) never hold heartbeats and answers behind one long pass.
const CYCLE_BUDGET: Duration = Duration::from_millis(10);

/// A replica in an election: it has no leader (a candidate, or a
/// follower that has not heard one), or its leader's broker is silent.
fn electing(g: &Group, me: u64, silent: &HashSet<u64>) -> bool {
    let r = &g.node.raft;
    r.state != StateRole::Leader
        && (r.leader_id == raft::INVALID_ID || (r.leader_id != me && silent.contains(&r.leader_id)))
}

/// Whether an awake group still ticks: not quiesced, and its storage has
/// not failed (the background flusher's fsync); a failed one goes to
/// `failed`, to be suspended.
fn still_ticks(g: &Group, id: GroupId, failed: &mut Vec<GroupId>) -> bool {
    if g.quiesced {
        return false;
    }
    if g.core().has_failed() {
        failed.push(id);
        return false;
    }
    true
}

pub(super) struct Group {
    pub(super) node: RawNode<LogStorage>,
    pub(super) replica: Arc<dyn Replica>,
    pub(super) role: Role,
    /// Not ticked until a message arrives (or the leader goes silent).
    pub(super) quiesced: bool,
    /// Last proposal (or leadership transfer) led here: a leader quiesces
    /// a group that had none for a while. A leadership that was just won
    /// has had none, so new groups go quiet as soon as their followers
    /// hold the whole log.
    pub(super) last_proposal: Option<Instant>,
    /// A new group's replica that leaves the first election to the
    /// preferred replica (its broker id) until the deadline; see `fresh`.
    pub(super) held_for: Option<(u64, Instant)>,
}

pub struct RaftLoop {
    pub(super) node_id: u64,
    timing: RaftTiming,
    pub(super) groups: Groups<Group>,
    rx: mpsc::Receiver<Cmd>,
    transport: Arc<Transport>,
    pub(super) directory: Arc<Directory>,
    logger: slog::Logger,
    pub(super) views: Arc<std::sync::RwLock<HashMap<GroupKey, ReplicaView>>>,
    outbox: HashMap<u64, Vec<RaftEnvelope>>,
    notices: Vec<LeaderNotice>,
    pub(super) hard_states: Arc<HardStates>,
    pub(super) suspended: GroupMap<Suspended>,
    pub(super) next_probe: Instant,
    /// Every group that is not quiesced (and perhaps some that quiesced
    /// since): the ticks walk these, not every group hosted, so that idle
    /// partitions cost nothing per tick. A group leaves quiescence only
    /// through something that makes it active, which adds it here.
    awake: PhasedSet,
    /// Awake groups in an election (no leader, or a silent one): these tick
    /// every tick, not once per round, so that the campaigns of a group's
    /// replicas stay spread over the randomized part of the timeout rather
    /// than bunched into one round's visit (which split their votes).
    electing: HashSet<GroupId, GroupHasher>,
    /// New groups led first here whose campaign has not started (see
    /// `fresh`).
    pub(super) fresh: VecDeque<GroupId>,
    /// Peer messages for groups not open here yet (see `early`).
    pub(super) early: Early,
    /// Peers silent at the last tick: a peer turning silent is the one
    /// event that makes quiesced groups tick again without a message.
    silent: HashSet<u64>,
    /// How long the last cycle waited for the disk (term/vote and fsyncs).
    last_sync: Duration,
}

/// Where one cycle's time went: writing the `Ready`s of `groups` groups,
/// making them durable, then sending and applying.
struct CycleTimes {
    groups: usize,
    write: Duration,
    sync: Duration,
    apply: Duration,
}

impl Group {
    pub(super) fn core(&self) -> &ReplicaCore {
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
                groups: Groups::default(),
                rx,
                transport,
                directory,
                logger: super::logger(),
                views: Arc::clone(&views),
                outbox: HashMap::new(),
                notices: Vec::new(),
                hard_states,
                suspended: GroupMap::default(),
                next_probe: Instant::now(),
                awake: PhasedSet::new(timing.heartbeat_ticks.max(1) as u64),
                electing: HashSet::default(),
                fresh: VecDeque::new(),
                early: Early::default(),
                silent: HashSet::new(),
                last_sync: Duration::ZERO,
            },
            RaftHandle { tx },
            views,
        )
    }

    /// Makes the group `id` tick (see [`Self::tick`]).
    pub(super) fn wake(&mut self, id: GroupId) {
        self.awake.insert(id);
    }

    /// How many groups tick.
    pub(super) fn awake_len(&self) -> usize {
        self.awake.len() + self.electing.len()
    }

    /// Runs the loop on its own thread until `Cmd::Stop`.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("raft-loop".into())
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let mut next_tick = Instant::now() + self.timing.tick;
        let mut active = Pending::default();
        let mut ticks: u64 = 0;
        loop {
            // Groups left over from a cycle's budget go on without waiting.
            let wait = if active.is_empty() {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => {
                    // Commands for about a cycle's budget, then the ticks
                    // (and the peer heartbeats) and the due groups: a flood
                    // of commands (thousands of groups added, a burst of
                    // peer messages) never delays those for long.
                    let started = Instant::now();
                    if !self.handle(cmd, &mut active) {
                        return;
                    }
                    let mut n = 0u32;
                    loop {
                        n += 1;
                        if n.is_multiple_of(64) && started.elapsed() >= CYCLE_BUDGET {
                            break;
                        }
                        let Ok(cmd) = self.rx.try_recv() else { break };
                        if !self.handle(cmd, &mut active) {
                            return;
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= next_tick {
                let late = Instant::now() - next_tick;
                if late > SLOW_CYCLE {
                    tracing::warn!(
                        late_ms = late.as_millis() as u64,
                        "Raft ticks late: the loop was busy or starved of CPU"
                    );
                }
                ticks += 1;
                self.transport.loop_ticked();
                self.tick(&mut active, ticks, ticks.is_multiple_of(FAILED_SWEEP_TICKS));
                self.probe_suspended(&mut active);
                self.admit_fresh(&mut active);
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
                let due = active.len();
                let c = self.process(&mut active);
                if c.write + c.sync + c.apply > SLOW_CYCLE {
                    tracing::warn!(
                        due,
                        groups = c.groups,
                        write_ms = c.write.as_millis() as u64,
                        sync_ms = c.sync.as_millis() as u64,
                        apply_ms = c.apply.as_millis() as u64,
                        "slow Raft cycle: elections may time out"
                    );
                }
            } else if !self.outbox.is_empty() {
                self.flush_outbox();
            }
        }
    }

    /// Ticks every group that is not quiesced; quiesces idle led groups and
    /// wakes quiesced groups whose leader's broker (or quorum) went silent.
    /// Walks every group only when a peer turns silent, a link breaks, or
    /// (`sweep`) to find quiesced groups whose background fsync failed.
    ///
    /// An awake group is looked at once per round of `heartbeat_ticks`
    /// ticks (in its phase of the round) and then ticks as many times as
    /// the round has ticks: a leader sends its one heartbeat of the round,
    /// a follower's election timer counts the round at once. A loop with
    /// 100,000 groups awake (a topic of that many partitions created) so
    /// touches each group once per round instead of once per tick, which
    /// was most of its work. A timer so fires up to a round late, or (for a
    /// follower that heard its leader within the round) up to a round
    /// early; elections take 20 to 40 ticks, a round is a few.
    fn tick(&mut self, active: &mut Pending, ticks: u64, sweep: bool) {
        let round = self.timing.heartbeat_ticks.max(1) as u64;
        let me = self.node_id;
        let now = Instant::now();
        // A broken link: leaders stop streaming appends to that peer and
        // probe it again instead.
        let broken = self.transport.take_unreachable();
        if !broken.is_empty() {
            for g in self.groups.values_mut() {
                if g.node.raft.state == StateRole::Leader {
                    for &peer in &broken {
                        g.node.report_unreachable(peer);
                    }
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
        let newly: Vec<u64> = silent
            .iter()
            .filter(|p| !self.silent.contains(p))
            .copied()
            .collect();
        let newly_silent = !newly.is_empty();
        if newly_silent {
            tracing::info!(peers = ?newly, "peers fell silent: waking the groups they lead");
        }
        self.silent.clone_from(&silent);
        let mut failed = Vec::new();
        if sweep {
            self.early.expire(now);
        }
        if newly_silent || sweep {
            for (id, _, g) in self.groups.iter_mut() {
                let leader = g.node.raft.leader_id;
                if newly_silent && leader != me && silent.contains(&leader) {
                    // At once rather than at the group's next look.
                    end_lease(&mut g.node.raft);
                    if !g.quiesced {
                        self.electing.insert(id);
                    }
                }
                if !g.quiesced {
                    continue;
                }
                if sweep && g.core().has_failed() {
                    failed.push(id);
                    continue;
                }
                if (newly_silent
                    && ((leader != me && silent.contains(&leader)) || lost_quorum(g, me, &silent)))
                    || hold_over(g, &silent, now)
                {
                    g.quiesced = false;
                    if electing(g, me, &silent) {
                        self.electing.insert(id);
                    } else {
                        self.awake.insert(id);
                    }
                }
            }
        }
        let Self {
            groups,
            awake,
            electing: in_election,
            outbox,
            ..
        } = self;
        let mut now_electing = Vec::new();
        awake.phase_mut(ticks % round).retain(|&id| {
            if in_election.contains(&id) {
                return false;
            }
            let Some((k, g)) = groups.entry_mut(id) else {
                return false;
            };
            if !still_ticks(g, id, &mut failed) {
                return false;
            }
            if let Some((preferred, until)) = g.held_for {
                if g.node.raft.leader_id == raft::INVALID_ID
                    && !silent.contains(&preferred)
                    && now < until
                {
                    // No election timer yet: the preferred replica campaigns.
                    return true;
                }
                g.held_for = None;
            }
            if !silent.is_empty() && lost_quorum(g, me, &silent) {
                // Cut off (or its peers gone): check-quorum takes up to two
                // election timeouts; stepping down now answers its waiting
                // requests while the followers elect a new leader.
                tracing::info!(topic = %k.0, partition = k.1, term = g.node.raft.term,
                    "no quorum of peers heard from; stepping down");
                let term = g.node.raft.term;
                g.node.raft.become_follower(term, raft::INVALID_ID);
            }
            let leader = g.node.raft.leader_id;
            if leader != me && silent.contains(&leader) {
                end_lease(&mut g.node.raft);
            }
            if electing(g, me, &silent) {
                now_electing.push(id);
                return false;
            }
            if can_quiesce(g, me) {
                // Before this round's ticks: a leader woken by a late answer
                // sleeps again without the round's heartbeat, which would
                // wake its followers, whose answers would wake it again.
                g.quiesced = true;
                let term = g.node.raft.term;
                let index = g.node.raft.raft_log.last_index();
                for (to, _) in g.node.raft.prs().iter() {
                    if *to == me {
                        continue;
                    }
                    outbox.entry(*to).or_default().push(RaftEnvelope {
                        topic: k.0.clone(),
                        partition: k.1,
                        quiesce: true,
                        quiesce_term: term,
                        quiesce_index: index,
                        ..Default::default()
                    });
                }
                return false;
            }
            credit_heard_voters(&mut g.node.raft, me, &silent);
            // Most ticks only count time: only a group with something to
            // send or store is due (a walk of 100,000 awake groups per tick
            // otherwise queues every one of them).
            for _ in 0..round {
                let _ = g.node.tick();
            }
            if g.node.has_ready() {
                active.insert(id);
            }
            true
        });
        // Groups in an election tick every tick until they have a leader
        // that is heard, then go back to their rounds.
        in_election.extend(now_electing);
        in_election.retain(|&id| {
            let Some(g) = groups.get_mut(id) else {
                return false;
            };
            if !still_ticks(g, id, &mut failed) {
                return false;
            }
            let _ = g.node.tick();
            if g.node.has_ready() {
                active.insert(id);
            }
            if electing(g, me, &silent) {
                return true;
            }
            awake.insert(id);
            false
        });
        for id in failed {
            self.suspend(id);
        }
    }

    /// A group for `replica`; `preferred` names the replica that campaigns
    /// first in a new group (see `Cmd::AddGroup`).
    pub(super) fn new_group(
        &self,
        replica: Arc<dyn Replica>,
        preferred: Option<u64>,
    ) -> Result<Group> {
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
        let mut held_for = None;
        // Waits for its campaign (`fresh`) or for the preferred replica's.
        let mut waits = false;
        if voters.contains(&self.node_id) {
            if sole {
                let _ = node.campaign();
            } else if preferred == Some(self.node_id) {
                waits = true;
            } else if let Some(p) = preferred.filter(|p| voters.contains(p)) {
                held_for = Some((p, Instant::now() + FRESH_HOLD));
                waits = true;
            }
        }
        Ok(Group {
            node,
            replica,
            role: Role::default(),
            quiesced: waits,
            last_proposal: None,
            held_for,
        })
    }

    pub(super) fn propose(
        &mut self,
        key: &GroupKey,
        batches: Vec<(BatchHeader, Bytes)>,
    ) -> Result<Proposal> {
        let Some(g) = self.groups.get_mut_by_key(key) else {
            return Err(BrokerError::UnknownPartition {
                topic: key.0.clone(),
                partition: key.1,
            });
        };
        if g.node.raft.state != StateRole::Leader || g.node.raft.lead_transferee.is_some() {
            return Err(g.replica.refuse(g.core().role().leader));
        }
        g.quiesced = false;
        g.last_proposal = Some(Instant::now());
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
                    next = stamped.next_offset();
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

    /// Works off due groups for about [`CYCLE_BUDGET`] (or as long as the
    /// last cycle's sync took, so that a slow disk is waited on for no more
    /// than half of the time): writes their `Ready`s, makes them durable
    /// together, then sends and applies.
    fn process(&mut self, active: &mut Pending) -> CycleTimes {
        let now = now_ms();
        let started = Instant::now();
        let budget = CYCLE_BUDGET.max(self.last_sync);
        let mut readies = Vec::new();
        let mut plans: Vec<(GroupId, SyncPlan)> = Vec::new();
        let mut broken: Vec<GroupId> = Vec::new();
        let mut taken = 0usize;
        while !taken.is_multiple_of(32) || started.elapsed() < budget {
            let Some(id) = active.pop() else { break };
            taken += 1;
            let Some((key, g)) = self.groups.entry_mut(id) else {
                continue;
            };
            if !g.quiesced {
                self.awake.insert(id);
            }
            if !g.node.has_ready() {
                continue;
            }
            let mut rd = g.node.ready();
            queue(&mut self.outbox, key, rd.take_messages());
            if let Err(e) = persist(g, &mut rd, now, &mut plans, id, key, &self.hard_states) {
                // Nothing that is not on disk is acknowledged: the replica
                // leaves the loop until its disk has room.
                tracing::error!(topic = %key.0, partition = key.1, error = %e,
                    "cannot persist Raft entries; suspending the replica");
                broken.push(id);
                continue;
            }
            readies.push((id, rd));
        }
        let write = started.elapsed();
        // Term and vote changes of every group, in one durable write.
        if let Err(e) = self.hard_states.flush() {
            tracing::error!(error = %e, "cannot persist Raft term/vote; suspending these replicas");
            broken.extend(readies.drain(..).map(|(id, _)| id));
            plans.clear();
        }
        // One sync pass for everything written in this cycle.
        for (id, plan) in plans {
            match plan.run() {
                Ok(()) => {
                    if let Some(g) = self.groups.get(id) {
                        g.core().lock().log.mark_synced(plan.up_to);
                    }
                }
                Err(e) => {
                    // Written pages may be lost: offline until a restart
                    // recovers the log from what reached the disk.
                    if let Some((key, g)) = self.groups.entry(id) {
                        tracing::error!(topic = %key.0, partition = key.1, error = %e,
                            "fsync failed; taking the replica offline");
                        g.core().fail();
                    }
                    readies.retain(|(k, _)| *k != id);
                    broken.push(id);
                }
            }
        }
        for id in broken {
            self.suspend(id);
        }
        let sync = started.elapsed() - write;
        self.last_sync = sync;
        let groups = readies.len();
        for (id, mut rd) in readies {
            let Some((key, g)) = self.groups.entry_mut(id) else {
                continue;
            };
            queue(&mut self.outbox, key, rd.take_persisted_messages());
            let committed = rd.take_committed_entries();
            apply(g, committed);
            let mut light = g.node.advance(rd);
            if let Some(c) = light.commit_index() {
                g.core().lock().meta.commit = c;
            }
            queue(&mut self.outbox, key, light.take_messages());
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
            let more = g.node.has_ready();
            self.publish_view(id);
            if more {
                active.insert(id);
            }
        }
        self.flush_outbox();
        CycleTimes {
            groups,
            write,
            sync,
            apply: started.elapsed() - write - sync,
        }
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
