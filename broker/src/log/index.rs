//! Sparse indexes of one segment: the offset index (`.index`: relative
//! offset → Raft index → file position) and the time index (`.timeindex`:
//! timestamp → relative offset).
//!
//! The active segment's indexes live in memory and are written through to
//! their files with `pwrite` as entries are added: no map, so a broker with
//! 100,000 fresh partitions neither holds 200,000 index maps nor takes a
//! page fault (and the process's map lock) for each partition's first
//! entry, and a full disk fails the write cleanly instead of raising SIGBUS
//! on a store into a hole. The copy costs 12 bytes per indexed batch (at
//! most one per `index.interval.bytes` of log, 0.3 % of the segment at the
//! default 4 KiB). A sealed segment's index is trimmed to its entries and
//! mapped read-only.
//!
//! Indexes are not checksummed: after a crash they are checked for shape
//! and rebuilt from the log when in doubt (see `segment/recovery.rs`).
//! Lookups never panic, whatever the file holds.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use memmap2::Mmap;

use super::file::PooledFile;
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

enum Storage {
    /// Active: every entry in memory, written through to `file`, which
    /// holds the first `written` bytes of them (less only after a failed
    /// write, retried by the next push, sync or seal).
    Write {
        bytes: Vec<u8>,
        cap: usize,
        written: AtomicUsize,
        file: PooledFile,
    },
    /// Sealed: trimmed and read-only. `None` when empty (nothing to map).
    Read(Option<Mmap>),
}

/// An index file of `E` entries (see the module doc for where they live).
pub struct IndexFile<E: Entry> {
    path: PathBuf,
    storage: Storage,
    entries: usize,
    _marker: std::marker::PhantomData<E>,
}

impl<E: Entry> IndexFile<E> {
    /// Creates (truncating) an active index able to hold `max_bytes`.
    pub fn create(path: &Path, max_bytes: usize) -> io::Result<Self> {
        let file = PooledFile::create(path)?;
        Ok(Self {
            path: path.to_owned(),
            storage: Storage::Write {
                bytes: Vec::new(),
                cap: (max_bytes / E::SIZE).max(1) * E::SIZE,
                written: AtomicUsize::new(0),
                file,
            },
            entries: 0,
            _marker: std::marker::PhantomData,
        })
    }

    /// Opens an existing index read-only, trusting every whole entry the
    /// file holds.
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
            Storage::Write { cap, .. } => (self.entries + 1) * E::SIZE > *cap,
            Storage::Read(_) => true,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Write { bytes, .. } => &bytes[..self.entries * E::SIZE],
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

    /// Appends an entry; false when the index is full or sealed. The entry
    /// counts at once; a failed write of it to the file (a full disk) is
    /// retried by the next push and reported by [`Self::sync`].
    pub fn push(&mut self, e: E) -> bool {
        if !self.add(e) {
            return false;
        }
        let _ = self.write_through();
        true
    }

    /// Appends entries in order with one write; false (with those that
    /// fit appended) when they do not all fit.
    pub fn extend(&mut self, entries: &[E]) -> bool {
        let all = entries.iter().all(|e| self.add(*e));
        let _ = self.write_through();
        all
    }

    fn add(&mut self, e: E) -> bool {
        if self.is_full() {
            return false;
        }
        let Storage::Write { bytes, .. } = &mut self.storage else {
            return false;
        };
        let at = self.entries * E::SIZE;
        bytes.resize(at + E::SIZE, 0);
        e.encode(&mut bytes[at..]);
        self.entries += 1;
        true
    }

