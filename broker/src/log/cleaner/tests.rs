use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use strata_proto::batch::{self, BatchBuilder, Codec};

use super::*;
use crate::log::{CleanupPolicy, Log, LogConfig};

const NOW: i64 = 10_000_000;

fn cfg(segment_bytes: u64) -> LogConfig {
    let mut c = LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        index_max_bytes: 1 << 16,
        ..LogConfig::default()
    };
    c.cleanup = CleanupPolicy {
        delete: false,
        compact: true,
    };
    c.compaction.delete_retention_ms = 1_000;
    c
}

/// One batch of `(key, value)` records (`None` = tombstone) written at `ts`.
fn batch_of(records: &[(String, Option<String>)], ts: i64, codec: Codec) -> Bytes {
    let mut b = BatchBuilder::new(ts);
    b.set_compression(codec);
    for (k, v) in records {
        b.push(ts, Some(k.as_bytes()), v.as_deref().map(str::as_bytes), &[]);
    }
    b.finish()
}

/// Writes `updates` (key, value) in batches of `per_batch`, rolling as the
/// segments fill; returns what the log should read as after cleaning.
fn write(
    log: &mut Log,
    updates: &[(String, Option<String>)],
    per_batch: usize,
    ts: i64,
) -> BTreeMap<String, (i64, Option<String>)> {
    let mut latest = BTreeMap::new();
    for (i, chunk) in updates.chunks(per_batch).enumerate() {
        let codec = if i % 2 == 0 { Codec::None } else { Codec::Lz4 };
        let info = log.append(&batch_of(chunk, ts, codec), 1, ts).unwrap();
        for (j, (k, v)) in chunk.iter().enumerate() {
            latest.insert(k.clone(), (info.base_offset + j as i64, v.clone()));
        }
    }
    latest
}

/// Every record from the log start: (offset, key, value).
fn read_all(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    log.scan_batches(0, |h, b| {
        if h.is_control() {
            return;
        }
        for r in batch::records(b).unwrap() {
            let r = r.unwrap();
            let s = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
            out.push((r.offset, s(r.key).unwrap(), s(r.value)));
        }
    })
    .unwrap();
    out
}

fn clean(log: &mut Log, map_keys: usize) -> PassOutcome {
    let plan = log
        .compaction_plan(NOW, log.next_offset())
        .expect("a pass is due");
    let mut map = OffsetMap::with_capacity(map_keys);
    let outcome = run_pass(&plan, &mut map, &mut |_| {}).unwrap();
    log.install_cleaned(&outcome).unwrap();
    outcome
}

fn updates(n: usize, keys: usize, round: &str) -> Vec<(String, Option<String>)> {
    (0..n)
        .map(|i| (format!("key-{:04}", i % keys), Some(format!("{round}-{i}"))))
        .collect()
}

fn assert_compacted(log: &Log, expect: &BTreeMap<String, (i64, Option<String>)>) {
    let got = read_all(log);
    let offsets: Vec<i64> = got.iter().map(|r| r.0).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    let got: BTreeMap<String, (i64, Option<String>)> =
        got.into_iter().map(|(o, k, v)| (k, (o, v))).collect();
    let live: BTreeMap<_, _> = expect
        .iter()
        .filter(|(_, (_, v))| v.is_some())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(got, live);
}

#[test]
fn keeps_the_latest_record_per_key_at_its_offset() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(16 << 10), NOW).unwrap();
    let expect = write(&mut log, &updates(5_000, 100, "a"), 25, NOW);
    let end = log.next_offset();
    log.roll(NOW).unwrap();
    let before = log.size_bytes();
    let out = clean(&mut log, 10_000);
    assert_eq!(out.keys, 100);
    assert_eq!(out.records_removed, 4_900);
    assert_compacted(&log, &expect);
    // Offsets never move: the log ends where it did, entries stay contiguous.
    assert_eq!(log.next_offset(), end);
    // What stays: 100 live records and the header of each of the 200 batches.
    assert!(
        log.size_bytes() < before / 5,
        "{} of {before}",
        log.size_bytes()
    );
    // Nothing is dirty any more: no pass is due.
    assert!(log.compaction_plan(NOW, log.next_offset()).is_none());
    // And it all survives a reopen.
    drop(log);
    let (log, _) = Log::open(d.path(), cfg(16 << 10), NOW).unwrap();
    assert_compacted(&log, &expect);
    assert_eq!(log.raft_last_index(), 200);
    for i in 1..=200 {
        assert!(log.raft_header(i).is_some(), "entry {i} is still stored");
    }
}

