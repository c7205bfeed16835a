//! Per-partition record accumulation: records are appended straight into an
//! open [`BatchBuilder`] (the only copy of a value the producer makes) until
//! the next record would push the batch past `batch_size`; then the batch is
//! closed and handed to the sender. One record larger than `batch_size`
//! travels alone in its own batch. With compression the builder compresses
//! the records when the batch is finished; `batch_size` bounds the records
//! before compression.
//!
//! Pure bookkeeping: no I/O, no locking (the producer wraps each
//! accumulator in a mutex), so batch boundaries are unit-testable.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use strata_proto::batch::{BatchBuilder, Codec, HEADER_LEN, record_size};

use super::future::{BatchShared, RecordFuture};

/// A batch under construction (the codec's builder, which has no `Debug`).
pub(crate) struct Builder(pub BatchBuilder);

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("records", &self.0.count())
            .field("bytes", &self.0.size())
            .finish()
    }
}

/// A closed batch waiting for the sender. The builder is left unfinished so
/// that the sender can stamp the idempotence sequence when it first sends.
#[derive(Debug)]
pub(crate) struct ClosedBatch {
    pub builder: Builder,
    pub shared: Arc<BatchShared>,
    pub count: u32,
    /// Buffer-memory permits to give back once the batch is done.
    pub reserved: usize,
    pub created: Instant,
    /// The partition's count of batches at the sender, which this batch is
    /// part of from dispatch to completion.
    pub busy: Option<Arc<AtomicUsize>>,
}

#[derive(Debug)]
struct OpenBatch {
    builder: Builder,
    shared: Arc<BatchShared>,
    base_timestamp: i64,
    count: u32,
    reserved: usize,
    created: Instant,
    id: u64,
}

impl OpenBatch {
    fn close(self) -> ClosedBatch {
        ClosedBatch {
            builder: self.builder,
            shared: self.shared,
            count: self.count,
            reserved: self.reserved,
            created: self.created,
            busy: None,
        }
    }
}

/// What one append did.
#[derive(Debug)]
pub(crate) struct Appended {
    pub future: RecordFuture,
    /// Batches closed by this append (the previous one when the record did
    /// not fit, and the new one when the record alone fills it), in order.
    pub closed: Vec<ClosedBatch>,
    /// Id of the batch this append opened, for the linger timer.
    pub opened: Option<u64>,
}

/// One record to append (borrowed; copied into the batch).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRef<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Buffer-memory permits this record holds.
    pub reserved: usize,
}

/// The open batch of one partition.
#[derive(Debug)]
pub(crate) struct PartitionAccumulator {
    topic: Arc<str>,
    partition: u32,
    batch_size: usize,
    codec: Codec,
    open: Option<OpenBatch>,
    next_id: u64,
}

impl PartitionAccumulator {
    pub fn new(topic: Arc<str>, partition: u32, batch_size: usize) -> Self {
        Self {
            topic,
            partition,
            batch_size: batch_size.max(HEADER_LEN + 1),
            codec: Codec::None,
            open: None,
            next_id: 0,
        }
    }

    /// Batches opened from now on compress their records with `codec`.
    pub fn with_compression(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    fn open_batch(&mut self, timestamp: i64, first_record: usize) -> OpenBatch {
        self.next_id += 1;
        // Room for the whole batch up front: growing a buffer would copy it.
        let cap = (HEADER_LEN + first_record).max(self.batch_size) + 16;
        let mut builder = BatchBuilder::with_capacity(timestamp, cap);
        builder.set_compression(self.codec);
        OpenBatch {
            builder: Builder(builder),
            shared: BatchShared::new(Arc::clone(&self.topic), self.partition),
            base_timestamp: timestamp,
            count: 0,
            reserved: 0,
            created: Instant::now(),
            id: self.next_id,
        }
    }

    /// Appends a record, closing batches as they fill.
    pub fn append(&mut self, r: RecordRef<'_>) -> Appended {
        let mut closed = Vec::new();
        let mut opened = None;
        if let Some(open) = &self.open {
            let td = r.timestamp.wrapping_sub(open.base_timestamp);
            let rec = record_size(
                td,
                open.count as i32,
                r.key.map(<[u8]>::len),
                r.value.map(<[u8]>::len),
                r.headers,
            );
            let full = open.builder.0.size() + rec > self.batch_size;
            // Timestamp deltas must stay small enough for sane varints.
            let far = !(-(1i64 << 40)..(1i64 << 40)).contains(&td);
            if (full || far)
                && let Some(open) = self.open.take()
            {
                closed.push(open.close());
            }
        }
        let batch = match self.open.take() {
            Some(b) => b,
            None => {
                let rec = record_size(
                    0,
                    0,
                    r.key.map(<[u8]>::len),
                    r.value.map(<[u8]>::len),
                    r.headers,
                );
                let b = self.open_batch(r.timestamp, rec);
                opened = Some(b.id);
                b
            }
        };
        let mut batch = batch;
        batch.builder.0.push(r.timestamp, r.key, r.value, r.headers);
        let future = RecordFuture::new(Arc::clone(&batch.shared), batch.count, r.timestamp);
        batch.count += 1;
        batch.reserved += r.reserved;
        if batch.builder.0.size() >= self.batch_size {
            closed.push(batch.close());
        } else {
            self.open = Some(batch);
        }
        Appended {
            future,
            closed,
            opened,
        }
    }

    /// Closes the open batch if it is still batch `id` (linger expiry).
    pub fn close_if(&mut self, id: u64) -> Option<ClosedBatch> {
        if self.open.as_ref().is_some_and(|b| b.id == id) {
            self.open.take().map(OpenBatch::close)
        } else {
            None
        }
    }

    /// Closes the open batch, if any (flush).
    pub fn close(&mut self) -> Option<ClosedBatch> {
        self.open.take().map(OpenBatch::close)
    }

    #[cfg(test)]
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::batch::{parse_header, records};

    fn rec(value: &[u8]) -> RecordRef<'_> {
        RecordRef {
            timestamp: 1_000,
            key: None,
            value: Some(value),
            headers: &[],
            reserved: value.len(),
        }
    }

