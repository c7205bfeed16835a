//! The consumer protocol's group state machine (Kafka's KIP-848 semantics),
//! pure: no clock, no I/O. A member heartbeats with its subscription and
//! the partitions it owns; the group keeps a target assignment (computed by
//! a server-side assignor whenever the group epoch moves: a member joined
//! or left, a subscription changed, the subscribed topics changed) and
//! moves each member towards its target one heartbeat at a time:
//! - partitions a member must give up are revoked first; it keeps its
//!   member epoch until it reports them released;
//! - then its epoch advances to the group's, and it is given the target
//!   partitions no other member still holds (a partition another member
//!   has yet to release is given on a later heartbeat).
//!
//! So no partition is ever held by two members, and members whose
//! partitions do not move never stop.
//!
//! The durable part ([`GroupState`]) is written to the group's offsets
//! partition as one record per change, so a new coordinator continues
//! where the old one stopped; liveness (last heartbeat, revocation start)
//! is the coordinator's own and starts over on a new one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::assignor::{self, Eligible, Target, Tp};
use crate::error::{BrokerError, Result};

/// Member epoch of a join.
pub const JOIN: i32 = 0;
/// Member epoch of a leave.
pub const LEAVE: i32 = -1;
/// Member epoch of a static member's leave: its assignment is kept for its
/// instance until the session timeout.
pub const STATIC_LEAVE: i32 = -2;

/// Bounds of what a member may ask for.
pub const MIN_SESSION_MS: u32 = 1_000;
pub const MAX_SESSION_MS: u32 = 300_000;
pub const DEFAULT_SESSION_MS: u32 = 45_000;
pub const MAX_REBALANCE_MS: u32 = 3_600_000;
pub const DEFAULT_REBALANCE_MS: u32 = 300_000;
/// Longest topic regex accepted.
const MAX_REGEX: usize = 1024;

/// What a member subscribes to: topic names, a regex over topic names, or
/// both (the union).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    #[serde(default)]
    pub topics: BTreeSet<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

/// One member as the group records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    #[serde(default)]
    pub instance_id: Option<String>,
    pub epoch: i32,
    /// The epoch before the last advance (a member whose answer was lost
    /// may still heartbeat with it).
    #[serde(default)]
    pub previous_epoch: i32,
    pub subscription: Subscription,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Given to the member (it consumes them, or is about to).
    pub assigned: BTreeSet<Tp>,
    /// Taken from the member; it still holds them until it reports them
    /// released (after committing what it processed).
    pub revoking: BTreeSet<Tp>,
    /// A static member that left with `STATIC_LEAVE`, awaiting its instance.
    #[serde(default)]
    pub left: bool,
    #[serde(default)]
    pub client: String,
}

impl MemberState {
    fn holds(&self, tp: &Tp) -> bool {
        self.assigned.contains(tp) || self.revoking.contains(tp)
    }
}

/// The durable state of a consumer-protocol group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// Moves whenever membership, subscriptions or subscribed metadata do.
    pub epoch: i32,
    pub assignor: String,
    pub members: BTreeMap<String, MemberState>,
    /// The target of `epoch`.
    pub target: Target,
    /// Partition counts of the subscribed topics `target` was computed on.
    pub subscribed: BTreeMap<String, u32>,
}

/// A heartbeat as the coordinator gets it.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// Empty on a join: the coordinator names the member.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    /// `None`: unchanged since the last heartbeat.
    pub subscription: Option<Subscription>,
    /// Empty: the group's (or the default).
    pub assignor: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// What the member holds now; `None`: unchanged.
    pub owned: Option<BTreeSet<Tp>>,
    pub client: String,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    /// Everything the member should hold now.
    pub assignment: BTreeSet<Tp>,
}

/// What happened to the group in one step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The durable state changed (write it before answering).
    pub changed: bool,
    /// The group epoch moved (a rebalance began).
    pub rebalanced: bool,
    /// Members that joined (new id), for the liveness table.
    pub joined: Vec<String>,
    /// Members removed or replaced (their liveness entries go).
    pub removed: Vec<String>,
}

/// How often a member with `session_ms` heartbeats: a third of its session
/// and at most Kafka's default of 5 s.
pub fn heartbeat_interval(session_ms: u32) -> u32 {
    (session_ms / 3).clamp(100, 5_000)
}

