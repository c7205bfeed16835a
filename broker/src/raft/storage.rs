//! raft-rs `Storage` over a replica's log: entries are the stored batches,
//! found by Raft index; the hard state and membership live in a small
//! crash-safe file next to the segments.
//!
//! Entry mapping (both ways, byte for byte on every replica):
//! - a normal entry with data: the data is one record batch, stored as is
//!   (with offset, term and index stamped into its header);
//! - a normal entry without data (a new leader's entry): an empty control
//!   batch (no records, so it takes no offset);
//! - a configuration change: a control batch with one record whose key
//!   names the kind and whose value is the encoded change.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use serde::{Deserialize, Serialize};
use strata_proto::batch::{self, BatchBuilder, BatchHeader};

use super::replica::ReplicaCore;
use super::snapshot::{split_wire_data, wire_data};
use crate::log::{COMMIT_HINT_FILE, RAFT_STATE_FILE, RaftBase, checkpoint};

const CONF_CHANGE_KEY: &[u8] = b"strata.raft.conf_change";
const CONF_CHANGE_V2_KEY: &[u8] = b"strata.raft.conf_change_v2";
const DELETE_RECORDS_KEY: &[u8] = b"strata.delete_records";

/// The persistent Raft state of one group besides its entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RaftMeta {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

impl RaftMeta {
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
            ..Default::default()
        }
    }

    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.clone(),
            learners: self.learners.clone(),
            ..Default::default()
        }
    }

    pub fn set_conf(&mut self, cs: &ConfState) {
        self.voters = cs.voters.clone();
        self.learners = cs.learners.clone();
    }

    /// Reads the state of the group stored in `dir`, if any. The commit
    /// index is the larger of the stored one and the lazily written hint.
    pub fn load(dir: &Path) -> std::io::Result<Option<Self>> {
        let mut meta: Self = match checkpoint::read(&dir.join(RAFT_STATE_FILE))? {
            None => return Ok(None),
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", dir.join(RAFT_STATE_FILE).display()),
                )
            })?,
        };
        if let Ok(Some(c)) = checkpoint::read_i64(&dir.join(COMMIT_HINT_FILE)) {
            meta.commit = meta.commit.max(u64::try_from(c).unwrap_or(0));
        }
        Ok(Some(meta))
    }

    /// Records the commit index without an fsync. The commit index needs no
    /// durability (a restarted replica learns it again from the leader, and
    /// it is clamped to the log that survived): this only lets a restarted
    /// replica serve its high watermark sooner. A lost or torn hint is
    /// ignored.
    pub fn store_commit_hint(&self, dir: &Path) -> std::io::Result<()> {
        checkpoint::overwrite_i64_relaxed(
            &dir.join(COMMIT_HINT_FILE),
            i64::try_from(self.commit).unwrap_or(i64::MAX),
        )
    }

    /// Writes the state crash-safely (temp file, fsync, rename, fsync dir).
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        let b = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        checkpoint::write(&dir.join(RAFT_STATE_FILE), &b)
    }

    /// Writes the initial state of a new replica without an fsync: if a
    /// crash loses it, the replica is simply created again from the
    /// metadata (it has acknowledged nothing yet).
    pub fn store_initial(&self, dir: &Path) -> std::io::Result<()> {
        let b = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        checkpoint::write_relaxed(&dir.join(RAFT_STATE_FILE), &b)
    }
}

/// A DeleteRecords entry: a control batch whose one record carries the new
/// log start offset.
pub fn delete_records_batch(offset: i64, now_ms: i64) -> Bytes {
    let mut b = BatchBuilder::new(now_ms);
    b.set_control();
    b.push(
        0,
        Some(DELETE_RECORDS_KEY),
        Some(&offset.to_be_bytes()),
        &[],
    );
    b.finish()
}

/// The new log start a committed entry asks for, if it is a DeleteRecords
/// entry.
pub fn delete_records_target(data: &Bytes) -> Option<i64> {
    let h = batch::parse_header(data).ok()?;
    if !h.is_control() || h.records_count != 1 {
        return None;
    }
    let r = batch::records(data).ok()?.next()?.ok()?;
    if r.key.as_deref() != Some(DELETE_RECORDS_KEY) {
        return None;
    }
    let v: [u8; 8] = r.value.as_deref()?.try_into().ok()?;
    Some(i64::from_be_bytes(v)).filter(|o| *o >= 0)
}

/// What a partition snapshot carries: where the log restarts.
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    next_offset: i64,
}

/// The stored form of an entry.
pub fn entry_to_batch(e: &Entry) -> Bytes {
    match e.get_entry_type() {
        EntryType::EntryNormal if !e.data.is_empty() => e.data.clone(),
        EntryType::EntryNormal => {
            let mut b = BatchBuilder::new(0);
            b.set_control();
            b.finish()
        }
        kind => {
            let key = if kind == EntryType::EntryConfChange {
                CONF_CHANGE_KEY
            } else {
                CONF_CHANGE_V2_KEY
            };
            let mut b = BatchBuilder::new(0);
            b.set_control();
            b.push(0, Some(key), Some(&e.data), &[]);
            b.finish()
        }
    }
}

