//! Topic partitions as group messages carry them: grouped by topic.

use std::collections::{BTreeMap, BTreeSet};

use crate::v1::TopicPartitions;

/// `(topic, partition)` pairs grouped by topic, topics and partitions in
/// order.
pub fn to_wire<'a>(tps: impl IntoIterator<Item = &'a (String, u32)>) -> Vec<TopicPartitions> {
    let mut by: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in tps {
        by.entry(t.as_str()).or_default().push(*p);
    }
    by.into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            partitions.dedup();
            TopicPartitions {
                topic: topic.to_owned(),
                partitions,
            }
        })
        .collect()
}

/// The `(topic, partition)` pairs of grouped partitions.
pub fn from_wire(list: &[TopicPartitions]) -> BTreeSet<(String, u32)> {
    list.iter()
        .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.clone(), *p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let tps: BTreeSet<(String, u32)> = [("b", 1), ("a", 2), ("a", 0)]
            .map(|(t, p)| (t.to_owned(), p))
            .into();
        let wire = to_wire(&tps);
        assert_eq!(wire[0].topic, "a");
        assert_eq!(wire[0].partitions, vec![0, 2]);
        assert_eq!(from_wire(&wire), tps);
    }
}