fn err(msg: impl Into<String>) -> BrokerError {
    BrokerError::InvalidRequest(msg.into())
}

fn check_request(hb: &Heartbeat) -> Result<()> {
    if hb.member_id.len() > 255 {
        return Err(err("member id longer than 255 bytes"));
    }
    if let Some(i) = &hb.instance_id
        && (i.is_empty() || i.len() > 255)
    {
        return Err(err("group instance id must be 1 to 255 bytes"));
    }
    if hb.session_timeout_ms != 0
        && !(MIN_SESSION_MS..=MAX_SESSION_MS).contains(&hb.session_timeout_ms)
    {
        return Err(err(format!(
            "session timeout {} ms outside {MIN_SESSION_MS}..{MAX_SESSION_MS} ms",
            hb.session_timeout_ms
        )));
    }
    if hb.rebalance_timeout_ms > MAX_REBALANCE_MS {
        return Err(err(format!(
            "rebalance timeout {} ms over {MAX_REBALANCE_MS} ms",
            hb.rebalance_timeout_ms
        )));
    }
    if !hb.assignor.is_empty() && !assignor::ASSIGNORS.contains(&hb.assignor.as_str()) {
        return Err(BrokerError::UnsupportedAssignor(hb.assignor.clone()));
    }
    if let Some(s) = &hb.subscription {
        if let Some(r) = &s.regex {
            if r.len() > MAX_REGEX {
                return Err(err("topic regex longer than 1024 bytes"));
            }
            regex::Regex::new(r).map_err(|e| err(format!("bad topic regex: {e}")))?;
        }
        if s.topics.iter().any(|t| t.is_empty()) {
            return Err(err("empty topic name in the subscription"));
        }
    }
    if hb.member_epoch < STATIC_LEAVE {
        return Err(err(format!(
            "member epoch {} is not valid",
            hb.member_epoch
        )));
    }
    Ok(())
}

/// Topics matching `s` in `topics` (name → partition count).
fn resolve(s: &Subscription, topics: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let re = s
        .regex
        .as_deref()
        .and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok());
    topics
        .iter()
        .filter(|(t, _)| s.topics.contains(*t) || re.as_ref().is_some_and(|re| re.is_match(t)))
        .map(|(t, n)| (t.clone(), *n))
        .collect()
}

impl GroupState {
    /// Whether a member is in the group (a simple commit is refused then).
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// The assignor the group uses (the default until a member names one).
    pub fn assignor_name(&self) -> &str {
        if self.assignor.is_empty() {
            assignor::DEFAULT_ASSIGNOR
        } else {
            &self.assignor
        }
    }

