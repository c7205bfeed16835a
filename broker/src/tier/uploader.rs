//! The uploader: every interval, each partition this broker leads with
//! `remote.storage.enable=true` uploads its sealed, committed segments
//! past the manifest's end, one after the other, and applies the whole
//! log's retention to its remote segments. At most `tier-max-uploads`
//! uploads run at once per broker. A failed pass is retried with
//! backoff (1 s doubling to 30 s) and logged; produces never wait for it.
//!
//! Compacted topics upload only what the local cleaner has cleaned, and
//! then clean the remote part (the `compactor` module). With nothing to
//! upload, objects no manifest names are swept (the `sweep` module).
//!
//! The manifest in the controller state decides: a segment is recorded
//! only if it starts where the manifest ends, so a new leader continues
//! where the old one stopped and two uploads of one range never both
//! count (the loser deletes its objects).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::host::TierHost;
use super::{RemoteLoc, RemoteManifest};
use crate::error::{BrokerError, Result};
use crate::log::{LogConfig, now_ms};
use crate::partition::Partition;

const MAX_BACKOFF: Duration = Duration::from_secs(30);
const WARN_EVERY: Duration = Duration::from_secs(30);

type Key = (String, u32);

#[derive(Default)]
struct Backoff {
    retry_at: Option<Instant>,
    delay: Duration,
    failures: u64,
    warned_at: Option<Instant>,
}

