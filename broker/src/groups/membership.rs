//! The coordinator's side of the consumer protocol: heartbeats run the
//! group's state machine (`consumer`) under the offsets partition's write
//! lock, and every change of the durable state is written to that
//! partition as the group's state record before the member is answered;
//! the applied record is the view (on every replica, so a new coordinator
//! continues where the old one stopped). Session and revocation deadlines
//! are kept here, per coordinator: a member not heard from within its
//! session timeout, or holding revoked partitions past its rebalance
//! timeout, is taken out and its partitions move on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::consumer::{GroupState, Heartbeat, HeartbeatReply, Outcome};
use super::offsets::{GroupCoordinator, Shard, shard_for, state_key, to_json, validate_group};
use crate::error::{BrokerError, Result};

/// A record to write: key, and value (`None` deletes).
pub(super) type Record = (Vec<u8>, Option<Vec<u8>>);

/// What the coordinator knows of a member's liveness.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    last_seen: Instant,
    /// Since when it has had partitions to give up.
    revoking_since: Option<Instant>,
}

/// A member id: 22 characters of URL-safe base64 over 16 random bytes, as
/// Kafka's (a UUID).
pub(super) fn new_member_id() -> String {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    let n = u128::from_be_bytes(b);
    (0..22)
        .map(|i| ALPHABET[((n >> (i * 6)) & 63) as usize] as char)
        .collect()
}

impl GroupCoordinator {
    /// Applies a committed state record of a group (`None`: deleted).
    pub(super) fn apply_state(&self, group: String, value: Option<&[u8]>) {
        let mut c = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<GroupState>) {
            Some(Ok(state)) => {
                c.insert(group, state);
            }
            Some(Err(e)) => {
                tracing::error!(group = %group, error = %e, "undecodable group state record");
            }
            None => {
                c.remove(&group);
            }
        }
    }

    /// The applied state of a group with membership.
    pub fn consumer_state(&self, group: &str) -> Option<GroupState> {
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(group)
            .cloned()
    }

    /// Groups with membership whose offsets partition this broker leads:
    /// (group, state, members).
    pub fn coordinated(&self) -> Vec<(String, &'static str, u32)> {
        let led: BTreeSet<u32> = self.led_shards().into_iter().map(|(i, _)| i).collect();
        self.consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(g, _)| led.contains(&(shard_for(g, self.count) as u32)))
            .map(|(g, s)| (g.clone(), s.state_name(), s.members.len() as u32))
            .collect()
    }

    /// Whether `member_id` at `epoch` may commit offsets of `tps` (see
    /// [`GroupState::check_commit`]). Groups without membership take any
    /// commit.
    pub(super) fn check_commit(
        &self,
        group: &str,
        member_id: &str,
        epoch: i32,
        tps: &[(String, u32)],
    ) -> Result<()> {
        if let Some(r) = self.classic_check_commit(group, member_id, epoch) {
            return r;
        }
        match self.consumer_state(group) {
            Some(state) => state.check_commit(member_id, epoch, tps),
            None if member_id.is_empty() => Ok(()),
            None => Err(BrokerError::UnknownMember(member_id.to_owned())),
        }
    }

    async fn write_state(&self, shard: &Shard, group: &str, state: &GroupState) -> Result<()> {
        self.write_raw(shard, &[(state_key(group)?, Some(to_json(state)?))])
            .await
    }

    fn note_liveness(&self, group: &str, state: &GroupState, out: &Outcome, member: &str) {
        let now = Instant::now();
        let mut l = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
        for id in &out.removed {
            l.remove(&(group.to_owned(), id.clone()));
        }
        let Some(m) = state.members.get(member) else {
            l.remove(&(group.to_owned(), member.to_owned()));
            return;
        };
        let e = l
            .entry((group.to_owned(), member.to_owned()))
            .or_insert(Liveness {
                last_seen: now,
                revoking_since: None,
            });
        e.last_seen = now;
        if m.revoking.is_empty() {
            e.revoking_since = None;
        } else if e.revoking_since.is_none() {
            e.revoking_since = Some(now);
        }
    }

    /// Handles a member's heartbeat; `topics` are the cluster's topics
    /// (name → partition count).
    pub async fn heartbeat(
        &self,
        group: &str,
        hb: Heartbeat,
        topics: &BTreeMap<String, u32>,
    ) -> Result<HeartbeatReply> {
        validate_group(group)?;
        let shard = self.shard(group)?;
        let _w = shard.write.lock().await;
        if self.classic_state(group).is_some_and(|c| !c.is_empty()) {
            return Err(BrokerError::InconsistentGroupProtocol(format!(
                "group '{group}' uses the classic protocol"
            )));
        }
        let mut state = self.consumer_state(group).unwrap_or_default();
        let (reply, out) = state.heartbeat(&hb, topics, new_member_id)?;
        if out.changed {
            self.write_state(&shard, group, &state).await?;
        }
        self.note_rebalance(
            group,
            "consumer",
            out.rebalanced,
            matches!(state.state_name(), "stable" | "empty"),
        );
        self.note_liveness(group, &state, &out, &reply.member_id);
        Ok(reply)
    }

    /// Takes out the members of led groups whose session ran out or who
    /// hold revoked partitions past their rebalance timeout. Called
    /// periodically.
    pub async fn expire_members(&self, topics: &BTreeMap<String, u32>) {
        for (idx, shard) in self.led_shards() {
            let groups: Vec<String> = self
                .consumers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(g, s)| shard_for(g, self.count) == idx as usize && s.has_members())
                .map(|(g, _)| g.clone())
                .collect();
            for group in groups {
                if let Err(e) = self.expire_group(&shard, &group, topics).await {
                    tracing::debug!(group = %group, error = %e, "expiring members failed");
                }
            }
        }
    }

    async fn expire_group(
        &self,
        shard: &Shard,
        group: &str,
        topics: &BTreeMap<String, u32>,
    ) -> Result<()> {
        let _w = shard.write.lock().await;
        let Some(mut state) = self.consumer_state(group) else {
            return Ok(());
        };
        let now = Instant::now();
        let mut gone = BTreeSet::new();
        {
            let mut l = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
            for (id, m) in &state.members {
                // A member this coordinator has not heard from yet (it took
                // over, or restarted) gets a whole session from now.
                let e = l.entry((group.to_owned(), id.clone())).or_insert(Liveness {
                    last_seen: now,
                    revoking_since: None,
                });
                let session = Duration::from_millis(u64::from(m.session_timeout_ms));
                let rebalance = Duration::from_millis(u64::from(m.rebalance_timeout_ms));
                if now.duration_since(e.last_seen) > session {
                    tracing::info!(group, member = %id, "member session expired");
                    gone.insert(id.clone());
                } else if e
                    .revoking_since
                    .is_some_and(|t| now.duration_since(t) > rebalance)
                {
                    tracing::info!(group, member = %id,
                        "member did not give up its partitions within its rebalance timeout");
                    gone.insert(id.clone());
                }
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        let mut out = Outcome::default();
        for id in &gone {
            state.remove(id, topics, &mut out);
        }
        self.write_state(shard, group, &state).await?;
        self.note_rebalance(
            group,
            "consumer",
            true,
            matches!(state.state_name(), "stable" | "empty"),
        );
        let mut l = self.liveness.lock().unwrap_or_else(|e| e.into_inner());
        for id in gone {
            l.remove(&(group.to_owned(), id));
        }
        Ok(())
    }
}
