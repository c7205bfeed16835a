//! The record batch: strata's unit of storage, replication and transfer.
//!
//! A batch is a fixed header followed by varint-framed records. From the
//! `attributes` field to the end the bytes are exactly Kafka's RecordBatch v2
//! body, covered by a CRC-32C, so a Kafka-protocol gateway can forward it
//! untouched. The prefix before the CRC holds the fields the broker stamps
//! (offset, Raft term and index), so stamping never invalidates the checksum.
//!
//! ```text
//! offset size field               stamped by
//!  0     8   base_offset   i64    broker
//!  8     4   batch_length  i32    client  (bytes after this field)
//! 12     8   raft_term     u64    broker
//! 20     8   raft_index    u64    broker
//! 28     1   magic         i8 = 2 client
//! 29     4   crc           u32    client  (CRC-32C of bytes 33..end)
//! 33     2   attributes    i16    client  (bits 0-2 codec, 3 time type, 4 txn, 5 control)
//! 35     4   last_offset_delta i32
//! 39     8   base_timestamp i64   (ms since the Unix epoch)
//! 47     8   max_timestamp  i64
//! 55     8   producer_id    i64   (-1 = none)
//! 63     2   producer_epoch i16
//! 65     4   base_sequence  i32
//! 69     4   records_count  i32
//! 73         records: length varint, attributes i8, timestamp delta varlong,
//!            offset delta varint, key (varint len, -1 = null), value,
//!            header count varint, headers (key len + utf-8 key, value len + value)
//! ```
//!
//! Everything here is pure: no I/O, and decoders never panic on any input.

use bytes::{BufMut, Bytes, BytesMut};

use crate::varint::{get_varint, get_varlong, varlong_len};

/// Size of the fixed header.
pub const HEADER_LEN: usize = 73;
/// Bytes before (and not counted by) `batch_length`.
pub const LOG_OVERHEAD: usize = 12;
/// The only body version strata writes and accepts.
pub const MAGIC: i8 = 2;
/// Largest batch the codec accepts at all (brokers enforce a smaller
/// `max.message.bytes`).
pub const MAX_BATCH_LEN: usize = 256 << 20;
/// Start of the CRC-covered body.
const CRC_START: usize = 33;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_TERM: usize = 12;
const OFF_INDEX: usize = 20;
const OFF_MAGIC: usize = 28;
const OFF_CRC: usize = 29;
const OFF_ATTRIBUTES: usize = 33;
const OFF_LAST_DELTA: usize = 35;
const OFF_BASE_TS: usize = 39;
const OFF_MAX_TS: usize = 47;
const OFF_PRODUCER_ID: usize = 55;
const OFF_PRODUCER_EPOCH: usize = 63;
const OFF_BASE_SEQ: usize = 65;
const OFF_COUNT: usize = 69;

/// Attribute bit: the batch is a control batch (no user records).
pub const ATTR_CONTROL: i16 = 1 << 5;
const ATTR_CODEC_MASK: i16 = 0x7;

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needs {need} bytes, {have} present")]
    Truncated { need: usize, have: usize },
    #[error("invalid batch length {0}")]
    BadLength(i64),
    #[error("unsupported batch magic {0} (expected 2)")]
    BadMagic(i8),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("malformed batch: {0}")]
    Malformed(&'static str),
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u8),
}

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub raft_term: u64,
    pub raft_index: u64,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Bytes the whole batch occupies.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }
    /// Offset of the last record (base_offset - 1 for an empty batch).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    /// Offset the next batch starts at.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.records_count)
    }
    /// Compression codec id (0 = none).
    pub fn codec(&self) -> u8 {
        (self.attributes & ATTR_CODEC_MASK) as u8
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    /// Last sequence number of an idempotent batch.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    be_i64(b, at) as u64
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the length prefix: the total size of the batch starting at `buf`,
/// or `None` when fewer than 12 bytes are present.
pub fn peek_total_len(buf: &[u8]) -> Option<Result<usize, BatchError>> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, OFF_LENGTH);
    let total = i64::from(len) + LOG_OVERHEAD as i64;
    if total < HEADER_LEN as i64 || total > MAX_BATCH_LEN as i64 {
        return Some(Err(BatchError::BadLength(i64::from(len))));
    }
    Some(Ok(total as usize))
}