pub async fn run<H: TierHost>(me: Weak<H>) {
    let mut running: HashMap<Key, tokio::task::JoinHandle<()>> = HashMap::new();
    let backoff: Arc<Mutex<HashMap<Key, Backoff>>> = Arc::default();
    loop {
        let interval = match me.upgrade() {
            Some(b) => b.tier().settings().upload_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(b) = me.upgrade() else { return };
        running.retain(|_, h| !h.is_finished());
        let mut backlog = 0u64;
        for part in b.hosted_partitions() {
            if !part.is_leader() || part.is_closed() || part.topic().starts_with("__") {
                continue;
            }
            // Without cloning the configuration of each of 100,000 local
            // partitions per pass.
            if !part.with_log(|log, _| log.config().remote_storage) {
                continue;
            }
            let cfg = part.config();
            let key: Key = (part.topic().to_owned(), part.id());
            let end = b.with_manifest(part.topic(), part.id(), |m, _| {
                m.filter(|m| !m.segments.is_empty() || m.start > 0)
                    .map(|m| m.end())
            });
            backlog += part.with_log(|log, _| log.bytes_from(end.unwrap_or(i64::MIN)));
            if running.contains_key(&key) {
                continue;
            }
            let wait = backoff
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .and_then(|s| s.retry_at)
                .is_some_and(|t| Instant::now() < t);
            if wait {
                continue;
            }
            let (b2, bo) = (Arc::clone(&b), Arc::clone(&backoff));
            let k2 = key.clone();
            running.insert(
                key,
                tokio::spawn(async move {
                    let r = pass(b2.as_ref(), &part, cfg).await;
                    note_outcome(&bo, &k2, r);
                }),
            );
        }
        b.tier()
            .metrics
            .backlog_bytes
            .store(backlog, Ordering::Relaxed);
    }
}

fn note_outcome(backoff: &Mutex<HashMap<Key, Backoff>>, key: &Key, r: Result<()>) {
    let mut map = backoff.lock().unwrap_or_else(|e| e.into_inner());
    match r {
        Ok(()) => {
            if let Some(s) = map.remove(key)
                && s.failures > 0
            {
                tracing::info!(topic = %key.0, partition = key.1, failures = s.failures,
                    "tiered storage uploads resumed");
            }
        }
        Err(e) => {
            let s = map.entry(key.clone()).or_default();
            s.failures += 1;
            s.delay = (s.delay * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
            s.retry_at = Some(Instant::now() + s.delay);
            if s.warned_at.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                s.warned_at = Some(Instant::now());
                tracing::warn!(topic = %key.0, partition = key.1, failures = s.failures,
                    retry_in = ?s.delay, error = %e,
                    "tiered storage upload failed; local segments are kept until it succeeds");
            }
        }
    }
}

/// The start the whole log's retention gives the remote segments, if it
/// moves it. `local_bytes` are the bytes not yet remote.
fn retention_start(cfg: &LogConfig, m: &RemoteManifest, local_bytes: u64, now: i64) -> Option<i64> {
    let mut total = m.bytes() + local_bytes;
    let mut start = None;
    let (retention_ms, retention_bytes) = cfg.total_limits();
    for seg in &m.segments {
        let too_old = retention_ms.is_some_and(|ms| seg.max_ts >= 0 && now - seg.max_ts > ms);
        let too_big =
            retention_bytes.is_some_and(|limit| total > limit && total - seg.size >= limit);
        if !(too_old || too_big) {
            break;
        }
        total -= seg.size;
        start = Some(seg.next);
    }
    start
}

pub(crate) async fn trim(
    b: &impl TierHost,
    loc: &RemoteLoc,
    m: &RemoteManifest,
    start: i64,
) -> Result<()> {
    if b.trim_remote(loc, start).await? {
        wait_manifest(b, loc, |m| m.start >= start).await;
        // The manifest no longer names them: now the objects may go.
        for seg in m.segments.iter().filter(|s| s.next <= start) {
            b.tier().delete_segment(loc, seg).await?;
        }
        tracing::info!(topic = %loc.topic, partition = loc.partition, start,
            "remote segments below the new start deleted");
        mirror_manifest(b, loc).await;
    }
    Ok(())
}

/// Waits (up to 10 s) until this broker applied the manifest change that
/// `done` recognizes: the controller answered, the local copy may lag.
pub(super) async fn wait_manifest(
    b: &impl TierHost,
    loc: &RemoteLoc,
    done: impl Fn(&RemoteManifest) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let applied = b.with_manifest(&loc.topic, loc.partition, |m, _| m.is_some_and(&done));
        if applied {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(super) async fn mirror_manifest(b: &impl TierHost, loc: &RemoteLoc) {
    let m = b.with_manifest(&loc.topic, loc.partition, |m, _| m.cloned());
    if let Some(m) = m
        && let Err(e) = b.tier().write_manifest(loc, &m).await
    {
        tracing::debug!(topic = %loc.topic, partition = loc.partition, error = %e,
            "manifest copy not written");
    }
}

/// Uploads what is due for one partition (and trims by retention).
async fn pass(b: &impl TierHost, part: &Arc<Partition>, cfg: LogConfig) -> Result<()> {
    loop {
        if !part.is_leader() || part.is_closed() {
            return Ok(());
        }
        let Some((loc, m)) = b.with_manifest(part.topic(), part.id(), |m, topic_id| {
            Some((
                RemoteLoc {
                    topic: part.topic().to_owned(),
                    topic_id: topic_id?.to_owned(),
                    partition: part.id(),
                },
                m.cloned().unwrap_or_default(),
            ))
        }) else {
            return Ok(());
        };
        let started = !m.segments.is_empty() || m.start > 0;
        let hw = part.high_watermark();
        let local_start = part.local_start();
        if started && m.end() < local_start {
            // Offsets between were deleted (DeleteRecords): the remote log
            // continues at the local start.
            trim(b, &loc, &m, local_start).await?;
            continue;
        }
        let local_bytes = part.with_log(|log, _| log.bytes_from(m.end()));
        if let Some(start) = retention_start(&cfg, &m, local_bytes, now_ms()) {
            trim(b, &loc, &m, start).await?;
            continue;
        }
        let from = if started { m.end() } else { local_start };
        // A compacted topic's segments leave cleaned (unless compaction
        // is off here).
        let compacted = cfg.cleanup.compact && b.compaction_map_bytes().is_some();
        let limit = if compacted {
            part.with_log(|log, _| hw.min(log.cleaned_offset()))
        } else {
            hw
        };
        let Some(slice) = part.with_log(|log, _| log.sealed_slice(from, limit)) else {
            if compacted && super::compactor::pass(b, &loc, &m, &cfg).await? {
                continue;
            }
            if let Err(e) = b.tier().sweep(&loc, &m).await {
                tracing::debug!(topic = %loc.topic, partition = loc.partition, error = %e,
                    "orphaned objects not swept");
            }
            return Ok(());
        };
        if started && slice.base != from {
            return Err(BrokerError::Storage(format!(
                "{}/{}: no batch starts at the remote end {from} (found {})",
                loc.topic, loc.partition, slice.base
            )));
        }
        let seg = {
            let _slot = b
                .tier()
                .upload_slot()
                .await
                .map_err(|_| BrokerError::ShuttingDown)?;
            b.tier().upload(&loc, slice).await?
        };
        if b.record_remote_segment(&loc, seg.clone()).await? {
            wait_manifest(b, &loc, |m| {
                m.segments.iter().any(|g| g.upload_id == seg.upload_id)
            })
            .await;
            tracing::debug!(topic = %loc.topic, partition = loc.partition, base = seg.base,
                next = seg.next, bytes = seg.size, "segment uploaded");
            mirror_manifest(b, &loc).await;
            continue;
        }
        // Another upload of this range is recorded: ours is an orphan.
        let recorded = b.with_manifest(&loc.topic, loc.partition, |m, _| {
            m.is_some_and(|m| m.segments.iter().any(|g| g.upload_id == seg.upload_id))
        });
        if !recorded {
            b.tier().delete_segment(&loc, &seg).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::RemoteSegment;

    #[test]
    fn retention_of_remote_segments() {
        let seg = |base: i64, next: i64, ts: i64| RemoteSegment {
            base,
            next,
            size: 100,
            max_ts: ts,
            upload_id: String::new(),
        };
        let m = RemoteManifest {
            start: 0,
            segments: vec![seg(0, 10, 1_000), seg(10, 20, 2_000), seg(20, 30, 3_000)],
            ..RemoteManifest::default()
        };
        let mut cfg = LogConfig {
            retention_ms: Some(1_500),
            ..LogConfig::default()
        };
        assert_eq!(
            retention_start(&cfg, &m, 0, 3_000),
            Some(10),
            "only the oldest is too old"
        );
        assert_eq!(retention_start(&cfg, &m, 0, 2_000), None);
        cfg.retention_ms = None;
        cfg.retention_bytes = Some(250);
        // 300 remote + 100 local: one segment goes, a second would go below.
        assert_eq!(retention_start(&cfg, &m, 100, 0), Some(10));
        assert_eq!(retention_start(&cfg, &m, 200, 0), Some(20));
        assert_eq!(
            retention_start(&cfg, &m, 0, 0),
            None,
            "dropping one would go below"
        );
    }
}
