//! Messages for groups not open here yet, kept for a while and stepped
//! when the group opens.
//!
//! The brokers of a topic of many partitions open their replicas each at
//! its own pace, so a preferred replica often asks for votes before the
//! other replicas' brokers have opened the group. Dropping those requests
//! cost each such group an election timeout and a second campaign (at
//! 100,000 partitions, three quarters of one broker's first campaigns);
//! kept, the request is answered as soon as the replica opens. A Raft
//! message may be delayed arbitrarily without harm, so stepping it late is
//! safe; what is kept is bounded in count and age, and forgotten when the
//! group is removed here.

use std::time::{Duration, Instant};

use raft::eraftpb::{Message, MessageType};

use super::{GroupKey, GroupMap};

/// How long a message waits for its group to open.
const EARLY_KEEP: Duration = Duration::from_secs(10);
/// Messages kept at most, over all groups (a vote request or a first
/// append is a hundred bytes or so).
const EARLY_MAX: usize = 200_000;
/// Messages kept at most per group: the latest ones matter.
const EARLY_PER_GROUP: usize = 8;
/// Only messages carrying at most this many bytes of entries are kept
/// (votes, heartbeats, a new leader's first append): a leader's appends
/// of data to a replica not open yet are sent again anyway, and keeping
/// them could hold gigabytes.
const EARLY_MAX_BYTES: usize = 4096;

/// Messages waiting for their groups to open.
#[derive(Default)]
pub(super) struct Early {
    by_group: GroupMap<(Instant, Vec<Message>)>,
    count: usize,
}

impl Early {
    /// Keeps `m` for group `key` (dropped when full, or when it carries
    /// data or a snapshot).
    pub(super) fn keep(&mut self, key: GroupKey, m: Message, now: Instant) {
        let bytes: usize = m
            .entries
            .iter()
            .map(|e| e.data.len() + e.context.len())
            .sum();
        if bytes > EARLY_MAX_BYTES || m.get_msg_type() == MessageType::MsgSnapshot {
            return;
        }
        if self.count >= EARLY_MAX {
            self.expire(now);
            if self.count >= EARLY_MAX {
                return;
            }
        }
        // Aged from the group's first kept message (`take` removes the
        // entry, so an entry is never empty).
        let (_, msgs) = self
            .by_group
            .entry(key)
            .or_insert_with(|| (now, Vec::new()));
        if msgs.len() >= EARLY_PER_GROUP {
            msgs.remove(0);
            self.count -= 1;
        }
        msgs.push(m);
        self.count += 1;
    }

    /// The messages kept for `key`, oldest first.
    pub(super) fn take(&mut self, key: &GroupKey) -> Vec<Message> {
        let msgs = self
            .by_group
            .remove(key)
            .map(|(_, m)| m)
            .unwrap_or_default();
        self.count -= msgs.len();
        msgs
    }

    /// Drops what was kept for `key` (the group was removed here).
    pub(super) fn forget(&mut self, key: &GroupKey) {
        let _ = self.take(key);
    }

    /// Drops the messages of groups that did not open within
    /// [`EARLY_KEEP`] of their first one.
    pub(super) fn expire(&mut self, now: Instant) {
        if self.count == 0 {
            return;
        }
        let mut dropped = 0;
        self.by_group.retain(|_, (since, msgs)| {
            let keep = now.saturating_duration_since(*since) < EARLY_KEEP;
            if !keep {
                dropped += msgs.len();
            }
            keep
        });
        self.count -= dropped;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(term: u64) -> Message {
        Message {
            term,
            ..Default::default()
        }
    }

    fn key(p: u32) -> GroupKey {
        ("t".to_owned(), p)
    }

    #[test]
    fn kept_messages_come_back_in_order_once() {
        let mut e = Early::default();
        let now = Instant::now();
        e.keep(key(0), msg(1), now);
        e.keep(key(0), msg(2), now);
        e.keep(key(1), msg(5), now);
        let terms: Vec<u64> = e.take(&key(0)).iter().map(|m| m.term).collect();
        assert_eq!(terms, [1, 2]);
        assert!(e.take(&key(0)).is_empty());
        assert_eq!(e.len(), 1);
        e.forget(&key(1));
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn a_group_keeps_its_latest_messages_only() {
        let mut e = Early::default();
        let now = Instant::now();
        for t in 0..(EARLY_PER_GROUP as u64 + 3) {
            e.keep(key(0), msg(t), now);
        }
        let terms: Vec<u64> = e.take(&key(0)).iter().map(|m| m.term).collect();
        assert_eq!(terms.len(), EARLY_PER_GROUP);
        assert_eq!(terms.first(), Some(&3));
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn messages_carrying_data_are_not_kept() {
        let mut e = Early::default();
        let mut m = msg(1);
        m.entries.push(raft::eraftpb::Entry {
            data: vec![0; EARLY_MAX_BYTES + 1].into(),
            ..Default::default()
        });
        e.keep(key(0), m, Instant::now());
        assert_eq!(e.len(), 0);
    }

    #[test]
    fn messages_of_groups_that_never_open_expire() {
        let mut e = Early::default();
        let then = Instant::now();
        e.keep(key(0), msg(1), then);
        e.keep(key(1), msg(1), then + EARLY_KEEP);
        e.expire(then + EARLY_KEEP + Duration::from_millis(1));
        assert!(e.take(&key(0)).is_empty());
        assert_eq!(e.take(&key(1)).len(), 1);
        assert_eq!(e.len(), 0);
    }
}
