//! The coordinator's side of the classic group protocol: JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup run the group's state machine
//! (`classic`) under the offsets partition's write lock; every change of
//! its durable part is written to that partition as the group's state
//! record (key `{"g":group,"k":"classic"}`) before anyone is answered.
//!
//! The coordinator keeps a working copy of each group it coordinates (who
//! has rejoined, deadlines, last heartbeats), loaded from the applied
//! record when it starts leading the group's offsets partition in a term;
//! every other replica keeps only the applied record. Joins and syncs that
//! must wait for other members wait on one change signal and re-read the
//! working copy; the periodic tick completes rebalances whose deadline
//! passed and takes out members whose session ran out.

use std::time::Duration;

use super::classic::{Changes, ClassicGroup, Join, JoinAnswer, Joined, Synced};
use super::membership::new_member_id;
use super::offsets::{GroupCoordinator, Shard, classic_key, shard_for, to_json, validate_group};
use crate::error::{BrokerError, Result};
/// The clock of the classic state machine (ms since the Unix epoch).
fn now_ms() -> u64 {
    u64::try_from(crate::log::now_ms()).unwrap_or(0)
}

/// Longest a join or sync waits beyond the rebalance timeout.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// What a JoinGroup answers.
#[derive(Debug, Clone)]
pub enum JoinReply {
    /// MEMBER_ID_REQUIRED: rejoin with this id.
    MemberIdRequired(String),
    Joined(JoinAnswer),
}