#[test]
fn a_small_map_cleans_in_several_passes() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(8 << 10), NOW).unwrap();
    let expect = write(&mut log, &updates(4_000, 400, "a"), 20, NOW);
    log.roll(NOW).unwrap();
    let mut passes = 0;
    while log.compaction_plan(NOW, log.next_offset()).is_some() {
        let out = clean(&mut log, 150);
        assert!(out.keys <= 150);
        passes += 1;
        assert!(passes < 100);
    }
    assert!(passes > 2, "{passes} passes");
    assert_compacted(&log, &expect);
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(8 << 10);
    c.compaction.min_dirty_ratio = 0.0;
    let (mut log, _) = Log::open(d.path(), c, NOW).unwrap();
    let mut expect = write(&mut log, &updates(600, 60, "a"), 30, NOW - 5_000);
    let deletes: Vec<(String, Option<String>)> =
        (0..10).map(|i| (format!("key-{i:04}"), None)).collect();
    // Tombstones written just now: they stay through a pass.
    expect.extend(write(&mut log, &deletes, 10, NOW));
    log.roll(NOW).unwrap();
    clean(&mut log, 1_000);
    let tombstones = |log: &Log| read_all(log).iter().filter(|r| r.2.is_none()).count();
    assert_eq!(tombstones(&log), 10);
    assert_eq!(read_all(&log).len(), 60);
    // Nothing new is written, yet a pass is due once they expire.
    assert!(log.compaction_plan(NOW + 500, log.next_offset()).is_none());
    assert!(
        log.compaction_plan(NOW + 1_000, log.next_offset())
            .is_some()
    );
    // Once older than delete.retention.ms, the next pass removes them.
    let more = write(&mut log, &updates(10, 60, "b"), 10, NOW);
    expect.extend(more);
    log.roll(NOW).unwrap();
    let plan = log.compaction_plan(NOW + 2_000, log.next_offset()).unwrap();
    let out = run_pass(&plan, &mut OffsetMap::with_capacity(1_000), &mut |_| {}).unwrap();
    log.install_cleaned(&out).unwrap();
    assert_eq!(tombstones(&log), 0);
    assert_compacted(&log, &expect);
}

#[test]
fn only_committed_sealed_and_old_enough_segments_are_cleaned() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(8 << 10);
    c.compaction.min_lag_ms = 60_000;
    let (mut log, _) = Log::open(d.path(), c.clone(), NOW).unwrap();
    write(&mut log, &updates(1_000, 10, "a"), 20, NOW - 120_000);
    log.roll(NOW).unwrap();
    let old_end = log.next_offset();
    write(&mut log, &updates(1_000, 10, "b"), 20, NOW);
    log.roll(NOW).unwrap();
    // Uncommitted entries are never cleaned.
    assert!(log.compaction_plan(NOW, 0).is_none());
    let plan = log.compaction_plan(NOW, log.next_offset()).unwrap();
    assert_eq!(plan.end, old_end, "younger than min.compaction.lag.ms");
    // A delete-only topic is never compacted.
    c.cleanup = CleanupPolicy::DELETE;
    log.set_config(c);
    assert!(log.compaction_plan(NOW, log.next_offset()).is_none());
}

