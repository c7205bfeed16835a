//! The metadata controller of a single-node cluster: a durable log of
//! `MetadataCommand`s (the `__cluster_metadata` partition, `fsync=always`)
//! replayed into `ClusterState` at start. Every change is appended and
//! synced before it is applied, so a crash never loses an acknowledged
//! topic operation. When the log grows, the state is written as one
//! snapshot command and the log start moves past everything before it.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use strata_proto::batch::{self, BatchBuilder};

use super::metadata::{ClusterState, MetadataCommand};
use crate::error::{BrokerError, Result};
use crate::log::{FsyncPolicy, Log, LogConfig};
use crate::partition::now_ms;

/// Directory of the metadata log under the data directory.
pub const METADATA_DIR: &str = "__cluster_metadata-0";
/// Compact the metadata log beyond this size.
const SNAPSHOT_AFTER_BYTES: u64 = 4 << 20;

struct Inner {
    log: Log,
    state: ClusterState,
    /// Size of the log right after the last snapshot.
    base_bytes: u64,
}

pub struct Controller {
    inner: Mutex<Inner>,
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 20,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        max_message_bytes: 16 << 20,
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    }
}

fn storage(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(format!("metadata log: {e}"))
}

impl Controller {
    /// Opens the metadata log under `data_dir` and replays it.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let (log, report) =
            Log::open(&data_dir.join(METADATA_DIR), log_config(), now_ms()).map_err(storage)?;
        if report.truncated_bytes > 0 {
            tracing::warn!(
                bytes = report.truncated_bytes,
                "metadata log: dropped a torn tail"
            );
        }
        let mut state = ClusterState::default();
        let mut bad = None;
        log.scan_batches(log.log_start_offset(), |_, b| {
            let Ok(records) = batch::records(b) else {
                bad = Some("undecodable batch");
                return;
            };
            for r in records {
                match r
                    .ok()
                    .and_then(|r| r.value)
                    .map(|v| serde_json::from_slice::<MetadataCommand>(&v))
                {
                    Some(Ok(cmd)) => state.apply(cmd),
                    _ => bad = Some("undecodable command"),
                }
            }
        })
        .map_err(storage)?;
        if let Some(why) = bad {
            return Err(storage(why));
        }
        let base_bytes = log.size_bytes();
        Ok(Self {
            inner: Mutex::new(Inner {
                log,
                state,
                base_bytes,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current state.
    pub fn state(&self) -> ClusterState {
        self.lock().state.clone()
    }

    /// Reads the state without copying it.
    pub fn with_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self.lock().state)
    }

    fn append(inner: &mut Inner, cmds: &[MetadataCommand]) -> Result<i64> {
        let now = now_ms();
        let mut b = BatchBuilder::new(now);
        for c in cmds {
            let v = serde_json::to_vec(c).map_err(storage)?;
            b.push(now, None, Some(&v), &[]);
        }
        let bytes: Bytes = b.finish();
        let info = inner.log.append(&bytes, 0, now).map_err(storage)?;
        let plan = inner.log.sync_plan();
        plan.run().map_err(storage)?;
        inner.log.mark_synced(plan.up_to);
        Ok(info.base_offset)
    }

    /// Validates with `check` against the current state, then durably
    /// appends and applies the commands it returns. Runs under the
    /// controller lock, so checks and writes do not interleave.
    pub fn propose<T>(
        &self,
        check: impl FnOnce(&ClusterState) -> Result<(Vec<MetadataCommand>, T)>,
    ) -> Result<T> {
        let mut g = self.lock();
        let (cmds, out) = check(&g.state)?;
        if cmds.is_empty() {
            return Ok(out);
        }
        Self::append(&mut g, &cmds)?;
        for c in cmds {
            g.state.apply(c);
        }
        if g.log.size_bytes() > SNAPSHOT_AFTER_BYTES.max(2 * g.base_bytes) {
            let snap = MetadataCommand::Snapshot {
                state: g.state.clone(),
            };
            g.log.roll(now_ms()).map_err(storage)?;
            let base = Self::append(&mut g, &[snap])?;
            g.log.delete_records(base, now_ms()).map_err(storage)?;
            g.base_bytes = g.log.size_bytes();
        }
        Ok(out)
    }

    pub fn close(&self) -> Result<()> {
        self.lock().log.close().map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::TopicMeta;

    #[test]
    fn survives_reopen_and_snapshots() {
        let d = tempfile::tempdir().unwrap();
        {
            let c = Controller::open(d.path()).unwrap();
            for i in 0..3000 {
                c.propose(|_| {
                    Ok((
                        vec![MetadataCommand::CreateTopic {
                            name: format!("topic-{i}"),
                            meta: TopicMeta {
                                partitions: 1,
                                configs: [("k".repeat(2000), "v".into())].into(),
                                ..Default::default()
                            },
                        }],
                        (),
                    ))
                })
                .unwrap();
            }
            let n = c.with_state(|s| s.topics.len());
            assert_eq!(n, 3000);
            assert!(
                c.lock().log.log_start_offset() > 0,
                "snapshot moved the log start"
            );
        }
        let c = Controller::open(d.path()).unwrap();
        assert_eq!(c.with_state(|s| s.topics.len()), 3000);
    }
}
