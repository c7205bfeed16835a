//! Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) as a pure state machine: no I/O, no clock (callers pass
//! the time in ms), so Kafka's sequences replay exactly in tests.
//!
//! A group moves Empty → PreparingRebalance (members rejoin) →
//! CompletingRebalance (a new generation; the leader member computes the
//! assignment from the members' opaque protocol metadata) → Stable (the
//! leader's SyncGroup delivered every member's assignment). A join of a
//! new member, a member whose metadata changed, a leave or an expired
//! session starts the next rebalance. Static members (`group.instance.id`)
//! keep their place: a restart that rejoins with unchanged metadata while
//! the group is stable takes over the old member's assignment without a
//! rebalance, and the old process is fenced.
//!
//! What is durable (the group's state record on `__consumer_offsets`):
//! generation, protocol, leader, members with their metadata and
//! assignments. What is not (`#[serde(skip)]`): who has rejoined in the
//! current rebalance, pending member ids, deadlines and last heartbeats; a
//! new coordinator starts from the last stable generation, with every
//! member's session starting anew.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// Shortest and longest session timeouts a member may ask for.
pub const MIN_SESSION_MS: i32 = 1_000;
pub const MAX_SESSION_MS: i32 = 1_800_000;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClassicState {
    #[default]
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    /// Kafka's name of the state (DescribeGroups, ListGroups).
    pub fn kafka_name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

/// One protocol a member supports, with its opaque metadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MemberProtocol {
    pub name: String,
    #[serde(with = "crate::hex")]
    pub metadata: Vec<u8>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ClassicMember {
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// In the member's order of preference.
    pub protocols: Vec<MemberProtocol>,
    #[serde(with = "crate::hex")]
    pub assignment: Vec<u8>,
    /// Rejoined in the current rebalance (awaits its JoinGroup answer).
    #[serde(skip)]
    pub joined: bool,
    /// Last heard from (ms).
    #[serde(skip)]
    pub last_seen_ms: u64,
}

impl ClassicMember {
    fn metadata_of(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassicGroup {
    pub state: ClassicState,
    pub generation: i32,
    pub protocol_type: String,
    /// The protocol (assignor) chosen for the current generation.
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, ClassicMember>,
    /// Member ids handed out by MEMBER_ID_REQUIRED, not joined yet, with
    /// the time they were handed out.
    #[serde(skip)]
    pub pending: BTreeMap<String, u64>,
    /// When the current rebalance phase gives up on members (ms).
    #[serde(skip)]
    pub deadline_ms: Option<u64>,
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct Join {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<MemberProtocol>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// JoinGroup v4+: an unknown member first gets an id to rejoin with.
    pub require_known_member: bool,
}

/// What a join did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Rejoin with this id (MEMBER_ID_REQUIRED).
    MemberIdRequired(String),
    /// The member takes part in the rebalance; answer once it completes.
    Waiting(String),
    /// Answer now from the current generation (no rebalance).
    Current(String),
}

/// The JoinGroup answer of a member, from the group as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAnswer {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member's id, instance id and metadata.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
}

/// What a SyncGroup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The member's assignment.
    Assignment(Vec<u8>),
    /// Wait for the leader's assignment.
    Waiting,
}

/// What a group operation changed, for the caller to persist and report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The durable state changed: write the group's state record.
    pub durable: bool,
    /// A rebalance started.
    pub rebalance: bool,
    /// Members taken out.
    pub removed: Vec<String>,
}

fn fenced(instance: &str) -> BrokerError {
    BrokerError::FencedInstanceId(instance.to_owned())
}

impl ClassicGroup {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The working copy of an applied record at `now_ms`: every member's
    /// session starts now, and a rebalance in progress gets a new deadline
    /// (its members rejoin at the new coordinator).
    pub fn restored(mut self, now_ms: u64) -> Self {
        for m in self.members.values_mut() {
            m.last_seen_ms = now_ms;
            m.joined = false;
        }
        if matches!(
            self.state,
            ClassicState::PreparingRebalance | ClassicState::CompletingRebalance
        ) {
            self.deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
        }
        self
    }

    /// The protocols every member supports (`None`: no member).
    fn candidates(&self) -> Option<BTreeSet<String>> {
        let mut it = self.members.values();
        let first: BTreeSet<String> = it
            .next()?
            .protocols
            .iter()
            .map(|p| p.name.clone())
            .collect();
        Some(it.fold(first, |acc, m| {
            let names: BTreeSet<String> = m.protocols.iter().map(|p| p.name.clone()).collect();
            acc.intersection(&names).cloned().collect()
        }))
    }

