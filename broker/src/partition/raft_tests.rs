//! The Raft glue (event loop, log storage, snapshot install) on an
//! in-memory network of three brokers in one process.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_proto::batch::{self, BatchBuilder, BatchHeader};
use strata_proto::v1::RaftBatch;

use crate::error::BrokerError;
use crate::log::{Log, LogConfig, now_ms};
use crate::partition::{Acks, Partition};
use crate::raft::RaftTiming;
use crate::raft::directory::Directory;
use crate::raft::node::{Cmd, RaftHandle, RaftLoop};
use crate::raft::storage::RaftMeta;
use crate::raft::transport::{Router, Transport, deliver};

const TOPIC: &str = "t";
const IDS: [u64; 3] = [1, 2, 3];
const TIMING: RaftTiming = RaftTiming {
    tick: Duration::from_millis(20),
    election_ticks: 10,
    heartbeat_ticks: 2,
};

/// The wires between the brokers, with links the test can cut. Delivery
/// goes through the same `transport::deliver` as the peer service.
#[derive(Default)]
struct Net {
    /// Each broker's loop and directory (liveness and leader hints).
    brokers: Mutex<HashMap<u64, (RaftHandle, Arc<Directory>)>>,
    /// Directed links `(from, to)` that drop everything.
    cut: Mutex<HashSet<(u64, u64)>>,
    /// Brokers whose groups' messages are dropped while their batches
    /// still arrive (the broker is heard; its replicas answer nothing).
    muted: Mutex<HashSet<u64>>,
    /// Quiesce notices delivered.
    quiesces: AtomicUsize,
    /// Messages that should never have been sent (checked by the tests;
    /// the router runs on a loop thread and must not panic there).
    anomalies: Mutex<Vec<String>>,
}

impl Net {
    fn deliver(&self, to: u64, mut b: RaftBatch) {
        if self.cut.lock().unwrap().contains(&(b.from, to)) {
            return;
        }
        if self.muted.lock().unwrap().contains(&b.from) {
            b.messages.clear();
        }
        if b.to != to {
            self.anomaly(format!("batch for {} routed to {to}", b.to));
            return;
        }
        let Some((handle, directory)) = self.brokers.lock().unwrap().get(&to).cloned() else {
            return;
        };
        let quiesces = b.messages.iter().filter(|e| e.quiesce).count();
        self.quiesces.fetch_add(quiesces, Ordering::Relaxed);
        match deliver(to, b, &directory, &handle) {
            Ok(dropped) => {
                for why in dropped {
                    self.anomaly(why);
                }
            }
            Err(e) => self.anomaly(format!("delivery to {to} failed: {e}")),
        }
    }

    fn anomaly(&self, what: String) {
        self.anomalies.lock().unwrap().push(what);
    }

    fn assert_clean(&self) {
        let a = self.anomalies.lock().unwrap();
        assert!(a.is_empty(), "bad messages on the wire: {a:?}");
    }

    /// Cuts `id` off from every other broker, both directions.
    fn isolate(&self, id: u64) {
        let mut cut = self.cut.lock().unwrap();
        for other in IDS.into_iter().filter(|o| *o != id) {
            cut.insert((id, other));
            cut.insert((other, id));
        }
    }

    fn heal(&self) {
        self.cut.lock().unwrap().clear();
        self.muted.lock().unwrap().clear();
    }
}

struct Node {
    id: u64,
    handle: RaftHandle,
    part: Arc<Partition>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Cluster {
    net: Arc<Net>,
    nodes: Vec<Node>,
}

fn test_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes: 128,
        index_max_bytes: 4096,
        ..LogConfig::default()
    }
}

