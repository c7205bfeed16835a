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
//! When the codec bits are set, the bytes after the header are the
//! compressed records, exactly as in Kafka (see `compression`);
//! `records_count` still counts the records, and the CRC covers the bytes
//! as stored (compressed). Batches are stored as sent; only log compaction
//! rewrites one (`retain`), keeping its header and offset range.
//!
//! A batch spans offsets `base_offset ..= base_offset + last_offset_delta`.
//! As produced, it holds a record at each of them; after compaction some
//! (or all) of them are gone, so `records_count` may be smaller.
//!
//! Everything here is pure: no I/O, and decoders never panic on any input.
//!
//! This module owns the header layout and the checks on whole batches
//! (parse, validate, verify, stamp, split); decoding records lives in
//! `records`, building batches in `builder`, the codecs in `compression`.
//! All are re-exported here.

mod builder;
mod compression;
#[cfg(test)]
mod compression_tests;
pub mod kafka;
mod records;
mod retain;
#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use builder::{BatchBuilder, record_size};
pub use compression::{Codec, MAX_DECOMPRESSED, compress, decompress};
pub use records::{BatchIter, Record, RecordIter, records};
pub use retain::{RecordView, retain};

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
pub(crate) const ATTR_CODEC_MASK: i16 = 0x7;

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
    #[error("{codec} records do not decompress: {why}")]
    Decompress { codec: Codec, why: String },
    #[error("{codec} records decompress to more than {max} bytes")]
    DecompressedTooLarge { codec: Codec, max: usize },
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
    /// Offset the next batch starts at: after the last offset the batch
    /// spans. A compacted batch spans more offsets than it holds records.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta) + 1
    }
    /// Compression codec id (0 = none).
    pub fn codec(&self) -> u8 {
        (self.attributes & ATTR_CODEC_MASK) as u8
    }
    /// The compression codec (ids 5-7 are unknown).
    pub fn compression(&self) -> Result<Codec, BatchError> {
        Codec::try_from(self.codec())
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
/// batch that is exactly `batch`. The records of a compressed batch are
/// decompressed (at most [`MAX_DECOMPRESSED`] bytes) to be checked, then
/// dropped.
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
    let codec = h.compression()?;
    if h.records_count < 0 || h.last_offset_delta != h.records_count - 1 {
        return Err(BatchError::Malformed(
            "record count and last offset delta disagree",
        ));
    }
    let stored = &batch[HEADER_LEN..];
    match codec {
        Codec::None => records::check_framing(&h, stored)?,
        codec => records::check_framing(&h, &decompress(codec, stored, MAX_DECOMPRESSED)?)?,
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
