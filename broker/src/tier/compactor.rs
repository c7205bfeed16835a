//! Compaction of the remote part of a tiered compacted topic. Segments are
//! compacted before they leave the broker (the uploader takes only what the
//! local cleaner has cleaned); this pass keeps the object store bounded by
//! the live keys as they are overwritten later. The remote log is cleaned
//! as a log of its own, the way the local cleaner cleans a local one, by
//! the partition's leader after its uploads:
//!
//! 1. a pass is due when the segments uploaded since the last one (the
//!    dirty part, from the manifest's `cleaned_to` on) reach
//!    `min.cleanable.dirty.ratio` of the remote bytes, when one waited
//!    longer than `max.compaction.lag.ms`, or when a tombstone a pass kept
//!    has expired;
//! 2. the key map is built over the dirty segments, downloaded one at a
//!    time, as many as the map holds;
//! 3. every segment below the map's end is downloaded and cleaned, adjacent
//!    ones merged up to `segment.bytes`; each changed run is uploaded under
//!    a fresh upload id, with its index;
//! 4. one controller change swaps every run into the manifest, or none
//!    when retention or DeleteRecords moved it on meanwhile (the new
//!    objects are then deleted);
//! 5. the replaced objects are deleted after a grace period, so that reads
//!    already on their way finish (a read that still misses one retries
//!    against the new manifest).
//!
//! Memory: the key map (a cleaner thread's share of
//! `--log-cleaner-dedupe-buffer-bytes`), one downloaded segment and one
//! cleaned run (each at most `segment.bytes`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::host::TierHost;
use super::uploader::{mirror_manifest, wait_manifest};
use super::{RemoteLoc, RemoteManifest, RemoteReplacement, RemoteSegment, Tier};
use crate::error::{BrokerError, Result};
use crate::log::cleaner::{CleanRules, OffsetMap, PassOutcome, SegmentView, map_segment};
use crate::log::{LogConfig, SealedSlice, now_ms};

/// How long replaced objects stay readable after the manifest swap.
const DELETE_GRACE: Duration = Duration::from_secs(10);

/// A remote pass due now.
#[derive(Debug, PartialEq)]
struct RemotePlan {
    /// The cleanable segments (old enough for `min.compaction.lag.ms`).
    segments: Vec<RemoteSegment>,
    first_dirty: i64,
    end: i64,
}

/// The pass due on manifest `m`, if any.
fn plan(m: &RemoteManifest, cfg: &LogConfig, now: i64) -> Option<RemotePlan> {
    if !cfg.cleanup.compact {
        return None;
    }
    let c = cfg.compaction;
    let segments: Vec<RemoteSegment> = m
        .segments
        .iter()
        .take_while(|s| c.min_lag_ms == 0 || s.max_ts <= now.saturating_sub(c.min_lag_ms))
        .cloned()
        .collect();
    let end = segments.last()?.next;
    let first = segments.first()?.base;
    let first_dirty = m.cleaned_to.max(m.start).max(first).min(end);
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let dirty: u64 = segments
        .iter()
        .filter(|s| s.next > first_dirty)
        .map(|s| s.size)
        .sum();
    let ratio = if total == 0 {
        0.0
    } else {
        dirty as f64 / total as f64
    };
    let tombstones_due = m.tombstones_expire_ms.is_some_and(|t| t <= now);
    let overdue = c.max_lag_ms != i64::MAX
        && segments
            .iter()
            .find(|s| s.next > first_dirty)
            .is_some_and(|s| s.max_ts >= 0 && s.max_ts < now.saturating_sub(c.max_lag_ms));
    if first_dirty >= end && !tombstones_due {
        return None;
    }
    if ratio < c.min_dirty_ratio && !overdue && !tombstones_due {
        return None;
    }
    Some(RemotePlan {
        segments,
        first_dirty,
        end,
    })
}

/// Adjacent segments being cleaned into one.
struct Run {
    replaced: Vec<RemoteSegment>,
    data: Vec<u8>,
    changed: bool,
}

impl Run {
    fn span(&self) -> (i64, i64, i64) {
        let base = self.replaced.first().map_or(0, |s| s.base);
        let next = self.replaced.last().map_or(base, |s| s.next);
        let max_ts = self.replaced.iter().map(|s| s.max_ts).max().unwrap_or(-1);
        (base, next, max_ts)
    }
}

fn task_failed(e: tokio::task::JoinError) -> BrokerError {
    BrokerError::Storage(format!("remote compaction task: {e}"))
}