    /// Whether a member with `protocols` could join (type and a protocol in
    /// common with every other member).
    fn compatible(&self, protocol_type: &str, protocols: &[MemberProtocol], except: &str) -> bool {
        if protocols.is_empty() {
            return false;
        }
        let others: Vec<&ClassicMember> = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != except)
            .map(|(_, m)| m)
            .collect();
        if others.is_empty() {
            return true;
        }
        if protocol_type != self.protocol_type {
            return false;
        }
        protocols.iter().any(|p| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|q| q.name == p.name))
        })
    }

    fn instance_owner(&self, instance: &str) -> Option<&String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id)
    }

    /// The longest rebalance timeout of the members: how long a phase
    /// waits for them.
    fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    /// Starts (or keeps going) a rebalance: every member must rejoin.
    fn prepare_rebalance(&mut self, now_ms: u64, changes: &mut Changes) {
        if self.state != ClassicState::PreparingRebalance {
            for m in self.members.values_mut() {
                m.joined = false;
            }
            self.state = ClassicState::PreparingRebalance;
            changes.rebalance = true;
        }
        let timeout = self.rebalance_timeout_ms();
        self.deadline_ms = Some(now_ms + timeout);
    }

    /// Handles a JoinGroup. `new_id` makes member ids.
    pub fn join(
        &mut self,
        req: Join,
        now_ms: u64,
        new_id: impl FnOnce() -> String,
        changes: &mut Changes,
    ) -> Result<Joined> {
        if !(MIN_SESSION_MS..=MAX_SESSION_MS).contains(&req.session_timeout_ms) {
            return Err(BrokerError::InvalidSessionTimeout(req.session_timeout_ms));
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(BrokerError::InconsistentGroupProtocol(
                "a join names a protocol type and at least one protocol".into(),
            ));
        }
        let rebalance_timeout_ms = if req.rebalance_timeout_ms <= 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        };
        let member = |id_joined: bool| ClassicMember {
            instance_id: req.instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms,
            protocols: req.protocols.clone(),
            assignment: Vec::new(),
            joined: id_joined,
            last_seen_ms: now_ms,
        };
        if req.member_id.is_empty() {
            if !self.compatible(&req.protocol_type, &req.protocols, "") {
                return Err(BrokerError::InconsistentGroupProtocol(format!(
                    "protocol type '{}' or protocols {:?} do not match the group's",
                    req.protocol_type,
                    req.protocols.iter().map(|p| &p.name).collect::<Vec<_>>()
                )));
            }
            // A static member coming back: it takes the old member's place.
            if let Some(instance) = &req.instance_id
                && let Some(old_id) = self.instance_owner(instance).cloned()
            {
                let id = new_id();
                let Some(old) = self.members.remove(&old_id) else {
                    return Err(BrokerError::UnknownMember(old_id));
                };
                let unchanged = old.protocols == req.protocols;
                let mut m = member(true);
                m.assignment = old.assignment.clone();
                self.members.insert(id.clone(), m);
                if self.leader.as_deref() == Some(old_id.as_str()) {
                    self.leader = Some(id.clone());
                }
                changes.durable = true;
                changes.removed.push(old_id);
                if self.state == ClassicState::Stable && unchanged {
                    return Ok(Joined::Current(id));
                }
                self.protocol_type = req.protocol_type.clone();
                self.prepare_rebalance(now_ms, changes);
                self.members
                    .entry(id.clone())
                    .and_modify(|m| m.joined = true);
                return Ok(Joined::Waiting(id));
            }
            let id = new_id();
            if req.require_known_member && req.instance_id.is_none() {
                self.pending.insert(id.clone(), now_ms);
                return Ok(Joined::MemberIdRequired(id));
            }
            self.add_member(
                id.clone(),
                member(true),
                &req.protocol_type,
                now_ms,
                changes,
            );
            return Ok(Joined::Waiting(id));
        }
        // A member id the coordinator handed out for a rejoin.
        if self.pending.remove(&req.member_id).is_some() {
            if !self.compatible(&req.protocol_type, &req.protocols, "") {
                return Err(BrokerError::InconsistentGroupProtocol(
                    "protocols do not match the group's".into(),
                ));
            }
            let id = req.member_id.clone();
            self.add_member(
                id.clone(),
                member(true),
                &req.protocol_type,
                now_ms,
                changes,
            );
            return Ok(Joined::Waiting(id));
        }
        let Some(existing) = self.members.get(&req.member_id) else {
            if let Some(instance) = &req.instance_id
                && self.instance_owner(instance).is_some()
            {
                return Err(fenced(instance));
            }
            return Err(BrokerError::UnknownMember(req.member_id));
        };
        if existing.instance_id != req.instance_id {
            return Err(fenced(req.instance_id.as_deref().unwrap_or("")));
        }
        if !self.compatible(&req.protocol_type, &req.protocols, &req.member_id) {
            return Err(BrokerError::InconsistentGroupProtocol(
                "protocols do not match the group's".into(),
            ));
        }
        let unchanged = existing.protocols == req.protocols;
        let id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        if let Some(m) = self.members.get_mut(&id) {
            m.protocols = req.protocols.clone();
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = rebalance_timeout_ms;
            m.last_seen_ms = now_ms;
        }
        match self.state {
            ClassicState::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.joined = true;
                }
                Ok(Joined::Waiting(id))
            }
            // The same metadata again: the answer of the current generation.
            ClassicState::CompletingRebalance if unchanged => Ok(Joined::Current(id)),
            ClassicState::Stable if unchanged && !is_leader => Ok(Joined::Current(id)),
            _ => {
                self.prepare_rebalance(now_ms, changes);
                if let Some(m) = self.members.get_mut(&id) {
                    m.joined = true;
                }
                Ok(Joined::Waiting(id))
            }
        }
    }

    fn add_member(
        &mut self,
        id: String,
        m: ClassicMember,
        protocol_type: &str,
        now_ms: u64,
        changes: &mut Changes,
    ) {
        if self.members.is_empty() {
            self.protocol_type = protocol_type.to_owned();
        }
        self.members.insert(id.clone(), m);
        changes.durable = true;
        self.prepare_rebalance(now_ms, changes);
        if let Some(m) = self.members.get_mut(&id) {
            m.joined = true;
        }
    }

    /// Counts `member_id` as rejoined in the current join phase (its
    /// JoinGroup is still outstanding).
    pub fn mark_joined(&mut self, member_id: &str) {
        if self.state == ClassicState::PreparingRebalance
            && let Some(m) = self.members.get_mut(member_id)
        {
            m.joined = true;
        }
    }

    /// Completes the join phase when every member (and every pending id)
    /// has rejoined, or at the deadline without those that did not. Returns
    /// whether a new generation began.
    pub fn try_complete_join(&mut self, now_ms: u64, changes: &mut Changes) -> bool {
        if self.state != ClassicState::PreparingRebalance {
            return false;
        }
        let all_in = self.members.values().all(|m| m.joined) && self.pending.is_empty();
        let late = self.deadline_ms.is_some_and(|d| now_ms >= d);
        if !all_in && !late {
            return false;
        }
        if late {
            let gone: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| !m.joined)
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                self.members.remove(&id);
                changes.removed.push(id);
            }
            self.pending.clear();
        }
        self.generation += 1;
        changes.durable = true;
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
            self.protocol = None;
            self.leader = None;
            self.deadline_ms = None;
            return true;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        for m in self.members.values_mut() {
            m.assignment.clear();
        }
        self.state = ClassicState::CompletingRebalance;
        let timeout = self.rebalance_timeout_ms();
        self.deadline_ms = Some(now_ms + timeout);
        true
    }

    /// Kafka's choice: each member votes for its most preferred protocol
    /// among those every member supports; the most votes win (ties: the
    /// name first in order).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates()?;
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(p) = m.protocols.iter().find(|p| candidates.contains(&p.name)) {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        votes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(name, _)| (*name).to_owned())
    }

    /// The JoinGroup answer for `member_id` once the join phase is over.
    pub fn join_answer(&self, member_id: &str) -> Option<JoinAnswer> {
        if self.state == ClassicState::PreparingRebalance || !self.members.contains_key(member_id) {
            return None;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata_of(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        Some(JoinAnswer {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader,
            member_id: member_id.to_owned(),
            members,
        })
    }

    /// Checks a member id, instance id and generation against the group.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        let Some(m) = self.members.get(member_id) else {
            if let Some(i) = instance_id
                && self.instance_owner(i).is_some()
            {
                return Err(fenced(i));
            }
            return Err(BrokerError::UnknownMember(member_id.to_owned()));
        };
        if let Some(i) = instance_id
            && m.instance_id.as_deref() != Some(i)
        {
            return Err(fenced(i));
        }
        if generation != self.generation {
            return Err(BrokerError::IllegalGeneration {
                got: generation,
                current: self.generation,
            });
        }
        Ok(())
    }

    /// Handles a SyncGroup; the leader's carries every member's assignment.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now_ms: u64,
        changes: &mut Changes,
    ) -> Result<Synced> {
        self.check_member(member_id, instance_id, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen_ms = now_ms;
        }
        match self.state {
            ClassicState::Empty => Err(BrokerError::UnknownMember(member_id.to_owned())),
            ClassicState::PreparingRebalance => Err(BrokerError::RebalanceInProgress),
            ClassicState::CompletingRebalance => {
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: BTreeMap<String, Vec<u8>> = assignments.into_iter().collect();
                    for (id, m) in self.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    self.state = ClassicState::Stable;
                    self.deadline_ms = None;
                    changes.durable = true;
                    return Ok(Synced::Assignment(self.assignment_of(member_id)));
                }
                Ok(Synced::Waiting)
            }
            ClassicState::Stable => Ok(Synced::Assignment(self.assignment_of(member_id))),
        }
    }

    /// The SyncGroup answer of a waiting member: its assignment once the
    /// group is stable in `generation`; an error when that cannot happen.
    pub fn sync_answer(&self, member_id: &str, generation: i32) -> Option<Result<Vec<u8>>> {
        if !self.members.contains_key(member_id) {
            return Some(Err(BrokerError::UnknownMember(member_id.to_owned())));
        }
        if self.generation != generation || self.state == ClassicState::PreparingRebalance {
            return Some(Err(BrokerError::RebalanceInProgress));
        }
        (self.state == ClassicState::Stable).then(|| Ok(self.assignment_of(member_id)))
    }

    fn assignment_of(&self, member_id: &str) -> Vec<u8> {
        self.members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default()
    }

    /// Handles a Heartbeat: REBALANCE_IN_PROGRESS tells the member to
    /// rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: u64,
    ) -> Result<()> {
        if self.state == ClassicState::Empty {
            return Err(BrokerError::UnknownMember(member_id.to_owned()));
        }
        self.check_member(member_id, instance_id, generation)
            .or_else(|e| match e {
                // A member of the previous generation while the group
                // rebalances: rejoin (as Kafka answers).
                BrokerError::IllegalGeneration { .. }
                    if self.state == ClassicState::PreparingRebalance =>
                {
                    Ok(())
                }
                e => Err(e),
            })?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen_ms = now_ms;
        }
        match self.state {
            ClassicState::PreparingRebalance => Err(BrokerError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles a LeaveGroup of one member (by member id, or by instance id
    /// for a static member).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: u64,
        changes: &mut Changes,
    ) -> Result<()> {
        let id = match instance_id {
            Some(i) => {
                let owner = self
                    .instance_owner(i)
                    .cloned()
                    .ok_or_else(|| BrokerError::UnknownMember(member_id.to_owned()))?;
                if !member_id.is_empty() && member_id != owner {
                    return Err(fenced(i));
                }
                owner
            }
            None => {
                if !self.members.contains_key(member_id) {
                    return Err(BrokerError::UnknownMember(member_id.to_owned()));
                }
                member_id.to_owned()
            }
        };
        self.remove_members(&[id], now_ms, changes);
        Ok(())
    }

    fn remove_members(&mut self, ids: &[String], now_ms: u64, changes: &mut Changes) {
        for id in ids {
            if self.members.remove(id).is_some() {
                changes.removed.push(id.clone());
            }
        }
        changes.durable = true;
        if self
            .leader
            .as_ref()
            .is_some_and(|l| !self.members.contains_key(l))
        {
            self.leader = None;
        }
        if self.members.is_empty() && self.pending.is_empty() {
            self.state = ClassicState::Empty;
            self.generation += 1;
            self.protocol = None;
            self.deadline_ms = None;
            return;
        }
        self.prepare_rebalance(now_ms, changes);
        // A rebalance in which every remaining member already rejoined
        // completes now.
        self.try_complete_join(now_ms, changes);
    }

    /// Time passing: expired sessions and pending ids go, a join phase
    /// past its deadline completes, a leader that did not sync in time
    /// starts the rebalance over.
    pub fn tick(&mut self, now_ms: u64, changes: &mut Changes) {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                // While the group rebalances its members wait in JoinGroup
                // or SyncGroup (or are waited for): the phase's deadline
                // bounds them, not their session (as Kafka keeps them).
                self.state == ClassicState::Stable
                    && now_ms.saturating_sub(m.last_seen_ms) > m.session_timeout_ms as u64
            })
            .map(|(id, _)| id.clone())
            .collect();
        let session = self
            .members
            .values()
            .map(|m| m.session_timeout_ms as u64)
            .max()
            .unwrap_or(MIN_SESSION_MS as u64);
        self.pending
            .retain(|_, since| now_ms.saturating_sub(*since) <= session);
        if !expired.is_empty() {
            self.remove_members(&expired, now_ms, changes);
        }
        match self.state {
            ClassicState::PreparingRebalance => {
                self.try_complete_join(now_ms, changes);
            }
            ClassicState::CompletingRebalance if self.deadline_ms.is_some_and(|d| now_ms >= d) => {
                self.prepare_rebalance(now_ms, changes);
            }
            _ => {}
        }
    }

    /// Whether a commit by `member_id` in `generation` is taken (Kafka's
    /// rules: simple commits only while the group is empty).
    pub fn check_commit(&self, member_id: &str, generation: i32) -> Result<()> {
        if self.members.is_empty() {
            if member_id.is_empty() || generation < 0 {
                return Ok(());
            }
            return Err(BrokerError::UnknownMember(member_id.to_owned()));
        }
        if member_id.is_empty() {
            return Err(BrokerError::UnknownMember(String::new()));
        }
        self.check_member(member_id, None, generation)?;
        if self.state == ClassicState::CompletingRebalance {
            return Err(BrokerError::RebalanceInProgress);
        }
        Ok(())
    }
}