/// Decodes the fixed header without checking the CRC or the records.
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            need: HEADER_LEN,
            have: buf.len(),
        });
    }
    let batch_length = be_i32(buf, OFF_LENGTH);
    let total = i64::from(batch_length) + LOG_OVERHEAD as i64;
    if total < HEADER_LEN as i64 || total > MAX_BATCH_LEN as i64 {
        return Err(BatchError::BadLength(i64::from(batch_length)));
    }
    let magic = buf[OFF_MAGIC] as i8;
    if magic != MAGIC {
        return Err(BatchError::BadMagic(magic));
    }
    Ok(BatchHeader {
        base_offset: be_i64(buf, OFF_BASE_OFFSET),
        batch_length,
        raft_term: be_u64(buf, OFF_TERM),
        raft_index: be_u64(buf, OFF_INDEX),
        magic,
        crc: be_i32(buf, OFF_CRC) as u32,
        attributes: be_i16(buf, OFF_ATTRIBUTES),
        last_offset_delta: be_i32(buf, OFF_LAST_DELTA),
        base_timestamp: be_i64(buf, OFF_BASE_TS),
        max_timestamp: be_i64(buf, OFF_MAX_TS),
        producer_id: be_i64(buf, OFF_PRODUCER_ID),
        producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
        base_sequence: be_i32(buf, OFF_BASE_SEQ),
        records_count: be_i32(buf, OFF_COUNT),
    })
}

/// CRC-32C of the covered body of a complete batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks the header, the CRC and the framing of every record of the single
/// batch that is exactly `batch`.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(batch)?;
    if h.total_len() != batch.len() {
        return Err(BatchError::Truncated {
            need: h.total_len(),
            have: batch.len(),
        });
    }
    let computed = compute_crc(batch);
    if computed != h.crc {
        return Err(BatchError::Crc {
            stored: h.crc,
            computed,
        });
    }
    if h.codec() != 0 {
        return Err(BatchError::UnsupportedCompression(h.codec()));
    }
    if h.records_count < 0 || h.last_offset_delta != h.records_count - 1 {
        return Err(BatchError::Malformed(
            "record count and last offset delta disagree",
        ));
    }
    let mut it = RecordIter::new(Bytes::new(), &h, &batch[HEADER_LEN..]);
    let mut n = 0i32;
    while let Some(r) = it.next_raw() {
        let r = r?;
        if r.offset_delta != n {
            return Err(BatchError::Malformed(
                "record offset deltas are not sequential",
            ));
        }
        n += 1;
    }
    Ok(h)
}

