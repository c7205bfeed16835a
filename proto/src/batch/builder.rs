//! Writing batches: `BatchBuilder` frames records one by one behind a
//! reserved header and fills in the header and CRC when finished (a
//! compressed batch compresses its records then); `record_size` tells
//! producers ahead of time what a record will cost.

use bytes::{BufMut, Bytes, BytesMut};

use super::compression::{Codec, compress_into};
use super::{
    ATTR_CONTROL, CRC_START, HEADER_LEN, LOG_OVERHEAD, MAGIC, OFF_ATTRIBUTES, OFF_BASE_SEQ,
    OFF_BASE_TS, OFF_COUNT, OFF_CRC, OFF_LAST_DELTA, OFF_LENGTH, OFF_MAGIC, OFF_MAX_TS,
    OFF_PRODUCER_EPOCH, OFF_PRODUCER_ID,
};
use crate::varint::varlong_len;

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
    codec: Codec,
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
            codec: Codec::None,
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

    /// Compresses the records with `codec` when finished (`None`, the
    /// default, stores them as framed).
    pub fn set_compression(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// The codec the batch will be compressed with.
    pub fn compression(&self) -> Codec {
        self.codec
    }

    /// Records so far.
    pub fn count(&self) -> i32 {
        self.count
    }

    /// Bytes so far, header included. For a compressed batch this is the
    /// uncompressed size, an upper bound of the finished batch but for the
    /// few bytes a codec adds to incompressible records.
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

    /// Fills in the header and checksum. A compressed batch gets its records
    /// compressed first; should the codec fail (it cannot in practice), the
    /// batch is stored uncompressed instead.
    pub fn finish(mut self) -> Bytes {
        let mut buf = std::mem::take(&mut self.buf);
        if self.codec != Codec::None {
            let mut out = Vec::with_capacity(buf.len() / 2 + HEADER_LEN + 64);
            out.resize(HEADER_LEN, 0);
            if compress_into(self.codec, &buf[HEADER_LEN..], &mut out).is_ok() {
                let attributes = self.attributes | i16::from(self.codec.id());
                self.write_header(&mut out, attributes);
                return Bytes::from(out);
            }
        }
        self.write_header(&mut buf, self.attributes);
        buf.freeze()
    }

    /// Writes the header and CRC of the complete batch `b`.
    fn write_header(&self, b: &mut [u8], attributes: i16) {
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
        b[OFF_MAGIC] = MAGIC as u8;
        b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
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
    }
}
