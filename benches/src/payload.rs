//! Record payloads: one buffer of random bytes generated once; every record
//! value is a slice of it (a reference-count increment, no copy).

use bytes::Bytes;
use rand::{RngCore, SeedableRng, rngs::SmallRng};

/// A source of random record values of one size.
#[derive(Debug, Clone)]
pub struct Payload {
    buf: Bytes,
    size: usize,
    slots: usize,
}

impl Payload {
    /// Random bytes enough for many distinct values of `size` bytes.
    pub fn new(size: usize) -> Self {
        let len = (size * 1024).clamp(size + 1, 64 << 20).max(1 << 20);
        let mut v = vec![0u8; len + size];
        SmallRng::seed_from_u64(0x5eed_5eed).fill_bytes(&mut v);
        let slots = (len / size.max(1)).max(1);
        Self {
            buf: Bytes::from(v),
            size,
            slots,
        }
    }

    /// The value of record `i`.
    #[inline]
    pub fn value(&self, i: u64) -> Bytes {
        // A prime stride so neighbours differ; offsets are 8-aligned.
        let slot = (i.wrapping_mul(7919) % self.slots as u64) as usize;
        let at = slot * self.size;
        self.buf.slice(at..at + self.size)
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_size_and_vary() {
        let p = Payload::new(1024);
        let a = p.value(0);
        let b = p.value(1);
        assert_eq!(a.len(), 1024);
        assert_eq!(b.len(), 1024);
        assert_ne!(a, b);
        let z = Payload::new(0);
        assert!(z.value(5).is_empty());
        let odd = Payload::new(3_000_000);
        assert_eq!(odd.value(17).len(), 3_000_000);
    }
}
