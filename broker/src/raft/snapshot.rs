//! Snapshots of a group's state machine, for groups whose state is not the
//! log itself (the controller's metadata): the replica's state as of a Raft
//! index, stored beside the group's log, so that the log before it can go
//! (a restart loads the snapshot and replays only what follows) and a
//! follower behind the log's start installs it instead of the entries.
//!
//! The loop knows the state only as opaque bytes (`Replica::snapshot_state`
//! and `Replica::restore_state` give and take them).
//!
//! On the wire a snapshot's data is either the original form, JSON naming
//! the offset the log restarts at (partitions: their log is their state),
//! or `SNP2`, that offset (8 bytes, big-endian) and the state's bytes.

use std::io;
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};

use crate::log::checkpoint;

/// Where a group's state snapshot is kept, in its log directory.
pub const SNAPSHOT_FILE: &str = "state-snapshot";
const FILE_MAGIC: &[u8; 4] = b"SSN1";
const WIRE_MAGIC: &[u8; 4] = b"SNP2";

/// A state machine's snapshot: its state as of entry `index` of `term`,
/// and the group's membership then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSnapshot {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub data: Bytes,
}

fn take<const N: usize>(b: &mut &[u8]) -> io::Result<[u8; N]> {
    if b.len() < N {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "truncated state snapshot",
        ));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    *b = &b[N..];
    Ok(out)
}

fn ids(b: &mut &[u8]) -> io::Result<Vec<u64>> {
    let n = u32::from_be_bytes(take::<4>(b)?) as usize;
    if n > b.len() / 8 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad member count in a state snapshot",
        ));
    }
    (0..n)
        .map(|_| take::<8>(b).map(u64::from_be_bytes))
        .collect()
}

impl StateSnapshot {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(32 + self.data.len());
        b.put_slice(FILE_MAGIC);
        b.put_u64(self.index);
        b.put_u64(self.term);
        for list in [&self.voters, &self.learners] {
            b.put_u32(list.len() as u32);
            for id in list {
                b.put_u64(*id);
            }
        }
        b.put_slice(&self.data);
        b.freeze()
    }

    pub fn decode(bytes: &Bytes) -> io::Result<Self> {
        let mut b: &[u8] = bytes;
        if take::<4>(&mut b)? != *FILE_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a state snapshot",
            ));
        }
        let index = u64::from_be_bytes(take::<8>(&mut b)?);
        let term = u64::from_be_bytes(take::<8>(&mut b)?);
        let voters = ids(&mut b)?;
        let learners = ids(&mut b)?;
        let data = bytes.slice(bytes.len() - b.len()..);
        Ok(Self {
            index,
            term,
            voters,
            learners,
            data,
        })
    }

    /// The snapshot stored in `dir`, if any.
    pub fn load(dir: &Path) -> io::Result<Option<Self>> {
        match checkpoint::read(&dir.join(SNAPSHOT_FILE))? {
            None => Ok(None),
            Some(b) => Self::decode(&Bytes::from(b)).map(Some),
        }
    }

    /// Stores the snapshot crash-safely (it replaces the log before it).
    pub fn store(&self, dir: &Path) -> io::Result<()> {
        checkpoint::write(&dir.join(SNAPSHOT_FILE), &self.encode())
    }
}

/// The wire form of a snapshot's data that carries a state.
pub fn wire_data(next_offset: i64, state: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(12 + state.len());
    b.put_slice(WIRE_MAGIC);
    b.put_i64(next_offset);
    b.put_slice(state);
    b.freeze()
}

/// Splits a snapshot's wire data carrying a state into the offset and the
/// state; `None` for the original form.
pub fn split_wire_data(data: &Bytes) -> Option<Result<(i64, Bytes), String>> {
    if !data.starts_with(WIRE_MAGIC) {
        return None;
    }
    if data.len() < 12 {
        return Some(Err("truncated snapshot data".into()));
    }
    let mut off = [0u8; 8];
    off.copy_from_slice(&data[4..12]);
    Some(Ok((i64::from_be_bytes(off), data.slice(12..))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let s = StateSnapshot {
            index: 42,
            term: 7,
            voters: vec![1, 2, 3],
            learners: vec![4],
            data: Bytes::from_static(b"{\"topics\":{}}"),
        };
        assert_eq!(StateSnapshot::decode(&s.encode()).unwrap(), s);
        let d = tempfile::tempdir().unwrap();
        assert_eq!(StateSnapshot::load(d.path()).unwrap(), None);
        s.store(d.path()).unwrap();
        assert_eq!(StateSnapshot::load(d.path()).unwrap(), Some(s.clone()));
        let enc = s.encode();
        for cut in 0..30 {
            assert!(StateSnapshot::decode(&enc.slice(..cut)).is_err(), "{cut}");
        }
        let mut bad = enc.to_vec();
        bad[20] = 0xff; // a huge voter count
        assert!(StateSnapshot::decode(&Bytes::from(bad)).is_err());
        let w = wire_data(99, b"state");
        assert_eq!(
            split_wire_data(&w),
            Some(Ok((99, Bytes::from_static(b"state"))))
        );
        assert_eq!(
            split_wire_data(&Bytes::from_static(b"{\"next_offset\":1}")),
            None
        );
        assert!(matches!(
            split_wire_data(&Bytes::from_static(b"SNP2x")),
            Some(Err(_))
        ));
    }
}
