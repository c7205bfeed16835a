//! Idempotent-producer bookkeeping of one partition: per producer id, the
//! current epoch and the last few appended batches, so that a retried batch
//! is answered with its original offsets instead of being appended twice,
//! and a gap in sequences is refused. Rebuilt from batch headers at start,
//! or read back from the snapshot a clean stop wrote ([`ProducerTable::encode`]),
//! which names the log end it describes.

use std::collections::{HashMap, VecDeque};

use strata_proto::batch::BatchHeader;

use crate::error::BrokerError;

/// Batches remembered per producer (Kafka keeps five as well).
const RECENT: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cached {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug)]
struct Entry {
    epoch: i16,
    recent: VecDeque<Cached>,
}

/// What to do with an incoming batch.
#[derive(Debug, PartialEq, Eq)]
pub enum SeqCheck {
    Append,
    /// Already appended at these offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

#[derive(Debug, Default)]
pub struct ProducerTable {
    map: HashMap<i64, Entry>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

impl ProducerTable {
    pub fn check(&self, h: &BatchHeader) -> Result<SeqCheck, BrokerError> {
        if h.producer_id < 0 {
            return Ok(SeqCheck::Append);
        }
        let Some(e) = self.map.get(&h.producer_id) else {
            // Unknown producer (new, or its state aged out with the log).
            return Ok(SeqCheck::Append);
        };
        if h.producer_epoch < e.epoch {
            return Err(BrokerError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                got: h.producer_epoch,
                current: e.epoch,
            });
        }
        if h.producer_epoch > e.epoch {
            if h.base_sequence != 0 {
                return Err(BrokerError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(SeqCheck::Append);
        }
        if let Some(c) = e
            .recent
            .iter()
            .find(|c| c.first_seq == h.base_sequence && c.last_seq == h.last_sequence())
        {
            return Ok(SeqCheck::Duplicate {
                base_offset: c.base_offset,
                last_offset: c.last_offset,
            });
        }
        let expected = e.recent.back().map_or(0, |c| next_seq(c.last_seq));
        if h.base_sequence != expected {
            return Err(BrokerError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            });
        }
        Ok(SeqCheck::Append)
    }