    /// `empty` (no members), `reconciling` (some member is not at the
    /// group epoch yet, or still gives up partitions), `stable`.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "empty"
        } else if self
            .members
            .values()
            .all(|m| m.epoch == self.epoch && m.revoking.is_empty())
        {
            "stable"
        } else {
            "reconciling"
        }
    }

    /// Partition counts of every topic some member subscribes to.
    fn subscribed_now(&self, topics: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
        // Members mostly share one subscription: resolve (and compile the
        // regex of) each distinct one once per heartbeat.
        let mut distinct: Vec<&Subscription> = Vec::new();
        for m in self.members.values() {
            if !distinct.contains(&&m.subscription) {
                distinct.push(&m.subscription);
            }
        }
        let mut out = BTreeMap::new();
        for s in distinct {
            out.extend(resolve(s, topics));
        }
        out
    }

    /// Moves the group epoch and computes the new target.
    fn rebalance(&mut self, topics: &BTreeMap<String, u32>, out: &mut Outcome) {
        self.epoch += 1;
        self.subscribed = self.subscribed_now(topics);
        let eligible: Eligible = self
            .members
            .iter()
            .map(|(id, m)| {
                let parts = resolve(&m.subscription, &self.subscribed)
                    .into_iter()
                    .flat_map(|(t, n)| (0..n).map(move |p| (t.clone(), p)))
                    .collect();
                (id.clone(), parts)
            })
            .collect();
        self.target = assignor::assign(self.assignor_name(), &eligible, &self.target);
        out.changed = true;
        out.rebalanced = true;
    }

    /// Handles one heartbeat. `new_id` names a joining member; `topics`
    /// are the cluster's topics (name → partition count).
    pub fn heartbeat(
        &mut self,
        hb: &Heartbeat,
        topics: &BTreeMap<String, u32>,
        new_id: impl FnOnce() -> String,
    ) -> Result<(HeartbeatReply, Outcome)> {
        check_request(hb)?;
        let mut out = Outcome::default();
        if !hb.assignor.is_empty() && hb.assignor != self.assignor_name() {
            // Only a member alone in the group may change its assignor.
            if self.members.keys().any(|id| *id != hb.member_id) {
                return Err(BrokerError::InconsistentGroupProtocol(format!(
                    "the group uses the {} assignor",
                    self.assignor_name()
                )));
            }
            self.assignor = hb.assignor.clone();
            out.changed = true;
        }
        let id = match hb.member_epoch {
            JOIN => self.join(hb, topics, new_id, &mut out)?,
            LEAVE | STATIC_LEAVE => {
                self.leave(hb, topics, &mut out)?;
                return Ok((
                    HeartbeatReply {
                        member_id: hb.member_id.clone(),
                        member_epoch: hb.member_epoch,
                        heartbeat_interval_ms: 0,
                        assignment: BTreeSet::new(),
                    },
                    out,
                ));
            }
            epoch => {
                let m = self.member(&hb.member_id, hb.instance_id.as_deref())?;
                if epoch != m.epoch && epoch != m.previous_epoch {
                    return Err(BrokerError::FencedMemberEpoch {
                        member: hb.member_id.clone(),
                        epoch,
                        current: m.epoch,
                    });
                }
                if let Some(s) = &hb.subscription
                    && *s != m.subscription
                {
                    if let Some(m) = self.members.get_mut(&hb.member_id) {
                        m.subscription = s.clone();
                    }
                    self.rebalance(topics, &mut out);
                }
                hb.member_id.clone()
            }
        };
        if self.subscribed_now(topics) != self.subscribed {
            // Topics created, deleted or grown that subscriptions name.
            self.rebalance(topics, &mut out);
        }
        let reply = self.reconcile(&id, hb.owned.as_ref(), &mut out);
        Ok((reply, out))
    }

    fn member(&self, id: &str, instance: Option<&str>) -> Result<&MemberState> {
        let m = self
            .members
            .get(id)
            .ok_or_else(|| BrokerError::UnknownMember(id.to_owned()))?;
        if m.instance_id.is_some() && instance.is_some() && m.instance_id.as_deref() != instance {
            return Err(BrokerError::FencedInstanceId(
                instance.unwrap_or_default().to_owned(),
            ));
        }
        Ok(m)
    }

    fn join(
        &mut self,
        hb: &Heartbeat,
        topics: &BTreeMap<String, u32>,
        new_id: impl FnOnce() -> String,
        out: &mut Outcome,
    ) -> Result<String> {
        let session = if hb.session_timeout_ms == 0 {
            DEFAULT_SESSION_MS
        } else {
            hb.session_timeout_ms
        };
        let rebalance = if hb.rebalance_timeout_ms == 0 {
            DEFAULT_REBALANCE_MS
        } else {
            hb.rebalance_timeout_ms
        };
        let subscription = hb.subscription.clone().unwrap_or_default();
        if subscription.topics.is_empty() && subscription.regex.is_none() {
            return Err(err("a joining member must subscribe to something"));
        }
        // A static member coming back takes over its instance's place
        // (assignment, epoch) without a rebalance; the old member id is
        // fenced.
        if let Some(instance) = &hb.instance_id
            && let Some((old_id, mut m)) = self
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                .map(|(id, _)| id.clone())
                .and_then(|id| self.members.remove_entry(&id))
        {
            let id = if hb.member_id.is_empty() {
                new_id()
            } else {
                hb.member_id.clone()
            };
            m.left = false;
            m.session_timeout_ms = session;
            m.rebalance_timeout_ms = rebalance;
            m.client = hb.client.clone();
            let resubscribed = m.subscription != subscription;
            m.subscription = subscription;
            if let Some(t) = self.target.remove(&old_id) {
                self.target.insert(id.clone(), t);
            }
            self.members.insert(id.clone(), m);
            out.removed.push(old_id);
            out.joined.push(id.clone());
            out.changed = true;
            if resubscribed {
                self.rebalance(topics, out);
            }
            return Ok(id);
        }
        if !hb.member_id.is_empty() && self.members.remove(&hb.member_id).is_some() {
            // A member that lost its epoch rejoins: it holds nothing now.
            self.target.remove(&hb.member_id);
        }
        let id = if hb.member_id.is_empty() {
            new_id()
        } else {
            hb.member_id.clone()
        };
        self.members.insert(
            id.clone(),
            MemberState {
                instance_id: hb.instance_id.clone(),
                epoch: 0,
                previous_epoch: 0,
                subscription,
                session_timeout_ms: session,
                rebalance_timeout_ms: rebalance,
                assigned: BTreeSet::new(),
                revoking: BTreeSet::new(),
                left: false,
                client: hb.client.clone(),
            },
        );
        out.joined.push(id.clone());
        self.rebalance(topics, out);
        Ok(id)
    }

    fn leave(
        &mut self,
        hb: &Heartbeat,
        topics: &BTreeMap<String, u32>,
        out: &mut Outcome,
    ) -> Result<()> {
        self.member(&hb.member_id, hb.instance_id.as_deref())?;
        if hb.member_epoch == STATIC_LEAVE
            && let Some(m) = self.members.get_mut(&hb.member_id)
            && m.instance_id.is_some()
        {
            // Kept for its instance until its session runs out.
            m.left = true;
            out.changed = true;
            return Ok(());
        }
        self.remove(&hb.member_id, topics, out);
        Ok(())
    }

    /// Takes a member out (left, session expired, fenced): what it held is
    /// free at once, and the others rebalance.
    pub fn remove(&mut self, id: &str, topics: &BTreeMap<String, u32>, out: &mut Outcome) {
        if self.members.remove(id).is_some() {
            self.target.remove(id);
            out.removed.push(id.to_owned());
            self.rebalance(topics, out);
        }
    }

    /// Moves one member towards its target (see the module doc).
    fn reconcile(
        &mut self,
        id: &str,
        owned: Option<&BTreeSet<Tp>>,
        out: &mut Outcome,
    ) -> HeartbeatReply {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<Tp> = self
            .members
            .iter()
            .filter(|(m, _)| *m != id)
            .flat_map(|(_, m)| m.assigned.iter().chain(m.revoking.iter()).cloned())
            .collect();
        let epoch = self.epoch;
        let Some(m) = self.members.get_mut(id) else {
            return HeartbeatReply {
                member_id: id.to_owned(),
                member_epoch: LEAVE,
                heartbeat_interval_ms: 0,
                assignment: BTreeSet::new(),
            };
        };
        let before = m.clone();
        if let Some(owned) = owned {
            // Released partitions are free now.
            m.revoking.retain(|tp| owned.contains(tp));
        }
        let revoke: Vec<Tp> = m.assigned.difference(&target).cloned().collect();
        for tp in revoke {
            m.assigned.remove(&tp);
            m.revoking.insert(tp);
        }
        if m.revoking.is_empty() {
            if m.epoch != epoch {
                m.previous_epoch = m.epoch;
                m.epoch = epoch;
            }
            for tp in &target {
                if !m.assigned.contains(tp) && !held_by_others.contains(tp) {
                    m.assigned.insert(tp.clone());
                }
            }
        }
        if *m != before {
            out.changed = true;
        }
        HeartbeatReply {
            member_id: id.to_owned(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: heartbeat_interval(m.session_timeout_ms),
            assignment: m.assigned.clone(),
        }
    }

    /// Whether a member (by id and epoch) may commit offsets of `tps`:
    /// it is in the group, at its current (or previous) epoch, and holds
    /// every partition. Without a member id, only a group without members
    /// takes commits.
    pub fn check_commit(&self, member_id: &str, epoch: i32, tps: &[Tp]) -> Result<()> {
        if member_id.is_empty() {
            if self.has_members() {
                return Err(BrokerError::UnknownMember(
                    "a commit without a member id to a group with members".into(),
                ));
            }
            return Ok(());
        }
        let m = self
            .members
            .get(member_id)
            .ok_or_else(|| BrokerError::UnknownMember(member_id.to_owned()))?;
        if epoch != m.epoch && epoch != m.previous_epoch {
            return Err(BrokerError::StaleMemberEpoch(format!(
                "member {member_id} is at epoch {}, the commit names {epoch}",
                m.epoch
            )));
        }
        if let Some(tp) = tps.iter().find(|tp| !m.holds(tp)) {
            return Err(BrokerError::StaleMemberEpoch(format!(
                "member {member_id} does not own {}/{}",
                tp.0, tp.1
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn sub(t: &str) -> Subscription {
        Subscription {
            topics: [t.to_owned()].into(),
            regex: None,
        }
    }

    /// A client as the protocol expects one to behave: it holds what it
    /// was last given and reports it.
    #[derive(Default, Clone)]
    struct Client {
        id: String,
        epoch: i32,
        owned: BTreeSet<Tp>,
        revocations: usize,
    }

    struct Sim {
        g: GroupState,
        topics: BTreeMap<String, u32>,
        clients: Vec<Client>,
        next_id: usize,
    }

    impl Sim {
        fn new(topics: BTreeMap<String, u32>) -> Self {
            Self {
                g: GroupState::default(),
                topics,
                clients: Vec::new(),
                next_id: 0,
            }
        }

        fn join(&mut self, topic: &str) -> usize {
            let n = self.next_id;
            self.next_id += 1;
            let hb = Heartbeat {
                member_epoch: JOIN,
                subscription: Some(sub(topic)),
                session_timeout_ms: 10_000,
                ..Default::default()
            };
            let (r, _) = self
                .g
                .heartbeat(&hb, &self.topics, || format!("m{n:02}"))
                .unwrap();
            let mut c = Client {
                id: r.member_id,
                epoch: r.member_epoch,
                ..Default::default()
            };
            c.owned = r.assignment;
            self.clients.push(c);
            self.check();
            self.clients.len() - 1
        }

        fn beat(&mut self, i: usize) {
            let c = &self.clients[i];
            let hb = Heartbeat {
                member_id: c.id.clone(),
                member_epoch: c.epoch,
                owned: Some(c.owned.clone()),
                ..Default::default()
            };
            let (r, _) = self.g.heartbeat(&hb, &self.topics, String::new).unwrap();
            let c = &mut self.clients[i];
            c.revocations += c.owned.difference(&r.assignment).count();
            c.owned = r.assignment;
            c.epoch = r.member_epoch;
            self.check();
        }

        fn leave(&mut self, i: usize) {
            let c = self.clients.remove(i);
            let hb = Heartbeat {
                member_id: c.id,
                member_epoch: LEAVE,
                ..Default::default()
            };
            self.g.heartbeat(&hb, &self.topics, String::new).unwrap();
            self.check();
        }

        fn settle(&mut self) {
            for _ in 0..6 {
                for i in 0..self.clients.len() {
                    self.beat(i);
                }
            }
        }

        /// No partition held by two clients, nor given by the group to two.
        fn check(&self) {
            let mut seen = BTreeSet::new();
            for c in &self.clients {
                for tp in &c.owned {
                    assert!(seen.insert(tp.clone()), "{tp:?} owned twice");
                }
            }
            let mut held = BTreeSet::new();
            for m in self.g.members.values() {
                for tp in m.assigned.iter().chain(m.revoking.iter()) {
                    assert!(held.insert(tp.clone()), "{tp:?} held twice");
                }
            }
        }

        fn sizes(&self) -> Vec<usize> {
            let mut v: Vec<usize> = self.clients.iter().map(|c| c.owned.len()).collect();
            v.sort_unstable();
            v
        }
    }

    #[test]
    fn four_members_share_twelve_partitions() {
        let mut s = Sim::new(topics(&[("t", 12)]));
        for _ in 0..4 {
            s.join("t");
            s.settle();
        }
        assert_eq!(s.sizes(), vec![3, 3, 3, 3]);
        let epoch = s.g.epoch;
        assert!(s.clients.iter().all(|c| c.epoch == epoch));
    }

    #[test]
    fn scaling_revokes_only_what_moves() {
        let mut s = Sim::new(topics(&[("t", 12)]));
        s.join("t");
        s.settle();
        assert_eq!(s.sizes(), vec![12]);
        for _ in 0..3 {
            s.join("t");
            s.settle();
        }
        assert_eq!(s.sizes(), vec![3, 3, 3, 3]);
        // 1 -> 2 -> 3 -> 4: each step revokes only what the newcomer
        // takes: 6 + 4 + 3.
        let revoked: usize = s.clients.iter().map(|c| c.revocations).sum();
        assert_eq!(revoked, 13);
        // 4 -> 2: the leavers' partitions move; the others keep theirs.
        let kept: Vec<BTreeSet<Tp>> = s.clients[..2].iter().map(|c| c.owned.clone()).collect();
        let staying: usize = s.clients[..2].iter().map(|c| c.revocations).sum();
        s.leave(3);
        s.leave(2);
        s.settle();
        assert_eq!(s.sizes(), vec![6, 6]);
        for (c, k) in s.clients.iter().zip(kept) {
            assert!(
                k.is_subset(&c.owned),
                "a staying member keeps its partitions"
            );
        }
        assert_eq!(
            s.clients.iter().map(|c| c.revocations).sum::<usize>(),
            staying,
            "the members that stay give up nothing"
        );
    }

    #[test]
    fn a_partition_moves_only_after_it_is_released() {
        let mut s = Sim::new(topics(&[("t", 2)]));
        s.join("t");
        s.settle();
        let b = s.join("t");
        // The newcomer gets nothing the first member still holds.
        assert!(s.clients[b].owned.is_empty());
        s.beat(b);
        assert!(s.clients[b].owned.is_empty());
        // The first member is told to give one up; until it reports the
        // release, the newcomer waits.
        s.beat(0);
        assert_eq!(s.clients[0].owned.len(), 1);
        s.beat(b);
        assert_eq!(s.clients[b].owned.len(), 0, "not yet released");
        s.beat(0);
        s.beat(b);
        assert_eq!(s.clients[b].owned.len(), 1);
    }

    #[test]
    fn new_topics_and_partitions_are_picked_up() {
        let mut s = Sim::new(topics(&[("orders-1", 2)]));
        let hb = Heartbeat {
            member_epoch: JOIN,
            subscription: Some(Subscription {
                topics: BTreeSet::new(),
                regex: Some("orders-.*".into()),
            }),
            ..Default::default()
        };
        let (r, _) = s.g.heartbeat(&hb, &s.topics, || "a".into()).unwrap();
        s.clients.push(Client {
            id: r.member_id,
            epoch: r.member_epoch,
            owned: r.assignment,
            revocations: 0,
        });
        assert_eq!(s.clients[0].owned.len(), 2);
        s.topics.insert("orders-2".into(), 3);
        s.topics.insert("other".into(), 5);
        s.beat(0);
        assert_eq!(s.clients[0].owned.len(), 5);
        s.topics.insert("orders-1".into(), 4);
        s.beat(0);
        assert_eq!(s.clients[0].owned.len(), 7);
    }

    #[test]
    fn fencing_and_errors() {
        let mut s = Sim::new(topics(&[("t", 4)]));
        let a = s.join("t");
        s.settle();
        let id = s.clients[a].id.clone();
        let stale = Heartbeat {
            member_id: id.clone(),
            member_epoch: 99,
            ..Default::default()
        };
        assert!(matches!(
            s.g.heartbeat(&stale, &s.topics, String::new),
            Err(BrokerError::FencedMemberEpoch { .. })
        ));
        let unknown = Heartbeat {
            member_id: "nobody".into(),
            member_epoch: 1,
            ..Default::default()
        };
        assert!(matches!(
            s.g.heartbeat(&unknown, &s.topics, String::new),
            Err(BrokerError::UnknownMember(_))
        ));
        let bad = Heartbeat {
            member_epoch: JOIN,
            subscription: Some(sub("t")),
            session_timeout_ms: 10,
            ..Default::default()
        };
        assert!(matches!(
            s.g.heartbeat(&bad, &s.topics, || "x".into()),
            Err(BrokerError::InvalidRequest(_))
        ));
        let regex = Heartbeat {
            member_epoch: JOIN,
            subscription: Some(Subscription {
                topics: BTreeSet::new(),
                regex: Some("(".into()),
            }),
            ..Default::default()
        };
        assert!(s.g.heartbeat(&regex, &s.topics, || "x".into()).is_err());
        let assignor = Heartbeat {
            member_epoch: JOIN,
            subscription: Some(sub("t")),
            assignor: "sticky-magic".into(),
            ..Default::default()
        };
        assert!(matches!(
            s.g.heartbeat(&assignor, &s.topics, || "x".into()),
            Err(BrokerError::UnsupportedAssignor(_))
        ));
        // A member joining a group with members may not change its assignor.
        let range = Heartbeat {
            member_epoch: JOIN,
            subscription: Some(sub("t")),
            assignor: "range".into(),
            ..Default::default()
        };
        assert!(matches!(
            s.g.heartbeat(&range, &s.topics, || "x".into()),
            Err(BrokerError::InconsistentGroupProtocol(_))
        ));
    }

    #[test]
    fn commits_are_fenced() {
        let mut s = Sim::new(topics(&[("t", 4)]));
        let a = s.join("t");
        s.settle();
        let b = s.join("t");
        s.settle();
        let (ida, ea) = (s.clients[a].id.clone(), s.clients[a].epoch);
        let mine: Vec<Tp> = s.clients[a].owned.iter().cloned().collect();
        let theirs: Vec<Tp> = s.clients[b].owned.iter().cloned().collect();
        s.g.check_commit(&ida, ea, &mine).unwrap();
        assert!(matches!(
            s.g.check_commit(&ida, ea, &theirs),
            Err(BrokerError::StaleMemberEpoch(_))
        ));
        assert!(matches!(
            s.g.check_commit(&ida, ea + 5, &mine),
            Err(BrokerError::StaleMemberEpoch(_))
        ));
        assert!(matches!(
            s.g.check_commit("", -1, &mine),
            Err(BrokerError::UnknownMember(_))
        ));
        // A member taken out (session expired) cannot commit any more.
        let mut out = Outcome::default();
        s.g.remove(&ida, &s.topics.clone(), &mut out);
        assert!(matches!(
            s.g.check_commit(&ida, ea, &mine),
            Err(BrokerError::UnknownMember(_))
        ));
        // Without members, simple commits work.
        let idb = s.clients[b].id.clone();
        s.g.remove(&idb, &s.topics.clone(), &mut out);
        s.g.check_commit("", -1, &mine).unwrap();
    }

    #[test]
    fn a_static_member_comes_back_without_a_rebalance() {
        let t = topics(&[("t", 6)]);
        let mut g = GroupState::default();
        let join = |instance: &str| Heartbeat {
            member_epoch: JOIN,
            instance_id: Some(instance.into()),
            subscription: Some(sub("t")),
            ..Default::default()
        };
        let (ra, _) = g.heartbeat(&join("a"), &t, || "a1".into()).unwrap();
        let (rb, _) = g.heartbeat(&join("b"), &t, || "b1".into()).unwrap();
        for _ in 0..3 {
            for (id, epoch) in [("a1", g.members["a1"].epoch), ("b1", g.members["b1"].epoch)] {
                let owned = g.members[id].assigned.clone();
                let hb = Heartbeat {
                    member_id: id.into(),
                    member_epoch: epoch,
                    owned: Some(owned),
                    ..Default::default()
                };
                g.heartbeat(&hb, &t, String::new).unwrap();
            }
        }
        let _ = (ra, rb);
        let epoch = g.epoch;
        let before = g.members["a1"].assigned.clone();
        assert_eq!(before.len(), 3);
        // The process of instance "a" restarts (no leave): the new member
        // takes its place, epoch and partitions.
        let (r, out) = g.heartbeat(&join("a"), &t, || "a2".into()).unwrap();
        assert!(!out.rebalanced);
        assert_eq!(g.epoch, epoch);
        assert_eq!(r.assignment, before);
        assert!(!g.members.contains_key("a1"));
        let old = Heartbeat {
            member_id: "a1".into(),
            member_epoch: epoch,
            ..Default::default()
        };
        assert!(
            g.heartbeat(&old, &t, String::new).is_err(),
            "the old id is fenced"
        );
    }
}
