//! Consumed records and their decoding from fetched batch bytes.
//!
//! A fetch returns whole batches; the first may start before the requested
//! offset, so records below it are skipped. Keys and values share the
//! fetched buffer (no copy), or for a compressed batch the buffer it was
//! decompressed into.

use std::sync::Arc;

use bytes::Bytes;
use strata_proto::batch::{BatchIter, parse_header, peek_total_len, records};

use crate::error::{ClientError, Result};

/// Smallest framed record: length, attributes, timestamp and offset deltas,
/// null key, null value, no headers (one byte each).
const MIN_RECORD_LEN: usize = 7;

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    /// Milliseconds since the Unix epoch (the producer's create time).
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Records decoded from one fetched chunk, and where the next fetch starts.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<ConsumerRecord>,
    /// Offset to fetch next (unchanged when the chunk held nothing new).
    pub next_offset: i64,
}

/// Decodes the records at or after `from` in `data` (whole batches).
pub fn decode_records(topic: &Arc<str>, partition: u32, from: i64, data: Bytes) -> Result<Decoded> {
    let mut out = Decoded {
        records: Vec::new(),
        next_offset: from,
    };
    for item in BatchIter::new(data) {
        let (h, batch) =
            item.map_err(|e| ClientError::Corrupt(format!("{topic}/{partition}: bad batch: {e}")))?;
        let next = h.next_offset();
        if next <= from {
            continue;
        }
        if h.is_control() {
            out.next_offset = out.next_offset.max(next);
            continue;
        }
        if out.records.capacity() == 0 {
            // The count of a compressed batch is not bounded by its size:
            // reserve no more than a plain batch of this size could hold.
            let fit = batch.len() / MIN_RECORD_LEN;
            out.records
                .reserve((h.records_count.max(0) as usize).min(fit));
        }
        let it = records(&batch)
            .map_err(|e| ClientError::Corrupt(format!("{topic}/{partition}: bad batch: {e}")))?;
        for r in it {
            let r = r.map_err(|e| {
                ClientError::Corrupt(format!("{topic}/{partition}: bad record: {e}"))
            })?;
            if r.offset < from {
                continue;
            }
            out.records.push(ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
        }
        out.next_offset = out.next_offset.max(next);
    }
    Ok(out)
}

/// The offset after the last whole batch in `data` (at least `from`),
/// reading only batch headers (no CRC check, no record decoding), so that a
/// consumer can ask for the next chunk before decoding this one.
pub fn scan_next_offset(data: &[u8], from: i64) -> Result<i64> {
    let mut pos = 0usize;
    let mut next = from;
    while pos < data.len() {
        let rest = &data[pos..];
        let total = match peek_total_len(rest) {
            None => break,
            Some(Ok(t)) => t,
            Some(Err(e)) => return Err(ClientError::Corrupt(format!("bad batch: {e}"))),
        };
        if total > rest.len() {
            break;
        }
        let h = parse_header(rest).map_err(|e| ClientError::Corrupt(format!("bad batch: {e}")))?;
        next = next.max(h.next_offset());
        pos += total;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::batch::{BatchBuilder, Codec, stamp};

    fn batch_at(base: i64, n: usize) -> Vec<u8> {
        compressed_batch_at(Codec::None, base, n)
    }

    fn compressed_batch_at(codec: Codec, base: i64, n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(100);
        b.set_compression(codec);
        for i in 0..n {
            let v = format!("v{}", base + i as i64);
            b.push(100 + i as i64, Some(b"k"), Some(v.as_bytes()), &[]);
        }
        let mut m = b.finish().to_vec();
        stamp(&mut m, base, 1, 1);
        m
    }

    #[test]
    fn skips_records_before_the_requested_offset() {
        let mut data = batch_at(10, 5);
        data.extend(batch_at(15, 3));
        let t: Arc<str> = Arc::from("t");
        assert_eq!(scan_next_offset(&data, 12).ok(), Some(18));
        assert_eq!(scan_next_offset(&data, 30).ok(), Some(30));
        let d = decode_records(&t, 0, 12, Bytes::from(data)).expect("decode");
        let offsets: Vec<i64> = d.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![12, 13, 14, 15, 16, 17]);
        assert_eq!(d.next_offset, 18);
        assert_eq!(d.records[0].value.as_deref(), Some(&b"v12"[..]));
        assert_eq!(d.records[0].timestamp, 102);
        assert_eq!(d.records[0].key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn compressed_batches_decode_between_plain_ones() {
        let t: Arc<str> = Arc::from("t");
        let mut data = batch_at(0, 4);
        let mut base = 4;
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            data.extend(compressed_batch_at(codec, base, 50));
            base += 50;
        }
        data.extend(batch_at(base, 2));
        let d = decode_records(&t, 0, 2, Bytes::from(data)).expect("decode");
        let offsets: Vec<i64> = d.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (2..base + 2).collect::<Vec<_>>());
        for r in &d.records {
            assert_eq!(
                r.value.as_deref(),
                Some(format!("v{}", r.offset).as_bytes())
            );
        }
        assert_eq!(d.next_offset, base + 2);
    }

    #[test]
    fn empty_and_partial_data() {
        let t: Arc<str> = Arc::from("t");
        let d = decode_records(&t, 0, 5, Bytes::new()).expect("empty");
        assert!(d.records.is_empty());
        assert_eq!(d.next_offset, 5);
        // A trailing partial batch is ignored.
        let mut data = batch_at(0, 2);
        let partial = batch_at(2, 2);
        data.extend_from_slice(&partial[..partial.len() / 2]);
        assert_eq!(scan_next_offset(&data, 0).ok(), Some(2));
        let d = decode_records(&t, 0, 0, Bytes::from(data)).expect("decode");
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.next_offset, 2);
    }

    #[test]
    fn corruption_is_reported() {
        let mut data = batch_at(0, 2);
        let last = data.len() - 1;
        data[last] ^= 0xff;
        let t: Arc<str> = Arc::from("t");
        let e = decode_records(&t, 0, 0, Bytes::from(data)).expect_err("crc");
        assert!(matches!(e, ClientError::Corrupt(_)));
    }
}