    #[test]
    fn batches_close_at_batch_size() {
        let value = [7u8; 100];
        // Header + 10 records of (100 value bytes + 7 framing bytes) fits.
        let one = record_size(0, 0, None, Some(100), &[]);
        let size = HEADER_LEN + 10 * one;
        let mut acc = PartitionAccumulator::new(Arc::from("t"), 0, size);
        let mut closed = Vec::new();
        let mut opened = 0;
        for _ in 0..25 {
            let a = acc.append(rec(&value));
            opened += usize::from(a.opened.is_some());
            closed.extend(a.closed);
        }
        // Exactly full batches close as soon as they are full.
        assert_eq!(closed.len(), 2);
        assert_eq!(opened, 3);
        for b in closed {
            assert_eq!(b.count, 10);
            assert_eq!(b.reserved, 1000);
            let bytes = b.builder.0.finish();
            assert!(bytes.len() <= size);
            let h = parse_header(&bytes).expect("header");
            assert_eq!(h.records_count, 10);
        }
        let rest = acc.close().expect("open batch");
        assert_eq!(rest.count, 5);
        assert!(acc.close().is_none());
    }

    #[test]
    fn record_that_does_not_fit_starts_a_new_batch() {
        let mut acc = PartitionAccumulator::new(Arc::from("t"), 1, 1_000);
        let a = acc.append(rec(&[1u8; 400]));
        assert!(a.closed.is_empty());
        let a = acc.append(rec(&[2u8; 400]));
        assert!(a.closed.is_empty());
        // 73 + 2 * ~405 + 405 > 1000: the third record opens batch 2.
        let a = acc.append(rec(&[3u8; 400]));
        assert_eq!(a.closed.len(), 1);
        assert!(a.opened.is_some());
        assert_eq!(a.closed[0].count, 2);
        // An oversized record travels alone and closes at once.
        let a = acc.append(rec(&[4u8; 5_000]));
        assert_eq!(a.closed.len(), 2);
        assert_eq!(a.closed[0].count, 1);
        assert_eq!(a.closed[1].count, 1);
        assert!(!acc.has_open());
    }

    #[test]
    fn compressed_batches_close_at_the_uncompressed_batch_size() {
        let value = [7u8; 100];
        let one = record_size(0, 0, None, Some(100), &[]);
        let size = HEADER_LEN + 10 * one;
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let mut acc =
                PartitionAccumulator::new(Arc::from("t"), 0, size).with_compression(codec);
            let closed: Vec<_> = (0..10)
                .flat_map(|_| acc.append(rec(&value)).closed)
                .collect();
            assert_eq!(closed.len(), 1, "{codec}");
            let b = closed.into_iter().next().expect("closed batch");
            assert_eq!(b.count, 10);
            let bytes = b.builder.0.finish();
            let h = strata_proto::batch::validate(&bytes).expect("valid");
            assert_eq!(h.compression(), Ok(codec));
            assert!(bytes.len() < size / 4, "{codec}: {} bytes", bytes.len());
            let recs: Vec<_> = records(&bytes)
                .expect("records")
                .collect::<Result<_, _>>()
                .expect("decode");
            assert_eq!(recs.len(), 10);
            assert!(recs.iter().all(|r| r.value.as_deref() == Some(&value[..])));
        }
    }

    #[test]
    fn linger_closes_only_the_same_batch() {
        let mut acc = PartitionAccumulator::new(Arc::from("t"), 0, 1 << 20);
        let id = acc.append(rec(b"x")).opened.expect("opened");
        assert!(acc.close_if(id + 1).is_none());
        let b = acc.close_if(id).expect("closed");
        assert_eq!(b.count, 1);
        let id2 = acc.append(rec(b"y")).opened.expect("opened");
        assert_ne!(id, id2);
        assert!(acc.close_if(id).is_none());
    }

    #[test]
    fn futures_index_records_within_the_batch() {
        let mut acc = PartitionAccumulator::new(Arc::from("t"), 2, 1 << 20);
        let futs: Vec<_> = (0..3)
            .map(|i| {
                acc.append(RecordRef {
                    timestamp: 5 + i,
                    key: Some(b"k"),
                    value: Some(b"v"),
                    headers: &[("h", Some(b"1"))],
                    reserved: 3,
                })
                .future
            })
            .collect();
        let b = acc.close().expect("batch");
        let bytes = b.builder.0.finish();
        let recs: Vec<_> = records(&bytes)
            .expect("records")
            .collect::<Result<_, _>>()
            .expect("decode");
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].timestamp, 7);
        b.shared.complete(Ok(40));
        let offsets: Vec<i64> = futs
            .iter()
            .filter_map(|f| f.try_result().and_then(|r| r.ok()).map(|m| m.offset))
            .collect();
        assert_eq!(offsets, vec![40, 41, 42]);
    }
}
