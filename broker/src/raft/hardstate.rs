//! Term and vote of every Raft group hosted here, in one store per broker:
//! a base table (a checkpoint file) and a journal of the changes made since
//! it was written.
//!
//! Raft needs a group's term and vote durable before a vote or an append is
//! answered. One event-loop cycle appends the changes of all its groups as
//! one journal record and makes it durable with one `fdatasync`, whatever
//! the number of groups (an election storm after a restart, or thousands of
//! partitions created at once). The journal's blocks are written (with
//! zeros) before they are used, so that `fdatasync` of a record has no file
//! metadata to commit: it does not wait for the filesystem's own journal,
//! which a broker creating thousands of replica files keeps busy. Rewriting
//! the whole table each cycle (as an earlier version did) cost a file, two
//! fsyncs and megabytes per cycle at 100,000 groups.
//!
//! When the journal outgrows the table, the table is written anew under the
//! next generation and the journal starts over under it. A journal of
//! another generation than the table's is stale (a crash between the two
//! steps) and is ignored: the table already holds everything in it.
//!
//! Journal layout: a 16-byte header (`SHSJ`, version, 3 spare bytes, the
//! generation as u64 BE), then records: length (u32 BE), CRC-32C of the
//! generation's 8 bytes and the payload (u32 BE), payload. A payload is a
//! count (u32 BE) of changes, each: key length (u16 BE), key, a set flag
//! (1: set, 0: removed), term and vote (u64 BE each). Replay stops at the
//! first record that is short, empty or fails its checksum (a torn write).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::GroupKey;
use crate::log::checkpoint;

pub const HARD_STATE_FILE: &str = "raft-hardstate";
/// The journal beside the table.
pub const HARD_STATE_JOURNAL: &str = "raft-hardstate.journal";

const MAGIC: &[u8; 4] = b"SHSJ";
const VERSION: u8 = 1;
const HEADER: u64 = 16;
/// Journal blocks are zeroed this far ahead of the write position.
const ZERO_CHUNK: u64 = 1 << 20;
/// The journal is folded into the table once it is larger than this and
/// than twice the table.
const MIN_JOURNAL: u64 = 4 << 20;
/// A record larger than this is not one this code wrote.
const MAX_RECORD: usize = 256 << 20;

#[derive(Serialize, Deserialize, Default)]
struct Table {
    /// Bumped each time the table is rewritten; the journal that follows
    /// carries the same number. Tables written before the journal existed
    /// have none (0).
    #[serde(default)]
    generation: u64,
    /// "topic/partition" -> (term, vote)
    groups: BTreeMap<String, (u64, u64)>,
}

struct Journal {
    file: File,
    /// Where the next record goes.
    pos: u64,
    /// Bytes from the start that are allocated and written (zeros past
    /// `pos`).
    zeroed_to: u64,
    /// The generation in the header.
    generation: u64,
}

struct Inner {
    table: Table,
    /// Changes since the last flush: `None` for a removed group.
    changes: HashMap<String, Option<(u64, u64)>>,
    journal: Journal,
    /// Size of the table as last written.
    table_bytes: u64,
}

pub struct HardStates {
    path: PathBuf,
    inner: Mutex<Inner>,
}

