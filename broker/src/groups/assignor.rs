//! Server-side assignors of the consumer protocol: given every member's
//! subscribed partitions and the previous target, the next target
//! assignment. Both are pure and deterministic (members and partitions in
//! sorted order), so every coordinator computes the same target.
//! - `uniform`: every member gets as many partitions as the others, give or
//!   take one, keeping a partition where it was whenever that stays within
//!   the balance (few partitions move when members come and go);
//! - `range`: per topic, the members subscribed to it in id order take
//!   consecutive ranges of its partitions (Kafka's range assignor).

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition.
pub type Tp = (String, u32);

/// member id → the partitions it may be given (its subscription resolved
/// against the metadata).
pub type Eligible = BTreeMap<String, BTreeSet<Tp>>;

/// member id → its target partitions.
pub type Target = BTreeMap<String, BTreeSet<Tp>>;

/// The assignors a group may name.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// The default assignor (Kafka's new consumer defaults to `uniform`).
pub const DEFAULT_ASSIGNOR: &str = "uniform";

/// The target `assignor` computes; an unknown name falls back to uniform
/// (names are checked where a member asks for one).
pub fn assign(assignor: &str, eligible: &Eligible, previous: &Target) -> Target {
    match assignor {
        "range" => range(eligible),
        _ => uniform(eligible, previous),
    }
}

fn empty_target(eligible: &Eligible) -> Target {
    eligible
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect()
}

/// Kafka's range assignor: per topic, partitions split in consecutive
/// ranges over the subscribed members in id order, the first members
/// taking one more when it does not divide evenly.
pub fn range(eligible: &Eligible) -> Target {
    let mut by_topic: BTreeMap<&str, (BTreeSet<u32>, Vec<&String>)> = BTreeMap::new();
    for (m, tps) in eligible {
        for (t, p) in tps {
            let e = by_topic.entry(t.as_str()).or_default();
            e.0.insert(*p);
            if e.1.last() != Some(&m) {
                e.1.push(m);
            }
        }
    }
    let mut out = empty_target(eligible);
    for (topic, (parts, members)) in by_topic {
        let parts: Vec<u32> = parts.into_iter().collect();
        let n = members.len();
        let (each, extra) = (parts.len() / n, parts.len() % n);
        let mut at = 0;
        for (i, m) in members.iter().enumerate() {
            let take = each + usize::from(i < extra);
            let set = out.entry((*m).clone()).or_default();
            for p in &parts[at..at + take] {
                // A member eligible for the topic but not this partition
                // cannot happen: subscriptions are per topic.
                set.insert((topic.to_owned(), *p));
            }
            at += take;
        }
    }
    out
}