impl Cluster {
    /// Three brokers hosting `t/0` with voters [1, 2, 3]; broker 1 campaigns.
    fn start(cfg: LogConfig) -> Self {
        let net = Arc::new(Net::default());
        let mut nodes = Vec::new();
        // Broker 1 last, so its first campaign finds the others' groups.
        for id in [2, 3, 1] {
            let dir = tempfile::tempdir().unwrap();
            let n = Arc::clone(&net);
            let router: Router = Arc::new(move |to, b| n.deliver(to, b));
            let transport = Arc::new(Transport::in_memory(id, "test".into(), router, IDS));
            let directory = Arc::new(Directory::default());
            let hard_states =
                Arc::new(crate::raft::hardstate::HardStates::load(dir.path()).unwrap());
            let (rloop, handle, _views) =
                RaftLoop::new(id, TIMING, transport, Arc::clone(&directory), hard_states);
            net.brokers
                .lock()
                .unwrap()
                .insert(id, (handle.clone(), Arc::clone(&directory)));
            let thread = rloop.spawn().unwrap();
            let (log, _) = Log::open(dir.path(), cfg.clone(), now_ms()).unwrap();
            let meta = RaftMeta {
                voters: IDS.to_vec(),
                ..RaftMeta::default()
            };
            meta.store(dir.path()).unwrap();
            let part = Partition::open(TOPIC, 0, log, meta, id, handle.clone(), directory);
            handle
                .send(Cmd::AddGroup {
                    replica: Arc::clone(&part) as _,
                    preferred: Some(1),
                })
                .unwrap();
            nodes.push(Node {
                id,
                handle,
                part,
                thread: Some(thread),
                _dir: dir,
            });
        }
        nodes.sort_by_key(|n| n.id);
        Self { net, nodes }
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn part(&self, id: u64) -> &Arc<Partition> {
        &self.node(id).part
    }

    /// Waits until every broker in `among` names the same leader, one of
    /// them; returns it.
    async fn leader_among(&self, among: &[u64], within: Duration) -> u64 {
        let mut seen = Vec::new();
        let ok = wait_until(within, || {
            seen = among.iter().map(|id| self.part(*id).role()).collect();
            let l = seen[0].leader;
            among.contains(&l) && seen.iter().all(|r| *r == seen[0])
        })
        .await;
        assert!(ok, "no agreed leader among {among:?}: roles {seen:?}");
        seen[0].leader
    }

    /// Waits until every broker's high watermark and log end reach those of
    /// `leader` and all logs hold the same entries.
    async fn converged(&self, leader: u64, within: Duration) {
        let mut state = String::new();
        let ok = wait_until(within, || {
            let end = self.part(leader).log_end();
            let hw = self.part(leader).high_watermark();
            state = IDS
                .iter()
                .map(|id| {
                    let p = self.part(*id);
                    format!("{id}: hw {} end {}", p.high_watermark(), p.log_end())
                })
                .collect::<Vec<_>>()
                .join(", ");
            hw == end
                && IDS.iter().all(|id| {
                    let p = self.part(*id);
                    p.high_watermark() == end && p.log_end() == end
                })
        })
        .await;
        assert!(ok, "replicas did not converge on {leader}'s log: {state}");
    }

    async fn stop(mut self) {
        self.net.heal();
        self.net.assert_clean();
        for n in &mut self.nodes {
            let _ = n.handle.send(Cmd::Stop);
        }
        for n in &mut self.nodes {
            if let Some(t) = n.thread.take() {
                tokio::task::spawn_blocking(move || t.join())
                    .await
                    .unwrap()
                    .unwrap();
            }
            n.part.close().unwrap();
        }
    }
}

impl Drop for Cluster {
    /// Stops the loops of a failed test too (they would tick on).
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = n.handle.send(Cmd::Stop);
        }
    }
}

async fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One batch of `records` records whose values are `tag-<i>` padded to
/// `size` bytes, validated as a produce request would.
fn make_batch(tag: &str, records: usize, size: usize) -> (BatchHeader, Bytes) {
    let ts = now_ms();
    let mut b = BatchBuilder::new(ts);
    for i in 0..records {
        let mut v = format!("{tag}-{i}").into_bytes();
        v.resize(size.max(v.len()), b'.');
        b.push(ts, Some(tag.as_bytes()), Some(&v), &[]);
    }
    let bytes = b.finish();
    let mut got = batch::split_validated(&bytes).unwrap();
    assert_eq!(got.len(), 1);
    got.pop().unwrap()
}