fn name(key: &GroupKey) -> String {
    format!("{}/{}", key.0, key.1)
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

impl HardStates {
    /// Loads the table of `data_dir` (empty when missing) and replays its
    /// journal.
    pub fn load(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join(HARD_STATE_FILE);
        let (mut table, table_bytes) = match checkpoint::read(&path)? {
            Some(b) => (
                serde_json::from_slice::<Table>(&b).map_err(|e| invalid(&path, e))?,
                b.len() as u64,
            ),
            None => (Table::default(), 0),
        };
        let jpath = data_dir.join(HARD_STATE_JOURNAL);
        let journal = open_journal(&jpath, &mut table)?;
        Ok(Self {
            path,
            inner: Mutex::new(Inner {
                table,
                changes: HashMap::new(),
                journal,
                table_bytes,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored (term, vote) of a group.
    pub fn get(&self, key: &GroupKey) -> Option<(u64, u64)> {
        self.lock().table.groups.get(&name(key)).copied()
    }

    /// Records a change; durable after the next `flush`.
    pub fn set(&self, key: &GroupKey, term: u64, vote: u64) {
        let mut g = self.lock();
        let k = name(key);
        let slot = g.table.groups.entry(k.clone()).or_default();
        if *slot != (term, vote) {
            *slot = (term, vote);
            g.changes.insert(k, Some((term, vote)));
        }
    }

    pub fn remove(&self, key: &GroupKey) {
        let mut g = self.lock();
        let k = name(key);
        if g.table.groups.remove(&k).is_some() {
            g.changes.insert(k, None);
        }
    }

    /// Makes every change recorded so far durable: one journal record and
    /// one `fdatasync`, or, when the journal has grown past the table, the
    /// table rewritten and the journal started over. On an error the
    /// changes stay pending and the next flush writes them again.
    pub fn flush(&self) -> io::Result<()> {
        let mut g = self.lock();
        if g.changes.is_empty() {
            return Ok(());
        }
        let inner = &mut *g;
        let generation = inner.table.generation;
        if inner.journal.generation != generation {
            // The table was rewritten but the journal not yet started over.
            inner.journal.reset(generation)?;
        }
        let record = encode_record(generation, &inner.changes);
        let end = inner.journal.pos + record.len() as u64;
        if end > MIN_JOURNAL.max(2 * inner.table_bytes) {
            #[derive(Serialize)]
            struct Next<'a> {
                generation: u64,
                groups: &'a BTreeMap<String, (u64, u64)>,
            }
            let next = Next {
                generation: generation + 1,
                groups: &inner.table.groups,
            };
            let bytes = serde_json::to_vec(&next).map_err(io::Error::other)?;
            checkpoint::write(&self.path, &bytes)?;
            // The table holds every change; from here on records belong to
            // the next generation, and the journal must start over under it
            // before one is appended (now, or at the next flush if this
            // reset fails).
            inner.table.generation = generation + 1;
            inner.table_bytes = bytes.len() as u64;
            inner.changes.clear();
            return inner.journal.reset(generation + 1);
        }
        inner.journal.append(&record)?;
        inner.changes.clear();
        Ok(())
    }
}

/// Opens (or creates) the journal and applies what it holds to `table`
/// when it continues the table's generation.
fn open_journal(path: &Path, table: &mut Table) -> io::Result<Journal> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut journal = Journal {
        file,
        pos: HEADER,
        zeroed_to: len,
        generation: table.generation,
    };
    if !existed {
        journal.reset(table.generation)?;
        if let Some(dir) = path.parent() {
            checkpoint::sync_dir(dir)?;
        }
        return Ok(journal);
    }
    let bytes = std::fs::read(path)?;
    let generation = match bytes.get(..HEADER as usize) {
        Some(h) if &h[..4] == MAGIC && h[4] == VERSION => {
            let mut g = [0u8; 8];
            g.copy_from_slice(&h[8..16]);
            Some(u64::from_be_bytes(g))
        }
        Some(_) => return Err(invalid(path, "not a hard-state journal")),
        None => None,
    };
    if generation != Some(table.generation) {
        // Empty, torn at creation, or older than the table.
        journal.reset(table.generation)?;
        return Ok(journal);
    }
    let mut at = HEADER as usize;
    while let Some((changes, next)) = decode_record(&bytes, at, table.generation) {
        for (k, v) in changes {
            match v {
                Some(tv) => {
                    table.groups.insert(k, tv);
                }
                None => {
                    table.groups.remove(&k);
                }
            }
        }
        at = next;
    }
    journal.pos = at as u64;
    Ok(journal)
}

impl Journal {
    /// Starts the journal over under `generation`: the header, and an empty
    /// length where the first record goes (older records behind it fail
    /// their checksum under the new generation anyway).
    fn reset(&mut self, generation: u64) -> io::Result<()> {
        let mut head = Vec::with_capacity(HEADER as usize + 8);
        head.extend_from_slice(MAGIC);
        head.push(VERSION);
        head.extend_from_slice(&[0; 3]);
        head.extend_from_slice(&generation.to_be_bytes());
        head.extend_from_slice(&[0; 8]);
        self.ensure_zeroed(head.len() as u64)?;
        self.file.write_all_at(&head, 0)?;
        self.file.sync_data()?;
        self.pos = HEADER;
        self.generation = generation;
        Ok(())
    }

    fn append(&mut self, record: &[u8]) -> io::Result<()> {
        let end = self.pos + record.len() as u64;
        self.ensure_zeroed(end)?;
        self.file.write_all_at(record, self.pos)?;
        self.file.sync_data()?;
        self.pos = end;
        Ok(())
    }

    /// Writes zeros up to at least `end` (rounded up to a chunk) and makes
    /// the new size durable, once per chunk: later records overwrite
    /// allocated blocks in place.
    fn ensure_zeroed(&mut self, end: u64) -> io::Result<()> {
        if end <= self.zeroed_to {
            return Ok(());
        }
        let target = end.div_ceil(ZERO_CHUNK) * ZERO_CHUNK;
        let zeros = vec![0u8; (target - self.zeroed_to) as usize];
        self.file.write_all_at(&zeros, self.zeroed_to)?;
        self.file.sync_all()?;
        self.zeroed_to = target;
        Ok(())
    }
}

fn encode_record(generation: u64, changes: &HashMap<String, Option<(u64, u64)>>) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + changes.len() * 40);
    payload.extend_from_slice(&(changes.len() as u32).to_be_bytes());
    for (k, v) in changes {
        // Keys are "topic/partition" with a topic name of at most 249 bytes.
        let key = &k.as_bytes()[..k.len().min(u16::MAX as usize)];
        payload.extend_from_slice(&(key.len() as u16).to_be_bytes());
        payload.extend_from_slice(key);
        let (flag, (term, vote)) = match v {
            Some(tv) => (1u8, *tv),
            None => (0u8, (0, 0)),
        };
        payload.push(flag);
        payload.extend_from_slice(&term.to_be_bytes());
        payload.extend_from_slice(&vote.to_be_bytes());
    }
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(generation, &payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn checksum(generation: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&generation.to_be_bytes()), payload)
}

type Changes = Vec<(String, Option<(u64, u64)>)>;

/// The record at `at`, and where the next one starts; `None` at the end of
/// the valid records.
fn decode_record(bytes: &[u8], at: usize, generation: u64) -> Option<(Changes, usize)> {
    let word = |i: usize| -> Option<u32> {
        let b = bytes.get(i..i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let len = word(at)? as usize;
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let crc = word(at + 4)?;
    let payload = bytes.get(at + 8..at + 8 + len)?;
    if checksum(generation, payload) != crc {
        return None;
    }
    let mut r = Reader(payload);
    let count = r.u32()?;
    let mut changes = Vec::with_capacity((count as usize).min(len / 19));
    for _ in 0..count {
        let klen = r.u16()? as usize;
        let key = String::from_utf8(r.take(klen)?.to_vec()).ok()?;
        let flag = r.take(1)?[0];
        let term = r.u64()?;
        let vote = r.u64()?;
        changes.push((key, (flag == 1).then_some((term, vote))));
    }
    Some((changes, at + 8 + len))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_be_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> GroupKey {
        ("t".to_owned(), p)
    }

    #[test]
    fn changes_survive_a_reopen_through_the_journal() {
        let d = tempfile::tempdir().unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        hs.set(&key(0), 1, 1);
        hs.set(&key(1), 2, 3);
        hs.flush().unwrap();
        hs.set(&key(0), 4, 2);
        hs.remove(&key(1));
        hs.flush().unwrap();
        // Recorded but never flushed: may be lost.
        hs.set(&key(2), 9, 9);
        drop(hs);
        assert!(!d.path().join(HARD_STATE_FILE).exists());
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((4, 2)));
        assert_eq!(hs.get(&key(1)), None);
        assert_eq!(hs.get(&key(2)), None);
        // Appends continue after the replayed records.
        hs.set(&key(3), 5, 5);
        hs.flush().unwrap();
        drop(hs);
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((4, 2)));
        assert_eq!(hs.get(&key(3)), Some((5, 5)));
    }

    #[test]
    fn a_torn_record_ends_the_replay_and_is_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        hs.set(&key(0), 1, 1);
        hs.flush().unwrap();
        hs.set(&key(0), 2, 2);
        hs.flush().unwrap();
        drop(hs);
        // Damage the second record's payload.
        let jp = d.path().join(HARD_STATE_JOURNAL);
        let mut b = std::fs::read(&jp).unwrap();
        let first = 8 + u32::from_be_bytes([b[16], b[17], b[18], b[19]]) as usize;
        let at = 16 + first + 12;
        b[at] ^= 0xff;
        std::fs::write(&jp, &b).unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((1, 1)));
        hs.set(&key(1), 7, 7);
        hs.flush().unwrap();
        drop(hs);
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((1, 1)));
        assert_eq!(hs.get(&key(1)), Some((7, 7)));
    }

    #[test]
    fn a_long_journal_is_folded_into_the_table() {
        let d = tempfile::tempdir().unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        // Each flush of 2,000 changes appends ~40 KB: past 4 MiB within
        // about a hundred.
        for round in 1..=150u64 {
            for p in 0..2000 {
                hs.set(&key(p), round, p as u64 % 3 + 1);
            }
            hs.flush().unwrap();
        }
        drop(hs);
        let table = checkpoint::read(&d.path().join(HARD_STATE_FILE))
            .unwrap()
            .unwrap();
        let table: Table = serde_json::from_slice(&table).unwrap();
        assert!(table.generation >= 1);
        let journal = std::fs::metadata(d.path().join(HARD_STATE_JOURNAL)).unwrap();
        assert!(journal.len() <= MIN_JOURNAL + ZERO_CHUNK);
        let hs = HardStates::load(d.path()).unwrap();
        for p in 0..2000 {
            assert_eq!(hs.get(&key(p)), Some((150, p as u64 % 3 + 1)));
        }
    }

    #[test]
    fn a_journal_older_than_the_table_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        hs.set(&key(0), 3, 1);
        hs.flush().unwrap();
        drop(hs);
        // A crash after the table was rewritten under the next generation
        // but before the journal started over.
        let mut groups = BTreeMap::new();
        groups.insert("t/0".to_owned(), (5, 2));
        let table = Table {
            generation: 1,
            groups,
        };
        checkpoint::write(
            &d.path().join(HARD_STATE_FILE),
            &serde_json::to_vec(&table).unwrap(),
        )
        .unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((5, 2)));
        hs.set(&key(1), 6, 6);
        hs.flush().unwrap();
        drop(hs);
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((5, 2)));
        assert_eq!(hs.get(&key(1)), Some((6, 6)));
    }

    #[test]
    fn a_table_from_before_the_journal_loads() {
        let d = tempfile::tempdir().unwrap();
        checkpoint::write(
            &d.path().join(HARD_STATE_FILE),
            br#"{"groups":{"t/0":[7,3]}}"#,
        )
        .unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((7, 3)));
        hs.set(&key(0), 8, 1);
        hs.flush().unwrap();
        drop(hs);
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), Some((8, 1)));
    }

    #[test]
    fn garbage_after_the_header_replays_nothing() {
        let d = tempfile::tempdir().unwrap();
        drop(HardStates::load(d.path()).unwrap());
        let jp = d.path().join(HARD_STATE_JOURNAL);
        let mut b = std::fs::read(&jp).unwrap();
        for (i, x) in b.iter_mut().enumerate().skip(16).take(4096) {
            *x = (i * 31 % 251) as u8;
        }
        std::fs::write(&jp, &b).unwrap();
        let hs = HardStates::load(d.path()).unwrap();
        assert_eq!(hs.get(&key(0)), None);
    }
}