/// Balanced and sticky: each member's quota is its fair share of the
/// partitions it can take; a partition stays with its previous owner while
/// that owner is within its quota, the rest go to the eligible member with
/// the fewest so far.
pub fn uniform(eligible: &Eligible, previous: &Target) -> Target {
    let mut out = empty_target(eligible);
    let all: BTreeSet<&Tp> = eligible.values().flatten().collect();
    if eligible.is_empty() || all.is_empty() {
        return out;
    }
    // Quotas: with identical subscriptions, ceil/floor of partitions over
    // members; with different ones, each partition spread over the members
    // that can take it (fractional shares, rounded up per member).
    let mut share: BTreeMap<&String, f64> = eligible.keys().map(|m| (m, 0.0)).collect();
    for tp in &all {
        let takers: Vec<&String> = eligible
            .iter()
            .filter(|(_, s)| s.contains(*tp))
            .map(|(m, _)| m)
            .collect();
        for m in &takers {
            *share.entry(m).or_default() += 1.0 / takers.len() as f64;
        }
    }
    let quota: BTreeMap<&String, usize> = share
        .iter()
        .map(|(m, s)| (*m, (s - 1e-9).ceil().max(0.0) as usize))
        .collect();
    let mut count: BTreeMap<&String, usize> = eligible.keys().map(|m| (m, 0)).collect();
    let mut owner: BTreeMap<&Tp, &String> = BTreeMap::new();
    // Sticky pass: keep previous placements within quota, and within the
    // floor first so that the members with the most give way.
    let floor: BTreeMap<&String, usize> = share
        .iter()
        .map(|(m, s)| (*m, (s + 1e-9).floor() as usize))
        .collect();
    // Members that may end above their floor: as many as partitions are
    // left once every member has its floor.
    let mut above_floor = all.len().saturating_sub(floor.values().sum());
    for pass in 0..2 {
        for (m, prev) in previous {
            let Some((m, allowed)) = eligible.get_key_value(m) else {
                continue;
            };
            let fl = floor.get(m).copied().unwrap_or(0);
            for tp in prev {
                if owner.contains_key(tp) || !allowed.contains(tp) {
                    continue;
                }
                let c = count.entry(m).or_default();
                let room = if pass == 0 {
                    *c < fl
                } else {
                    *c < quota.get(m).copied().unwrap_or(0) && (*c > fl || above_floor > 0)
                };
                if room {
                    if pass == 1 && *c == fl {
                        above_floor -= 1;
                    }
                    *c += 1;
                    let tp = allowed.get(tp).unwrap_or(tp);
                    owner.insert(tp, m);
                }
            }
        }
    }
    // The rest: to the eligible member with the fewest (then the lowest id).
    for tp in all {
        if owner.contains_key(tp) {
            continue;
        }
        let best = eligible
            .iter()
            .filter(|(_, s)| s.contains(tp))
            .map(|(m, _)| m)
            .min_by_key(|m| (count.get(m).copied().unwrap_or(0), *m));
        if let Some(m) = best {
            *count.entry(m).or_default() += 1;
            owner.insert(tp, m);
        }
    }
    for (tp, m) in owner {
        out.entry(m.clone()).or_default().insert(tp.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tps(topic: &str, n: u32) -> BTreeSet<Tp> {
        (0..n).map(|p| (topic.to_owned(), p)).collect()
    }

    fn members(n: usize, topic: &str, parts: u32) -> Eligible {
        (0..n)
            .map(|i| (format!("m{i}"), tps(topic, parts)))
            .collect()
    }

    fn sizes(t: &Target) -> Vec<usize> {
        t.values().map(BTreeSet::len).collect()
    }

    fn check_exclusive_and_complete(e: &Eligible, t: &Target) {
        let mut seen = BTreeSet::new();
        for (m, s) in t {
            for tp in s {
                assert!(e[m].contains(tp), "{m} got {tp:?} it cannot take");
                assert!(seen.insert(tp.clone()), "{tp:?} given twice");
            }
        }
        let all: BTreeSet<Tp> = e.values().flatten().cloned().collect();
        assert_eq!(seen, all, "every eligible partition is assigned");
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let e = members(4, "t", 12);
        let t = uniform(&e, &Target::new());
        check_exclusive_and_complete(&e, &t);
        assert_eq!(sizes(&t), vec![3, 3, 3, 3]);
        // One member more: only the partitions it takes move.
        let mut e5 = e.clone();
        e5.insert("m4".into(), tps("t", 12));
        let t5 = uniform(&e5, &t);
        check_exclusive_and_complete(&e5, &t5);
        let mut s = sizes(&t5);
        s.sort_unstable();
        assert_eq!(s, vec![2, 2, 2, 3, 3]);
        let moved: usize = t.iter().map(|(m, s)| s.difference(&t5[m]).count()).sum();
        assert_eq!(moved, 2, "only what the new member needs moves");
        // One member fewer: only its partitions move.
        let mut e3 = e.clone();
        e3.remove("m3");
        let t3 = uniform(&e3, &t);
        check_exclusive_and_complete(&e3, &t3);
        for m in ["m0", "m1", "m2"] {
            assert!(t[m].is_subset(&t3[m]), "{m} keeps what it had");
        }
        assert_eq!(sizes(&t3), vec![4, 4, 4]);
    }

    #[test]
    fn uniform_with_different_subscriptions() {
        let mut e = Eligible::new();
        e.insert("a".into(), tps("x", 4));
        let mut both = tps("x", 4);
        both.extend(tps("y", 4));
        e.insert("b".into(), both);
        let t = uniform(&e, &Target::new());
        check_exclusive_and_complete(&e, &t);
        assert!(t["b"].iter().filter(|(t, _)| t == "y").count() == 4);
        let diff = t["a"].len().abs_diff(t["b"].len());
        assert!(diff <= 4, "{t:?}");
    }

    #[test]
    fn range_is_kafkas() {
        let e = members(3, "t", 7);
        let t = range(&e);
        check_exclusive_and_complete(&e, &t);
        assert_eq!(t["m0"], [0, 1, 2].map(|p| ("t".to_owned(), p)).into());
        assert_eq!(t["m1"], [3, 4].map(|p| ("t".to_owned(), p)).into());
        assert_eq!(t["m2"], [5, 6].map(|p| ("t".to_owned(), p)).into());
    }

    #[test]
    fn more_members_than_partitions_and_none() {
        let e = members(5, "t", 2);
        let t = uniform(&e, &Target::new());
        check_exclusive_and_complete(&e, &t);
        assert_eq!(sizes(&t).iter().sum::<usize>(), 2);
        assert!(uniform(&Eligible::new(), &Target::new()).is_empty());
        let r = range(&e);
        check_exclusive_and_complete(&e, &r);
    }
}
