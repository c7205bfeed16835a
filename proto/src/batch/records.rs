//! Reading batches back: walking the batches of a buffer (a fetch response
//! or a stretch of a segment) and decoding the varint-framed records of one
//! batch. Keys, values and header values are zero-copy slices of the batch,
//! or of the decompressed records of a compressed batch.

use bytes::Bytes;

use super::compression::{Codec, MAX_DECOMPRESSED, decompress};
use super::{BatchError, BatchHeader, HEADER_LEN, parse_header, peek_total_len, verify_crc};
use crate::varint::{get_varint, get_varlong};

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

/// One decoded record. Keys and values share the batch's memory (or the
/// decompressed records' buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Positions of a record's parts within the records area.
pub(super) struct RawRecord {
    pub(super) offset_delta: i32,
    pub(super) timestamp_delta: i64,
    pub(super) key: Option<(usize, usize)>,
    pub(super) value: Option<(usize, usize)>,
    headers: Vec<(String, Option<(usize, usize)>)>,
}

/// Walks the framing of a records area: where the next record starts and
/// how many records the header still promises.
pub(super) struct Cursor {
    pos: usize,
    left: i32,
}

impl Cursor {
    pub(super) fn new(records_count: i32) -> Self {
        Self {
            pos: 0,
            left: records_count.max(0),
        }
    }

    /// Where the next record starts (after the last one: the area's end).
    pub(super) fn pos(&self) -> usize {
        self.pos
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

    /// The next record of `area` (always the same area), `None` after the
    /// last one; after an error, `None`.
    pub(super) fn next_raw(&mut self, area: &[u8]) -> Option<Result<RawRecord, BatchError>> {
        if self.left == 0 {
            if self.pos != area.len() {
                self.pos = area.len();
                return Some(Err(BatchError::Malformed("bytes after the last record")));
            }
            return None;
        }
        self.left -= 1;
        let r = self.decode_one(area);
        if r.is_err() {
            self.left = 0;
            self.pos = area.len();
        }
        Some(r)
    }

    fn decode_one(&mut self, area: &[u8]) -> Result<RawRecord, BatchError> {
        let mut cur = &area[self.pos..];
        let len = get_varint(&mut cur)?;
        if len < 0 || len as usize > cur.len() {
            return Err(BatchError::Malformed("record length exceeds the batch"));
        }
        let len = len as usize;
        let start = self.pos + (area.len() - self.pos - cur.len());
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
            let key = std::str::from_utf8(&area[k.0..k.0 + k.1])
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
}

/// Checks the framing of every record of a (decompressed) records area:
/// as many records as the header counts, nothing after them, offset deltas
/// 0, 1, 2, ...
pub(super) fn check_framing(h: &BatchHeader, area: &[u8]) -> Result<(), BatchError> {
    let mut cursor = Cursor::new(h.records_count);
    let mut n = 0i32;
    while let Some(r) = cursor.next_raw(area) {
        if r?.offset_delta != n {
            return Err(BatchError::Malformed(
                "record offset deltas are not sequential",
            ));
        }
        n += 1;
    }
    Ok(())
}

/// Iterates the records of one batch.
pub struct RecordIter {
    /// The records area: a slice of the batch, or the decompressed records
    /// of a compressed batch. Record fields are slices of it.
    area: Bytes,
    cursor: Cursor,
    base_offset: i64,
    base_timestamp: i64,
}

impl RecordIter {
    fn new(area: Bytes, h: &BatchHeader) -> Self {
        Self {
            area,
            cursor: Cursor::new(h.records_count),
            base_offset: h.base_offset,
            base_timestamp: h.base_timestamp,
        }
    }

    fn cut(&self, span: Option<(usize, usize)>) -> Option<Bytes> {
        span.map(|(at, len)| self.area.slice(at..at + len))
    }
}

impl Iterator for RecordIter {
    type Item = Result<Record, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        let raw = match self.cursor.next_raw(&self.area)? {
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

/// Decodes the records of one batch (as yielded by [`BatchIter`]). The
/// records of an uncompressed batch share its memory; a compressed batch is
/// decompressed here (at most [`MAX_DECOMPRESSED`] bytes) into one buffer
/// its records share.
pub fn records(batch: &Bytes) -> Result<RecordIter, BatchError> {
    let h = parse_header(batch)?;
    if h.total_len() > batch.len() {
        return Err(BatchError::Truncated {
            need: h.total_len(),
            have: batch.len(),
        });
    }
    let area = match h.compression()? {
        Codec::None => batch.slice(HEADER_LEN..h.total_len()),
        codec => Bytes::from(decompress(
            codec,
            &batch[HEADER_LEN..h.total_len()],
            MAX_DECOMPRESSED,
        )?),
    };
    Ok(RecordIter::new(area, &h))
}
