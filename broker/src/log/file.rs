//! A file of the log (a segment's `.log`, the active segment's indexes),
//! held open only while it is in use.
//!
//! Reads go through maps, which stay valid after a descriptor is closed;
//! only appends, syncs and resizes need one. A broker hosting 100,000 idle
//! replicas would otherwise hold 300,000 descriptors (and more, one per
//! sealed segment), past what an unprivileged process may open. So the
//! descriptors of all these files in the process share one budget (half the
//! soft `RLIMIT_NOFILE`, the rest left to sockets and short-lived files):
//! opening one past it closes the least recently used quarter, and a closed
//! file is reopened by path when next needed.
//!
//! A sync through a reopened descriptor covers what was written through the
//! closed one: `fsync` flushes the file, not the descriptor.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

/// A file of the log; clones share the descriptor.
#[derive(Clone)]
pub struct PooledFile(Arc<Slot>);

struct Slot {
    path: PathBuf,
    open: Mutex<Option<Arc<File>>>,
    /// When it was last used, on the process-wide use clock.
    last_use: AtomicU64,
}

/// The open log files of the process.
struct Budget {
    limit: usize,
    open: AtomicUsize,
    clock: AtomicU64,
    slots: Mutex<Vec<Weak<Slot>>>,
}

static BUDGET: LazyLock<Budget> = LazyLock::new(|| Budget {
    limit: descriptor_budget(),
    open: AtomicUsize::new(0),
    clock: AtomicU64::new(0),
    slots: Mutex::new(Vec::new()),
});

/// Half the soft limit on open files, and at least 64.
fn descriptor_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return 512;
    }
    usize::try_from(lim.rlim_cur / 2)
        .unwrap_or(usize::MAX)
        .max(64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PooledFile {
    /// Creates (truncating) the file at `path`, open.
    pub fn create(path: &Path) -> io::Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Self::adopt(path, f))
    }

    /// Opens the existing file at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let f = Self::open_path(path)?;
        Ok(Self::adopt(path, f))
    }

    fn open_path(path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    fn adopt(path: &Path, f: File) -> Self {
        let slot = Arc::new(Slot {
            path: path.to_owned(),
            open: Mutex::new(Some(Arc::new(f))),
            last_use: AtomicU64::new(BUDGET.clock.fetch_add(1, Ordering::Relaxed)),
        });
        opened(&slot);
        Self(slot)
    }

    /// The open file, reopened by path if its descriptor was closed.
    pub fn get(&self) -> io::Result<Arc<File>> {
        let slot = &self.0;
        slot.last_use.store(
            BUDGET.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let mut open = lock(&slot.open);
        if let Some(f) = &*open {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(Self::open_path(&slot.path)?);
        *open = Some(Arc::clone(&f));
        drop(open);
        opened(slot);
        Ok(f)
    }

    /// Whether the descriptor is open now.
    #[cfg(test)]
    fn is_open(&self) -> bool {
        lock(&self.0.open).is_some()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let open = self.open.get_mut().unwrap_or_else(|e| e.into_inner());
        if open.take().is_some() {
            BUDGET.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Counts a descriptor just opened for `slot`; past the budget, closes the
/// least recently used quarter of the open ones.
fn opened(slot: &Arc<Slot>) {
    let n = BUDGET.open.fetch_add(1, Ordering::Relaxed) + 1;
    let mut slots = lock(&BUDGET.slots);
    slots.push(Arc::downgrade(slot));
    if n > BUDGET.limit {
        close_least_recent(&mut slots, BUDGET.limit / 4 + 1);
    } else if slots.len() > 2 * BUDGET.limit {
        // Files dropped (segments deleted) while under the budget.
        close_least_recent(&mut slots, 0);
    }
}

/// Closes the descriptors of the `count` least recently used open files;
/// forgets files that were dropped or closed.
fn close_least_recent(slots: &mut Vec<Weak<Slot>>, count: usize) {
    let mut live: Vec<(u64, Arc<Slot>)> = slots
        .iter()
        .filter_map(Weak::upgrade)
        .filter(|s| lock(&s.open).is_some())
        .map(|s| (s.last_use.load(Ordering::Relaxed), s))
        .collect();
    live.sort_unstable_by_key(|(t, _)| *t);
    let split = count.min(live.len());
    for (_, s) in &live[..split] {
        // A clone handed out (a sync in flight) keeps its descriptor until
        // it is dropped; the slot reopens on next use.
        if lock(&s.open).take().is_some() {
            BUDGET.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
    *slots = live[split..]
        .iter()
        .map(|(_, s)| Arc::downgrade(s))
        .collect();
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn closed_files_reopen_by_path_and_keep_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let f = PooledFile::create(&path).unwrap();
        f.get().unwrap().write_all_at(b"hello", 0).unwrap();
        // Closed as the budget would close it.
        close_least_recent(&mut vec![Arc::downgrade(&f.0)], 1);
        assert!(!f.is_open());
        let g = f.get().unwrap();
        assert!(f.is_open());
        let mut buf = [0u8; 5];
        g.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello");
        g.write_all_at(b"!", 5).unwrap();
        g.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello!");
    }

    #[test]
    fn the_least_recently_used_close_first() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PooledFile> = (0..4)
            .map(|i| PooledFile::create(&dir.path().join(format!("{i}.log"))).unwrap())
            .collect();
        // Use all but the first again: it is the least recent.
        for f in &files[1..] {
            f.get().unwrap();
        }
        let mut mine: Vec<Weak<Slot>> = files.iter().map(|f| Arc::downgrade(&f.0)).collect();
        close_least_recent(&mut mine, 1);
        assert!(!files[0].is_open());
        assert!(files[1..].iter().all(PooledFile::is_open));
        assert_eq!(mine.len(), 3);
    }

    #[test]
    fn the_budget_leaves_room_for_other_descriptors() {
        let b = descriptor_budget();
        assert!(b >= 64);
    }
}