/// Bounded readers over bytes a member sent: every length is checked
/// against what is left before anything is reserved.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn i16_of(b: &mut &[u8]) -> Option<i16> {
    take(b, 2).map(|x| i16::from_be_bytes([x[0], x[1]]))
}

fn i32_of(b: &mut &[u8]) -> Option<i32> {
    take(b, 4).map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn string_of(b: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(i16_of(b)?).ok()?;
    Some(std::str::from_utf8(take(b, len)?).ok()?.to_owned())
}

/// The partitions a `consumer`-type assignment gives (Kafka's
/// ConsumerProtocolAssignment, every version: i16 version, then an array
/// of topic name and partition array; user data after is ignored); empty
/// when the bytes are not one. The bytes come from a group's leader
/// member, so this decoder never trusts a count and never panics.
pub fn consumer_assignment(bytes: &[u8]) -> Vec<(String, Vec<u32>)> {
    fn decode(mut b: &[u8]) -> Option<Vec<(String, Vec<u32>)>> {
        let b = &mut b;
        i16_of(b)?;
        let topics = usize::try_from(i32_of(b)?).ok()?;
        // Each topic takes at least 6 bytes (name length, partition count).
        if topics > b.len() / 6 {
            return None;
        }
        let mut out = Vec::with_capacity(topics);
        for _ in 0..topics {
            let name = string_of(b)?;
            let n = usize::try_from(i32_of(b)?).ok()?;
            if n > b.len() / 4 {
                return None;
            }
            let mut parts = Vec::with_capacity(n);
            for _ in 0..n {
                parts.push(u32::try_from(i32_of(b)?).ok()?);
            }
            out.push((name, parts));
        }
        Some(out)
    }
    decode(bytes).unwrap_or_default()
}

/// The topics a `consumer`-type subscription names (Kafka's
/// ConsumerProtocolSubscription, every version: i16 version, then an
/// array of topic names; what follows is ignored); `None` when the bytes
/// are not one. Bounded as [`consumer_assignment`].
pub fn consumer_subscription(mut b: &[u8]) -> Option<Vec<String>> {
    let b = &mut b;
    i16_of(b)?;
    let topics = usize::try_from(i32_of(b)?).ok()?;
    // Each name takes at least its 2-byte length.
    if topics > b.len() / 2 {
        return None;
    }
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        out.push(string_of(b)?);
    }
    Some(out)
}

impl ClassicGroup {
    /// The topics its members subscribe to (in the chosen protocol, else
    /// their first); `None` when a member's subscription does not decode
    /// or the group is not of the `consumer` type.
    pub fn subscribed_topics(&self) -> Option<std::collections::BTreeSet<String>> {
        if self.protocol_type != "consumer" {
            return None;
        }
        let mut out = std::collections::BTreeSet::new();
        for m in self.members.values() {
            let p = m
                .protocols
                .iter()
                .find(|p| self.protocol.as_deref() == Some(p.name.as_str()))
                .or_else(|| m.protocols.first())?;
            out.extend(consumer_subscription(&p.metadata)?);
        }
        Some(out)
    }
}

#[cfg(test)]
#[path = "classic_tests.rs"]
mod tests;
