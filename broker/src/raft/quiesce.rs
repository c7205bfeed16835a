//! Quiescing and the leader lease: when an idle led group stops ticking
//! ([`can_quiesce`]), how long a leader's broker may stay silent before its
//! followers wake and campaign, a follower giving up its view of the
//! leader's lease ([`end_lease`]), and a leader giving up its own when it
//! hears no quorum ([`lost_quorum`]).

use std::collections::HashSet;

use raft::StateRole;

use super::node::Group;
use super::storage::LogStorage;

/// A leader quiesces a group with no proposal for this long (or none since
/// it won the leadership) once every follower is caught up.
pub(super) const QUIESCE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// A follower whose leader's broker was silent this long (several missed
/// broker heartbeats) treats its leader as gone: a quiesced group wakes, and
/// every such group campaigns within one more (randomized) election
/// timeout instead of waiting out a whole one first.
pub(super) const WAKE_AFTER: std::time::Duration = std::time::Duration::from_millis(350);

/// A follower asked for its (pre-)vote treats its leader's lease as over
/// when the leader's broker has been silent this long (two broker
/// heartbeats missed): the candidate saw the leader go silent a moment
/// earlier, and waiting for this replica's own detection would cost a
/// whole second election round. A replica that still hears the leader
/// keeps refusing, which is what the lease is for.
pub(super) const VOTE_LEASE_SILENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Ticks over which the followers of a leader that went silent spread
/// their campaigns (so that one of them usually wins the first round).
pub(super) const LEASE_END_SPREAD: usize = 6;

/// Ends a follower's view of its leader's lease: it grants (pre-)votes at
/// once, and campaigns within [`LEASE_END_SPREAD`] ticks, at a point taken
/// from the randomized part of its election timeout (spreading the
/// candidates) rather than after a whole timeout.
pub(super) fn end_lease(r: &mut raft::Raft<LogStorage>) {
    if r.state != StateRole::Follower {
        return;
    }
    let et = r.election_timeout().max(1);
    let randomized = r.randomized_election_timeout();
    let left = (randomized.saturating_sub(et) * LEASE_END_SPREAD / et).min(randomized);
    let at = et.max(randomized - left);
    if r.election_elapsed < at {
        r.election_elapsed = at;
    }
}

/// A led group whose voters, apart from this broker, are silent (not
/// heard within [`WAKE_AFTER`], or their link just broke) in such numbers
/// that the rest is no quorum: the leader cannot commit anything, and its
/// followers are about to campaign.
pub(super) fn lost_quorum(g: &Group, me: u64, silent: &HashSet<u64>) -> bool {
    let r = &g.node.raft;
    if r.state != StateRole::Leader {
        return false;
    }
    // The set type is raft-rs's own (its hasher is private): inferred.
    let heard = r
        .prs()
        .conf()
        .voters()
        .ids()
        .iter()
        .filter(|id| *id == me || !silent.contains(id))
        .collect();
    !r.prs().has_quorum(&heard)
}

/// Check-quorum by broker: marks every voter of a led group whose broker
/// is heard (not in `silent`) as recently active, so that raft-rs's own
/// check-quorum (every election timeout) steps the leader down only when
/// its broker hears no quorum of the group's brokers, as
/// [`lost_quorum`] does sooner. Counting each group's own messages instead
/// made a loop running late (a topic of 100,000 partitions being created
/// on a starved host: answers waiting in its inbox past the check) depose
/// its healthy leaders by the thousand, and every step-down an election
/// that added to the load. A follower replica that stopped answering on a
/// broker that is heard cannot be replaced by stepping down: its group's
/// other voters elect if their leader goes quiet, as before.
pub(super) fn credit_heard_voters(r: &mut raft::Raft<LogStorage>, me: u64, silent: &HashSet<u64>) {
    if r.state != StateRole::Leader {
        return;
    }
    for (id, p) in r.mut_prs().iter_mut() {
        if *id != me && !silent.contains(id) {
            p.recent_active = true;
        }
    }
}

/// An idle led group whose followers all hold and know the whole log.
pub(super) fn can_quiesce(g: &Group, me: u64) -> bool {
    let r = &g.node.raft;
    if r.state != StateRole::Leader
        || r.lead_transferee.is_some()
        || g.last_proposal.is_some_and(|t| t.elapsed() < QUIESCE_AFTER)
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
