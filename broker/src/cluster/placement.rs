//! Where replicas go: the spread of a new topic's partitions over the
//! brokers, and the plan for partitions added to a topic (spread the same
//! way, continuing its rotation, or as the request names them).

use super::metadata::{ClusterState, MetadataCommand, TopicMeta};
use crate::error::{BrokerError, Result};

pub const MAX_PARTITIONS_PER_TOPIC: u32 = 100_000;

/// Replica sets for `partitions` partitions over `brokers` (sorted ids):
/// consecutive brokers from a rotating start, so that preferred leaders
/// (the first replica) spread evenly.
pub fn assign(brokers: &[u64], partitions: u32, rf: u32, offset: usize) -> Vec<Vec<u64>> {
    let n = brokers.len().max(1);
    (0..partitions as usize)
        .map(|p| {
            (0..rf as usize)
                .map(|r| brokers[(offset + p + r) % n])
                .collect()
        })
        .collect()
}

/// The command that grows topic `name` to `count` partitions, and the
/// topic as it will be. New partitions get `manual` replicas when given
/// (each the topic's replication factor of distinct registered brokers),
/// else consecutive brokers continuing the topic's rotation.
pub fn plan_partitions(
    s: &ClusterState,
    name: &str,
    count: u32,
    manual: Option<&[Vec<u64>]>,
) -> Result<(MetadataCommand, TopicMeta)> {
    let Some(t) = s.topics.get(name) else {
        return Err(BrokerError::UnknownTopic(name.to_owned()));
    };
    if t.internal {
        return Err(BrokerError::InvalidPartitions(format!(
            "the partitions of internal topic '{name}' cannot change"
        )));
    }
    if count <= t.partitions {
        return Err(BrokerError::InvalidPartitions(format!(
            "topic '{name}' has {} partitions: a new count must be larger (got {count})",
            t.partitions
        )));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(BrokerError::InvalidPartitions(format!(
            "{count} partitions exceed the limit of {MAX_PARTITIONS_PER_TOPIC}"
        )));
    }
    let ids: Vec<u64> = s.brokers.keys().copied().collect();
    let added = (count - t.partitions) as usize;
    let rf = t.replication_factor as usize;
    let assignments = match manual {
        Some(m) => {
            if m.len() != added {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "{} assignments for {added} new partitions",
                    m.len()
                )));
            }
            for (i, r) in m.iter().enumerate() {
                let distinct: std::collections::BTreeSet<u64> = r.iter().copied().collect();
                if r.len() != rf || distinct.len() != rf {
                    return Err(BrokerError::InvalidReplicaAssignment(format!(
                        "partition {}: {rf} distinct brokers are needed, got {r:?}",
                        t.partitions as usize + i
                    )));
                }
                if let Some(b) = r.iter().find(|b| !s.brokers.contains_key(b)) {
                    return Err(BrokerError::InvalidReplicaAssignment(format!(
                        "partition {}: broker {b} is not in the cluster",
                        t.partitions as usize + i
                    )));
                }
            }
            m.to_vec()
        }
        None => {
            if rf > ids.len() {
                return Err(BrokerError::InvalidReplicationFactor(format!(
                    "replication factor {rf} exceeds the {} available broker(s)",
                    ids.len()
                )));
            }
            // Continue the rotation the topic started with.
            let first = t
                .assignments
                .first()
                .and_then(|r| r.first())
                .and_then(|b| ids.iter().position(|x| x == b))
                .unwrap_or(0);
            assign(&ids, count, rf as u32, first).split_off(t.partitions as usize)
        }
    };
    let mut meta = t.clone();
    meta.partitions = count;
    meta.assignments.truncate(t.partitions as usize);
    meta.assignments.extend(assignments.iter().cloned());
    Ok((
        MetadataCommand::AddPartitions {
            name: name.to_owned(),
            topic_id: t.id.clone(),
            assignments,
        },
        meta,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(brokers: &[u64], partitions: u32, rf: u32) -> ClusterState {
        let mut s = ClusterState::default();
        for b in brokers {
            s.brokers.insert(
                *b,
                crate::cluster::metadata::BrokerMeta {
                    id: *b,
                    addr: String::new(),
                    peer_addr: String::new(),
                    kafka_addr: String::new(),
                },
            );
        }
        s.topics.insert(
            "t".into(),
            TopicMeta {
                id: "abc".into(),
                partitions,
                replication_factor: rf,
                assignments: assign(brokers, partitions, rf, 1),
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn added_partitions_continue_the_rotation_and_apply() {
        let mut s = state(&[1, 2, 3], 2, 2);
        assert_eq!(s.topics["t"].assignments, vec![vec![2, 3], vec![3, 1]]);
        let (cmd, meta) = plan_partitions(&s, "t", 5, None).expect("plan");
        assert_eq!(meta.partitions, 5);
        assert_eq!(
            meta.assignments,
            vec![vec![2, 3], vec![3, 1], vec![1, 2], vec![2, 3], vec![3, 1]]
        );
        s.apply(cmd.clone());
        assert_eq!(s.topics["t"], meta);
        // A command for an older topic of the same name changes nothing.
        let mut other = state(&[1, 2, 3], 2, 2);
        if let Some(t) = other.topics.get_mut("t") {
            t.id = "new".into();
        }
        let before = other.clone();
        other.apply(cmd);
        assert_eq!(other, before);
    }

    #[test]
    fn manual_assignments_are_checked() {
        let s = state(&[1, 2, 3], 1, 2);
        let (_, meta) = plan_partitions(&s, "t", 3, Some(&[vec![3, 1], vec![1, 2]])).expect("ok");
        assert_eq!(meta.assignments[1..], [vec![3, 1], vec![1, 2]]);
        for bad in [
            vec![vec![3, 1]],             // one list for two partitions
            vec![vec![3, 1], vec![1]],    // too few replicas
            vec![vec![3, 1], vec![1, 1]], // not distinct
            vec![vec![3, 1], vec![1, 9]], // unknown broker
        ] {
            assert!(
                matches!(
                    plan_partitions(&s, "t", 3, Some(&bad)),
                    Err(BrokerError::InvalidReplicaAssignment(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_topic_never_shrinks_and_internal_topics_do_not_grow() {
        let mut s = state(&[1, 2, 3], 4, 3);
        for n in [0, 3, 4, MAX_PARTITIONS_PER_TOPIC + 1] {
            assert!(
                matches!(
                    plan_partitions(&s, "t", n, None),
                    Err(BrokerError::InvalidPartitions(_))
                ),
                "{n}"
            );
        }
        assert!(matches!(
            plan_partitions(&s, "nope", 9, None),
            Err(BrokerError::UnknownTopic(_))
        ));
        s.brokers.remove(&3);
        assert!(matches!(
            plan_partitions(&s, "t", 5, None),
            Err(BrokerError::InvalidReplicationFactor(_))
        ));
        if let Some(t) = s.topics.get_mut("t") {
            t.internal = true;
        }
        assert!(matches!(
            plan_partitions(&s, "t", 5, None),
            Err(BrokerError::InvalidPartitions(_))
        ));
    }
}