/// Checks only what a reader of stored data needs: header, length and CRC.
pub fn verify_crc(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(batch)?;
    if h.total_len() > batch.len() {
        return Err(BatchError::Truncated {
            need: h.total_len(),
            have: batch.len(),
        });
    }
    let computed = compute_crc(&batch[..h.total_len()]);
    if computed != h.crc {
        return Err(BatchError::Crc {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

/// Writes the broker-stamped fields into a batch's header.
pub fn stamp(batch: &mut [u8], base_offset: i64, raft_term: u64, raft_index: u64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFF_TERM..OFF_TERM + 8].copy_from_slice(&raft_term.to_be_bytes());
    batch[OFF_INDEX..OFF_INDEX + 8].copy_from_slice(&raft_index.to_be_bytes());
}

/// Splits concatenated batches, validating each one fully. The slices share
/// `buf`'s memory.
pub fn split_validated(buf: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let total = match peek_total_len(rest) {
            None => {
                return Err(BatchError::Truncated {
                    need: LOG_OVERHEAD,
                    have: rest.len(),
                });
            }
            Some(t) => t?,
        };
        if total > rest.len() {
            return Err(BatchError::Truncated {
                need: total,
                have: rest.len(),
            });
        }
        let h = validate(&rest[..total])?;
        out.push((h, buf.slice(pos..pos + total)));
        pos += total;
    }
    if out.is_empty() {
        return Err(BatchError::Malformed("no batch"));
    }
    Ok(out)
}

/// Iterates the batches of a fetch response. Stops at a trailing partial
/// batch (a fetch may end mid-batch only if the broker capped it there).
pub struct BatchIter {
    buf: Bytes,
    pos: usize,
}

impl BatchIter {
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }
}

impl Iterator for BatchIter {
    type Item = Result<(BatchHeader, Bytes), BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        let total = match peek_total_len(rest)? {
            Ok(t) => t,
            Err(e) => {
                self.pos = self.buf.len();
                return Some(Err(e));
            }
        };
        if total > rest.len() {
            return None;
        }
        let slice = self.buf.slice(self.pos..self.pos + total);
        self.pos += total;
        match verify_crc(&slice) {
            Ok(h) => Some(Ok((h, slice))),
            Err(e) => {
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

/// One decoded record. Keys and values share the batch's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Positions of a record's parts within the records area.
struct RawRecord {
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    headers: Vec<(String, Option<(usize, usize)>)>,
}

/// Iterates the records of one batch.
pub struct RecordIter<'a> {
    owner: Bytes,
    /// Offset of `area` within `owner` (when owner is non-empty).
    base: usize,
    area: &'a [u8],
    pos: usize,
    left: i32,
    base_offset: i64,
    base_timestamp: i64,
}

impl<'a> RecordIter<'a> {
    fn new(owner: Bytes, h: &BatchHeader, area: &'a [u8]) -> Self {
        Self {
            owner,
            base: HEADER_LEN,
            area,
            pos: 0,
            left: h.records_count.max(0),
            base_offset: h.base_offset,
            base_timestamp: h.base_timestamp,
        }
    }

    fn span(
        cur: &mut &[u8],
        start: usize,
        total: usize,
    ) -> Result<Option<(usize, usize)>, BatchError> {
        let len = get_varint(cur)?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        if len > cur.len() {
            return Err(BatchError::Malformed("field longer than its record"));
        }
        let at = start + (total - cur.len());
        *cur = &cur[len..];
        Ok(Some((at, len)))
    }

    fn next_raw(&mut self) -> Option<Result<RawRecord, BatchError>> {
        if self.left == 0 {
            if self.pos != self.area.len() {
                self.pos = self.area.len();
                return Some(Err(BatchError::Malformed("bytes after the last record")));
            }
            return None;
        }
        self.left -= 1;
        let r = self.decode_one();
        if r.is_err() {
            self.left = 0;
            self.pos = self.area.len();
        }
        Some(r)
    }

    fn decode_one(&mut self) -> Result<RawRecord, BatchError> {
        let mut cur = &self.area[self.pos..];
        let len = get_varint(&mut cur)?;
        if len < 0 || len as usize > cur.len() {
            return Err(BatchError::Malformed("record length exceeds the batch"));
        }
        let len = len as usize;
        let start = self.pos + (self.area.len() - self.pos - cur.len());
        let mut body = &cur[..len];
        let total = len;
        if body.is_empty() {
            return Err(BatchError::Malformed("empty record"));
        }
        body = &body[1..]; // record attributes, unused
        let timestamp_delta = get_varlong(&mut body)?;
        let offset_delta = get_varint(&mut body)?;
        let key = Self::span(&mut body, start, total)?;
        let value = Self::span(&mut body, start, total)?;
        let n_headers = get_varint(&mut body)?;
        if n_headers < 0 || n_headers as usize > body.len() {
            return Err(BatchError::Malformed("bad header count"));
        }
        let mut headers = Vec::with_capacity(n_headers as usize);
        for _ in 0..n_headers {
            let k = Self::span(&mut body, start, total)?
                .ok_or(BatchError::Malformed("null header key"))?;
            let key = std::str::from_utf8(&self.area[k.0..k.0 + k.1])
                .map_err(|_| BatchError::Malformed("header key is not UTF-8"))?
                .to_owned();
            let v = Self::span(&mut body, start, total)?;
            headers.push((key, v));
        }
        if !body.is_empty() {
            return Err(BatchError::Malformed("bytes left inside a record"));
        }
        self.pos = start + total;
        Ok(RawRecord {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        })
    }

    fn cut(&self, span: Option<(usize, usize)>) -> Option<Bytes> {
        span.map(|(at, len)| self.owner.slice(self.base + at..self.base + at + len))
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<Record, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        let raw = match self.next_raw()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(Record {
            offset: self.base_offset + i64::from(raw.offset_delta),
            timestamp: self.base_timestamp.wrapping_add(raw.timestamp_delta),
            key: self.cut(raw.key),
            value: self.cut(raw.value),
            headers: raw
                .headers
                .into_iter()
                .map(|(k, v)| (k, self.cut(v)))
                .collect(),
        }))
    }
}

/// Decodes the records of one batch (as yielded by [`BatchIter`]).
pub fn records(batch: &Bytes) -> Result<RecordIter<'_>, BatchError> {
    let h = parse_header(batch)?;
    if h.total_len() > batch.len() {
        return Err(BatchError::Truncated {
            need: h.total_len(),
            have: batch.len(),
        });
    }
    if h.codec() != 0 {
        return Err(BatchError::UnsupportedCompression(h.codec()));
    }
    Ok(RecordIter::new(
        batch.clone(),
        &h,
        &batch[HEADER_LEN..h.total_len()],
    ))
}

/// Builds a batch record by record.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
}