/// Runs the pass due on `loc` (manifest `m`), if any; whether it changed
/// the manifest.
pub(super) async fn pass(
    b: &impl TierHost,
    loc: &RemoteLoc,
    m: &RemoteManifest,
    cfg: &LogConfig,
) -> Result<bool> {
    let Some(map_bytes) = b.compaction_map_bytes() else {
        return Ok(false);
    };
    let now = now_ms();
    let Some(plan) = plan(m, cfg, now) else {
        return Ok(false);
    };
    let tier = Arc::clone(b.tier());
    let (map, map_end) = build_map(&tier, loc, &plan, map_bytes).await?;
    let mut outcome = PassOutcome::default();
    let mut runs: Vec<Run> = Vec::new();
    let mut current: Option<Run> = None;
    for seg in plan.segments.iter().filter(|s| s.base < map_end) {
        let fits = current.as_ref().is_some_and(|r| {
            r.data.len() as u64 + seg.size <= cfg.segment_bytes
                && seg.next - r.span().0 <= i64::from(u32::MAX)
        });
        if !fits && let Some(done) = current.take() {
            runs.push(done);
        }
        let data = tier.download(loc, seg).await?;
        let (map2, expiry) = (Arc::clone(&map), outcome.tombstones_expire_ms);
        let delete_retention_ms = cfg.compaction.delete_retention_ms;
        let (cleaned, changed, part) = tokio::task::spawn_blocking(move || {
            let rules = CleanRules {
                map: &map2,
                map_end,
                now_ms: now,
                delete_retention_ms,
            };
            let mut part = PassOutcome {
                tombstones_expire_ms: expiry,
                ..PassOutcome::default()
            };
            let mut out = Vec::with_capacity(data.len());
            rules
                .clean_segment(&data, &mut out, &mut part)
                .map(|(_, changed)| (out, changed, part))
        })
        .await
        .map_err(task_failed)?
        .map_err(|e| BrokerError::RemoteDataCorrupt(format!("{}: {e}", seg.upload_id)))?;
        outcome.records_removed += part.records_removed;
        outcome.tombstones_expire_ms = part.tombstones_expire_ms;
        let run = current.get_or_insert_with(|| Run {
            replaced: Vec::new(),
            data: Vec::new(),
            changed: false,
        });
        run.replaced.push(seg.clone());
        run.data.extend_from_slice(&cleaned);
        run.changed |= changed;
    }
    runs.extend(current);
    let replacement =
        upload_runs(b, &tier, loc, runs, map_end, outcome.tombstones_expire_ms).await?;
    let unchanged = replacement.runs.is_empty()
        && replacement.cleaned_to <= m.cleaned_to
        && replacement.tombstones_expire_ms == m.tombstones_expire_ms;
    if unchanged {
        return Ok(false);
    }
    commit(b, &tier, loc, m, replacement, outcome.records_removed).await
}

/// The key map over the dirty segments of `plan`, and the offset it
/// covers up to.
async fn build_map(
    tier: &Tier,
    loc: &RemoteLoc,
    plan: &RemotePlan,
    map_bytes: usize,
) -> Result<(Arc<OffsetMap>, i64)> {
    let mut map = OffsetMap::with_memory(map_bytes);
    let mut covered = plan.first_dirty;
    for seg in plan.segments.iter().filter(|s| s.next > plan.first_dirty) {
        let view = SegmentView {
            base: seg.base,
            next: seg.next,
            data: tier.download(loc, seg).await?,
        };
        let (first_dirty, end) = (plan.first_dirty, plan.end);
        let (back, (reached, go_on)) = tokio::task::spawn_blocking(move || {
            let r = map_segment(&mut map, &view, first_dirty, end);
            (map, r)
        })
        .await
        .map_err(task_failed)?;
        map = back;
        covered = reached;
        if !go_on {
            break;
        }
    }
    Ok((Arc::new(map), covered.min(plan.end)))
}

/// Uploads every run that changed (or merges segments) and names what it
/// replaces.
async fn upload_runs(
    b: &impl TierHost,
    tier: &Tier,
    loc: &RemoteLoc,
    runs: Vec<Run>,
    cleaned_to: i64,
    tombstones_expire_ms: Option<i64>,
) -> Result<RemoteReplacement> {
    let mut replacement = RemoteReplacement {
        runs: Vec::new(),
        cleaned_to,
        tombstones_expire_ms,
    };
    for run in runs {
        if !run.changed && run.replaced.len() == 1 {
            continue;
        }
        let (base, next, max_ts) = run.span();
        let slice = SealedSlice {
            data: Bytes::from(run.data),
            base,
            next,
            max_ts,
            file: None,
        };
        let uploaded = {
            let _slot = tier
                .upload_slot()
                .await
                .map_err(|_| BrokerError::ShuttingDown)?;
            tier.upload(loc, slice).await
        };
        let seg = match uploaded {
            Ok(seg) => seg,
            Err(e) => {
                discard(b, loc, &replacement).await;
                return Err(e.into());
            }
        };
        let ids = run.replaced.iter().map(|s| s.upload_id.clone()).collect();
        replacement.runs.push((ids, seg));
    }
    Ok(replacement)
}

