//! Every memory map of the broker lives here, with the reasoning that makes it
//! sound (and the one other system call `log/` makes unsafely, a probe of
//! a file's extents). Maps are shared file mappings of files this process
//! owns.
//!
//! Invariants the rest of `log/` keeps so that these maps stay sound:
//! - a file is never shrunk while a map of it may be read past the new end
//!   (segments shrink only on seal, to exactly the bytes already written, or
//!   during recovery before any map exists);
//! - bytes already handed out to readers (below the committed end) are never
//!   rewritten in place;
//! - deleted files are unlinked, never truncated, so live maps stay valid.

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Advice, Mmap, MmapOptions};

/// Whether `file` holds data (not a hole) at or after byte `pos`. The
/// preallocated, never written tail of an active segment is a hole, so
/// recovery need not read (and fault in) it. Filesystems that cannot tell
/// report everything before the end as data.
pub fn has_data_from(file: &File, pos: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let Ok(off) = libc::off_t::try_from(pos) else {
        return Ok(false);
    };
    // lseek(2) only looks up the file's extents (and moves the descriptor's
    // offset, which no segment I/O uses: all of it is positioned).
    // SAFETY: the descriptor is owned by `file`, open for the whole call.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, libc::SEEK_DATA) };
    if r >= 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(false),
        Some(libc::EINVAL) => Ok(true),
        _ => Err(e),
    }
}

/// A read-only shared mapping of the first `len` bytes of `file`.
pub fn map_read(file: &File, len: usize) -> io::Result<Mmap> {
    // The mapped file is owned by this broker's data directory and is only
    // modified by this process under the invariants in the module doc: never
    // truncated below `len` while mapped, bytes visible to readers never
    // rewritten. External modification is outside the contract, as for any
    // database file.
    // SAFETY: the module invariants keep every mapped byte valid.
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// A read-only mapping of a sealed index file. Index lookups are binary
/// searches touching a page or two: without `MADV_RANDOM` every first touch
/// reads a whole read-around window, which with thousands of partitions is
/// gigabytes of page cache churned for nothing.
pub fn map_index_read(file: &File, len: usize) -> io::Result<Mmap> {
    let map = map_read(file, len)?;
    map.advise(Advice::Random)?;
    Ok(map)
}

/// A mapping shared by a segment and every `Bytes` handed out from it.
#[derive(Clone)]
pub struct SharedMap(Arc<Mmap>);

impl SharedMap {
    pub fn new(map: Mmap) -> Self {
        Self(Arc::new(map))
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Tells the kernel to read only the pages touched (`true`, for
    /// recovery's few header reads in a mostly sparse active segment, where
    /// read-around would zero-fill megabytes of holes per partition) or to
    /// read ahead as usual (`false`).
    pub fn read_only_touched(&self, yes: bool) -> io::Result<()> {
        self.0
            .advise(if yes { Advice::Random } else { Advice::Normal })
    }

    /// A zero-copy `Bytes` view of `range`; the map lives as long as it does.
    pub fn slice(&self, start: usize, end: usize) -> Bytes {
        Bytes::from_owner(self.clone()).slice(start..end)
    }
}

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
