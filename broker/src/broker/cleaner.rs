//! The log cleaner pool: `--log-cleaner-threads` threads, off the produce
//! and fetch paths, that compact the replicas of compacted topics hosted
//! here. Each round a thread takes the dirtiest replica with a pass due
//! that no other thread is cleaning, runs the pass without any lock (the
//! log's `cleaner` module), and swaps the result in under the replica's
//! lock. The threads share one I/O rate cap and split the key-map memory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Broker, TopicPartition};
use crate::config::CleanerSettings;
use crate::log::cleaner::{OffsetMap, run_pass};
use crate::partition::Partition;

/// Keeps the pool's combined reads and writes under a rate: callers are
/// told how many bytes they moved and sleep as long as that takes at the
/// cap. Measured over one-second windows.
pub struct Throttle {
    rate: Option<u64>,
    window: Mutex<(Instant, u64)>,
}

impl Throttle {
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        Self {
            rate: bytes_per_sec,
            window: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Accounts `bytes` and sleeps while the window is over the cap.
    pub fn take(&self, bytes: usize) {
        let Some(rate) = self.rate else {
            return;
        };
        let wait = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let elapsed = w.0.elapsed();
            if elapsed >= Duration::from_secs(1) {
                *w = (Instant::now(), 0);
            }
            w.1 += bytes as u64;
            let due = Duration::from_secs_f64(w.1 as f64 / rate as f64);
            due.saturating_sub(w.0.elapsed())
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// What the pool's threads share.
struct Pool {
    settings: CleanerSettings,
    throttle: Throttle,
    busy: Mutex<HashSet<TopicPartition>>,
}

/// Starts the pool (no threads when it is off).
pub(super) fn start(broker: &Arc<Broker>) {
    let settings = broker.config.cleaner.clone();
    if settings.threads == 0 {
        return;
    }
    let pool = Arc::new(Pool {
        throttle: Throttle::new(settings.io_bytes_per_sec),
        busy: Mutex::new(HashSet::new()),
        settings,
    });
    for i in 0..pool.settings.threads {
        let (me, pool) = (Arc::downgrade(broker), Arc::clone(&pool));
        let spawned = std::thread::Builder::new()
            .name(format!("log-cleaner-{i}"))
            .spawn(move || run(&me, &pool));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a log cleaner thread");
        }
    }
}

/// One thread: clean while there is work, else wait the backoff.
fn run(me: &Weak<Broker>, pool: &Pool) {
    let memory = pool.settings.map_bytes_per_pass().unwrap_or(0);
    let mut map = OffsetMap::with_memory(memory);
    loop {
        let worked = match me.upgrade() {
            Some(b) if !b.is_stopping() => clean_one(&b, pool, &mut map),
            _ => return,
        };
        if !worked {
            std::thread::sleep(pool.settings.backoff);
        }
    }
}

/// Cleans the dirtiest replica with a pass due; false when there was none.
fn clean_one(broker: &Broker, pool: &Pool, map: &mut OffsetMap) -> bool {
    let mut candidates: Vec<(f64, Arc<Partition>)> = broker
        .all_partitions()
        .into_iter()
        .filter_map(|p| p.cleaner_state().map(|s| (s.dirty_ratio, p)))
        .collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, part) in candidates {
        let key = (part.topic().to_owned(), part.id());
        if !pool
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            continue;
        }
        let cleaned = clean_partition(&part, pool, map);
        pool.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if cleaned {
            return true;
        }
    }
    false
}

fn clean_partition(part: &Partition, pool: &Pool, map: &mut OffsetMap) -> bool {
    let Some(plan) = part.compaction_plan() else {
        return false;
    };
    let started = Instant::now();
    let outcome = match run_pass(&plan, map, &mut |n| pool.throttle.take(n)) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(topic = %part.topic(), partition = part.id(), error = %e,
                "compaction pass failed");
            return false;
        }
    };
    match part.install_cleaned(&outcome) {
        Ok(reclaimed) => {
            crate::metrics::global().cleaner_pass(
                outcome.bytes_read,
                outcome.bytes_written,
                reclaimed,
                started.elapsed(),
            );
            tracing::debug!(topic = %part.topic(), partition = part.id(),
                cleaned_to = outcome.cleaned_to, keys = outcome.keys,
                removed = outcome.records_removed, reclaimed,
                ms = started.elapsed().as_millis() as u64, "compaction pass installed");
            true
        }
        Err(e) => {
            tracing::warn!(topic = %part.topic(), partition = part.id(), error = %e,
                "compaction pass not installed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_holds_the_rate() {
        let t = Throttle::new(Some(10 << 20));
        let started = Instant::now();
        for _ in 0..5 {
            t.take(1 << 20);
        }
        // 5 MiB at 10 MiB/s: half a second, give or take the window.
        assert!(started.elapsed() >= Duration::from_millis(450));
        let free = Throttle::new(None);
        let started = Instant::now();
        free.take(usize::MAX);
        assert!(started.elapsed() < Duration::from_millis(50));
    }
}
