//! What is remote: per-partition manifests (kept in the controller's
//! replicated state and mirrored as `manifest.json` next to the objects)
//! and the index uploaded with every remote segment.

use serde::{Deserialize, Serialize};

/// One uploaded segment: the batches of offsets `[base, next)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteSegment {
    pub base: i64,
    pub next: i64,
    /// Bytes of the data object.
    pub size: u64,
    /// Newest record timestamp in the segment.
    pub max_ts: i64,
    /// Makes the object keys of every upload attempt distinct.
    pub upload_id: String,
}

/// The remote part of one partition: contiguous segments; offsets below
/// `start` are deleted even where a segment still holds them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteManifest {
    pub start: i64,
    pub segments: Vec<RemoteSegment>,
    /// Compacted topics: the remote log below this offset was cleaned by a
    /// remote pass; its dirty part starts here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleaned_to: i64,
    /// When the first tombstone a remote pass kept may be removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstones_expire_ms: Option<i64>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A remote compaction pass's result: runs of segments, each replaced by
/// one cleaned segment over the same offsets, and where the dirty part now
/// starts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteReplacement {
    /// Each run: the upload ids of adjacent segments, and what replaces them.
    pub runs: Vec<(Vec<String>, RemoteSegment)>,
    pub cleaned_to: i64,
    pub tombstones_expire_ms: Option<i64>,
}

impl RemoteManifest {
    /// The offset after the last remote segment (`start` when empty).
    pub fn end(&self) -> i64 {
        self.segments.last().map_or(self.start, |s| s.next)
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Whether remote storage holds offset `o`.
    pub fn covers(&self, o: i64) -> bool {
        o >= self.start && o < self.end()
    }

    /// The segment holding offset `o`.
    pub fn segment_for(&self, o: i64) -> Option<&RemoteSegment> {
        let i = self.segments.partition_point(|s| s.next <= o);
        self.segments.get(i).filter(|s| s.base <= o)
    }

    /// Appends `seg` if it continues the manifest; false (and no change)
    /// otherwise, e.g. when another upload of the same range won.
    pub fn append(&mut self, seg: RemoteSegment) -> bool {
        if seg.next <= seg.base {
            return false;
        }
        if self.segments.is_empty() {
            if seg.next <= self.start {
                return false;
            }
            self.start = self.start.max(seg.base);
            self.segments.push(seg);
            return true;
        }
        if seg.base != self.end() {
            return false;
        }
        self.segments.push(seg);
        true
    }

    /// Moves the start to `start` (never back) and drops the segments
    /// entirely below it; returns them.
    pub fn trim(&mut self, start: i64) -> Vec<RemoteSegment> {
        if start <= self.start {
            return Vec::new();
        }
        self.start = start;
        let keep = self.segments.partition_point(|s| s.next <= start);
        self.segments.drain(..keep).collect()
    }

    /// Applies a remote compaction pass: every run (in offset order) must
    /// still be adjacent segments of the manifest, spanning exactly its replacement's offsets;
    /// otherwise (retention or DeleteRecords moved on meanwhile) nothing
    /// changes and false is returned.
    pub fn replace(&mut self, r: &RemoteReplacement) -> bool {
        let mut at = Vec::with_capacity(r.runs.len());
        for (ids, new) in &r.runs {
            let Some(first) = ids
                .first()
                .and_then(|id| self.segments.iter().position(|s| &s.upload_id == id))
            else {
                return false;
            };
            let run = self.segments.get(first..first + ids.len());
            let fits = run.is_some_and(|run| {
                run.iter().zip(ids).all(|(s, id)| &s.upload_id == id)
                    && run.first().map(|s| s.base) == Some(new.base)
                    && run.last().map(|s| s.next) == Some(new.next)
            });
            let after_previous = at
                .last()
                .is_none_or(|(f, len, _): &(usize, usize, RemoteSegment)| first >= f + len);
            if !fits || !after_previous {
                return false;
            }
            at.push((first, ids.len(), new.clone()));
        }
        // From the back, so that the earlier positions stay valid.
        for (first, len, new) in at.into_iter().rev() {
            self.segments.splice(first..first + len, [new]);
        }
        self.cleaned_to = self.cleaned_to.max(r.cleaned_to);
        self.tombstones_expire_ms = r.tombstones_expire_ms;
        true
    }
}

/// One index entry: the batch at byte `pos` starts at `offset`; every
/// batch before it is older than `max_ts_before` or equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: i64,
    pub pos: u64,
    pub max_ts_before: i64,
}

/// The index of one remote segment (sparse: one entry per
/// `INDEX_INTERVAL` bytes of batches, and the first batch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteIndex {
    pub entries: Vec<IndexEntry>,
}

const INDEX_MAGIC: &[u8; 4] = b"STRX";
const INDEX_VERSION: u32 = 1;
const ENTRY_LEN: usize = 24;
/// Bytes of batches between index entries.
pub const INDEX_INTERVAL: u64 = 64 << 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("remote index is truncated")]
    Truncated,
    #[error("remote index has a bad magic or version")]
    BadHeader,
    #[error("remote index checksum mismatch")]
    Checksum,
    #[error("remote index entries are out of order")]
    Unordered,
}