/// The entry a stored batch stands for.
pub fn batch_to_entry(h: &BatchHeader, bytes: Bytes) -> Entry {
    let mut e = Entry {
        term: h.raft_term,
        index: h.raft_index,
        ..Default::default()
    };
    if h.is_control() {
        if h.records_count == 0 {
            e.set_entry_type(EntryType::EntryNormal);
            return e;
        }
        if let Ok(mut recs) = batch::records(&bytes)
            && let Some(Ok(r)) = recs.next()
        {
            let kind = match r.key.as_deref() {
                Some(k) if k == CONF_CHANGE_KEY => Some(EntryType::EntryConfChange),
                Some(k) if k == CONF_CHANGE_V2_KEY => Some(EntryType::EntryConfChangeV2),
                _ => None,
            };
            if let Some(kind) = kind {
                e.set_entry_type(kind);
                e.data = r.value.unwrap_or_default();
                return e;
            }
        }
    }
    e.set_entry_type(EntryType::EntryNormal);
    e.data = bytes;
    e
}

/// Checks an entry received from a peer before it reaches Raft: normal
/// data must be exactly one intact batch.
pub fn check_entry(e: &Entry) -> Result<(), String> {
    if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
        let h = batch::verify_crc(&e.data).map_err(|err| err.to_string())?;
        if h.total_len() != e.data.len() {
            return Err("entry data is not exactly one batch".into());
        }
    }
    Ok(())
}

/// raft-rs storage of one group.
pub struct LogStorage {
    core: Arc<ReplicaCore>,
}

impl LogStorage {
    pub fn new(core: Arc<ReplicaCore>) -> Self {
        Self { core }
    }
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::Unavailable)
}

impl Storage for LogStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        // What a state machine's snapshot covers is committed.
        let snapshot = self.core.state_snapshot().map_or(0, |s| s.index);
        self.core.with_log(|log, meta| {
            let mut hs = meta.hard_state();
            // A torn tail (fsync=never) can leave the commit beyond the log.
            hs.commit = hs
                .commit
                .max(snapshot)
                .min(log.raft_last_index())
                .max(log.raft_base().index);
            Ok(RaftState::new(hs, meta.conf_state()))
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max = max_size.into().unwrap_or(u64::MAX);
        self.core.with_log(|log, _| {
            if low <= log.raft_base().index {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            if high > log.raft_last_index() + 1 {
                return Err(unavailable());
            }
            let got = log.raft_entries(low, high, max);
            if got.is_empty() && low < high {
                return Err(unavailable());
            }
            Ok(got
                .into_iter()
                .map(|(h, b)| batch_to_entry(&h, b))
                .collect())
        })
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.core.with_log(|log, _| {
            if idx < log.raft_base().index {
                return Err(raft::Error::Store(StorageError::Compacted));
            }
            log.raft_term(idx).ok_or_else(unavailable)
        })
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.core.with_log(|log, _| Ok(log.raft_base().index + 1))
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.core.with_log(|log, _| Ok(log.raft_last_index()))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let state = self.core.state_snapshot();
        self.core.with_log(|log, meta| {
            let base = log.raft_base();
            // A state machine's snapshot covers the log before it.
            if let Some(st) = state.filter(|s| s.index >= base.index && s.index >= request_index) {
                let next = log.offset_after_index(st.index).unwrap_or(base.next_offset);
                let mut s = Snapshot {
                    data: wire_data(next, &st.data),
                    ..Default::default()
                };
                let md = s.mut_metadata();
                md.index = st.index;
                md.term = st.term;
                md.set_conf_state(ConfState {
                    voters: st.voters.clone(),
                    learners: st.learners.clone(),
                    ..Default::default()
                });
                return Ok(s);
            }
            if base.index == 0 || base.index < request_index {
                return Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ));
            }
            let mut s = Snapshot::default();
            let data = SnapshotData {
                next_offset: base.next_offset,
            };
            s.data = serde_json::to_vec(&data).unwrap_or_default().into();
            let md = s.mut_metadata();
            md.index = base.index;
            md.term = base.term;
            md.set_conf_state(meta.conf_state());
            Ok(s)
        })
    }
}

/// The log position a received snapshot moves a follower to, and the
/// state machine's snapshot when it carries one.
pub fn snapshot_parts(s: &Snapshot) -> Result<(RaftBase, Option<Bytes>), String> {
    let (next_offset, state) = match split_wire_data(&s.data) {
        Some(parts) => {
            let (next, state) = parts?;
            (next, Some(state))
        }
        None => {
            let d: SnapshotData = serde_json::from_slice(&s.data).map_err(|e| e.to_string())?;
            (d.next_offset, None)
        }
    };
    if next_offset < 0 {
        return Err("negative snapshot offset".into());
    }
    let base = RaftBase {
        index: s.get_metadata().index,
        term: s.get_metadata().term,
        next_offset,
    };
    Ok((base, state))
}

/// Encodes a Raft message for the wire.
pub fn encode_message(m: &raft::eraftpb::Message) -> Bytes {
    m.write_to_bytes().map(Bytes::from).unwrap_or_default()
}

/// Decodes and checks a Raft message from a peer.
pub fn decode_message(b: &Bytes) -> Result<raft::eraftpb::Message, String> {
    let m = raft::eraftpb::Message::parse_from_carllerche_bytes(b).map_err(|e| e.to_string())?;
    for e in m.get_entries() {
        check_entry(e)?;
    }
    if !m.get_snapshot().data.is_empty() {
        snapshot_parts(m.get_snapshot())?;
    }
    Ok(m)
}