/// Bytes a record adds to a batch (key/value lengths in bytes, `None` = null).
pub fn record_size(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<usize>,
    value: Option<usize>,
    headers: &[(&str, Option<&[u8]>)],
) -> usize {
    let body = record_body_len(timestamp_delta, offset_delta, key, value, headers);
    varlong_len(body as i64) + body
}

fn opt_len(l: Option<usize>) -> usize {
    match l {
        None => 1,
        Some(n) => varlong_len(n as i64) + n,
    }
}

fn record_body_len(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<usize>,
    value: Option<usize>,
    headers: &[(&str, Option<&[u8]>)],
) -> usize {
    let mut n = 1 + varlong_len(timestamp_delta) + varlong_len(i64::from(offset_delta));
    n += opt_len(key) + opt_len(value);
    n += varlong_len(headers.len() as i64);
    for (k, v) in headers {
        n += opt_len(Some(k.len())) + opt_len(v.map(<[u8]>::len));
    }
    n
}

/// Writes a zig-zag varint straight into the batch buffer.
fn put_var(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// A length-prefixed field (-1 = null).
fn put_field(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        None => put_var(out, -1),
        Some(b) => {
            put_var(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

impl BatchBuilder {
    /// A builder whose records are timestamped relative to `base_timestamp`.
    pub fn new(base_timestamp: i64) -> Self {
        Self::with_capacity(base_timestamp, 16 * 1024)
    }

    pub fn with_capacity(base_timestamp: i64, capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity.max(HEADER_LEN));
        buf.put_bytes(0, HEADER_LEN);
        Self {
            buf,
            count: 0,
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
        }
    }

    /// Marks the batch as idempotent: `(producer id, epoch, first sequence)`.
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
    }

    pub fn set_control(&mut self) {
        self.attributes |= ATTR_CONTROL;
    }

    /// Records so far.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Bytes so far, header included.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// The size the batch would have after pushing such a record.
    pub fn size_with(&self, timestamp: i64, key: Option<usize>, value: Option<usize>) -> usize {
        let td = timestamp.wrapping_sub(self.base_timestamp);
        self.buf.len() + record_size(td, self.count, key, value, &[])
    }

    /// Appends a record.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        let td = timestamp.wrapping_sub(self.base_timestamp);
        let body = record_body_len(
            td,
            self.count,
            key.map(<[u8]>::len),
            value.map(<[u8]>::len),
            headers,
        );
        self.buf.reserve(body + 10);
        put_var(&mut self.buf, body as i64);
        self.buf.put_u8(0);
        put_var(&mut self.buf, td);
        put_var(&mut self.buf, i64::from(self.count));
        put_field(&mut self.buf, key);
        put_field(&mut self.buf, value);
        put_var(&mut self.buf, headers.len() as i64);
        for (k, v) in headers {
            put_field(&mut self.buf, Some(k.as_bytes()));
            put_field(&mut self.buf, *v);
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// Fills in the header and checksum.
    pub fn finish(mut self) -> Bytes {
        let len = (self.buf.len() - LOG_OVERHEAD) as i32;
        let b = &mut self.buf[..];
        b[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[OFF_MAGIC] = MAGIC as u8;
        b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&self.attributes.to_be_bytes());
        b[OFF_LAST_DELTA..OFF_LAST_DELTA + 4].copy_from_slice(&(self.count - 1).to_be_bytes());
        b[OFF_BASE_TS..OFF_BASE_TS + 8].copy_from_slice(&self.base_timestamp.to_be_bytes());
        b[OFF_MAX_TS..OFF_MAX_TS + 8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        b[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2]
            .copy_from_slice(&self.producer_epoch.to_be_bytes());
        b[OFF_BASE_SEQ..OFF_BASE_SEQ + 4].copy_from_slice(&self.base_sequence.to_be_bytes());
        b[OFF_COUNT..OFF_COUNT + 4].copy_from_slice(&self.count.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(n: usize) -> Bytes {
        let mut b = BatchBuilder::new(1_000);
        for i in 0..n {
            let k = format!("k{i}");
            let v = vec![i as u8; i * 3];
            b.push(
                1_000 + i as i64,
                Some(k.as_bytes()),
                Some(&v),
                &[("h", Some(b"x"))],
            );
        }
        b.finish()
    }

    #[test]
    fn roundtrip_and_stamp() {
        let batch = build(10);
        let h = validate(&batch).unwrap();
        assert_eq!(h.records_count, 10);
        assert_eq!(h.max_timestamp, 1_009);
        let mut m = batch.to_vec();
        stamp(&mut m, 500, 7, 9);
        let m = Bytes::from(m);
        let h = validate(&m).unwrap();
        assert_eq!((h.base_offset, h.raft_term, h.raft_index), (500, 7, 9));
        let recs: Vec<_> = records(&m).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 10);
        assert_eq!(recs[3].offset, 503);
        assert_eq!(recs[3].key.as_deref(), Some(&b"k3"[..]));
        assert_eq!(recs[3].value.as_deref(), Some(&[3u8; 9][..]));
        assert_eq!(
            recs[3].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"x")))]
        );
    }

    #[test]
    fn size_estimate_is_exact() {
        let mut b = BatchBuilder::new(5);
        for i in 0..100 {
            let v = vec![0u8; i * 7];
            let want = b.size_with(5 + i as i64, Some(2), Some(v.len()));
            b.push(5 + i as i64, Some(b"ab"), Some(&v), &[]);
            assert_eq!(b.size(), want);
        }
    }

    #[test]
    fn crc_flip_detected() {
        let batch = build(3);
        let mut m = batch.to_vec();
        let last = m.len() - 1;
        m[last] ^= 1;
        assert!(matches!(validate(&m), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn lying_length_detected() {
        let batch = build(3);
        let mut m = batch.to_vec();
        m[8..12].copy_from_slice(&(i32::MAX).to_be_bytes());
        assert!(validate(&m).is_err());
        assert!(split_validated(&Bytes::from(m)).is_err());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let b = Bytes::from(bytes);
            let _ = split_validated(&b);
            for (_, batch) in BatchIter::new(b.clone()).flatten() {
                if let Ok(it) = records(&batch) {
                    for _ in it {}
                }
            }
        }

        #[test]
        fn mutated_batches_never_panic(n in 1usize..20, pos in any::<usize>(), byte in any::<u8>()) {
            let mut m = build(n).to_vec();
            let p = pos % m.len();
            m[p] = byte;
            // Fix the CRC so mutations reach the record decoder.
            let crc = compute_crc(&m);
            if !(OFF_CRC..CRC_START).contains(&p) {
                m[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
            }
            let b = Bytes::from(m);
            let _ = validate(&b);
            if let Ok(it) = records(&b) {
                for _ in it {}
            }
        }

        #[test]
        fn any_records_roundtrip(recs in proptest::collection::vec(
            (any::<i32>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))), 1..30)) {
            let mut b = BatchBuilder::new(0);
            for (ts, k, v) in &recs {
                b.push(i64::from(*ts), k.as_deref(), v.as_deref(), &[]);
            }
            let batch = b.finish();
            prop_assert!(validate(&batch).is_ok());
            let got: Vec<_> = records(&batch).unwrap().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got.len(), recs.len());
            for (g, (ts, k, v)) in got.iter().zip(&recs) {
                prop_assert_eq!(g.timestamp, i64::from(*ts));
                prop_assert_eq!(g.key.as_deref(), k.as_deref());
                prop_assert_eq!(g.value.as_deref(), v.as_deref());
            }
        }
    }
}
