//! What tiered storage needs of the broker that hosts it, as a narrow
//! handle: the partitions it hosts, the remote manifests as this broker
//! applied them, and the two manifest changes the controller makes. The
//! uploader and the read path use only this, never the broker itself.

use std::future::Future;
use std::sync::Arc;

use super::{RemoteLoc, RemoteManifest, RemoteReplacement, RemoteSegment, Tier};
use crate::error::Result;
use crate::partition::Partition;

pub trait TierHost: Send + Sync + 'static {
    /// The object store and its upload slots, cache and metrics.
    fn tier(&self) -> &Arc<Tier>;

    /// Memory for the key map of a remote compaction pass; `None` when
    /// compaction is off on this broker (`--log-cleaner-threads 0`).
    fn compaction_map_bytes(&self) -> Option<usize>;

    /// The partitions this broker hosts.
    fn hosted_partitions(&self) -> Vec<Arc<Partition>>;

    /// Runs `f` on a partition's remote manifest and its topic's id, as
    /// this broker has applied them (`None` where the metadata has none).
    fn with_manifest<T>(
        &self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(Option<&RemoteManifest>, Option<&str>) -> T,
    ) -> T;

    /// Asks the controller to record an uploaded segment in the manifest;
    /// `false` when it does not continue the manifest (another upload of
    /// the range is recorded).
    fn record_remote_segment(
        &self,
        loc: &RemoteLoc,
        segment: RemoteSegment,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Asks the controller to swap a remote compaction pass's segments in;
    /// `false` when the manifest moved on meanwhile (nothing changed).
    fn replace_remote(
        &self,
        loc: &RemoteLoc,
        replacement: RemoteReplacement,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Asks the controller to move the manifest's start to `start`;
    /// `false` when it was there already.
    fn trim_remote(&self, loc: &RemoteLoc, start: i64)
    -> impl Future<Output = Result<bool>> + Send;
}