    /// Writes the entries the file does not hold yet.
    fn write_through(&self) -> io::Result<()> {
        let Storage::Write {
            bytes,
            written,
            file,
            ..
        } = &self.storage
        else {
            return Ok(());
        };
        let from = written.load(Ordering::Acquire);
        if from >= bytes.len() {
            return Ok(());
        }
        file.get()?.write_all_at(&bytes[from..], from as u64)?;
        written.store(bytes.len(), Ordering::Release);
        Ok(())
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

    /// Drops every entry from `keep` on (the next push overwrites them in
    /// the file; a seal trims them).
    pub fn truncate_entries(&mut self, keep: usize) {
        self.entries = self.entries.min(keep);
        if let Storage::Write { bytes, written, .. } = &mut self.storage {
            bytes.truncate(self.entries * E::SIZE);
            let w = written.get_mut();
            *w = (*w).min(bytes.len());
        }
    }

    /// Makes the entries durable.
    pub fn sync(&self) -> io::Result<()> {
        self.write_through()?;
        match &self.storage {
            Storage::Write { file, .. } => file.get()?.sync_data(),
            Storage::Read(_) => self.open()?.sync_data(),
        }
    }

    fn open(&self) -> io::Result<std::fs::File> {
        OpenOptions::new().read(true).write(true).open(&self.path)
    }

    /// Makes the entries durable, trims the file to them and maps it
    /// read-only (a sealed index is trusted at the next start when it looks
    /// sane, so it is on disk before the segment counts as sealed).
    pub fn seal(&mut self) -> io::Result<()> {
        let (file, active) = match &self.storage {
            Storage::Write { file, .. } => {
                self.write_through()?;
                (file.get()?, true)
            }
            Storage::Read(_) => (std::sync::Arc::new(self.open()?), false),
        };
        // The map (if any) is dropped before the file shrinks.
        self.storage = Storage::Read(None);
        let len = self.entries * E::SIZE;
        file.set_len(len as u64)?;
        if active && len > 0 {
            // `fdatasync` covers the new length too.
            file.sync_data()?;
        }
        if len > 0 {
            self.storage = Storage::Read(Some(mmap::map_index_read(&file, len)?));
        }
        Ok(())
    }

    /// Makes a sealed index active again (used when a truncation makes a
    /// sealed segment active again): its entries are read into memory.
    pub fn unseal(&mut self, max_bytes: usize) -> io::Result<()> {
        if let Storage::Write { .. } = self.storage {
            return Ok(());
        }
        let bytes = self.bytes().to_vec();
        let file = PooledFile::open(&self.path)?;
        self.storage = Storage::Write {
            cap: (max_bytes / E::SIZE).max(self.entries + 1) * E::SIZE,
            written: AtomicUsize::new(bytes.len()),
            bytes,
            file,
        };
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

    /// The active index is written through: a reader of the file (as
    /// recovery after a process crash) sees every entry pushed, a rewritten
    /// last entry replaces the old one, and an index made active again
    /// keeps its entries.
    #[test]
    fn active_index_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.timeindex");
        let mut ix = IndexFile::<TimeEntry>::create(&p, 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "not preallocated");
        let t = |timestamp: i64, rel_offset: u32| TimeEntry {
            timestamp,
            rel_offset,
        };
        assert!(ix.push(t(10, 0)) && ix.push(t(20, 5)));
        ix.truncate_entries(1);
        assert!(ix.push(t(30, 7)));
        assert!(ix.extend(&[t(40, 9), t(50, 11)]));
        let on_disk = IndexFile::<TimeEntry>::open_sealed(&p).unwrap();
        let read: Vec<_> = (0..on_disk.len()).filter_map(|i| on_disk.get(i)).collect();
        assert_eq!(read, vec![t(10, 0), t(30, 7), t(40, 9), t(50, 11)]);
        ix.truncate_entries(3);
        ix.seal().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 36);
        assert!(!ix.push(t(60, 12)), "a sealed index takes no entries");
        ix.unseal(1 << 20).unwrap();
        assert!(ix.push(t(60, 12)));
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.floor_by(&45, |e| e.timestamp), Some(t(40, 9)));
        ix.sync().unwrap();
        let again = IndexFile::<TimeEntry>::open_sealed(&p).unwrap();
        assert_eq!(again.last(), Some(t(60, 12)));
    }

    /// A full index refuses entries without touching what it holds.
    #[test]
    fn full_active_index_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.index");
        let mut ix = IndexFile::<OffsetEntry>::create(&p, 24).unwrap();
        let e = |i: u32| OffsetEntry {
            rel_offset: i,
            rel_raft_index: i,
            position: i * 10,
        };
        assert!(ix.push(e(0)) && ix.push(e(1)));
        assert!(ix.is_full() && !ix.push(e(2)));
        assert!(!ix.extend(&[e(2)]));
        assert_eq!(ix.len(), 2);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 24);
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
