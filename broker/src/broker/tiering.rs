//! The broker as tiered storage's host ([`TierHost`]): its partitions, the
//! manifests in its applied metadata, and manifest changes run by the
//! controller.

use std::sync::Arc;

use super::Broker;
use crate::cluster::controller::{ControllerOp, ControllerReply};
use crate::error::Result;
use crate::partition::Partition;
use crate::tier::host::TierHost;
use crate::tier::{RemoteLoc, RemoteManifest, RemoteReplacement, RemoteSegment, Tier};

impl TierHost for Broker {
    fn tier(&self) -> &Arc<Tier> {
        Broker::tier(self)
    }

    fn compaction_map_bytes(&self) -> Option<usize> {
        self.config.cleaner.map_bytes_per_pass()
    }

    fn hosted_partitions(&self) -> Vec<Arc<Partition>> {
        self.all_partitions()
    }

    fn with_manifest<T>(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(Option<&RemoteManifest>, Option<&str>) -> T,
    ) -> T {
        self.with_state(|s| {
            f(
                s.manifest(topic, partition),
                s.topics.get(topic).map(|t| t.id.as_str()),
            )
        })
    }

    async fn record_remote_segment(&self, loc: &RemoteLoc, segment: RemoteSegment) -> Result<bool> {
        self.changes_manifest(ControllerOp::AddRemoteSegment {
            topic: loc.topic.clone(),
            topic_id: loc.topic_id.clone(),
            partition: loc.partition,
            segment,
        })
        .await
    }

    async fn replace_remote(
        &self,
        loc: &RemoteLoc,
        replacement: RemoteReplacement,
    ) -> Result<bool> {
        self.changes_manifest(ControllerOp::ReplaceRemoteSegments {
            topic: loc.topic.clone(),
            topic_id: loc.topic_id.clone(),
            partition: loc.partition,
            replacement,
        })
        .await
    }

    async fn trim_remote(&self, loc: &RemoteLoc, start: i64) -> Result<bool> {
        self.changes_manifest(ControllerOp::TrimRemote {
            topic: loc.topic.clone(),
            topic_id: loc.topic_id.clone(),
            partition: loc.partition,
            start,
        })
        .await
    }
}

impl Broker {
    /// Runs a manifest change through the controller: whether it changed
    /// the manifest (the controller answers 1) or not (0).
    async fn changes_manifest(&self, op: ControllerOp) -> Result<bool> {
        let r = self.controller().execute(op).await?;
        Ok(matches!(r, ControllerReply::Count(1)))
    }
}
