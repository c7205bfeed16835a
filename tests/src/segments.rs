//! Reads a partition's record batches straight from a broker's segment files
//! (`<data_dir>/<topic>-<partition>/NNNNNNNNNNNNNNNNNNNN.log`), so that tests
//! can compare replicas byte for byte. Works on stopped and running brokers:
//! the active segment is preallocated, and parsing stops at its zero-filled
//! tail, at a torn batch, or where offsets stop moving forward.

use std::path::Path;

use strata_proto::batch::{self, BatchHeader, HEADER_LEN};

/// Every batch stored for `topic`/`partition` under `data_dir`, in segment
/// order, each as its exact bytes. Empty when the partition directory does
/// not exist.
pub fn read_partition_batches(data_dir: &Path, topic: &str, partition: u32) -> Vec<Vec<u8>> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut segments: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    // Zero-padded base offsets: name order is offset order.
    segments.sort();
    let mut out = Vec::new();
    for seg in segments {
        let Ok(bytes) = std::fs::read(&seg) else {
            continue;
        };
        out.extend(split_batches(&bytes));
    }
    out
}

/// Splits one segment file into its batches.
fn split_batches(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut next_offset = i64::MIN;
    while bytes.len() - pos >= HEADER_LEN {
        let rest = &bytes[pos..];
        // The zero-filled tail of a preallocated segment.
        if rest[..batch::LOG_OVERHEAD].iter().all(|b| *b == 0) {
            break;
        }
        let Ok(h) = batch::parse_header(rest) else {
            break;
        };
        let total = h.total_len();
        if total > rest.len() || h.base_offset < next_offset {
            break;
        }
        next_offset = h.next_offset().max(h.last_offset() + 1);
        out.push(rest[..total].to_vec());
        pos += total;
    }
    out
}

/// The header fields worth printing when two replicas differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub base_offset: i64,
    pub last_offset: i64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub len: usize,
    pub crc: u32,
}

/// Header summary of a batch read by [`read_partition_batches`].
pub fn summarize(batch: &[u8]) -> Option<BatchSummary> {
    let h: BatchHeader = batch::parse_header(batch).ok()?;
    Some(BatchSummary {
        base_offset: h.base_offset,
        last_offset: h.last_offset(),
        raft_term: h.raft_term,
        raft_index: h.raft_index,
        len: batch.len(),
        crc: h.crc,
    })
}

#[cfg(test)]
mod tests {
    use strata_proto::batch::{BatchBuilder, stamp};

    use super::*;

    fn stamped(base: i64, n: usize, term: u64) -> Vec<u8> {
        let mut b = BatchBuilder::new(0);
        for i in 0..n {
            b.push(0, None, Some(format!("v{i}").as_bytes()), &[]);
        }
        let mut bytes = b.finish().to_vec();
        stamp(&mut bytes, base, term, base as u64 + 1);
        bytes
    }

    #[test]
    fn reads_segments_in_order_and_stops_at_the_zero_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t-0");
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (stamped(0, 3, 1), stamped(3, 2, 1), stamped(5, 4, 2));
        std::fs::write(
            dir.join("00000000000000000000.log"),
            [a.clone(), b.clone()].concat(),
        )
        .unwrap();
        let mut active = c.clone();
        active.resize(active.len() + 4096, 0);
        std::fs::write(dir.join("00000000000000000005.log"), active).unwrap();
        std::fs::write(dir.join("00000000000000000005.index"), [1u8; 64]).unwrap();

        let got = read_partition_batches(tmp.path(), "t", 0);
        assert_eq!(got, vec![a, b, c]);
        let s = summarize(&got[2]).unwrap();
        assert_eq!((s.base_offset, s.last_offset, s.raft_term), (5, 8, 2));
        assert!(read_partition_batches(tmp.path(), "t", 1).is_empty());
    }
}
