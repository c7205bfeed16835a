use super::*;
use proptest::prelude::*;
use std::os::unix::fs::FileExt;
use strata_proto::batch::BatchBuilder;

fn cfg(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 128,
        index_max_bytes: 4096,
        ..LogConfig::default()
    }
}

fn make_batch(n: usize, size: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(ts);
    for i in 0..n {
        let v = vec![(i % 251) as u8; size];
        b.push(
            ts + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(&v),
            &[],
        );
    }
    b.finish()
}

/// Appends and returns (base offset, stored bytes) of each batch.
fn fill(log: &mut Log, spec: &[(usize, usize)]) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    for (i, (n, size)) in spec.iter().enumerate() {
        let b = make_batch(*n, *size, 1_000 + i as i64 * 10);
        let info = log.append(&b, 1, 0).unwrap();
        let r = log.read(info.base_offset, 1, i64::MAX).unwrap();
        let (h, stored) = batch::BatchIter::new(r.records).next().unwrap().unwrap();
        assert_eq!(h.base_offset, info.base_offset);
        out.push((info.base_offset, stored));
    }
    out
}

fn seg_files(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            segment::parse_log_name(&e.file_name().to_string_lossy()).map(|b| (b, e.path()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn append_read_roll_reopen() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
    let stored = fill(&mut log, &[(5, 100); 40]);
    assert!(log.segment_count() > 3, "rolled: {}", log.segment_count());
    assert_eq!(log.next_offset(), 200);
    log.close().unwrap();
    drop(log);
    let (log, rep) = Log::open(d.path(), cfg(4096), 0).unwrap();
    assert_eq!(rep.truncated_bytes, 0);
    assert_eq!(log.next_offset(), 200);
    for (base, bytes) in &stored {
        for o in *base..*base + 5 {
            let r = log.read(o, 1, i64::MAX).unwrap();
            assert_eq!(&r.records[..bytes.len()], &bytes[..]);
        }
    }
    assert!(matches!(
        log.read(201, 10, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(200, 10, i64::MAX).unwrap().records.is_empty());
    // The high watermark bounds reads.
    assert!(log.read(0, 1 << 20, 0).unwrap().records.is_empty());
    let r = log.read(0, 1 << 20, 7).unwrap();
    assert_eq!(r.next_offset, 5);
}

#[test]
fn missing_and_garbage_indexes_are_rebuilt() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
    let stored = fill(&mut log, &[(3, 200); 30]);
    log.close().unwrap();
    drop(log);
    let files = seg_files(d.path());
    std::fs::remove_file(files[0].1.with_extension("index")).unwrap();
    std::fs::write(
        files[1].1.with_extension("index"),
        b"garbage garbage garbage",
    )
    .unwrap();
    std::fs::write(files[2].1.with_extension("timeindex"), [0xffu8; 37]).unwrap();
    let (log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
    for (base, bytes) in &stored {
        let r = log.read(*base + 2, 1, i64::MAX).unwrap();
        assert_eq!(&r.records[..bytes.len()], &bytes[..]);
    }
    assert_eq!(
        log.offset_for_timestamp(1_000 + 10 * 10).unwrap(),
        Some((30, 1_100))
    );
}

#[test]
fn unknown_files_are_left_alone() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("notes.txt"), b"hello").unwrap();
    std::fs::write(d.path().join("123.log"), b"not a segment name").unwrap();
    let (mut log, rep) = Log::open(d.path(), cfg(4096), 0).unwrap();
    assert_eq!(rep.ignored_files.len(), 2);
    fill(&mut log, &[(1, 10)]);
    assert_eq!(std::fs::read(d.path().join("notes.txt")).unwrap(), b"hello");
}

#[test]
fn timestamp_lookup() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(2048), 0).unwrap();
    // Batch i has records with timestamps 1000 + 10 i .. + 4.
    fill(&mut log, &[(5, 50); 50]);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1_000)));
    assert_eq!(log.offset_for_timestamp(1_000).unwrap(), Some((0, 1_000)));
    assert_eq!(log.offset_for_timestamp(1_003).unwrap(), Some((3, 1_003)));
    assert_eq!(log.offset_for_timestamp(1_005).unwrap(), Some((5, 1_010)));
    assert_eq!(
        log.offset_for_timestamp(1_000 + 10 * 37 + 2).unwrap(),
        Some((37 * 5 + 2, 1_372))
    );
    assert_eq!(
        log.offset_for_timestamp(1_000 + 10 * 49 + 4).unwrap(),
        Some((249, 1_494))
    );
    assert_eq!(log.offset_for_timestamp(2_000).unwrap(), None);
}

