//! Replicas whose storage failed: taken out of the loop ([`Suspended`]),
//! held out of leading and acknowledging, and rebuilt from disk once a
//! probe write shows their disk has room again.

use std::sync::Arc;
use std::time::Instant;

use super::GroupKey;
use super::groups::GroupId;
use super::node::RaftLoop;
use super::pending::Pending;
use super::replica::Replica;

/// How often a replica suspended after a failed write checks for room.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes the room probe writes (and removes) next to the log.
const PROBE_BYTES: usize = 1 << 20;

/// A group taken out of the loop after its storage failed: it leads and
/// acknowledges nothing; once its disk has room again it is rebuilt from
/// what is on disk, as a restart of that one replica would.
pub(super) struct Suspended {
    replica: Arc<dyn Replica>,
}

impl RaftLoop {
    /// Takes a group whose storage failed out of the loop (see
    /// [`Suspended`]). Its raft-rs node is dropped: what it had not made
    /// durable was never acknowledged, and the node is rebuilt from disk.
    pub(super) fn suspend(&mut self, id: GroupId) {
        let Some((key, g)) = self.groups.remove_entry(id) else {
            return;
        };
        let key = &key;
        hold_out(&*g.replica);
        self.directory.set_leader(&key.0, key.1, 0, g.role.term);
        self.views
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.suspended
            .insert(key.clone(), Suspended { replica: g.replica });
    }

    /// Rebuilds suspended groups once a probe write next to their logs
    /// succeeds (checked every `PROBE_EVERY`). Groups whose fsync failed
    /// stay out until the broker restarts.
    pub(super) fn probe_suspended(&mut self, active: &mut Pending) {
        if self.suspended.is_empty() || Instant::now() < self.next_probe {
            return;
        }
        self.next_probe = Instant::now() + PROBE_EVERY;
        let Some(dir) = self
            .suspended
            .values()
            .find(|s| !s.replica.core().has_failed())
            .map(|s| s.replica.core().with_log(|log, _| log.dir().to_owned()))
        else {
            return;
        };
        if let Err(e) = probe_room(&dir) {
            tracing::debug!(dir = %dir.display(), error = %e, "still no room to write");
            return;
        }
        let keys: Vec<GroupKey> = self
            .suspended
            .iter()
            .filter(|(_, s)| !s.replica.core().has_failed())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(s) = self.suspended.remove(&key) else {
                continue;
            };
            s.replica.core().resume();
            match self.new_group(Arc::clone(&s.replica), None) {
                Ok(g) => {
                    tracing::info!(topic = %key.0, partition = key.1, "disk has room again; replica resumed");
                    let id = self.groups.insert(key, g);
                    active.insert(id);
                }
                Err(e) => {
                    tracing::error!(topic = %key.0, partition = key.1, error = %e, "cannot resume the replica");
                    hold_out(&*s.replica);
                    self.suspended.insert(key, s);
                }
            }
        }
    }
}

/// Makes the state machine forget what it recorded past the log end:
/// proposals of a leader that never reached the log may not answer a retry
/// as duplicates.
pub(super) fn forget_unwritten(replica: &dyn Replica) {
    let end = replica.core().lock().log.next_offset();
    replica.truncated(end);
}

/// Holds a replica out after its storage failed (see [`Suspended`]).
fn hold_out(replica: &dyn Replica) {
    replica.core().suspend();
    forget_unwritten(replica);
}

/// Writes and removes `PROBE_BYTES` in `dir`: whether a write would fit.
fn probe_room(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".room-probe");
    let r = std::fs::File::create(&path).and_then(|mut f| f.write_all(&vec![0u8; PROBE_BYTES]));
    let _ = std::fs::remove_file(&path);
    r
}
