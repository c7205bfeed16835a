//! Sparse, memory-mapped indexes of one segment: the offset index
//! (`.index`: relative offset → Raft index → file position) and the time
//! index (`.timeindex`: timestamp → relative offset).
//!
//! An index file is preallocated to its maximum size while its segment is
//! active and trimmed to its entries when the segment is sealed. Indexes are
//! not checksummed: after a crash they are checked for shape and rebuilt from
//! the log when in doubt (see `segment.rs`). Lookups never panic, whatever
//! the file holds.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use super::mmap;

/// One fixed-size index entry.
pub trait Entry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(b: &[u8]) -> Self;
}

/// `.index` entry: where the batch holding `rel_offset` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Batch base offset minus the segment base offset.
    pub rel_offset: u32,
    /// Batch Raft index minus the segment's first Raft index.
    pub rel_raft_index: u32,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.rel_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.rel_raft_index.to_be_bytes());
        out[8..12].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let u = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            rel_offset: u(0),
            rel_raft_index: u(4),
            position: u(8),
        }
    }
}

/// `.timeindex` entry: every batch at or after `rel_offset` that is in this
/// segment has records with timestamps; the largest timestamp seen up to and
/// including the batch at `rel_offset` is `timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.rel_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[0..8]);
        Self {
            timestamp: i64::from_be_bytes(t),
            rel_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// Granularity of the index's block reservation.
const RESERVE_PAGE: usize = 4096;

enum Storage {
    /// Active: preallocated and writable.
    Write(MmapMut),
    /// Sealed: trimmed and read-only. `None` when empty (nothing to map).
    Read(Option<Mmap>),
}

/// A memory-mapped index file of `E` entries. No descriptor is kept open
/// (the map is enough; the rare resize reopens the file), so thousands of
/// partitions fit in a broker's file-descriptor limit.
pub struct IndexFile<E: Entry> {
    path: PathBuf,
    storage: Storage,
    entries: usize,
    /// Bytes from the start known to have disk blocks (a multiple of
    /// `RESERVE_PAGE`): the active index is a sparse file, and a store into
    /// a hole of a writable map on a full disk would kill the process
    /// (SIGBUS), so every page is first written with `pwrite`, which fails
    /// cleanly (ENOSPC) instead.
    reserved: usize,
    _marker: std::marker::PhantomData<E>,
}

impl<E: Entry> IndexFile<E> {
    /// Creates (truncating) a writable index able to hold `max_bytes`.
    pub fn create(path: &Path, max_bytes: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let cap = (max_bytes / E::SIZE).max(1) * E::SIZE;
        file.set_len(cap as u64)?;
        let map = mmap::map_index_write(&file, cap)?;
        Ok(Self {
            path: path.to_owned(),
            storage: Storage::Write(map),
            entries: 0,
            reserved: 0,
            _marker: std::marker::PhantomData,
        })
    }

    /// Opens an existing index read-only, trusting `entries` entries.
    /// Errors if the file is shorter than that.
    pub fn open_sealed(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len() as usize;
        let entries = len / E::SIZE;
        let map = if entries == 0 {
            None
        } else {
            Some(mmap::map_index_read(&file, entries * E::SIZE)?)
        };
        Ok(Self {
            path: path.to_owned(),
            storage: Storage::Read(map),
            entries,
            reserved: len.next_multiple_of(RESERVE_PAGE),
            _marker: std::marker::PhantomData,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// True when no further entry fits.
    pub fn is_full(&self) -> bool {
        match &self.storage {
            Storage::Write(m) => (self.entries + 1) * E::SIZE > m.len(),
            Storage::Read(_) => true,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Write(m) => &m[..self.entries * E::SIZE],
            Storage::Read(Some(m)) => &m[..self.entries * E::SIZE],
            Storage::Read(None) => &[],
        }
    }

    pub fn get(&self, i: usize) -> Option<E> {
        if i >= self.entries {
            return None;
        }
        Some(E::decode(&self.bytes()[i * E::SIZE..(i + 1) * E::SIZE]))
    }

    pub fn last(&self) -> Option<E> {
        self.entries.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Makes sure the next entry's bytes have disk blocks (writes zeros
    /// over the page beyond the entries when it is still a hole), so that
    /// the following `push` cannot fault. Fails with the I/O error (ENOSPC
    /// on a full disk); nothing changes then.
    pub fn reserve_next(&mut self) -> io::Result<()> {
        let Storage::Write(m) = &self.storage else {
            return Ok(());
        };
        let end = (self.entries + 1) * E::SIZE;
        if end <= self.reserved || end > m.len() {
            return Ok(());
        }
        let upto = end.next_multiple_of(RESERVE_PAGE).min(m.len());
        // Everything from `reserved` on lies past the written entries.
        let zeros = vec![0u8; upto - self.reserved];
        self.open()?.write_all_at(&zeros, self.reserved as u64)?;
        self.reserved = upto;
        Ok(())
    }

    /// Appends an entry; false when the index is full or sealed.
    pub fn push(&mut self, e: E) -> bool {
        if self.is_full() {
            return false;
        }
        let at = self.entries * E::SIZE;
        if let Storage::Write(m) = &mut self.storage {
            e.encode(&mut m[at..at + E::SIZE]);
            self.entries += 1;
            return true;
        }
        false
    }

    /// Index of the last entry whose key is <= `target`, by binary search
    /// over a key that must be non-decreasing (a corrupt index yields some
    /// entry or none, never a panic).
    pub fn floor_by<K: Ord>(&self, target: &K, key: impl Fn(&E) -> K) -> Option<E> {
        let (mut lo, mut hi) = (0usize, self.entries);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.get(mid)?;
            if key(&e) <= *target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Drops every entry from `keep` on.
    pub fn truncate_entries(&mut self, keep: usize) {
        self.entries = self.entries.min(keep);
    }

    /// Flushes the written entries to disk.
    pub fn sync(&self) -> io::Result<()> {
        if let Storage::Write(m) = &self.storage {
            m.flush_range(0, (self.entries * E::SIZE).max(1).min(m.len()))?;
        }
        self.open()?.sync_data()
    }

    fn open(&self) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(&self.path)
    }

    /// Trims the file to its entries and maps it read-only.
    pub fn seal(&mut self) -> io::Result<()> {
        if let Storage::Write(m) = &self.storage
            && self.entries > 0
        {
            m.flush_range(0, self.entries * E::SIZE)?;
        }
        // The writable map is dropped before the file shrinks.
        self.storage = Storage::Read(None);
        let len = self.entries * E::SIZE;
        let file = self.open()?;
        file.set_len(len as u64)?;
        if len > 0 {
            self.storage = Storage::Read(Some(mmap::map_index_read(&file, len)?));
        }
        Ok(())
    }

    /// Reopens a sealed index for appends (used when a truncation makes a
    /// sealed segment active again).
    pub fn unseal(&mut self, max_bytes: usize) -> io::Result<()> {
        let cap = (max_bytes / E::SIZE).max(self.entries + 1) * E::SIZE;
        self.storage = Storage::Read(None);
        let file = self.open()?;
        file.set_len(cap as u64)?;
        // The page holding the last entries has blocks; the rest is a hole.
        self.reserved = (self.entries * E::SIZE).next_multiple_of(RESERVE_PAGE);
        self.storage = Storage::Write(mmap::map_index_write(&file, cap)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn push_floor_seal_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.index");
        let mut ix = IndexFile::<OffsetEntry>::create(&p, 1200).unwrap();
        for i in 0..100u32 {
            assert!(ix.push(OffsetEntry {
                rel_offset: i * 10,
                rel_raft_index: i,
                position: i * 100
            }));
        }
        assert!(ix.is_full());
        let f = ix.floor_by(&55, |e| e.rel_offset).unwrap();
        assert_eq!(f.rel_offset, 50);
        assert!(ix.floor_by(&0, |e| e.rel_offset).is_some());
        ix.seal().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1200);
        let ix2 = IndexFile::<OffsetEntry>::open_sealed(&p).unwrap();
        assert_eq!(ix2.len(), 100);
        assert_eq!(
            ix2.floor_by(&999, |e| e.rel_offset).unwrap().rel_offset,
            990
        );
    }

    proptest! {
        /// Index lookups on arbitrary file contents never panic and, on a
        /// well-formed index, find the true floor.
        #[test]
        fn lookup_fuzz(raw in proptest::collection::vec(any::<u8>(), 0..600), target in any::<u32>()) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.index");
            std::fs::write(&p, &raw).unwrap();
            let ix = IndexFile::<OffsetEntry>::open_sealed(&p).unwrap();
            let _ = ix.floor_by(&target, |e| e.rel_offset);
            let _ = ix.floor_by(&target, |e| e.position);
            let t = IndexFile::<TimeEntry>::open_sealed(&p).unwrap();
            let _ = t.floor_by(&i64::from(target), |e| e.timestamp);
        }

        #[test]
        fn floor_is_exact(mut keys in proptest::collection::vec(any::<u32>(), 1..100), target in any::<u32>()) {
            keys.sort_unstable();
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("y.index");
            let mut ix = IndexFile::<OffsetEntry>::create(&p, 4096).unwrap();
            for k in &keys {
                ix.push(OffsetEntry { rel_offset: *k, rel_raft_index: 0, position: 0 });
            }
            let want = keys.iter().rev().find(|k| **k <= target).copied();
            prop_assert_eq!(ix.floor_by(&target, |e| e.rel_offset).map(|e| e.rel_offset), want);
        }
    }
}