#[test]
fn the_same_log_cleans_to_the_same_bytes() {
    let mut results = Vec::new();
    for _ in 0..2 {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(d.path(), cfg(8 << 10), NOW).unwrap();
        write(&mut log, &updates(2_000, 50, "a"), 10, NOW);
        log.roll(NOW).unwrap();
        clean(&mut log, 1_000);
        let mut all = Vec::new();
        log.scan_batches(0, |_, b| all.extend_from_slice(b))
            .unwrap();
        results.push(all);
    }
    assert_eq!(results[0], results[1]);
}

fn files_with(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// Stops a pass at each durable step of the swap and reopens: the log
/// reads as before the pass up to the commit point, as after it from then.
#[test]
fn a_crash_leaves_the_old_or_the_new_segments() {
    for step in 0..4 {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(d.path(), cfg(8 << 10), NOW).unwrap();
        let mut expect = write(&mut log, &updates(3_000, 30, "a"), 30, NOW);
        log.roll(NOW).unwrap();
        // A first pass leaves small segments that the second one merges.
        clean(&mut log, 1_000);
        expect.extend(write(&mut log, &updates(3_000, 30, "b"), 30, NOW));
        log.roll(NOW).unwrap();
        let before = read_all(&log);
        let plan = log.compaction_plan(NOW, log.next_offset()).unwrap();
        let out = run_pass(&plan, &mut OffsetMap::with_capacity(1_000), &mut |_| {}).unwrap();
        let first = &out.cleaned[0];
        assert!(first.replaces.len() > 1, "a merge: {:?}", first.replaces);
        let swap = d
            .path()
            .join(format!("{}{SWAP_SUFFIX}", file_stem(first.base)));
        match step {
            // Killed while writing: only the .cleaned files exist.
            0 => {}
            // Committed: renamed to .swap.
            1 => std::fs::rename(&first.path, &swap).unwrap(),
            // Committed, and some replaced segments removed.
            2 => {
                std::fs::rename(&first.path, &swap).unwrap();
                let b = first.replaces[1].0;
                std::fs::remove_file(d.path().join(format!("{}.log", file_stem(b)))).unwrap();
                std::fs::remove_file(d.path().join(format!("{}.index", file_stem(first.base))))
                    .unwrap();
            }
            // The whole install.
            _ => {
                log.install_cleaned(&out).unwrap();
            }
        }
        drop(log);
        let (log, _) = Log::open(d.path(), cfg(8 << 10), NOW).unwrap();
        assert!(files_with(d.path(), CLEANED_SUFFIX).is_empty());
        assert!(files_with(d.path(), SWAP_SUFFIX).is_empty());
        let after = read_all(&log);
        if step == 0 {
            assert_eq!(after, before, "step {step}");
        } else {
            // The first cleaned segment is in; later ones may not be.
            let first_end = first.replaces.iter().map(|r| r.0).max().unwrap();
            let cleaned: Vec<_> = after.iter().filter(|r| r.0 < first_end).collect();
            let dup = cleaned.len()
                != cleaned
                    .iter()
                    .map(|r| &r.1)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
            assert!(!dup, "step {step}: one record per key in the swapped range");
            let mut keys: Vec<&String> = after.iter().map(|r| &r.1).collect();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), 30, "step {step}: every key still reads");
            if step == 3 {
                assert_compacted(&log, &expect);
            }
        }
        // Offsets and Raft entries are whole either way.
        assert_eq!(log.raft_last_index(), 200);
        assert!(
            (1..=200).all(|i| log.raft_header(i).is_some()),
            "step {step}"
        );
    }
}

#[test]
fn a_reader_keeps_its_bytes_across_a_swap() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(8 << 10), NOW).unwrap();
    write(&mut log, &updates(1_000, 10, "a"), 10, NOW);
    log.roll(NOW).unwrap();
    let held = log.read(0, 1 << 20, i64::MAX).unwrap().records;
    let copy = held.to_vec();
    clean(&mut log, 100);
    assert_eq!(
        &held[..],
        &copy[..],
        "a fetch in flight reads the old segment"
    );
    assert!(batch::BatchIter::new(held).count() > 0);
}
