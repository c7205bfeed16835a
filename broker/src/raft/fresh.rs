//! New groups, created together by the thousand (a topic of many
//! partitions): each elects once, led first by its preferred replica.
//!
//! The preferred replica's broker does not campaign for all of its new
//! groups at once: it starts campaigns while fewer than
//! [`FRESH_AWAKE_LIMIT`] groups are awake here (at least
//! [`FRESH_MIN_PER_TICK`] per tick, so that a cluster whose groups cannot
//! quiesce, one broker down, still elects them all), and the rest wait
//! without ticking. A group led and caught up quiesces and leaves the awake
//! set, which admits the next ones. Campaigning for 33,000 groups at once
//! made 33,000 leaders heartbeat before any had quiesced, more than the
//! loop could send and answer within an election timeout: leaders stepped
//! down for want of answers, and elections never ended.
//!
//! A first campaign from term 0 skips the pre-vote (see `admit_fresh`).
//!
//! The other replicas of a new group are held: quiesced (not ticking, so
//! never campaigning) until a message from another replica than the
//! preferred one wakes them, the preferred replica's broker falls silent,
//! or [`FRESH_HOLD`] passed. The preferred replica's vote request and
//! appends are answered without waking: a follower ticking until its
//! leader quiesced the group (every tick while it had voted but not yet
//! heard the new leader) cost the loop a seventh of its time while
//! 100,000 groups were being created. A held replica whose leader is the
//! preferred one is, until that leader quiesces the group, what the
//! follower of a quiesced group is: woken if the leader's broker falls
//! silent.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use raft::StateRole;

use super::node::{Group, RaftLoop};
use super::pending::Pending;

/// How long the other replicas of a new group leave its election to the
/// preferred replica while that replica's broker is heard from. Long
/// enough for a broker to start every campaign of 100,000 new groups at the
/// pace above; a preferred replica that never campaigns (its broker could
/// not open it) delays that group's election by this much.
pub(super) const FRESH_HOLD: Duration = Duration::from_secs(30);

/// Campaigns start while fewer groups than this are awake here.
const FRESH_AWAKE_LIMIT: usize = 4096;

/// Campaigns started per tick however many groups are awake.
const FRESH_MIN_PER_TICK: usize = 16;

/// A held replica of a new group, still without a leader, whose wait is
/// over: the preferred replica's broker is silent, or the hold ran out. (A
/// replica that has a leader waits for that leader, like any follower:
/// waking it would have it campaign against a quiesced leader.)
pub(super) fn hold_over(g: &Group, silent: &HashSet<u64>, now: Instant) -> bool {
    g.node.raft.leader_id == raft::INVALID_ID
        && g.held_for
            .is_some_and(|(preferred, until)| silent.contains(&preferred) || now >= until)
}

impl RaftLoop {
    /// Starts the campaigns of new groups led first here (see the module
    /// documentation for how many).
    pub(super) fn admit_fresh(&mut self, active: &mut Pending) {
        let mut started = 0;
        while let Some(&id) = self.fresh.front() {
            if started >= FRESH_MIN_PER_TICK && self.awake_len() >= FRESH_AWAKE_LIMIT {
                return;
            }
            self.fresh.pop_front();
            let Some(g) = self.groups.get_mut(id) else {
                continue;
            };
            let r = &g.node.raft;
            // Another replica may have been elected meanwhile (its hold
            // ran out): this one follows it.
            if r.state == StateRole::Follower && r.leader_id == raft::INVALID_ID {
                if r.term == 0 {
                    // Nothing of the group heard yet: any leader it has is of
                    // a term of at least 1, which a campaign for term 1
                    // cannot depose, so the pre-vote round (a round trip
                    // and two messages per follower) is skipped.
                    g.node.raft.campaign(raft::CAMPAIGN_ELECTION);
                } else {
                    let _ = g.node.campaign();
                }
            }
            g.quiesced = false;
            self.wake(id);
            active.insert(id);
            started += 1;
        }
    }
}
