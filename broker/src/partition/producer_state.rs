//! Idempotent-producer bookkeeping of one partition: per producer id, the
//! current epoch and the last few appended batches, so that a retried batch
//! is answered with its original offsets instead of being appended twice,
//! and a gap in sequences is refused. Rebuilt from batch headers at start.

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