impl GroupCoordinator {
    /// Applies a committed classic state record (`None`: deleted).
    pub(super) fn apply_classic(&self, group: String, value: Option<&[u8]>) {
        let mut c = self.classics.lock().unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<ClassicGroup>) {
            Some(Ok(state)) => {
                c.insert(group, state);
            }
            Some(Err(e)) => {
                tracing::error!(group = %group, error = %e, "undecodable classic group record");
            }
            None => {
                c.remove(&group);
            }
        }
    }

    /// The classic group as this broker knows it: the coordinator's working
    /// copy, else the applied record.
    pub fn classic_state(&self, group: &str) -> Option<ClassicGroup> {
        if let Some((_, g)) = self
            .classic_live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
        {
            return Some(g.clone());
        }
        self.classics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
    }

    /// Runs `f` on the working copy of `group` for leadership `term`
    /// (loading it from the applied record when this term has none).
    fn with_live<T>(&self, group: &str, term: u64, f: impl FnOnce(&mut ClassicGroup) -> T) -> T {
        let mut live = self.classic_live.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = live.get(group).is_some_and(|(t, _)| *t == term);
        if !fresh {
            let applied = self
                .classics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(group)
                .cloned()
                .unwrap_or_default();
            live.insert(group.to_owned(), (term, applied.restored(now_ms())));
        }
        let (_, g) = live
            .get_mut(group)
            .unwrap_or_else(|| unreachable!("inserted above"));
        f(g)
    }

    /// The group's offsets partition (led here) and its leadership term.
    fn classic_shard(&self, group: &str) -> Result<(std::sync::Arc<Shard>, u64)> {
        validate_group(group)?;
        let shard = self.shard(group)?;
        let term = shard.partition.role().term;
        Ok((shard, term))
    }

    /// Persists the working copy when its durable part changed, and wakes
    /// the waiters.
    async fn settle(
        &self,
        shard: &Shard,
        group: &str,
        g: &ClassicGroup,
        ch: &Changes,
    ) -> Result<()> {
        if ch.durable {
            let value = if g.is_empty() && g.generation == 0 {
                None
            } else {
                Some(to_json(g)?)
            };
            self.write_raw(shard, &[(classic_key(group)?, value)])
                .await?;
        }
        self.note_rebalance(
            group,
            "classic",
            ch.rebalance,
            g.state == super::classic::ClassicState::Stable || g.is_empty(),
        );
        self.classic_changed.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Refuses a classic join to a group that uses the consumer protocol.
    fn check_protocol(&self, group: &str) -> Result<()> {
        if self.consumer_state(group).is_some_and(|s| s.has_members()) {
            return Err(BrokerError::InconsistentGroupProtocol(format!(
                "group '{group}' uses the consumer protocol"
            )));
        }
        Ok(())
    }

    /// Handles a JoinGroup; waits until the join phase completes.
    pub async fn classic_join(&self, group: &str, req: Join) -> Result<JoinReply> {
        let (shard, term) = self.classic_shard(group)?;
        self.check_protocol(group)?;
        let wait_limit = Duration::from_millis(
            req.rebalance_timeout_ms.max(req.session_timeout_ms).max(0) as u64,
        ) + WAIT_SLACK;
        let mut rx = self.classic_changed.subscribe();
        let joined = {
            let _w = shard.write.lock().await;
            let now = now_ms();
            let (joined, ch, snapshot) = self.with_live(group, term, |g| {
                let mut ch = Changes::default();
                let joined = g.join(req, now, new_member_id, &mut ch);
                if joined.is_ok() {
                    g.try_complete_join(now, &mut ch);
                }
                (joined, ch, g.clone())
            });
            let joined = joined?;
            self.settle(&shard, group, &snapshot, &ch).await?;
            joined
        };
        let id = match joined {
            Joined::MemberIdRequired(id) => return Ok(JoinReply::MemberIdRequired(id)),
            Joined::Current(id) | Joined::Waiting(id) => id,
        };
        let deadline = tokio::time::Instant::now() + wait_limit;
        loop {
            self.classic_shard(group)?;
            let (answer, missed) = self.with_live(group, term, |g| match g.members.get(&id) {
                None => (Some(Err(BrokerError::UnknownMember(id.clone()))), false),
                Some(m) => (g.join_answer(&id).map(Ok), !m.joined),
            });
            if let Some(a) = answer {
                return a.map(JoinReply::Joined);
            }
            if missed {
                // Another rebalance began before this join was answered:
                // the join still outstanding counts for it, as in Kafka.
                let _w = shard.write.lock().await;
                let now = now_ms();
                let (ch, snapshot) = self.with_live(group, term, |g| {
                    let mut ch = Changes::default();
                    g.mark_joined(&id);
                    g.try_complete_join(now, &mut ch);
                    (ch, g.clone())
                });
                self.settle(&shard, group, &snapshot, &ch).await?;
                continue;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(BrokerError::RebalanceInProgress);
            }
        }
    }

    /// Handles a SyncGroup; a follower waits for the leader's assignment.
    pub async fn classic_sync(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>> {
        let (shard, term) = self.classic_shard(group)?;
        let mut rx = self.classic_changed.subscribe();
        let (synced, limit) = {
            let _w = shard.write.lock().await;
            let now = now_ms();
            let (synced, ch, snapshot, limit) = self.with_live(group, term, |g| {
                let mut ch = Changes::default();
                let r = g.sync(
                    member_id,
                    instance_id,
                    generation,
                    assignments,
                    now,
                    &mut ch,
                );
                let limit = g
                    .members
                    .get(member_id)
                    .map_or(0, |m| m.rebalance_timeout_ms.max(0) as u64);
                (r, ch, g.clone(), limit)
            });
            let synced = synced?;
            self.settle(&shard, group, &snapshot, &ch).await?;
            (synced, limit)
        };
        if let Synced::Assignment(a) = synced {
            return Ok(a);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(limit) + WAIT_SLACK;
        loop {
            self.classic_shard(group)?;
            if let Some(r) = self.with_live(group, term, |g| g.sync_answer(member_id, generation)) {
                return r;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(BrokerError::RebalanceInProgress);
            }
        }
    }

    /// Handles a Heartbeat.
    pub async fn classic_heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<()> {
        let (_, term) = self.classic_shard(group)?;
        let now = now_ms();
        self.with_live(group, term, |g| {
            g.heartbeat(member_id, instance_id, generation, now)
        })
    }

    /// Handles a LeaveGroup of several members: one outcome each.
    pub async fn classic_leave(
        &self,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<()>>> {
        let (shard, term) = self.classic_shard(group)?;
        let _w = shard.write.lock().await;
        let now = now_ms();
        let (out, ch, snapshot) = self.with_live(group, term, |g| {
            let mut ch = Changes::default();
            let out: Vec<Result<()>> = members
                .iter()
                .map(|(id, inst)| g.leave(id, inst.as_deref(), now, &mut ch))
                .collect();
            (out, ch, g.clone())
        });
        self.settle(&shard, group, &snapshot, &ch).await?;
        Ok(out)
    }

    /// Whether a commit of `member_id` in `generation` is taken by a
    /// classic group (`None`: the group is not a classic one).
    pub(super) fn classic_check_commit(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Option<Result<()>> {
        let term = self.shard(group).ok()?.partition.role().term;
        let known = self
            .classic_live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(group)
            || self
                .classics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(group);
        if !known {
            return None;
        }
        Some(self.with_live(group, term, |g| g.check_commit(member_id, generation)))
    }

    /// Time passing for the classic groups this broker coordinates.
    /// Called periodically.
    pub async fn classic_tick(&self) {
        for (idx, shard) in self.led_shards() {
            let term = shard.partition.role().term;
            let groups: Vec<String> = {
                let live = self.classic_live.lock().unwrap_or_else(|e| e.into_inner());
                let applied = self.classics.lock().unwrap_or_else(|e| e.into_inner());
                let mut v: Vec<String> = live
                    .keys()
                    .chain(
                        applied
                            .iter()
                            .filter(|(_, g)| !g.is_empty())
                            .map(|(k, _)| k),
                    )
                    .filter(|g| shard_for(g, self.count) == idx as usize)
                    .cloned()
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            for group in groups {
                let _w = shard.write.lock().await;
                let now = now_ms();
                let (ch, snapshot) = self.with_live(&group, term, |g| {
                    let mut ch = Changes::default();
                    g.tick(now, &mut ch);
                    (ch, g.clone())
                });
                for id in &ch.removed {
                    tracing::info!(group = %group, member = %id, "classic member taken out");
                }
                if (ch.durable || ch.rebalance || !ch.removed.is_empty())
                    && let Err(e) = self.settle(&shard, &group, &snapshot, &ch).await
                {
                    tracing::debug!(group = %group, error = %e, "classic group tick failed");
                }
            }
        }
    }
}
