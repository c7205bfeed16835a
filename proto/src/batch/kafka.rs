//! Kafka's RecordBatch prefix ⇄ strata's stamped prefix.
//!
//! Both formats share every byte from `magic` to the end (the CRC-covered
//! body included); only the prefix differs:
//!
//! ```text
//! Kafka  (17 bytes): base_offset i64 | batch_length i32 | partition_leader_epoch i32 | magic
//! strata (29 bytes): base_offset i64 | batch_length i32 | raft_term u64 | raft_index u64 | magic
//! ```
//!
//! `batch_length` counts the bytes after itself, so strata's is Kafka's
//! plus 12. Translating rewrites the prefix only and never touches the
//! records, so no CRC changes. Kafka's partition leader epoch is the Raft
//! term of the batch (the term a leader appended it in).

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    BatchError, HEADER_LEN, LOG_OVERHEAD, MAGIC, OFF_MAGIC, OFF_TERM, be_i32, be_i64, be_u64,
};

/// Size of Kafka's batch prefix (up to and including `magic`).
pub const KAFKA_PREFIX_LEN: usize = 17;
/// Size of Kafka's whole RecordBatch v2 header.
pub const KAFKA_HEADER_LEN: usize = HEADER_LEN - GROWTH;
/// How much longer strata's prefix is.
const GROWTH: usize = OFF_MAGIC - (KAFKA_PREFIX_LEN - 1);

/// Rewrites back-to-back Kafka record batches (a Produce request's
/// `records`) into strata batches, checking each batch's framing and
/// magic. The bodies are copied as they are; validation of CRC and
/// records is the produce path's.
pub fn from_kafka(records: &[u8]) -> Result<Bytes, BatchError> {
    let mut out = BytesMut::with_capacity(records.len() + records.len() / 64 + GROWTH);
    let mut rest = records;
    while !rest.is_empty() {
        if rest.len() < KAFKA_PREFIX_LEN {
            return Err(BatchError::Truncated {
                need: KAFKA_PREFIX_LEN,
                have: rest.len(),
            });
        }
        let length = be_i32(rest, 8);
        let total = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|t| *t >= KAFKA_HEADER_LEN)
            .ok_or(BatchError::Malformed("batch length out of range"))?;
        if total > rest.len() {
            return Err(BatchError::Truncated {
                need: total,
                have: rest.len(),
            });
        }
        let magic = rest[KAFKA_PREFIX_LEN - 1] as i8;
        if magic != MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        let strata_len = i32::try_from(total - LOG_OVERHEAD + GROWTH)
            .map_err(|_| BatchError::Malformed("batch length out of range"))?;
        out.put_i64(be_i64(rest, 0));
        out.put_i32(strata_len);
        out.put_u64(0);
        out.put_u64(0);
        out.put_slice(&rest[KAFKA_PREFIX_LEN - 1..total]);
        rest = &rest[total..];
    }
    Ok(out.freeze())
}

/// The Kafka prefix of the stored strata batch at the start of `batch`
/// (a complete header must be there).
pub fn kafka_prefix(batch: &[u8]) -> Result<[u8; KAFKA_PREFIX_LEN], BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            need: HEADER_LEN,
            have: batch.len(),
        });
    }
    let length = be_i32(batch, 8);
    let kafka_len = length
        .checked_sub(GROWTH as i32)
        .filter(|l| *l >= (KAFKA_HEADER_LEN - LOG_OVERHEAD) as i32)
        .ok_or(BatchError::Malformed("batch length out of range"))?;
    let term = be_u64(batch, OFF_TERM);
    // Terms beyond i32 cannot be told to a Kafka client: -1 = unknown.
    let epoch = i32::try_from(term).unwrap_or(-1);
    let mut p = [0u8; KAFKA_PREFIX_LEN];
    p[0..8].copy_from_slice(&batch[0..8]);
    p[8..12].copy_from_slice(&kafka_len.to_be_bytes());
    p[12..16].copy_from_slice(&epoch.to_be_bytes());
    p[16] = batch[OFF_MAGIC];
    Ok(p)
}