    /// Records an appended (offset-stamped) batch.
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.records_count <= 0 {
            return;
        }
        let e = self.map.entry(h.producer_id).or_insert_with(|| Entry {
            epoch: h.producer_epoch,
            recent: VecDeque::new(),
        });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.recent.clear();
        }
        // Recording is idempotent: the leader records at proposal time and
        // sees the batch again when it reaches the log.
        if e.recent
            .iter()
            .any(|c| c.base_offset == h.base_offset && c.first_seq == h.base_sequence)
        {
            return;
        }
        e.recent.push_back(Cached {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while e.recent.len() > RECENT {
            e.recent.pop_front();
        }
    }

    /// Forgets batches at or after `offset` (a truncated log suffix).
    pub fn truncate_from(&mut self, offset: i64) {
        for e in self.map.values_mut() {
            e.recent.retain(|c| c.base_offset < offset);
        }
        self.map.retain(|_, e| !e.recent.is_empty());
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The table as of a log ending at `end` (next offset, last Raft term
    /// and index): by Raft's log matching, a log with the same last entry
    /// holds the same batches, so [`decode`](Self::decode) checks it.
    pub fn encode(&self, end: (i64, u64, u64)) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.map.len() * (15 + RECENT * 24));
        out.extend_from_slice(&end.0.to_be_bytes());
        out.extend_from_slice(&end.1.to_be_bytes());
        out.extend_from_slice(&end.2.to_be_bytes());
        out.extend_from_slice(&(self.map.len() as u32).to_be_bytes());
        let mut pids: Vec<&i64> = self.map.keys().collect();
        pids.sort_unstable();
        for pid in pids {
            let e = &self.map[pid];
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.push(e.recent.len() as u8);
            for c in &e.recent {
                out.extend_from_slice(&c.first_seq.to_be_bytes());
                out.extend_from_slice(&c.last_seq.to_be_bytes());
                out.extend_from_slice(&c.base_offset.to_be_bytes());
                out.extend_from_slice(&c.last_offset.to_be_bytes());
            }
        }
        out
    }

    /// A table [`encode`](Self::encode)d for a log ending at `end`; `None`
    /// when it was written for another log end or is malformed.
    pub fn decode(buf: &[u8], end: (i64, u64, u64)) -> Option<Self> {
        Self::decode_stamped(buf).and_then(|(t, at)| (at == end).then_some(t))
    }

    /// A table and the log end `(next offset, last Raft term, last Raft
    /// index)` it was encoded at; `None` when malformed.
    pub fn decode_stamped(buf: &[u8]) -> Option<(Self, (i64, u64, u64))> {
        let mut r = Reader(buf);
        let at = (r.i64()?, r.u64()?, r.u64()?);
        let n = r.u32()? as usize;
        let mut map = HashMap::with_capacity(n.min(buf.len() / 15));
        for _ in 0..n {
            let pid = r.i64()?;
            let epoch = i16::from_be_bytes(r.take::<2>()?);
            let count = usize::from(r.take::<1>()?[0]);
            if count == 0 || count > RECENT {
                return None;
            }
            let mut recent = VecDeque::with_capacity(count);
            for _ in 0..count {
                recent.push_back(Cached {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            map.insert(pid, Entry { epoch, recent });
        }
        r.0.is_empty().then_some((Self { map }, at))
    }
}

/// Big-endian fields off the front of a snapshot.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            raft_term: 0,
            raft_index: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: n - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn snapshot_round_trips_only_for_its_log_end() {
        let mut t = ProducerTable::default();
        for i in 0..7 {
            t.record(&h(7, 0, i * 5, 5, 100 + i64::from(i) * 5));
        }
        t.record(&h(9, 3, 0, 1, 200));
        let end = (201, 4, 57);
        let buf = t.encode(end);
        let back = ProducerTable::decode(&buf, end).expect("decodes");
        assert_eq!(back.encode(end), buf);
        assert_eq!(
            back.check(&h(7, 0, 30, 5, 0)).unwrap(),
            SeqCheck::Duplicate {
                base_offset: 130,
                last_offset: 134
            }
        );
        assert!(
            ProducerTable::decode(&buf, (201, 5, 57)).is_none(),
            "another term"
        );
        assert!(
            ProducerTable::decode(&buf, (200, 4, 57)).is_none(),
            "another end"
        );
        for cut in 0..buf.len() {
            assert!(
                ProducerTable::decode(&buf[..cut], end).is_none(),
                "cut at {cut}"
            );
        }
        let mut long = buf.clone();
        long.push(0);
        assert!(
            ProducerTable::decode(&long, end).is_none(),
            "trailing bytes"
        );
    }

    #[test]
    fn duplicates_and_gaps() {
        let mut t = ProducerTable::default();
        assert_eq!(t.check(&h(7, 0, 0, 5, 0)).unwrap(), SeqCheck::Append);
        t.record(&h(7, 0, 0, 5, 100));
        assert_eq!(t.check(&h(7, 0, 5, 5, 0)).unwrap(), SeqCheck::Append);
        t.record(&h(7, 0, 5, 5, 105));
        assert_eq!(
            t.check(&h(7, 0, 0, 5, 0)).unwrap(),
            SeqCheck::Duplicate {
                base_offset: 100,
                last_offset: 104
            }
        );
        assert!(matches!(
            t.check(&h(7, 0, 11, 5, 0)),
            Err(BrokerError::OutOfOrderSequence { expected: 10, .. })
        ));
        assert!(matches!(
            t.check(&h(7, -1, 10, 5, 0)),
            Err(BrokerError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(t.check(&h(7, 1, 0, 1, 0)).unwrap(), SeqCheck::Append);
        assert_eq!(t.check(&h(-1, 0, 0, 1, 0)).unwrap(), SeqCheck::Append);
    }
}
