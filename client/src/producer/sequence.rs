//! Idempotence sequence numbers of a partition's batches: advancing them,
//! and renumbering batches (rewriting the header fields and the CRC) when an
//! earlier batch failed for good, so that the broker sees no gap — or, when
//! it cannot be known whether the failed batch was appended, under a bumped
//! producer epoch from sequence 0 (Kafka's rule: the broker then starts the
//! partition's sequence afresh and fences the old epoch).

use std::collections::VecDeque;

use bytes::Bytes;
use strata_proto::batch;

use super::sender::Sendable;

/// Gives the numbered batches that arrived after `after` consecutive
/// sequences from `seq` on; returns the next free sequence.
pub(super) fn renumber(queue: &mut VecDeque<Sendable>, after: u64, seq: i32) -> i32 {
    let mut next = seq;
    for q in queue.iter_mut() {
        if q.builder.is_some() {
            break; // not numbered yet, nor are the ones after it
        }
        if q.arrival < after {
            continue;
        }
        q.base_seq = next;
        q.bytes = rewrite(&q.bytes, None, next);
        next = advance_seq(next, q.count);
    }
    next
}

/// Gives every numbered batch of `queue`, in order, sequences from 0
/// under `epoch`; returns the next free sequence.
pub(super) fn restart_epoch(queue: &mut VecDeque<Sendable>, epoch: i16) -> i32 {
    let mut next = 0;
    for q in queue.iter_mut() {
        if q.builder.is_some() {
            break;
        }
        q.base_seq = next;
        q.bytes = rewrite(&q.bytes, Some(epoch), next);
        next = advance_seq(next, q.count);
    }
    next
}

/// Next sequence after a batch of `count` records (wraps like Kafka's).
pub(super) fn advance_seq(seq: i32, count: u32) -> i32 {
    ((i64::from(seq) + i64::from(count)) % (i64::from(i32::MAX) + 1)) as i32
}

/// A copy of a finished batch with another base sequence (and epoch, when
/// given) and a fixed CRC.
fn rewrite(bytes: &Bytes, epoch: Option<i16>, base_seq: i32) -> Bytes {
    const OFF_EPOCH: usize = 63;
    const OFF_BASE_SEQ: usize = 65;
    const OFF_CRC: usize = 29;
    if bytes.len() < batch::HEADER_LEN {
        return bytes.clone();
    }
    let mut v = bytes.to_vec();
    if let Some(e) = epoch {
        v[OFF_EPOCH..OFF_EPOCH + 2].copy_from_slice(&e.to_be_bytes());
    }
    v[OFF_BASE_SEQ..OFF_BASE_SEQ + 4].copy_from_slice(&base_seq.to_be_bytes());
    let crc = batch::compute_crc(&v);
    v[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    use strata_proto::batch::{BatchBuilder, parse_header, validate};

    fn numbered(arrival: u64, seq: i32, count: u32) -> Sendable {
        let mut b = BatchBuilder::new(0);
        for _ in 0..count {
            b.push(0, None, Some(b"v"), &[]);
        }
        b.set_producer(1, 0, seq);
        Sendable {
            builder: None,
            bytes: b.finish(),
            shared: crate::producer::future::BatchShared::new(Arc::from("t"), 0),
            count,
            reserved: 0,
            created: Instant::now(),
            arrival,
            base_seq: seq,
            attempts: 1,
            last_error: None,
            busy: None,
        }
    }

    #[test]
    fn a_failed_batch_renumbers_only_later_ones() {
        // Batches 1 (seq 0..3), 3 (seq 5..7) and 4 (seq 8..9) are queued
        // again after batch 2 (seq 3..5) failed for good.
        let mut q: VecDeque<Sendable> =
            [numbered(1, 0, 3), numbered(3, 5, 3), numbered(4, 8, 2)].into();
        let next = renumber(&mut q, 2, 3);
        let seqs: Vec<i32> = q.iter().map(|b| b.base_seq).collect();
        assert_eq!(seqs, vec![0, 3, 6]);
        assert_eq!(next, 8);
        for b in &q {
            let h = validate(&b.bytes).expect("valid");
            assert_eq!(h.base_sequence, b.base_seq);
        }
    }

    #[test]
    fn an_epoch_bump_restarts_every_numbered_batch_at_zero() {
        let mut q: VecDeque<Sendable> = [numbered(3, 5, 3), numbered(4, 8, 2)].into();
        let next = restart_epoch(&mut q, 1);
        let hs: Vec<(i16, i32)> = q
            .iter()
            .map(|b| {
                let h = validate(&b.bytes).expect("valid");
                (h.producer_epoch, h.base_sequence)
            })
            .collect();
        assert_eq!(hs, vec![(1, 0), (1, 3)]);
        assert_eq!(next, 5);
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(advance_seq(0, 5), 5);
        assert_eq!(advance_seq(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn resequenced_batches_stay_valid() {
        let mut b = BatchBuilder::new(1);
        b.push(1, None, Some(b"abc"), &[]);
        b.set_producer(7, 0, 10);
        let bytes = b.finish();
        let out = rewrite(&bytes, None, 3);
        let h = validate(&out).expect("valid after resequencing");
        assert_eq!(h.base_sequence, 3);
        let out = rewrite(&bytes, Some(4), 0);
        let h = validate(&out).expect("valid after an epoch bump");
        assert_eq!((h.producer_epoch, h.base_sequence), (4, 0));
        assert_eq!(parse_header(&bytes).map(|h| h.base_sequence), Ok(10));
    }
}