/// Deletes the objects a replacement uploaded (it did not take effect).
async fn discard(b: &impl TierHost, loc: &RemoteLoc, r: &RemoteReplacement) {
    for (_, seg) in &r.runs {
        if let Err(e) = b.tier().delete_segment(loc, seg).await {
            tracing::warn!(topic = %loc.topic, partition = loc.partition, error = %e,
                upload_id = %seg.upload_id, "an unused compacted segment was not deleted");
        }
    }
}

/// Swaps the replacement into the manifest through the controller, then
/// deletes the replaced objects after the grace period.
async fn commit(
    b: &impl TierHost,
    tier: &Arc<Tier>,
    loc: &RemoteLoc,
    m: &RemoteManifest,
    replacement: RemoteReplacement,
    records_removed: u64,
) -> Result<bool> {
    let new_ids: Vec<String> = replacement
        .runs
        .iter()
        .map(|(_, s)| s.upload_id.clone())
        .collect();
    if !b.replace_remote(loc, replacement.clone()).await? {
        discard(b, loc, &replacement).await;
        tracing::debug!(topic = %loc.topic, partition = loc.partition,
            "remote compaction pass dropped: the manifest moved on");
        return Ok(false);
    }
    wait_manifest(b, loc, |now| {
        now.cleaned_to >= replacement.cleaned_to
            && new_ids
                .iter()
                .all(|id| now.segments.iter().any(|s| &s.upload_id == id))
    })
    .await;
    mirror_manifest(b, loc).await;
    let replaced: Vec<RemoteSegment> = m
        .segments
        .iter()
        .filter(|s| {
            replacement
                .runs
                .iter()
                .any(|(ids, _)| ids.contains(&s.upload_id))
        })
        .cloned()
        .collect();
    let before: u64 = replaced.iter().map(|s| s.size).sum();
    let after: u64 = replacement.runs.iter().map(|(_, s)| s.size).sum();
    tier.metrics
        .compaction_passes
        .fetch_add(1, Ordering::Relaxed);
    tier.metrics
        .compaction_reclaimed_bytes
        .fetch_add(before.saturating_sub(after), Ordering::Relaxed);
    tracing::info!(topic = %loc.topic, partition = loc.partition,
        cleaned_to = replacement.cleaned_to, segments_before = replaced.len(),
        segments_after = replacement.runs.len(), bytes_before = before, bytes_after = after,
        records_removed, "remote segments compacted");
    let (tier, loc) = (Arc::clone(tier), loc.clone());
    tokio::spawn(async move {
        tokio::time::sleep(DELETE_GRACE).await;
        for seg in &replaced {
            if let Err(e) = tier.delete_segment(&loc, seg).await {
                tracing::warn!(topic = %loc.topic, partition = loc.partition, error = %e,
                    upload_id = %seg.upload_id, "a replaced remote segment was not deleted");
            }
        }
    });
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::CleanupPolicy;

    fn seg(base: i64, next: i64, size: u64) -> RemoteSegment {
        RemoteSegment {
            base,
            next,
            size,
            max_ts: 1_000,
            upload_id: format!("u{base}"),
        }
    }

    fn compacted() -> LogConfig {
        LogConfig {
            cleanup: CleanupPolicy {
                delete: false,
                compact: true,
            },
            ..LogConfig::default()
        }
    }

    #[test]
    fn a_pass_is_due_by_the_dirty_share() {
        let cfg = compacted();
        let mut m = RemoteManifest::default();
        assert_eq!(plan(&m, &cfg, 2_000), None, "nothing remote");
        m.segments = vec![seg(0, 10, 100), seg(10, 20, 100), seg(20, 30, 100)];
        let p = plan(&m, &cfg, 2_000).expect("all dirty");
        assert_eq!((p.first_dirty, p.end, p.segments.len()), (0, 30, 3));
        m.cleaned_to = 20;
        assert_eq!(plan(&m, &cfg, 2_000), None, "a third dirty, under 0.5");
        m.cleaned_to = 10;
        assert_eq!(plan(&m, &cfg, 2_000).map(|p| p.first_dirty), Some(10));
        m.cleaned_to = 30;
        assert_eq!(plan(&m, &cfg, 2_000), None, "all clean");
        m.tombstones_expire_ms = Some(1_500);
        assert!(plan(&m, &cfg, 2_000).is_some(), "a kept tombstone expired");
        assert_eq!(plan(&m, &cfg, 1_000), None, "not yet");
        let mut lagged = cfg.clone();
        lagged.compaction.min_lag_ms = 5_000;
        m.tombstones_expire_ms = None;
        m.cleaned_to = 0;
        assert_eq!(plan(&m, &lagged, 2_000), None, "too young to clean");
        let delete_only = LogConfig::default();
        assert_eq!(plan(&m, &delete_only, 2_000), None);
    }
}
