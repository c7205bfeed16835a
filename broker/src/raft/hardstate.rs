//! Term and vote of every Raft group hosted here, in one crash-safe file
//! per broker. Raft needs them durable before a vote or an append is
//! answered; keeping them together lets one event-loop cycle persist the
//! changes of thousands of groups (an election storm after a restart) with
//! one fsync'd write instead of one per group.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::GroupKey;
use crate::log::checkpoint;

pub const HARD_STATE_FILE: &str = "raft-hardstate";

#[derive(Serialize, Deserialize, Default)]
struct Table {
    /// "topic/partition" -> (term, vote)
    groups: BTreeMap<String, (u64, u64)>,
}

pub struct HardStates {
    path: PathBuf,
    table: Mutex<Table>,
    dirty: Mutex<bool>,
}

fn name(key: &GroupKey) -> String {
    format!("{}/{}", key.0, key.1)
}

impl HardStates {
    /// Loads the table of `data_dir` (empty when missing).
    pub fn load(data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.join(HARD_STATE_FILE);
        let table = match checkpoint::read(&path)? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            None => Table::default(),
        };
        Ok(Self {
            path,
            table: Mutex::new(table),
            dirty: Mutex::new(false),
        })
    }

    /// The stored (term, vote) of a group.
    pub fn get(&self, key: &GroupKey) -> Option<(u64, u64)> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .groups
            .get(&name(key))
            .copied()
    }

    /// Records a change; durable after the next `flush`.
    pub fn set(&self, key: &GroupKey, term: u64, vote: u64) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let slot = t.groups.entry(name(key)).or_default();
        if *slot != (term, vote) {
            *slot = (term, vote);
            *self.dirty.lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
    }

    pub fn remove(&self, key: &GroupKey) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.groups.remove(&name(key)).is_some() {
            *self.dirty.lock().unwrap_or_else(|e| e.into_inner()) = true;
        }
    }

    /// Writes the table if it changed (temp file, fsync, rename, fsync dir).
    pub fn flush(&self) -> io::Result<()> {
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        if !*dirty {
            return Ok(());
        }
        let bytes = {
            let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
            serde_json::to_vec(&*t).map_err(io::Error::other)?
        };
        checkpoint::write(&self.path, &bytes)?;
        *dirty = false;
        Ok(())
    }
}