/// Kafka's view of stored strata batches: for each batch, its rewritten
/// prefix (magic included, by value: no allocation per batch) and a
/// zero-copy slice of the rest. A partial batch at the end (a read cut at
/// a size limit) is dropped, as Kafka clients would drop it.
pub fn to_kafka(stored: &Bytes) -> Result<Vec<([u8; KAFKA_PREFIX_LEN], Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while stored.len() - pos >= HEADER_LEN {
        let rest = &stored[pos..];
        let total = usize::try_from(be_i32(rest, 8))
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|t| *t >= HEADER_LEN)
            .ok_or(BatchError::Malformed("batch length out of range"))?;
        if total > rest.len() {
            break;
        }
        let prefix = kafka_prefix(rest)?;
        out.push((prefix, stored.slice(pos + OFF_MAGIC + 1..pos + total)));
        pos += total;
    }
    Ok(out)
}

/// Kafka's view of stored batches as one contiguous buffer.
pub fn to_kafka_bytes(stored: &Bytes) -> Result<Bytes, BatchError> {
    let parts = to_kafka(stored)?;
    let len = parts.iter().map(|(p, b)| p.len() + b.len()).sum();
    let mut out = BytesMut::with_capacity(len);
    for (p, b) in parts {
        out.put_slice(&p);
        out.put_slice(&b);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, split_validated, stamp};

    fn strata_batch(n: usize) -> Bytes {
        let mut b = BatchBuilder::new(1_700_000_000_000);
        for i in 0..n {
            b.push(
                1_700_000_000_000 + i as i64,
                Some(b"k"),
                Some(b"value"),
                &[],
            );
        }
        b.finish()
    }

    #[test]
    fn round_trip_keeps_bodies_and_crc() {
        let a = strata_batch(3);
        let b = strata_batch(2);
        let mut stored = BytesMut::new();
        stored.put_slice(&a);
        stored.put_slice(&b);
        let stored = stored.freeze();
        let kafka = to_kafka_bytes(&stored).unwrap();
        assert_eq!(kafka.len(), stored.len() - 2 * GROWTH);
        let back = from_kafka(&kafka).unwrap();
        let batches = split_validated(&back).unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(back, stored, "term and index of client batches are zero");
    }

    #[test]
    fn epoch_is_the_term() {
        let mut a = BytesMut::from(&strata_batch(1)[..]);
        stamp(&mut a, 42, 7, 9);
        let p = kafka_prefix(&a).unwrap();
        assert_eq!(i64::from_be_bytes(p[0..8].try_into().unwrap()), 42);
        assert_eq!(i32::from_be_bytes(p[12..16].try_into().unwrap()), 7);
        assert_eq!(p[16] as i8, MAGIC);
    }

    #[test]
    fn bad_kafka_input_is_refused() {
        let a = strata_batch(1);
        let kafka = to_kafka_bytes(&a).unwrap();
        assert!(from_kafka(&kafka[..10]).is_err());
        assert!(from_kafka(&kafka[..kafka.len() - 1]).is_err());
        let mut lying = kafka.to_vec();
        lying[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(from_kafka(&lying).is_err());
        let mut neg = kafka.to_vec();
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(from_kafka(&neg).is_err());
        let mut v1 = kafka.to_vec();
        v1[16] = 1;
        assert!(matches!(from_kafka(&v1), Err(BatchError::BadMagic(1))));
        assert_eq!(from_kafka(&[]).unwrap().len(), 0);
    }

    #[test]
    fn partial_tail_is_dropped() {
        let a = strata_batch(2);
        let mut stored = BytesMut::from(&a[..]);
        stored.put_slice(&a[..a.len() - 3]);
        let parts = to_kafka(&stored.freeze()).unwrap();
        assert_eq!(parts.len(), 1);
    }
}