#[test]
fn retention_by_size_and_time_and_delete_records() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(2048);
    c.retention_bytes = Some(6000);
    c.retention_ms = None;
    let (mut log, _) = Log::open(d.path(), c, 0).unwrap();
    fill(&mut log, &[(4, 100); 60]);
    let before = log.segment_count();
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    assert_eq!(log.segment_count(), before - deleted);
    assert!(
        log.size_bytes() >= 6000 - 2048 && log.size_bytes() <= 6000 + 2048,
        "{}",
        log.size_bytes()
    );
    let start = log.log_start_offset();
    assert_eq!(start, log.segment_bases()[0]);
    assert!(matches!(
        log.read(0, 10, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(!log.read(start, 10, i64::MAX).unwrap().records.is_empty());
    assert_eq!(seg_files(d.path()).len(), log.segment_count());

    // Time: batches are stamped 1000.. 1600; now = 1_000_000 with 1 s retention.
    let mut c = log.config().clone();
    c.retention_bytes = None;
    c.retention_ms = Some(1_000);
    log.set_config(c);
    log.apply_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1, "only the active segment stays");

    // DeleteRecords moves the start inside the active segment.
    let end = log.next_offset();
    log.delete_records(end - 2, 0).unwrap();
    assert_eq!(log.log_start_offset(), end - 2);
    drop(log);
    let (log, _) = Log::open(d.path(), cfg(2048), 0).unwrap();
    assert_eq!(
        log.log_start_offset(),
        end - 2,
        "log start survives restart"
    );
}

#[test]
fn oversized_batch_rejected_and_log_unchanged() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(1 << 20);
    c.max_message_bytes = 1000;
    let (mut log, _) = Log::open(d.path(), c, 0).unwrap();
    let big = make_batch(3, 500, 0);
    assert!(matches!(
        log.append(&big, 1, 0),
        Err(LogError::BatchTooLarge { .. })
    ));
    assert_eq!(log.next_offset(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random appends, a cut at a random byte of the log, reopen: every
    /// batch before the cut is readable and identical, nothing after it,
    /// and appends continue at the right offset.
    #[test]
    fn cut_at_random_byte(spec in proptest::collection::vec((1usize..8, 0usize..300), 1..40),
                          cut in any::<u64>(), garbage in any::<bool>(), seg in 1500u64..8000) {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(d.path(), cfg(seg), 0).unwrap();
        let stored = fill(&mut log, &spec);
        let sizes: Vec<(i64, usize)> = {
            let mut v = Vec::new();
            for (b, _) in seg_files(d.path()) {
                let s = log.segments.get(&b).unwrap().size();
                v.push((b, s));
            }
            v
        };
        drop(log); // crash: no close
        let total: usize = sizes.iter().map(|s| s.1).sum();
        let cut = (cut % (total as u64 + 1)) as usize;
        // Cut the concatenated log at `cut`: truncate the file holding it,
        // remove every later segment.
        let mut acc = 0usize;
        for (b, s) in &sizes {
            let path = d.path().join(format!("{}.log", segment::file_stem(*b)));
            if acc + s <= cut {
                acc += s;
                continue;
            }
            if acc <= cut {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len((cut - acc) as u64).unwrap();
                if garbage {
                    f.write_all_at(&[0xA5; 100], (cut - acc) as u64).unwrap();
                }
                acc += s;
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        let (mut log, _) = Log::open(d.path(), cfg(seg), 0).unwrap();
        // Batches wholly before the cut survive; the rest is gone.
        let mut pos = 0usize;
        let mut expect_end = 0i64;
        for (base, bytes) in &stored {
            if pos + bytes.len() <= cut {
                let r = log.read(*base, 1, i64::MAX).unwrap();
                prop_assert_eq!(&r.records[..], &bytes[..]);
                expect_end = base + batch::parse_header(bytes).unwrap().records_count as i64;
            }
            pos += bytes.len();
        }
        prop_assert_eq!(log.next_offset(), expect_end);
        prop_assert!(log.read(expect_end, 1 << 20, i64::MAX).unwrap().records.is_empty());
        let info = log.append(&make_batch(2, 10, 5), 2, 0).unwrap();
        prop_assert_eq!(info.base_offset, expect_end);
        let r = log.read(expect_end, 1 << 20, i64::MAX).unwrap();
        prop_assert_eq!(batch::parse_header(&r.records).unwrap().records_count, 2);
    }
}

fn empty_entry() -> Bytes {
    let mut b = BatchBuilder::new(0);
    b.set_control();
    b.finish()
}

#[test]
fn raft_entries_survive_reopen_truncate_and_reset() {
    let d = tempfile::tempdir().unwrap();
    {
        let (mut log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
        log.append_entry(&empty_entry(), 1, 1, 0).unwrap();
        for i in 2..=20u64 {
            log.append_entry(&make_batch(3, 100, 1_000), 1 + i / 10, i, 0)
                .unwrap();
        }
        assert_eq!(log.raft_last_index(), 20);
        assert_eq!(log.next_offset(), 57);
        let p = log.sync_plan();
        p.run().unwrap();
        log.mark_synced(p.up_to);
    }
    let (mut log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
    assert_eq!(log.raft_last_index(), 20);
    assert_eq!(log.raft_term(1), Some(1));
    assert_eq!(log.raft_term(15), Some(2));
    assert_eq!(log.offset_after_index(1), Some(0));
    assert_eq!(log.offset_after_index(2), Some(3));
    let got = log.raft_entries(5, 9, u64::MAX);
    let idx: Vec<u64> = got.iter().map(|(h, _)| h.raft_index).collect();
    assert_eq!(idx, vec![5, 6, 7, 8]);
    // A new leader replaces the suffix from index 12 on.
    log.append_entry(&make_batch(1, 10, 1_000), 5, 12, 0)
        .unwrap();
    assert_eq!(log.raft_last_index(), 12);
    assert_eq!(log.raft_term(12), Some(5));
    assert_eq!(log.next_offset(), 3 * 10 + 1);
    // A snapshot moves the start.
    log.reset_to(
        RaftBase {
            index: 100,
            term: 7,
            next_offset: 500,
        },
        0,
    )
    .unwrap();
    drop(log);
    let (log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
    assert_eq!(log.raft_last_index(), 100);
    assert_eq!(log.raft_term(100), Some(7));
    assert_eq!(log.next_offset(), 500);
    assert_eq!(log.log_start_offset(), 500);
}

#[test]
fn empty_entries_never_start_a_segment_with_the_same_name() {
    let d = tempfile::tempdir().unwrap();
    let mut c = cfg(4096);
    c.segment_ms = Some(1);
    {
        let (mut log, _) = Log::open(d.path(), c.clone(), 0).unwrap();
        log.append_entry(&empty_entry(), 1, 1, 0).unwrap();
    }
    let (mut log, _) = Log::open(d.path(), c, 10_000).unwrap();
    log.append_entry(&empty_entry(), 2, 2, 20_000).unwrap();
    log.append_entry(&make_batch(2, 10, 1_000), 2, 3, 30_000)
        .unwrap();
    drop(log);
    let (log, _) = Log::open(d.path(), cfg(4096), 40_000).unwrap();
    assert_eq!(log.raft_last_index(), 3);
    assert_eq!(log.raft_term(1), Some(1));
    assert_eq!(log.next_offset(), 2);
}

#[test]
fn first_batch_above_a_term_and_the_term_at_an_offset() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
    // 60 batches of 3 records over three segments or more; terms 2, 2, ...
    // then 5 from offset 60, then 9 from offset 150.
    let mut term_of = Vec::new();
    for i in 0..60 {
        let term = match i {
            0..20 => 2,
            20..50 => 5,
            _ => 9,
        };
        log.append(&make_batch(3, 50, 1_000 + i), term, 0).unwrap();
        term_of.push(term);
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.first_batch_above_term(0), Some((0, 2)));
    assert_eq!(log.first_batch_above_term(1), Some((0, 2)));
    assert_eq!(log.first_batch_above_term(2), Some((60, 5)));
    assert_eq!(log.first_batch_above_term(4), Some((60, 5)));
    assert_eq!(log.first_batch_above_term(5), Some((150, 9)));
    assert_eq!(log.first_batch_above_term(8), Some((150, 9)));
    assert_eq!(log.first_batch_above_term(9), None);
    for (i, t) in term_of.iter().enumerate() {
        for o in 0..3 {
            assert_eq!(log.term_at(i as i64 * 3 + o), Some(*t));
        }
    }
    assert_eq!(log.term_at(180), None);
    // With the start moved into the middle of term 5.
    log.delete_records(100, 0).unwrap();
    assert_eq!(log.first_batch_above_term(2).map(|(_, t)| t), Some(5));
    assert!(log.first_batch_above_term(2).unwrap().0 <= 100);
    assert_eq!(log.first_batch_above_term(5), Some((150, 9)));
    assert_eq!(log.term_at(50), None);
}

#[test]
fn the_record_with_the_largest_timestamp() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(4096), 0).unwrap();
    assert_eq!(log.max_timestamp_offset().unwrap(), None);
    // Timestamps rise to 5_000 at batch 7's second record, then fall back.
    for i in 0..30i64 {
        let ts = if i == 7 { 4_999 } else { 1_000 + i };
        log.append(&make_batch(3, 50, ts), 1, 0).unwrap();
    }
    // make_batch stamps record j with ts + j: the largest is 4_999 + 2.
    assert_eq!(
        log.max_timestamp_offset().unwrap(),
        Some((7 * 3 + 2, 5_001))
    );
}

/// Copies every file of a partition directory.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Index files of every segment, after a clean close (sealed, trimmed).
fn index_bytes(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    seg_files(dir)
        .into_iter()
        .map(|(_, p)| {
            (
                std::fs::read(p.with_extension("index")).unwrap(),
                std::fs::read(p.with_extension("timeindex")).unwrap(),
            )
        })
        .collect()
}

/// Where a log ends: next offset, last Raft entry, largest timestamp.
type End = (i64, (u64, u64), Option<(i64, i64)>);

fn end_of(log: &Log) -> End {
    (
        log.next_offset(),
        log.last_raft(),
        log.max_timestamp_offset().unwrap(),
    )
}

/// Every stored batch reads back byte for byte.
fn assert_holds(log: &Log, stored: &[(i64, Bytes)]) {
    for (base, bytes) in stored {
        let r = log.read(*base, 1, i64::MAX).unwrap();
        assert_eq!(&r.records[..bytes.len()], &bytes[..], "batch at {base}");
    }
}

/// A restart after the data was synced reads only the active segment's
/// tail after its last indexed batch, not the whole segment, and ends in
/// the same state (indexes byte for byte, timestamps, Raft position,
/// appends) as a restart that scans everything.
#[test]
fn restart_checks_only_what_follows_the_recovery_point() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    let stored = fill(&mut log, &[(4, 150); 60]);
    let total: usize = stored.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(log.segment_count(), 1, "one active segment");
    log.close().unwrap();
    let end = end_of(&log);
    drop(log);
    let (full, clean) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_dir(d.path(), full.path());
    copy_dir(d.path(), clean.path());
    // As after a machine crash: no clean-stop marker, another boot (and
    // for `full` no recovery point either).
    for dir in [d.path(), full.path()] {
        std::fs::remove_file(dir.join(CLEAN_SHUTDOWN_FILE)).unwrap();
        let _ = std::fs::remove_file(dir.join(BOOT_FILE));
    }
    std::fs::remove_file(full.path().join(RECOVERY_POINT_FILE)).unwrap();

    let (mut log, rep) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    let (mut scanned, full_rep) = Log::open(full.path(), cfg(1 << 20), 0).unwrap();
    let (after_stop, clean_rep) = Log::open(clean.path(), cfg(1 << 20), 0).unwrap();
    assert_eq!(full_rep.checked_bytes, total, "without a recovery point");
    assert!(
        rep.checked_bytes > 0 && rep.checked_bytes <= 2 * 128 + stored[59].1.len(),
        "checked {} of {total} bytes",
        rep.checked_bytes
    );
    assert!(
        clean_rep.checked_bytes <= stored[59].1.len(),
        "after a clean stop only the last indexed batch is read, not {}",
        clean_rep.checked_bytes
    );
    assert!(
        !clean.path().join(CLEAN_SHUTDOWN_FILE).exists(),
        "the marker is gone once the log is open"
    );
    for l in [&log, &scanned, &after_stop] {
        assert_eq!(end_of(l), end);
        assert_eq!(
            l.offset_for_timestamp(1_000 + 30 * 10).unwrap(),
            Some((120, 1_300))
        );
        assert_holds(l, &stored);
    }
    for l in [&mut log, &mut scanned] {
        let info = l.append(&make_batch(2, 10, 9_000), 2, 0).unwrap();
        assert_eq!(info.base_offset, end.0);
        l.close().unwrap();
    }
    assert_eq!(index_bytes(d.path()), index_bytes(full.path()));
}

/// Index pages lost in a machine crash (the indexes are not synced with
/// the data) read as zeros: the scan then starts earlier, never later, and
/// the log comes back whole.
#[test]
fn lost_index_pages_make_the_scan_start_earlier() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    let stored = fill(&mut log, &[(4, 150); 60]);
    log.close().unwrap();
    let end = end_of(&log);
    drop(log);
    let (_, seg) = seg_files(d.path()).remove(0);
    for (ext, zero_from) in [("index", 12 * 10), ("timeindex", 12 * 20)] {
        let p = seg.with_extension(ext);
        let len = std::fs::metadata(&p).unwrap().len() as usize;
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&vec![0; len - zero_from], zero_from as u64)
            .unwrap();
    }
    let (log, rep) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    let total: usize = stored.iter().map(|(_, b)| b.len()).sum();
    assert!(
        rep.checked_bytes > total / 2,
        "checked {}",
        rep.checked_bytes
    );
    assert_eq!(end_of(&log), end);
    assert_eq!(
        log.offset_for_timestamp(1_000 + 50 * 10).unwrap(),
        Some((200, 1_500))
    );
    assert_holds(&log, &stored);
}

/// What was appended after the last sync is still checked: a torn tail
/// past the recovery point is cut, the synced part is kept.
#[test]
fn unsynced_tail_past_the_recovery_point_is_still_checked() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    let synced = fill(&mut log, &[(4, 150); 30]);
    let plan = log.sync_plan();
    plan.run().unwrap();
    log.mark_synced(plan.up_to);
    log.checkpoint_recovery_point().unwrap();
    let synced_end = log.next_offset();
    let later = fill(&mut log, &[(4, 150); 5]);
    let size = log.segments.values().next_back().unwrap().size();
    drop(log); // a machine crash: the next open is in another boot
    let _ = std::fs::remove_file(d.path().join(BOOT_FILE));
    let (_, seg) = seg_files(d.path()).remove(0);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    // Tear the third unsynced batch.
    let torn = size - later[2..].iter().map(|(_, b)| b.len()).sum::<usize>() + 40;
    f.write_all_at(&[0xA5; 16], torn as u64).unwrap();
    let (log, rep) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    assert!(rep.truncated_bytes > 0);
    assert_eq!(log.next_offset(), later[2].0);
    assert!(log.next_offset() > synced_end);
    assert_holds(&log, &synced);
    assert_holds(&log, &later[..2]);
}

