//! One group's `Ready`: its messages queued for the peers ([`queue`]), its
//! snapshot, entries and hard state written ([`persist`]), and what
//! committed applied ([`apply`]); and the records an entry's batch holds
//! ([`records_in`]). The order of these steps across groups is the loop's
//! (see `node`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use protobuf::Message as _;
use raft::StateRole;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use strata_proto::batch::BatchHeader;
use strata_proto::v1::RaftEnvelope;

use super::GroupKey;
use super::groups::GroupId;
use super::hardstate::HardStates;
use super::node::Group;
use super::snapshot::StateSnapshot;
use super::storage::{delete_records_target, entry_to_batch, snapshot_parts};
use crate::log::{FsyncPolicy, SyncPlan, now_ms};

/// Offsets a batch would take (0 for empty entries).
pub(super) fn records_in(data: &[u8]) -> i64 {
    strata_proto::batch::parse_header(data).map_or(0, |h| (h.next_offset() - h.base_offset).max(0))
}

pub(super) fn queue(
    outbox: &mut HashMap<u64, Vec<RaftEnvelope>>,
    key: &GroupKey,
    msgs: Vec<Message>,
) {
    for m in msgs {
        let to = m.to;
        let bytes = match m.write_to_bytes() {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a Raft message");
                continue;
            }
        };
        outbox.entry(to).or_default().push(RaftEnvelope {
            topic: key.0.clone(),
            partition: key.1,
            message: bytes,
            ..Default::default()
        });
    }
}

