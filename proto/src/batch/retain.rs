//! Rewriting a batch so that it keeps only some of its records: what log
//! compaction does to a batch whose records newer ones have superseded.
//!
//! The rewritten batch keeps everything in its header but the length, the
//! record count and the CRC: its base offset, its last offset delta (so it
//! still spans the same offsets), its timestamps, its producer fields and
//! its Raft term and index. Kept records are copied byte for byte (their
//! offset and timestamp deltas stay valid) and compressed again with the
//! batch's codec. A batch that keeps no record becomes an empty,
//! uncompressed batch: the header alone still tells readers which offsets
//! it spans and the producer state what sequence it ended with.

use bytes::Bytes;

use super::compression::{Codec, MAX_DECOMPRESSED, compress_into, decompress};
use super::records::Cursor;
use super::{
    ATTR_CODEC_MASK, BatchError, CRC_START, HEADER_LEN, LOG_OVERHEAD, OFF_ATTRIBUTES, OFF_COUNT,
    OFF_CRC, OFF_LENGTH, parse_header,
};

/// What `retain` shows of a record to decide whether it stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone for its key.
    pub tombstone: bool,
}

/// The batch with only the records `keep` accepts; `None` when it accepts
/// them all (the batch stays as it is). Fails on a batch whose records do
/// not decode, leaving the decision to the caller.
pub fn retain(
    batch: &[u8],
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Option<Bytes>, BatchError> {
    let h = parse_header(batch)?;
    if h.total_len() > batch.len() {
        return Err(BatchError::Truncated {
            need: h.total_len(),
            have: batch.len(),
        });
    }
    let codec = h.compression()?;
    let stored = &batch[HEADER_LEN..h.total_len()];
    let decompressed;
    let area: &[u8] = match codec {
        Codec::None => stored,
        codec => {
            decompressed = decompress(codec, stored, MAX_DECOMPRESSED)?;
            &decompressed
        }
    };
    let mut kept = Vec::with_capacity(area.len());
    let mut count = 0i32;
    let mut dropped = false;
    let mut cursor = Cursor::new(h.records_count);
    loop {
        let start = cursor.pos();
        let Some(raw) = cursor.next_raw(area) else {
            break;
        };
        let raw = raw?;
        let view = RecordView {
            offset: h.base_offset + i64::from(raw.offset_delta),
            timestamp: h.base_timestamp.wrapping_add(raw.timestamp_delta),
            key: raw.key.map(|(at, len)| &area[at..at + len]),
            tombstone: raw.value.is_none(),
        };
        if keep(&view) {
            kept.extend_from_slice(&area[start..cursor.pos()]);
            count += 1;
        } else {
            dropped = true;
        }
    }
    if !dropped {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + kept.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    let mut attributes = h.attributes;
    if count == 0 || codec == Codec::None {
        attributes &= !ATTR_CODEC_MASK;
        if count > 0 {
            out.extend_from_slice(&kept);
        }
    } else if compress_into(codec, &kept, &mut out).is_err() {
        // A codec cannot fail on memory input; store uncompressed if it does.
        out.truncate(HEADER_LEN);
        attributes &= !ATTR_CODEC_MASK;
        out.extend_from_slice(&kept);
    }
    let len = (out.len() - LOG_OVERHEAD) as i32;
    out[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    out[OFF_COUNT..OFF_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(Bytes::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, records, stamp, verify_crc};

    fn batch(codec: Codec) -> Bytes {
        let mut b = BatchBuilder::new(1_000);
        b.set_producer(7, 1, 40);
        b.set_compression(codec);
        for i in 0..10u8 {
            let value = [i; 20];
            let v: Option<&[u8]> = if i == 4 { None } else { Some(&value) };
            b.push(
                1_000 + i64::from(i),
                Some(&[b'k', i % 3]),
                v,
                &[("h", Some(b"x"))],
            );
        }
        let mut out = b.finish().to_vec();
        stamp(&mut out, 100, 3, 9);
        Bytes::from(out)
    }

    #[test]
    fn keeps_offsets_header_and_records_byte_for_byte() {
        for codec in Codec::ALL {
            let orig = batch(codec);
            let before: Vec<_> = records(&orig).unwrap().map(Result::unwrap).collect();
            let out = retain(&orig, |r| r.offset % 2 == 1).unwrap().unwrap();
            let h = verify_crc(&out).unwrap();
            let o = parse_header(&orig).unwrap();
            assert_eq!(h.records_count, 5, "{codec:?}");
            assert_eq!(
                (h.base_offset, h.last_offset_delta, h.next_offset()),
                (o.base_offset, o.last_offset_delta, o.next_offset())
            );
            assert_eq!((h.raft_term, h.raft_index), (3, 9));
            assert_eq!(
                (h.producer_id, h.base_sequence, h.last_sequence()),
                (7, 40, 49)
            );
            assert_eq!(h.max_timestamp, o.max_timestamp);
            assert_eq!(h.compression().unwrap(), codec);
            let after: Vec<_> = records(&out).unwrap().map(Result::unwrap).collect();
            let expect: Vec<_> = before.into_iter().filter(|r| r.offset % 2 == 1).collect();
            assert_eq!(after, expect);
        }
    }

    #[test]
    fn keeping_everything_changes_nothing_and_nothing_leaves_the_header() {
        let orig = batch(Codec::Lz4);
        assert_eq!(retain(&orig, |_| true).unwrap(), None);
        let out = retain(&orig, |_| false).unwrap().unwrap();
        let h = verify_crc(&out).unwrap();
        assert_eq!((h.records_count, h.total_len()), (0, HEADER_LEN));
        assert_eq!(h.next_offset(), 110);
        assert_eq!(h.compression().unwrap(), Codec::None);
        assert_eq!(records(&out).unwrap().count(), 0);
    }

    #[test]
    fn shows_keys_timestamps_and_tombstones() {
        let orig = batch(Codec::None);
        let mut seen = Vec::new();
        retain(&orig, |r| {
            seen.push((
                r.offset,
                r.timestamp,
                r.key.map(<[u8]>::to_vec),
                r.tombstone,
            ));
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 10);
        assert_eq!(seen[4], (104, 1_004, Some(vec![b'k', 1]), true));
        assert!(!seen[5].3);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut orig = batch(Codec::None).to_vec();
        for b in &mut orig[HEADER_LEN..] {
            *b = 0xff;
        }
        assert!(retain(&orig, |_| false).is_err());
        assert!(retain(&orig[..40], |_| false).is_err());
    }
}
