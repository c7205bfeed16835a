//! The groups the loop must look at, in the order they became due: each
//! group at most once, worked off from the front, so that a cycle can take
//! a bounded share and leave the rest to the next one instead of holding
//! every group (and every peer waiting on one) for a whole pass.

use std::collections::VecDeque;

use super::{GroupKey, GroupSet};

#[derive(Default)]
pub(super) struct Pending {
    order: VecDeque<GroupKey>,
    members: GroupSet,
}

impl Pending {
    /// Marks `key` due (a no-op if it already is).
    pub(super) fn insert(&mut self, key: GroupKey) {
        if !self.members.contains(&key) {
            self.members.insert(key.clone());
            self.order.push_back(key);
        }
    }

    /// The group due longest.
    pub(super) fn pop(&mut self) -> Option<GroupKey> {
        let key = self.order.pop_front()?;
        self.members.remove(&key);
        Some(key)
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> GroupKey {
        ("t".to_owned(), p)
    }

    #[test]
    fn each_group_once_in_the_order_it_became_due() {
        let mut p = Pending::default();
        for k in [3, 1, 3, 2, 1] {
            p.insert(key(k));
        }
        assert_eq!(p.len(), 3);
        assert_eq!(p.pop(), Some(key(3)));
        // Due again after it was taken: queued behind the others.
        p.insert(key(3));
        assert_eq!(p.pop(), Some(key(1)));
        assert_eq!(p.pop(), Some(key(2)));
        assert_eq!(p.pop(), Some(key(3)));
        assert!(p.is_empty());
        assert_eq!(p.pop(), None);
    }
}
