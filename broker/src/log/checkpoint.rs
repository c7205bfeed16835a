//! Small state files written crash-safely: temp file, fsync, rename, fsync
//! of the directory. Each holds a magic, a version, the payload and a
//! CRC-32C, so a torn or foreign file is detected rather than trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

const MAGIC: &[u8; 4] = b"STCK";
const VERSION: u8 = 1;

/// Durably replaces `path` with `payload` (wrapped in the checkpoint frame).
pub fn write(path: &Path, payload: &[u8]) -> io::Result<()> {
    write_with(path, payload, true)
}

/// Atomically replaces `path` without waiting for the disk: for state that
/// is rebuilt when a crash loses it (a new replica's initial files).
pub fn write_relaxed(path: &Path, payload: &[u8]) -> io::Result<()> {
    write_with(path, payload, false)
}

fn write_with(path: &Path, payload: &[u8], durable: bool) -> io::Result<()> {
    let buf = frame(payload);
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&buf)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a checkpoint's payload. `Ok(None)` when the file does not exist;
/// an `InvalidData` error when it is torn or not a checkpoint.
pub fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let buf = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    if buf.len() < 13 || &buf[0..4] != MAGIC {
        return Err(bad("not a strata checkpoint"));
    }
    if buf[4] != VERSION {
        return Err(bad("unsupported checkpoint version"));
    }
    let len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
    if buf.len() != 13 + len {
        return Err(bad("checkpoint length mismatch"));
    }
    let crc = u32::from_be_bytes([buf[9 + len], buf[10 + len], buf[11 + len], buf[12 + len]]);
    if crc32c::crc32c(&buf[..9 + len]) != crc {
        return Err(bad("checkpoint checksum mismatch"));
    }
    Ok(Some(buf[9..9 + len].to_vec()))
}

pub fn write_i64(path: &Path, v: i64) -> io::Result<()> {
    write(path, &v.to_be_bytes())
}

/// Overwrites `path` in place with an `i64` checkpoint, without an fsync
/// and without a temporary file: for hints that are rewritten often and
/// may be lost or torn by a crash (the checksum then rejects them). No new
/// inode per write, which matters with thousands of partitions.
pub fn overwrite_i64_relaxed(path: &Path, v: i64) -> io::Result<()> {
    let buf = frame(&v.to_be_bytes());
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    f.write_all(&buf)?;
    // A longer, older file (another payload size) must not keep a tail.
    if f.metadata()?.len() > buf.len() as u64 {
        f.set_len(buf.len() as u64)?;
    }
    Ok(())
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(payload.len() + 13);
    buf.extend_from_slice(MAGIC);
    buf.push(VERSION);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    buf.extend_from_slice(&crc32c::crc32c(&buf).to_be_bytes());
    buf
}

pub fn read_i64(path: &Path) -> io::Result<Option<i64>> {
    match read(path)? {
        None => Ok(None),
        Some(p) if p.len() == 8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(&p);
            Ok(Some(i64::from_be_bytes(a)))
        }
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: bad payload", path.display()),
        )),
    }
}

/// Makes a directory's entries (new, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("cp");
        assert_eq!(read_i64(&p).unwrap(), None);
        write_i64(&p, 42).unwrap();
        assert_eq!(read_i64(&p).unwrap(), Some(42));
        overwrite_i64_relaxed(&p, -7).unwrap();
        assert_eq!(read_i64(&p).unwrap(), Some(-7));
        let mut b = fs::read(&p).unwrap();
        b[10] ^= 0xff;
        fs::write(&p, &b).unwrap();
        assert!(read_i64(&p).is_err());
    }
}