#[test]
fn a_restart_keeps_appending_to_the_active_segment() {
    let d = tempfile::tempdir().unwrap();
    let c = LogConfig {
        segment_bytes: 1 << 20,
        ..cfg(1 << 20)
    };
    // Wall-clock times: Raft no-ops are stamped 0, which must not read as
    // a segment created in 1970 (a time roll at every restart).
    let now = 1_800_000_000_000;
    for round in 0..3u64 {
        let (mut log, _) = Log::open(d.path(), c.clone(), now).unwrap();
        assert!(!log.roll_due(now), "round {round}");
        log.append_entry(&empty_entry(), round + 1, round * 2 + 1, now)
            .unwrap();
        log.append_entry(&make_batch(3, 100, now), round + 1, round * 2 + 2, now)
            .unwrap();
        log.close().unwrap();
    }
    let (log, _) = Log::open(d.path(), c, now).unwrap();
    assert!(!log.roll_due(now));
    assert_eq!(log.segment_count(), 1, "{:?}", seg_files(d.path()));
    assert_eq!(log.next_offset(), 9);
}

/// A segment that starts with a new leader's empty batch (no records, no
/// timestamp) is resumed like any other: its first time entry belongs to
/// the first batch with records.
#[test]
fn restart_resumes_a_segment_that_starts_with_an_empty_batch() {
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    log.append_entry(&empty_entry(), 1, 1, 0).unwrap();
    let mut total = 0;
    for i in 0..60u64 {
        let b = make_batch(4, 150, 1_000 + i as i64 * 10);
        total += b.len();
        log.append_entry(&b, 1, i + 2, 0).unwrap();
    }
    log.close().unwrap();
    let end = end_of(&log);
    drop(log);
    let (log, rep) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    assert_eq!(end_of(&log), end);
    assert!(
        rep.checked_bytes > 0 && rep.checked_bytes < total / 4,
        "checked {} of {total} bytes",
        rep.checked_bytes
    );
    assert_eq!(
        log.offset_for_timestamp(1_000 + 30 * 10).unwrap(),
        Some((120, 1_300))
    );
}

