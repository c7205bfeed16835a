//! The groups hosted here, held by dense ids: the loop finds a group by its
//! key once, where a command or a peer message names it, and from then on
//! carries a [`GroupId`] (a slot and its generation) through its queues
//! and sets, which costs an index instead of hashing and comparing a topic
//! name. With 100,000 groups awake the loop otherwise spent most of its
//! time hashing and comparing keys.
//!
//! A slot is reused after its group is removed, under a new generation:
//! an id still queued for the removed group finds nothing.
//!
//! [`PhasedSet`] holds ids split by their phase, for walks that visit one
//! phase at a time.

use std::collections::HashSet;

use super::{GroupHasher, GroupKey, GroupMap};

/// A group's place in [`Groups`]: valid until that group is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct GroupId {
    slot: u32,
    generation: u32,
}

impl GroupId {
    /// Which of `of` phases the group is in: spreads the groups evenly
    /// over the ticks of a round (see `node::RaftLoop::tick`).
    pub(super) fn phase(self, of: u64) -> u64 {
        u64::from(self.slot) % of.max(1)
    }
}

struct Slot<V> {
    generation: u32,
    value: Option<(GroupKey, V)>,
}

/// Values (the loop's groups) by [`GroupId`], and the id of each key.
pub(super) struct Groups<V> {
    slots: Vec<Slot<V>>,
    free: Vec<u32>,
    ids: GroupMap<GroupId>,
}

impl<V> Default for Groups<V> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ids: GroupMap::default(),
        }
    }
}

impl<V> Groups<V> {
    /// The id of the group `key`, if it is here.
    pub(super) fn id(&self, key: &GroupKey) -> Option<GroupId> {
        self.ids.get(key).copied()
    }

    pub(super) fn contains_key(&self, key: &GroupKey) -> bool {
        self.ids.contains_key(key)
    }

    pub(super) fn get(&self, id: GroupId) -> Option<&V> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_ref().map(|(_, v)| v)
    }

    /// The group `key`, to change, by its key (a command naming it).
    pub(super) fn get_mut_by_key(&mut self, key: &GroupKey) -> Option<&mut V> {
        let id = self.id(key)?;
        self.get_mut(id)
    }

    pub(super) fn get_mut(&mut self, id: GroupId) -> Option<&mut V> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_mut().map(|(_, v)| v)
    }

    /// The group `id` and its key.
    pub(super) fn entry(&self, id: GroupId) -> Option<(&GroupKey, &V)> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_ref().map(|(k, v)| (k, v))
    }

    /// The group `id`, to change, and its key.
    pub(super) fn entry_mut(&mut self, id: GroupId) -> Option<(&GroupKey, &mut V)> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_mut().map(|(k, v)| (&*k, v))
    }

    /// Adds the group `key` (replacing one already held under that key,
    /// whose id is then stale) and returns its id.
    pub(super) fn insert(&mut self, key: GroupKey, value: V) -> GroupId {
        if let Some(old) = self.id(&key) {
            self.remove(old);
        }
        let id = match self.free.pop() {
            Some(slot) => {
                let s = &mut self.slots[slot as usize];
                s.value = Some((key.clone(), value));
                GroupId {
                    slot,
                    generation: s.generation,
                }
            }
            None => {
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push(Slot {
                    generation: 0,
                    value: Some((key.clone(), value)),
                });
                GroupId {
                    slot,
                    generation: 0,
                }
            }
        };
        self.ids.insert(key, id);
        id
    }

    /// Removes the group `id` and returns it; its id (and every copy of
    /// it) finds nothing from now on.
    pub(super) fn remove(&mut self, id: GroupId) -> Option<V> {
        self.remove_entry(id).map(|(_, v)| v)
    }

    /// As [`Self::remove`], with the group's key.
    pub(super) fn remove_entry(&mut self, id: GroupId) -> Option<(GroupKey, V)> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let (key, value) = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.slot);
        self.ids.remove(&key);
        Some((key, value))
    }

    /// Removes the group `key`, if it is here.
    pub(super) fn remove_key(&mut self, key: &GroupKey) -> Option<V> {
        let id = self.id(key)?;
        self.remove(id)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (GroupId, &GroupKey, &mut V)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let id = GroupId {
                slot: i as u32,
                generation: s.generation,
            };
            s.value.as_mut().map(|(k, v)| (id, &*k, v))
        })
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.slots
            .iter()
            .filter_map(|s| s.value.as_ref().map(|(_, v)| v))
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.value.as_mut().map(|(_, v)| v))
    }
}