/// Every stored entry after the Raft base: (index, term, stored bytes).
/// The bytes are copied: the log hands out views of its segment maps, and
/// an uncommitted suffix is overwritten in place when a new leader
/// replaces it.
fn entries(p: &Partition) -> Vec<(u64, u64, Bytes)> {
    p.with_log(|log, _| {
        let low = log.raft_base().index + 1;
        let got = log.raft_entries(low, log.raft_last_index() + 1, u64::MAX);
        assert_eq!(
            got.len() as u64,
            log.raft_last_index() + 1 - low,
            "raft_entries skipped entries"
        );
        got.into_iter()
            .enumerate()
            .map(|(i, (h, b))| {
                assert_eq!(h.raft_index, low + i as u64, "entries out of order");
                (h.raft_index, h.raft_term, Bytes::copy_from_slice(&b))
            })
            .collect()
    })
}

/// Record values of every stored batch.
fn values(p: &Partition) -> Vec<Bytes> {
    entries(p)
        .into_iter()
        .flat_map(|(_, _, b)| {
            batch::records(&b)
                .unwrap()
                .map(|r| r.unwrap().value.unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The logs of all replicas hold byte-identical batches from the latest
/// Raft base on; returns the number of entries compared.
fn assert_same_logs(c: &Cluster) -> usize {
    c.net.assert_clean();
    let from = IDS
        .iter()
        .map(|id| c.part(*id).with_log(|l, _| l.raft_base().index))
        .max()
        .unwrap();
    let logs: Vec<Vec<(u64, u64, Bytes)>> = IDS
        .iter()
        .map(|id| {
            entries(c.part(*id))
                .into_iter()
                .filter(|e| e.0 > from)
                .collect()
        })
        .collect();
    for (i, l) in logs.iter().enumerate().skip(1) {
        assert_eq!(l.len(), logs[0].len(), "broker {} entry count", IDS[i]);
        for (a, b) in logs[0].iter().zip(l) {
            assert_eq!(
                a, b,
                "entry {} differs between broker {} and {}",
                a.0, IDS[0], IDS[i]
            );
        }
    }
    logs[0].len()
}

const COMMIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn election_and_replication() {
    let c = Cluster::start(test_config());
    let leader = c.leader_among(&IDS, Duration::from_secs(5)).await;
    let term = c.part(leader).role().term;
    assert!(term > 0);
    let p = c.part(leader);
    let mut next = 0;
    for i in 0..10 {
        let batches = vec![
            make_batch(&format!("a{i}"), 5, 20),
            make_batch(&format!("b{i}"), 3, 20),
        ];
        let a = p.produce(batches, Acks::All, COMMIT).await.unwrap();
        assert_eq!(a.base_offset, next);
        assert_eq!(a.last_offset, next + 7);
        assert_eq!(a.end_offset, next + 8);
        assert!(p.high_watermark() >= a.end_offset);
        next += 8;
    }
    assert_eq!(p.log_end(), next);
    c.converged(leader, COMMIT).await;
    // 20 batches plus at least the leader's empty entry.
    assert!(assert_same_logs(&c) >= 21);
    // Offsets and terms were stamped consistently.
    for id in IDS {
        let mut off = 0;
        for (_, t, b) in entries(c.part(id)) {
            let h = batch::parse_header(&b).unwrap();
            assert_eq!(h.base_offset, off);
            assert!(t <= term);
            off = h.next_offset();
        }
        assert_eq!(off, next);
        assert_eq!(c.part(id).role().leader, leader);
    }
    // A follower refuses produces.
    let f = IDS.into_iter().find(|id| *id != leader).unwrap();
    let r = c
        .part(f)
        .produce(vec![make_batch("x", 1, 1)], Acks::All, COMMIT)
        .await;
    assert!(
        matches!(r, Err(BrokerError::NotLeader { leader_id, .. }) if leader_id == leader),
        "{r:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_matching_after_leader_change() {
    let c = Cluster::start(test_config());
    let old = c.leader_among(&IDS, Duration::from_secs(5)).await;
    let old_term = c.part(old).role().term;
    for i in 0..5 {
        c.part(old)
            .produce(vec![make_batch(&format!("c{i}"), 2, 10)], Acks::All, COMMIT)
            .await
            .unwrap();
    }
    c.converged(old, COMMIT).await;
    let committed_last = c.part(old).with_log(|l, _| l.raft_last_index());

    // The leader, cut off, still takes proposals it can never commit: many
    // small entries (so the new leader's log ends up with more offsets but
    // fewer entries than the old leader's suffix).
    c.net.isolate(old);
    let mut orphans = Vec::new();
    for i in 0..6 {
        let p = Arc::clone(c.part(old));
        let b = vec![make_batch(&format!("orphan{i}"), 1, 1)];
        orphans.push(tokio::spawn(async move {
            p.produce(b, Acks::All, Duration::from_secs(6)).await
        }));
    }
    let ok = wait_until(Duration::from_secs(2), || {
        c.part(old).with_log(|l, _| l.raft_last_index()) >= committed_last + 6
    })
    .await;
    assert!(ok, "the isolated leader did not append its proposals");
    let orphan_entries: Vec<_> = entries(c.part(old))
        .into_iter()
        .filter(|e| e.0 > committed_last)
        .collect();
    assert!(orphan_entries.iter().all(|e| e.1 == old_term));

    let rest: Vec<u64> = IDS.into_iter().filter(|id| *id != old).collect();
    let new = c.leader_among(&rest, Duration::from_secs(5)).await;
    let new_term = c.part(new).role().term;
    assert!(new_term > old_term);
    // Fewer entries than the orphans, more records.
    for i in 0..2 {
        let a = c
            .part(new)
            .produce(
                vec![make_batch(&format!("n{i}"), 20, 10)],
                Acks::All,
                COMMIT,
            )
            .await
            .unwrap();
        assert_eq!(a.last_offset - a.base_offset, 19);
    }
    // Nothing of the orphans is visible anywhere yet.
    assert!(
        c.part(old).high_watermark()
            <= c.part(old)
                .with_log(|l, _| { l.offset_after_index(committed_last).unwrap() })
    );

    c.net.heal();
    let leader = c.leader_among(&IDS, Duration::from_secs(5)).await;
    assert_eq!(leader, new, "the healed old leader disrupted the new one");
    c.converged(new, COMMIT).await;
    assert_same_logs(&c);
    // The old leader's uncommitted suffix was replaced.
    let now = entries(c.part(old));
    for (idx, term, bytes) in &orphan_entries {
        if let Some(e) = now.iter().find(|e| e.0 == *idx) {
            assert_ne!((e.1, &e.2), (*term, bytes), "orphan entry {idx} survived");
        }
    }
    for id in IDS {
        let vals = values(c.part(id));
        assert!(
            !vals.iter().any(|v| v.starts_with(b"orphan")),
            "broker {id} still holds orphan records"
        );
        assert_eq!(
            vals.iter().filter(|v| v.starts_with(b"n")).count(),
            40,
            "broker {id}"
        );
    }
    // Every produce on the old leader failed. Checked last, after the logs:
    // a produce whose index is past the new (shorter in entries, longer in
    // offsets) log must not be reported as written.
    let last_now = c.part(old).with_log(|l, _| l.raft_last_index());
    for (i, o) in orphans.into_iter().enumerate() {
        let r = o.await.unwrap();
        let diag = match &r {
            Ok(a) => {
                let at = orphan_entries
                    .iter()
                    .find(|e| batch::parse_header(&e.2).unwrap().base_offset == a.base_offset)
                    .map(|e| e.0);
                format!(
                    "; it was proposed as entry {at:?} of term {old_term}, the old leader's log \
                     now ends at entry {last_now} (term there: {:?}) with high watermark {}",
                    at.and_then(|x| c.part(old).with_log(|l, _| l.raft_term(x))),
                    c.part(old).high_watermark()
                )
            }
            Err(_) => String::new(),
        };
        assert!(
            matches!(
                r,
                Err(BrokerError::Timeout(_)) | Err(BrokerError::NotLeader { .. })
            ),
            "orphan produce {i} on the old leader must fail, got {r:?}{diag}"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_catch_up() {
    let c = Cluster::start(test_config());
    let leader = c.leader_among(&IDS, Duration::from_secs(5)).await;
    let lagging = IDS.into_iter().find(|id| *id != leader).unwrap();
    let other = IDS
        .into_iter()
        .find(|id| *id != leader && *id != lagging)
        .unwrap();
    let p = Arc::clone(c.part(leader));
    for i in 0..3 {
        p.produce(vec![make_batch(&format!("s{i}"), 2, 50)], Acks::All, COMMIT)
            .await
            .unwrap();
    }
    c.converged(leader, COMMIT).await;
    let lag_last = c.part(lagging).with_log(|l, _| l.raft_last_index());

    c.net.isolate(lagging);
    for i in 0..40 {
        let batches = (0..2)
            .map(|j| make_batch(&format!("m{i}.{j}"), 4, 100))
            .collect();
        p.produce(batches, Acks::All, COMMIT).await.unwrap();
    }
    assert!(p.offsets().segments >= 5, "{:?}", p.offsets());
    for id in [leader, other] {
        let part = c.part(id);
        let ok = wait_until(COMMIT, || part.high_watermark() == p.log_end()).await;
        assert!(ok);
        part.set_config(LogConfig {
            retention_bytes: Some(8192),
            ..test_config()
        });
        let deleted = part.maintain(None).unwrap();
        assert!(deleted >= 2, "broker {id} deleted {deleted} segments");
    }
    let base = p.with_log(|l, _| l.raft_base());
    assert!(
        base.index > lag_last + 1,
        "retention must drop entries the lagging follower lacks: base {base:?}, follower at {lag_last}"
    );
    assert_eq!(p.offsets().log_start, base.next_offset);
    // More after the snapshot point.
    for i in 0..5 {
        p.produce(vec![make_batch(&format!("z{i}"), 3, 30)], Acks::All, COMMIT)
            .await
            .unwrap();
    }
    assert_eq!(c.part(lagging).with_log(|l, _| l.raft_base().index), 0);

    c.net.heal();
    c.converged(leader, COMMIT).await;
    let f = c.part(lagging);
    let fbase = f.with_log(|l, _| l.raft_base());
    assert_eq!(
        fbase, base,
        "the lagging follower did not install the snapshot"
    );
    assert_eq!(f.offsets().log_start, base.next_offset);
    assert_eq!(f.high_watermark(), p.high_watermark());
    assert_eq!(c.part(leader).role().leader, leader);
    let n = assert_same_logs(&c);
    assert!(n >= 5, "only {n} entries after the snapshot");
    // Reads on the caught-up follower start at the snapshot point.
    let (info, _) = f.read(base.next_offset, 1 << 20).unwrap();
    assert!(!info.records.is_empty());
    assert!(f.read(base.next_offset - 1, 1 << 20).is_err());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quiesced_group_keeps_its_leader_and_wakes() {
    let c = Cluster::start(test_config());
    let leader = c.leader_among(&IDS, Duration::from_secs(5)).await;
    let p = Arc::clone(c.part(leader));
    for i in 0..3 {
        p.produce(vec![make_batch(&format!("q{i}"), 2, 10)], Acks::All, COMMIT)
            .await
            .unwrap();
    }
    c.converged(leader, COMMIT).await;
    let role = p.role();

    // Idle: the leader quiesces the group; nobody campaigns meanwhile.
    let before = c.net.quiesces.load(Ordering::Relaxed);
    let mut changed = None;
    wait_until(Duration::from_millis(2500), || {
        for id in IDS {
            let r = c.part(id).role();
            if r != role {
                changed = Some((id, r));
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        changed, None,
        "the idle group changed leadership from {role:?}"
    );
    assert!(
        c.net.quiesces.load(Ordering::Relaxed) > before,
        "the idle group was not quiesced"
    );

    // A produce wakes it.
    let a = p
        .produce(vec![make_batch("wake", 3, 10)], Acks::All, COMMIT)
        .await
        .unwrap();
    assert_eq!(a.end_offset, p.log_end());
    c.converged(leader, COMMIT).await;

    // Quiesced again, then the leader's broker goes silent: the followers
    // wake and elect one of them.
    let n = c.net.quiesces.load(Ordering::Relaxed);
    let ok = wait_until(Duration::from_secs(3), || {
        c.net.quiesces.load(Ordering::Relaxed) > n
    })
    .await;
    assert!(ok, "the group did not quiesce again");
    c.net.isolate(leader);
    let rest: Vec<u64> = IDS.into_iter().filter(|id| *id != leader).collect();
    let new = c.leader_among(&rest, Duration::from_secs(5)).await;
    assert!(c.part(new).role().term > role.term);
    c.part(new)
        .produce(vec![make_batch("after", 2, 10)], Acks::All, COMMIT)
        .await
        .unwrap();

    c.net.heal();
    let now = c.leader_among(&IDS, Duration::from_secs(5)).await;
    assert_eq!(now, new, "the healed old leader disrupted the new one");
    c.converged(new, COMMIT).await;
    assert_same_logs(&c);
    c.stop().await;
}

/// Check-quorum counts brokers: a leader whose followers' brokers are
/// heard keeps leading though the group's own answers stop arriving (a
/// loop running late on a starved host), and steps down once those
/// brokers fall silent.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_keeps_its_group_while_its_followers_brokers_are_heard() {
    let c = Cluster::start(test_config());
    let leader = c.leader_among(&IDS, Duration::from_secs(5)).await;
    let p = Arc::clone(c.part(leader));
    // Keeps the group awake (a quiesced leader runs no check at all).
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let producer = {
        let p = Arc::clone(&p);
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let b = make_batch(&format!("m{i}"), 1, 10);
                tokio::select! {
                    _ = &mut stop_rx => return,
                    _ = p.produce(vec![b], Acks::Leader, COMMIT) => {}
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let role = p.role();
    let followers: Vec<u64> = IDS.into_iter().filter(|id| *id != leader).collect();
    c.net
        .muted
        .lock()
        .unwrap()
        .extend(followers.iter().copied());
    // Ten election timeouts (200 ms each) without a single answer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        p.role(),
        role,
        "the leader stepped down though its peers' brokers were heard"
    );
    // Silent brokers: the leader gives up its leadership.
    c.net.muted.lock().unwrap().clear();
    for f in &followers {
        c.net.cut.lock().unwrap().insert((*f, leader));
    }
    let ok = wait_until(Duration::from_secs(3), || p.role().leader != leader).await;
    assert!(
        ok,
        "a leader that hears no quorum kept leading: {:?}",
        p.role()
    );
    let _ = stop_tx.send(());
    let _ = producer.await;
    c.stop().await;
}

/// The producer table written at a segment roll: a restart reads only the
/// batches after its stamp, drops what it says past the stamp (proposals
/// that never reached the log), and refuses a stamp the log no longer has.
#[test]
fn producer_table_resumes_from_its_stamp() {
    use crate::log::{PRODUCER_STATE_FILE, checkpoint};
    use crate::partition::producer_state::ProducerTable;
    let d = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(d.path(), test_config(), now_ms()).unwrap();
    let mut index = 0u64;
    let mut append = |log: &mut Log, pid: i64, seq: i32| {
        let mut b = BatchBuilder::new(now_ms());
        for i in 0..3 {
            b.push(now_ms(), Some(b"k"), Some(format!("v{i}").as_bytes()), &[]);
        }
        b.set_producer(pid, 0, seq);
        index += 1;
        log.append_entry(&b.finish(), 1, index, now_ms()).unwrap();
    };
    let full = |log: &Log| {
        let mut t = ProducerTable::default();
        log.scan_headers(|h| t.record(h));
        t
    };
    for seq in 0..4 {
        append(&mut log, 7, seq * 3);
    }
    // Stamped here, but holding a proposal past the stamp that never
    // reached the log.
    let (term, last) = log.last_raft();
    let stamp = (log.next_offset(), term, last);
    let mut snap = full(&log);
    let mut phantom = BatchBuilder::new(now_ms());
    phantom.push(now_ms(), Some(b"k"), Some(b"lost"), &[]);
    phantom.set_producer(9, 0, 0);
    let ph = batch::parse_header(&phantom.finish()).unwrap();
    snap.record(&BatchHeader {
        base_offset: stamp.0,
        ..ph
    });
    let path = d.path().join(PRODUCER_STATE_FILE);
    checkpoint::write(&path, &snap.encode(stamp)).unwrap();
    for seq in 4..8 {
        append(&mut log, 7, seq * 3);
    }
    append(&mut log, 8, 0);
    let expected = full(&log).encode(stamp);
    assert_eq!(Partition::load_producers(&log).encode(stamp), expected);

    // A stamp naming an entry of another term: the whole log is read.
    checkpoint::write(&path, &snap.encode((stamp.0, term + 1, last))).unwrap();
    assert_eq!(Partition::load_producers(&log).encode(stamp), expected);
}