/// A process crash (same boot): whatever was written is in the page cache,
/// so only the batches after the last index entry are checked, even with
/// nothing synced; a write cut short at the end is still cut.
#[test]
fn a_process_crash_checks_only_the_tail() {
    if !Path::new("/proc/sys/kernel/random/boot_id").exists() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    let stored = fill(&mut log, &[(4, 150); 40]);
    let total: usize = stored.iter().map(|(_, b)| b.len()).sum();
    let size = log.segments.values().next_back().unwrap().size();
    drop(log); // SIGKILL: no sync, no recovery point, no marker
    assert!(!d.path().join(RECOVERY_POINT_FILE).exists());
    let (_, seg) = seg_files(d.path()).remove(0);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    // The last batch's write was cut short.
    let last = &stored[39];
    f.write_all_at(
        &vec![0; last.1.len() - 30],
        (size - last.1.len() + 30) as u64,
    )
    .unwrap();
    let (log, rep) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    assert!(rep.truncated_bytes > 0, "the torn batch is cut");
    assert!(
        rep.checked_bytes <= 3 * last.1.len(),
        "checked {} of {total} bytes",
        rep.checked_bytes
    );
    assert_eq!(log.next_offset(), last.0);
    assert_holds(&log, &stored[..39]);
    drop(log);
    // In another boot the same log is checked from the start.
    std::fs::remove_file(d.path().join(BOOT_FILE)).unwrap();
    let (_, rep) = Log::open(d.path(), cfg(1 << 20), 0).unwrap();
    assert!(
        rep.checked_bytes >= total - last.1.len(),
        "checked {}",
        rep.checked_bytes
    );
}