/// Writes a ready's snapshot, entries and hard state; queues the fsyncs
/// `fsync=always` needs.
pub(super) fn persist(
    g: &mut Group,
    rd: &mut raft::Ready,
    now: i64,
    plans: &mut Vec<(GroupId, SyncPlan)>,
    id: GroupId,
    key: &GroupKey,
    hard_states: &HardStates,
) -> std::result::Result<(), String> {
    let core = Arc::clone(g.replica.core());
    let mut inner = core.lock();
    let dir = inner.log.dir().to_owned();
    let mut meta_dirty = false;
    if !rd.snapshot().is_empty() {
        let s = rd.snapshot();
        let (base, state) = snapshot_parts(s)?;
        if let Some(state) = state {
            // The state first, durably: the log it replaces goes next.
            let cs = s.get_metadata().get_conf_state();
            let snap = StateSnapshot {
                index: base.index,
                term: base.term,
                voters: cs.voters.clone(),
                learners: cs.learners.clone(),
                data: state,
            };
            snap.store(&dir).map_err(|e| e.to_string())?;
            g.replica.restore_state(base.index, &snap.data)?;
            core.set_state_snapshot(snap, now);
        }
        inner.log.reset_to(base, now).map_err(|e| e.to_string())?;
        g.replica.restored();
        inner.meta.set_conf(s.get_metadata().get_conf_state());
        inner.meta.commit = base.index;
        meta_dirty = true;
        core.reset_hw(base.next_offset);
        tracing::info!(topic = %key.0, partition = key.1, index = base.index, offset = base.next_offset,
            "installed a snapshot from the leader");
    }
    let entries = rd.take_entries();
    if !entries.is_empty() {
        // The idempotence table describes the log: forget what it holds
        // from where these entries land (a suffix a new leader replaced, or
        // proposals of ours that never reached the log), then record the
        // entries as they are written.
        // (A leader appending its own proposals at the end has nothing to
        // forget: they were recorded as proposed.)
        let first = entries[0].index;
        let replaces = first <= inner.log.raft_last_index();
        if replaces || g.node.raft.state != StateRole::Leader {
            let from = if replaces {
                inner.log.offset_after_index(first - 1)
            } else {
                None
            };
            let from = from.unwrap_or_else(|| inner.log.next_offset());
            g.replica.truncated(from);
        }
        let active = inner.log.active_base();
        for e in &entries {
            let b = entry_to_batch(e);
            let info = inner
                .log
                .append_entry(&b, e.term, e.index, now)
                .map_err(|err| err.to_string())?;
            if e.get_entry_type() == EntryType::EntryNormal
                && !e.data.is_empty()
                && let Ok(h) = strata_proto::batch::parse_header(&e.data)
            {
                g.replica.record(&BatchHeader {
                    base_offset: info.base_offset,
                    ..h
                });
            }
        }
        if inner.log.active_base() != active {
            g.replica.rolled(&inner.log);
        }
        core.mark_written(inner.log.next_offset());
        if inner.log.config().fsync == FsyncPolicy::Always {
            plans.push((id, inner.log.sync_plan()));
        }
    }
    if let Some(hs) = rd.hs() {
        if hs.term != inner.meta.term || hs.vote != inner.meta.vote {
            // Made durable for all groups at once before any persisted
            // message leaves (see `process`).
            hard_states.set(key, hs.term, hs.vote);
        }
        inner.meta.term = hs.term;
        inner.meta.vote = hs.vote;
        inner.meta.commit = hs.commit;
    }
    if meta_dirty {
        inner.meta.store(&dir).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Applies committed entries: for a partition, the high watermark moves
/// past them; for the controller, the commands run against the metadata.
pub(super) fn apply(g: &mut Group, committed: Vec<Entry>) {
    let Some(last) = committed.last() else {
        return;
    };
    let last_index = last.index;
    for e in &committed {
        match e.get_entry_type() {
            EntryType::EntryConfChange => {
                if let Ok(cc) = ConfChange::parse_from_bytes(&e.data) {
                    match g.node.apply_conf_change(&cc) {
                        Ok(cs) => {
                            let mut inner = g.core().lock();
                            inner.meta.set_conf(&cs);
                            let dir = inner.log.dir().to_owned();
                            if let Err(err) = inner.meta.store(&dir) {
                                tracing::error!(error = %err, "cannot store the membership");
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "membership change not applied"),
                    }
                }
            }
            EntryType::EntryConfChangeV2 => {
                if let Ok(cc) = ConfChangeV2::parse_from_bytes(&e.data)
                    && let Ok(cs) = g.node.apply_conf_change(&cc)
                {
                    let mut inner = g.core().lock();
                    inner.meta.set_conf(&cs);
                    let dir = inner.log.dir().to_owned();
                    let _ = inner.meta.store(&dir);
                }
            }
            EntryType::EntryNormal => {
                if let Some(target) = delete_records_target(&e.data) {
                    g.core().apply_delete_records(target, now_ms());
                } else if !e.data.is_empty() {
                    g.replica.apply(e.index, &e.data);
                }
            }
        }
    }
    let hw = g
        .core()
        .with_log(|log, _| log.offset_after_index(last_index));
    if let Some(hw) = hw {
        g.core().advance_hw(hw);
    }
    g.replica.applied(last_index);
    snapshot_if_due(g, last_index);
}

/// Snapshots a state machine that takes snapshots once `snapshot_every`
/// entries were applied since the last one, then drops the log before it.
fn snapshot_if_due(g: &mut Group, applied: u64) {
    let Some(every) = g.replica.snapshot_every() else {
        return;
    };
    let core = Arc::clone(g.replica.core());
    let last = match core.state_snapshot() {
        Some(s) => s.index,
        None => core.with_log(|log, _| log.raft_base().index),
    };
    if applied < last.saturating_add(every) {
        return;
    }
    let Some(state) = g.replica.snapshot_state() else {
        return;
    };
    let Some((term, cs, dir)) = core.with_log(|log, meta| {
        let term = log.raft_term(applied)?;
        Some((term, meta.conf_state(), log.dir().to_owned()))
    }) else {
        return;
    };
    let snap = StateSnapshot {
        index: applied,
        term,
        voters: cs.voters,
        learners: cs.learners,
        data: state,
    };
    // Written without the log's lock (an fsync): readers of the log go on.
    if let Err(e) = snap.store(&dir) {
        tracing::warn!(topic = %core.topic(), error = %e, "cannot store a state snapshot");
        return;
    }
    let size = snap.data.len();
    core.set_state_snapshot(snap, now_ms());
    let dropped = core.lock().log.compact_through_index(applied, now_ms());
    match dropped {
        Ok(dropped) => tracing::info!(topic = %core.topic(), index = applied, bytes = size,
            segments_dropped = dropped, "took a state snapshot"),
        Err(e) => tracing::warn!(topic = %core.topic(), error = %e,
            "cannot drop the log a snapshot covers"),
    }
}
