//! A bounded in-memory cache of remote object chunks. Concurrent readers
//! of a chunk share one download; failed downloads are not cached; the
//! least recently used chunks go first when the cache is over budget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::OnceCell;

type Cell = Arc<OnceCell<Bytes>>;

struct Slot {
    cell: Cell,
    used: u64,
    /// Bytes of the chunk counted in `Slots::bytes` (0 until downloaded).
    counted: u64,
}

#[derive(Default)]
struct Slots {
    map: HashMap<(String, u64), Slot>,
    /// Sum of the slots' `counted`: kept, not recomputed per access.
    bytes: u64,
}

pub struct ChunkCache {
    budget: u64,
    slots: Mutex<Slots>,
    clock: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl ChunkCache {
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            slots: Mutex::new(Slots::default()),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cell(&self, key: &str, chunk: u64) -> (Cell, bool) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.lock();
        let slot = slots
            .map
            .entry((key.to_owned(), chunk))
            .or_insert_with(|| Slot {
                cell: Arc::new(OnceCell::new()),
                used: now,
                counted: 0,
            });
        slot.used = now;
        (Arc::clone(&slot.cell), slot.cell.initialized())
    }

    /// Whether chunk `chunk` of `key` is cached or being fetched.
    pub fn contains(&self, key: &str, chunk: u64) -> bool {
        self.lock().map.contains_key(&(key.to_owned(), chunk))
    }

    /// Whether chunk `chunk` of `key` is in the cache, downloaded.
    pub fn ready(&self, key: &str, chunk: u64) -> bool {
        self.lock()
            .map
            .get(&(key.to_owned(), chunk))
            .is_some_and(|s| s.cell.initialized())
    }

    /// Chunk `chunk` of object `key`, fetched with `fetch` unless cached.
    pub async fn get<F, Fut, E>(&self, key: &str, chunk: u64, fetch: F) -> Result<Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Bytes, E>>,
    {
        let (cell, ready) = self.cell(key, chunk);
        if ready {
            self.hits.fetch_add(1, Ordering::Relaxed);
            if let Some(b) = cell.get() {
                return Ok(b.clone());
            }
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        let r = cell.get_or_try_init(fetch).await.cloned();
        let mut slots = self.lock();
        let k = (key.to_owned(), chunk);
        let ours = slots
            .map
            .get(&k)
            .is_some_and(|s| Arc::ptr_eq(&s.cell, &cell));
        match &r {
            Ok(b) if ours => {
                if let Some(slot) = slots.map.get_mut(&k)
                    && slot.counted == 0
                {
                    slot.counted = b.len() as u64;
                    slots.bytes += b.len() as u64;
                    self.evict(&mut slots);
                }
            }
            Err(_) if ours => {
                slots.map.remove(&k);
            }
            _ => {}
        }
        r
    }

    /// Drops every chunk of `key` (its object proved bad or is deleted).
    pub fn forget(&self, key: &str) {
        let mut slots = self.lock();
        let mut freed = 0;
        slots.map.retain(|(k, _), s| {
            let keep = k != key;
            if !keep {
                freed += s.counted;
            }
            keep
        });
        slots.bytes -= freed;
    }

    /// Cached bytes.
    pub fn size(&self) -> u64 {
        self.lock().bytes
    }

    /// Drops the least recently used downloaded chunks while over budget.
    fn evict(&self, slots: &mut Slots) {
        while slots.bytes > self.budget {
            let Some(k) = slots
                .map
                .iter()
                .filter(|(_, s)| s.counted > 0)
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            if let Some(s) = slots.map.remove(&k) {
                slots.bytes -= s.counted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caches_shares_and_evicts() {
        let c = ChunkCache::new(25);
        let calls = AtomicU64::new(0);
        let fetch = |n: u8| {
            calls.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, ()>(Bytes::from(vec![n; 10])) }
        };
        assert_eq!(c.get("a", 0, || fetch(1)).await.unwrap()[0], 1);
        c.get("a", 1, || fetch(2)).await.unwrap();
        assert_eq!(c.get("a", 0, || fetch(9)).await.unwrap()[0], 1, "cached");
        c.get("b", 0, || fetch(3)).await.unwrap();
        assert!(c.size() <= 25, "over budget: {}", c.size());
        assert!(!c.contains("a", 1), "the least recently used chunk went");
        assert!(c.contains("a", 0));
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert!(
            c.get("x", 0, || async { Err::<Bytes, _>("down") })
                .await
                .is_err()
        );
        assert!(!c.contains("x", 0), "failures are not cached");
        c.forget("a");
        assert!(!c.contains("a", 0));
    }
}
