//! The consumer-group operations shared by every front end: committing
//! and reading offsets, and the consumer protocol's heartbeat; the ACL
//! checks and request validation in one place, then the group
//! coordinator (`groups`).

use std::collections::BTreeMap;

use super::Broker;
use crate::error::{BrokerError, Result};
use crate::groups::consumer::{Heartbeat, HeartbeatReply};
use crate::groups::offsets::{Committed, validate_group};
use crate::security::auth::{Identity, Operation, Resource};

/// Longest metadata string a commit may carry.
pub const MAX_OFFSET_METADATA: usize = 4096;

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct OffsetToCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

impl Broker {
    /// Commits offsets of `group` as `member` (`("", -1)`: no member).
    /// Needs read on the group and on every topic.
    pub async fn commit_offsets(
        &self,
        who: &Identity,
        group: &str,
        offsets: Vec<OffsetToCommit>,
        member: (&str, i32),
    ) -> Result<()> {
        self.authorize_offsets_commit(who, group, &offsets)?;
        if offsets.is_empty() {
            return Err(BrokerError::InvalidRequest("no offsets to commit".into()));
        }
        let mut entries = Vec::with_capacity(offsets.len());
        for o in offsets {
            self.partition_exists(&o.topic, o.partition)?;
            if o.offset < 0 {
                return Err(BrokerError::InvalidRequest(format!(
                    "negative offset {} for {}/{}",
                    o.offset, o.topic, o.partition
                )));
            }
            if o.metadata.len() > MAX_OFFSET_METADATA {
                return Err(BrokerError::InvalidRequest(format!(
                    "offset metadata longer than {MAX_OFFSET_METADATA} bytes"
                )));
            }
            entries.push((o.topic, o.partition, o.offset, o.metadata));
        }
        self.groups().commit(group, entries, member).await
    }

    /// The ACL checks of a commit (a front end that forwards the request
    /// to the coordinator checks before forwarding).
    pub fn authorize_offsets_commit(
        &self,
        who: &Identity,
        group: &str,
        offsets: &[OffsetToCommit],
    ) -> Result<()> {
        validate_group(group)?;
        self.authorize(who, Operation::Read, Resource::Group, group)?;
        for o in offsets {
            self.authorize(who, Operation::Read, Resource::Topic, &o.topic)?;
        }
        Ok(())
    }

    /// Committed offsets of `group` (all topics when `topics` is empty).
    /// Needs describe on the group.
    pub fn committed_offsets(
        &self,
        who: &Identity,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(String, u32, Committed)>> {
        self.authorize_offsets_fetch(who, group)?;
        self.groups().fetch(group, topics)
    }

    /// Deletes committed offsets of `group` for `partitions`, each with its
    /// own outcome. Needs delete on the group; a partition of a topic
    /// `who` may not read is refused alone.
    pub async fn delete_offsets(
        &self,
        who: &Identity,
        group: &str,
        partitions: Vec<(String, u32)>,
    ) -> Result<Vec<Result<()>>> {
        validate_group(group)?;
        self.authorize(who, Operation::Delete, Resource::Group, group)?;
        let (allowed, refused): (Vec<_>, Vec<_>) = partitions
            .into_iter()
            .enumerate()
            .partition(|(_, (t, _))| self.may(who, Operation::Read, Resource::Topic, t));
        let asked: Vec<(String, u32)> = allowed.iter().map(|(_, tp)| tp.clone()).collect();
        let mut done = self
            .groups()
            .delete_offsets(group, &asked)
            .await?
            .into_iter();
        let mut out: Vec<(usize, Result<()>)> = allowed
            .into_iter()
            .map(|(i, _)| (i, done.next().unwrap_or(Ok(()))))
            .collect();
        out.extend(
            refused
                .into_iter()
                .map(|(i, (t, _))| (i, self.authorize(who, Operation::Read, Resource::Topic, &t))),
        );
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    pub fn authorize_offsets_fetch(&self, who: &Identity, group: &str) -> Result<()> {
        validate_group(group)?;
        self.authorize(who, Operation::Describe, Resource::Group, group)
    }
}

impl Broker {
    /// The ACL checks of a consumer-protocol heartbeat: read on the group,
    /// describe on every topic it names.
    pub fn authorize_heartbeat(
        &self,
        who: &Identity,
        group: &str,
        topics: &[String],
    ) -> Result<()> {
        validate_group(group)?;
        self.authorize(who, Operation::Read, Resource::Group, group)?;
        for t in topics {
            self.authorize(who, Operation::Describe, Resource::Topic, t)?;
        }
        Ok(())
    }

    /// A consumer-protocol heartbeat of `group` as `who`: the member may be
    /// given partitions of the topics `who` may read.
    pub async fn consumer_heartbeat(
        &self,
        who: &Identity,
        group: &str,
        hb: Heartbeat,
    ) -> Result<HeartbeatReply> {
        let named: Vec<String> = hb
            .subscription
            .as_ref()
            .map(|s| s.topics.iter().cloned().collect())
            .unwrap_or_default();
        self.authorize_heartbeat(who, group, &named)?;
        let topics: BTreeMap<String, u32> = self
            .topic_partition_counts()
            .into_iter()
            .filter(|(t, _)| self.may(who, Operation::Read, Resource::Topic, t))
            .collect();
        self.groups().heartbeat(group, hb, &topics).await
    }
}
