//! Partition choice: Kafka-compatible murmur2 hashing of keys, and a sticky
//! partition for keyless records that moves on whenever a batch of it is
//! sent (Kafka's sticky partitioner), so keyless records fill whole batches.

use std::sync::atomic::{AtomicU32, Ordering};

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), as a signed value.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record: `(murmur2(key) & 0x7fffffff) % n`.
pub fn key_partition(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

const UNSET: u32 = u32::MAX;

/// The sticky partition of one topic's keyless records.
#[derive(Debug)]
pub struct Sticky {
    current: AtomicU32,
}

impl Default for Sticky {
    fn default() -> Self {
        Self {
            current: AtomicU32::new(UNSET),
        }
    }
}

impl Sticky {
    /// The partition keyless records go to now.
    pub fn partition(&self, partitions: u32) -> u32 {
        let n = partitions.max(1);
        let cur = self.current.load(Ordering::Relaxed);
        if cur != UNSET && cur < n {
            return cur;
        }
        let pick = rand::random_range(0..n);
        match self
            .current
            .compare_exchange(cur, pick, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => pick,
            Err(other) if other < n => other,
            Err(_) => pick,
        }
    }

    /// A batch of `sent` was closed: later keyless records move to another
    /// partition (if `sent` is still the sticky one).
    pub fn batch_closed(&self, sent: u32, partitions: u32) {
        let n = partitions.max(1);
        let next = if n == 1 {
            0
        } else {
            let r = rand::random_range(0..n - 1);
            if r >= sent { r + 1 } else { r }
        };
        let _ = self
            .current
            .compare_exchange(sent, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest / DefaultPartitionerTest.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn key_partition_is_positive_modulo() {
        // Kafka: toPositive(murmur2("21")) % 3
        let want = ((-973_932_308i32 & 0x7fff_ffff) as u32) % 3;
        assert_eq!(key_partition(b"21", 3), want);
        for n in 1..20 {
            assert!(key_partition(b"foobar", n) < n);
        }
        assert_eq!(key_partition(b"anything", 1), 0);
    }

    #[test]
    fn sticky_moves_after_a_batch() {
        let s = Sticky::default();
        let p = s.partition(4);
        assert!(p < 4);
        assert_eq!(s.partition(4), p, "stays while the batch fills");
        s.batch_closed(p, 4);
        let q = s.partition(4);
        assert_ne!(q, p);
        // A stale notification for another partition changes nothing.
        s.batch_closed(p, 4);
        assert_eq!(s.partition(4), q);
        let one = Sticky::default();
        assert_eq!(one.partition(1), 0);
        one.batch_closed(0, 1);
        assert_eq!(one.partition(1), 0);
    }
}