impl RemoteIndex {
    /// The last entry at or before `offset`.
    pub fn floor(&self, offset: i64) -> Option<IndexEntry> {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry before which every batch is older than `ts`.
    pub fn floor_time(&self, ts: i64) -> Option<IndexEntry> {
        let i = self.entries.partition_point(|e| e.max_ts_before < ts);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * ENTRY_LEN);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&INDEX_VERSION.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.offset.to_be_bytes());
            out.extend_from_slice(&e.pos.to_be_bytes());
            out.extend_from_slice(&e.max_ts_before.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        if b.len() < 16 {
            return Err(IndexError::Truncated);
        }
        let (body, crc) = b.split_at(b.len() - 4);
        let be32 = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
        let be64 = |s: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&s[..8]);
            i64::from_be_bytes(a)
        };
        if &body[..4] != INDEX_MAGIC || be32(&body[4..8]) != INDEX_VERSION {
            return Err(IndexError::BadHeader);
        }
        let n = be32(&body[8..12]) as usize;
        if body.len() != 12 + n.saturating_mul(ENTRY_LEN) {
            return Err(IndexError::Truncated);
        }
        if crc32c::crc32c(body) != be32(crc) {
            return Err(IndexError::Checksum);
        }
        let mut entries = Vec::with_capacity(n);
        for c in body[12..].chunks_exact(ENTRY_LEN) {
            let e = IndexEntry {
                offset: be64(&c[0..8]),
                pos: be64(&c[8..16]) as u64,
                max_ts_before: be64(&c[16..24]),
            };
            if entries
                .last()
                .is_some_and(|p: &IndexEntry| p.offset > e.offset || p.pos >= e.pos)
            {
                return Err(IndexError::Unordered);
            }
            entries.push(e);
        }
        Ok(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(base: i64, next: i64) -> RemoteSegment {
        RemoteSegment {
            base,
            next,
            size: 10,
            max_ts: 0,
            upload_id: format!("u{base}"),
        }
    }

    #[test]
    fn manifest_stays_contiguous() {
        let mut m = RemoteManifest::default();
        assert!(m.append(seg(0, 10)));
        assert!(!m.append(seg(0, 10)), "the same range twice");
        assert!(!m.append(seg(12, 20)), "a gap");
        assert!(m.append(seg(10, 20)));
        assert_eq!(m.end(), 20);
        assert_eq!(m.segment_for(10).map(|s| s.base), Some(10));
        assert_eq!(m.segment_for(20), None);
        assert_eq!(m.trim(15).len(), 1);
        assert_eq!(m.start, 15);
        assert!(!m.covers(14) && m.covers(15) && !m.covers(20));
        assert_eq!(m.trim(20).len(), 1);
        assert_eq!(m.end(), 20, "an emptied manifest ends at its start");
        assert!(!m.append(seg(5, 20)), "a range already deleted");
        assert!(m.append(seg(20, 30)));
    }

    #[test]
    fn replacement_swaps_runs_or_nothing() {
        let mut m = RemoteManifest::default();
        for b in [0, 10, 20, 30] {
            assert!(m.append(seg(b, b + 10)));
        }
        let cleaned = |base: i64, next: i64| RemoteSegment {
            upload_id: format!("c{base}"),
            ..seg(base, next)
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let before = m.clone();
        let wrong_span = RemoteReplacement {
            runs: vec![(ids(&["u0", "u10"]), cleaned(0, 30))],
            cleaned_to: 30,
            tombstones_expire_ms: None,
        };
        assert!(!m.replace(&wrong_span));
        let gone = RemoteReplacement {
            runs: vec![
                (ids(&["u0"]), cleaned(0, 10)),
                (ids(&["u5"]), cleaned(5, 10)),
            ],
            cleaned_to: 30,
            tombstones_expire_ms: None,
        };
        assert!(!m.replace(&gone), "one run no longer there: no change");
        assert_eq!(m, before);
        let ok = RemoteReplacement {
            runs: vec![
                (ids(&["u0", "u10"]), cleaned(0, 20)),
                (ids(&["u30"]), cleaned(30, 40)),
            ],
            cleaned_to: 35,
            tombstones_expire_ms: Some(7),
        };
        assert!(m.replace(&ok));
        let spans: Vec<_> = m.segments.iter().map(|s| (s.base, s.next)).collect();
        assert_eq!(spans, [(0, 20), (20, 30), (30, 40)]);
        assert_eq!((m.cleaned_to, m.tombstones_expire_ms), (35, Some(7)));
        assert!(!m.replace(&ok), "applied twice");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<RemoteManifest>(&json).unwrap(), m);
        // Manifests written before compaction existed still read.
        let old: RemoteManifest = serde_json::from_str(r#"{"start":0,"segments":[]}"#).unwrap();
        assert_eq!(old.cleaned_to, 0);
    }

    #[test]
    fn index_roundtrip_and_lookup() {
        let idx = RemoteIndex {
            entries: vec![
                IndexEntry {
                    offset: 100,
                    pos: 0,
                    max_ts_before: i64::MIN,
                },
                IndexEntry {
                    offset: 150,
                    pos: 4096,
                    max_ts_before: 50,
                },
            ],
        };
        let b = idx.encode();
        assert_eq!(RemoteIndex::decode(&b).unwrap(), idx);
        assert_eq!(idx.floor(149).unwrap().pos, 0);
        assert_eq!(idx.floor(150).unwrap().pos, 4096);
        assert_eq!(idx.floor_time(50).unwrap().pos, 0);
        assert_eq!(idx.floor_time(51).unwrap().pos, 4096);
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert_eq!(RemoteIndex::decode(&bad), Err(IndexError::Checksum));
        assert_eq!(
            RemoteIndex::decode(&b[..b.len() - 1]),
            Err(IndexError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn index_decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RemoteIndex::decode(&b);
        }
    }
}