/// Group ids split by [`GroupId::phase`] over a round of `round` phases:
/// a tick walks the ids of its phase only, a quarter of them with a round
/// of four, not the whole set.
pub(super) struct PhasedSet {
    phases: Vec<HashSet<GroupId, GroupHasher>>,
}

impl PhasedSet {
    pub(super) fn new(round: u64) -> Self {
        let n = usize::try_from(round.max(1)).unwrap_or(1);
        Self {
            phases: (0..n).map(|_| HashSet::default()).collect(),
        }
    }

    fn round(&self) -> u64 {
        self.phases.len() as u64
    }

    pub(super) fn insert(&mut self, id: GroupId) -> bool {
        let p = id.phase(self.round()) as usize;
        self.phases[p].insert(id)
    }

    pub(super) fn len(&self) -> usize {
        self.phases.iter().map(HashSet::len).sum()
    }

    /// The ids in phase `phase` of the round (taken modulo the round).
    pub(super) fn phase_mut(&mut self, phase: u64) -> &mut HashSet<GroupId, GroupHasher> {
        let p = (phase % self.round()) as usize;
        &mut self.phases[p]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> GroupKey {
        ("t".to_owned(), p)
    }

    #[test]
    fn finds_groups_by_key_and_by_id() {
        let mut g = Groups::default();
        let a = g.insert(key(0), "a");
        let b = g.insert(key(1), "b");
        assert_ne!(a, b);
        assert_eq!(g.id(&key(1)), Some(b));
        assert_eq!(g.get(a), Some(&"a"));
        *g.get_mut(b).unwrap() = "B";
        assert_eq!(g.entry(b), Some((&key(1), &"B")));
        assert_eq!(g.get(b), Some(&"B"));
        let mut all: Vec<_> = g.iter_mut().map(|(id, _, v)| (id, *v)).collect();
        all.sort_by_key(|(_, v)| *v);
        assert_eq!(all, [(b, "B"), (a, "a")]);
    }

    #[test]
    fn an_id_of_a_removed_group_finds_nothing_after_its_slot_is_reused() {
        let mut g = Groups::default();
        let a = g.insert(key(0), 1);
        assert_eq!(g.remove_entry(a), Some((key(0), 1)));
        assert_eq!(g.remove(a), None);
        assert!(!g.contains_key(&key(0)));
        let b = g.insert(key(7), 2);
        assert_ne!(a, b, "same slot, new generation");
        assert_eq!(g.get(a), None);
        assert_eq!(g.get_mut(a), None);
        assert_eq!(g.get(b), Some(&2));
        assert_eq!(g.values().count(), 1);
    }

    #[test]
    fn inserting_a_key_again_replaces_the_group() {
        let mut g = Groups::default();
        let a = g.insert(key(3), 1);
        let b = g.insert(key(3), 2);
        assert_eq!(g.get(a), None);
        assert_eq!(g.get(b), Some(&2));
        assert_eq!(g.values().count(), 1);
        assert_eq!(g.remove_key(&key(3)), Some(2));
        assert_eq!(g.values().count(), 0);
    }

    #[test]
    fn a_phased_set_walks_each_id_in_its_phase_only() {
        let mut g = Groups::default();
        let ids: Vec<GroupId> = (0..10).map(|p| g.insert(key(p), ())).collect();
        let mut set = PhasedSet::new(4);
        for id in &ids {
            assert!(set.insert(*id));
        }
        assert!(!set.insert(ids[0]));
        assert_eq!(set.len(), 10);
        let mut seen = Vec::new();
        for phase in 0..4 {
            for id in set.phase_mut(phase).iter() {
                assert_eq!(id.phase(4), phase);
                seen.push(*id);
            }
        }
        seen.sort_by_key(|id| id.slot);
        assert_eq!(seen, ids);
        set.phase_mut(5).retain(|id| id.phase(4) != 1);
        assert_eq!(
            set.len(),
            10 - ids.iter().filter(|id| id.phase(4) == 1).count()
        );
        assert!(!set.insert(ids[0]) && set.insert(ids[1]));
    }
}
