//! The groups the loop must look at, in the order they became due: each
//! group at most once, worked off from the front, so that a cycle can take
//! a bounded share and leave the rest to the next one instead of holding
//! every group (and every peer waiting on one) for a whole pass.

use std::collections::VecDeque;

use super::GroupHasher;
use super::groups::GroupId;

#[derive(Default)]
pub(super) struct Pending {
    order: VecDeque<GroupId>,
    members: std::collections::HashSet<GroupId, GroupHasher>,
}

impl Pending {
    /// Marks `id` due (a no-op if it already is).
    pub(super) fn insert(&mut self, id: GroupId) {
        if self.members.insert(id) {
            self.order.push_back(id);
        }
    }

    /// Marks each of `ids` due.
    pub(super) fn extend(&mut self, ids: impl IntoIterator<Item = GroupId>) {
        for id in ids {
            self.insert(id);
        }
    }

    /// The group due longest.
    pub(super) fn pop(&mut self) -> Option<GroupId> {
        let id = self.order.pop_front()?;
        self.members.remove(&id);
        Some(id)
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

    #[test]
    fn each_group_once_in_the_order_it_became_due() {
        let mut groups = super::super::groups::Groups::default();
        let ids: Vec<GroupId> = (0..4)
            .map(|i| groups.insert(("t".to_owned(), i), ()))
            .collect();
        let key = |i: usize| ids[i];
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
