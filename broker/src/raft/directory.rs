//! What this broker knows about the others: client and peer addresses,
//! partition leaders (from its own groups and from peers' notices), the
//! controller leader, and when each peer was last heard from.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// A peer counts as alive when heard from within this window.
pub const ALIVE_WINDOW: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Directory {
    client_addrs: RwLock<HashMap<u64, String>>,
    leaders: RwLock<HashMap<(String, u32), (u64, u64)>>,
    last_seen: RwLock<HashMap<u64, Instant>>,
}

impl Directory {
    pub fn set_client_addr(&self, id: u64, addr: &str) {
        let mut m = self.client_addrs.write().unwrap_or_else(|e| e.into_inner());
        if m.get(&id).is_none_or(|a| a != addr) {
            m.insert(id, addr.to_owned());
        }
    }

    pub fn client_addr(&self, id: u64) -> String {
        self.client_addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Records a leadership unless a newer term is already known.
    pub fn set_leader(&self, topic: &str, partition: u32, leader: u64, term: u64) {
        let mut m = self.leaders.write().unwrap_or_else(|e| e.into_inner());
        let key = (topic.to_owned(), partition);
        match m.get(&key) {
            Some((_, t)) if *t > term => {}
            _ => {
                m.insert(key, (leader, term));
            }
        }
    }

    /// Leader id of a partition (0 = unknown).
    pub fn leader(&self, topic: &str, partition: u32) -> u64 {
        self.leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_owned(), partition))
            .map_or(0, |(l, _)| *l)
    }

    /// Leader id (0 = unknown) and the term it was seen leading in.
    pub fn leader_and_term(&self, topic: &str, partition: u32) -> (u64, u64) {
        self.leaders
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or((0, 0))
    }

    pub fn forget_topic(&self, topic: &str) {
        self.leaders
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(t, _), _| t != topic);
    }

    pub fn saw(&self, id: u64) {
        self.last_seen
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Instant::now());
    }

    /// Whether peer `id` was heard from recently.
    pub fn alive(&self, id: u64) -> bool {
        self.heard_within(id, ALIVE_WINDOW)
    }

    /// Whether peer `id` was heard from within `d`.
    pub fn heard_within(&self, id: u64, d: Duration) -> bool {
        self.last_seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .is_some_and(|t| t.elapsed() < d)
    }
}
