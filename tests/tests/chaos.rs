//! Chaos: three `stratad` processes, each in its own network namespace
//! ([`strata_tests::netns`]), take a seeded random schedule of faults while
//! three idempotent `acks=all` producers write to a 6-partition RF3 topic
//! (`fsync=always`) at a bounded rate.
//!
//! Faults, one at a time, each healed before the next starts (2–4 s
//! later): SIGKILL of a random broker, SIGKILL of the broker leading most
//! partitions (both restarted after 0.5–3 s), SIGSTOP for 2–8 s, isolation
//! from the peers (clients still reach the broker) and link down (cut from
//! everyone) for 2–6 s each; plus one SIGKILL of the whole cluster and a
//! restart somewhere in the middle. SIGSTOP, isolation and link down hit a
//! random broker among those leading a partition at that moment, so that
//! each of them forces a failover.
//!
//! Afterwards, with everything healed and in sync: every record was
//! acknowledged (no future failed), each acknowledged record is in the log
//! exactly once at its acknowledged offset, a producer's records on one
//! partition keep their send order, every replica serves the same log when
//! made leader in turn and the replicas' segment files are identical, and
//! acknowledgements never stopped for more than 3 s (outside the full
//! cluster outage; after it, they resume within 3 s of the restart). The
//! failover time per fault kind (from the fault to the first
//! acknowledgement on each partition the faulted broker led) is printed.
//!
//! Environment: `STRATA_CHAOS_SEED` (default: from the clock; printed),
//! `STRATA_CHAOS_FAULTS` (default 50), `STRATA_CHAOS_RATE` (records/s over
//! all producers, default 3000), `STRATA_CHAOS_KEEP=1` (keep the data
//! directories and logs, which are otherwise kept only on failure),
//! `STRATA_REQUIRE_NETNS=1` (fail instead of skipping without root or
//! `ip netns`). Run with `--nocapture` to see the schedule and the figures.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_client::{Acks, Producer, ProducerConfig, ProducerRecord, RecordFuture};
use strata_tests::{NetnsCluster, netns_or_skip};
use tokio::sync::{mpsc, watch};

const TOPIC: &str = "chaos";
const PARTITIONS: u32 = 6;
const PRODUCERS: usize = 3;
/// Send tick of each producer; the rate is spread over the ticks.
const TICK: Duration = Duration::from_millis(25);
/// Longest tolerated time without any acknowledgement.
const MAX_GAP: Duration = Duration::from_secs(3);
const SYNC: Duration = Duration::from_secs(90);

// ------------------------------------------------------------ randomness

/// SplitMix64: a small, portable generator, so that a seed names the same
/// schedule on every machine and toolchain.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..hi` seconds, in milliseconds steps.
    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        let span_ms = ((hi - lo) * 1000.0) as u64;
        Duration::from_millis((lo * 1000.0) as u64 + self.below(span_ms.max(1)))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
    )
}

// ------------------------------------------------------------ schedule

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    KillRandom,
    KillLeader,
    Pause,
    Isolate,
    LinkDown,
    KillAll,
}

impl Kind {
    const SINGLE: [Kind; 5] = [
        Kind::KillRandom,
        Kind::KillLeader,
        Kind::Pause,
        Kind::Isolate,
        Kind::LinkDown,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::KillRandom => "kill-random",
            Kind::KillLeader => "kill-busiest-leader",
            Kind::Pause => "sigstop",
            Kind::Isolate => "isolate-peers",
            Kind::LinkDown => "link-down",
            Kind::KillAll => "kill-all",
        }
    }
}

/// One fault of the plan, drawn from the seed.
#[derive(Debug, Clone)]
struct Planned {
    kind: Kind,
    /// Draws the target: any broker for `kill-random`; a broker leading
    /// at least one partition (at the time of the fault) for SIGSTOP,
    /// isolation and link down, so that they exercise a failover.
    pick: u64,
    /// How long the fault lasts before it is healed.
    hold: Duration,
    /// Pause after healing, before the next fault.
    gap_after: Duration,
}

fn plan(seed: u64, faults: usize) -> Vec<Planned> {
    let mut rng = Rng(seed);
    let draw = |kind: Kind, rng: &mut Rng| {
        let hold = match kind {
            Kind::KillRandom | Kind::KillLeader => rng.secs(0.5, 3.0),
            Kind::Pause => rng.secs(2.0, 8.0),
            Kind::Isolate | Kind::LinkDown => rng.secs(2.0, 6.0),
            Kind::KillAll => rng.secs(1.0, 3.0),
        };
        Planned {
            kind,
            pick: rng.next_u64(),
            hold,
            gap_after: rng.secs(2.0, 4.0),
        }
    };
    let mut out: Vec<Planned> = (0..faults)
        .map(|_| {
            let kind = Kind::SINGLE[rng.below(Kind::SINGLE.len() as u64) as usize];
            draw(kind, &mut rng)
        })
        .collect();
    let at = faults / 4 + rng.below(faults as u64 / 2 + 1) as usize;
    let full = draw(Kind::KillAll, &mut rng);
    out.insert(at.min(out.len()), full);
    out
}

/// One fault as it happened.
#[derive(Debug, Clone)]
struct Fault {
    n: usize,
    kind: Kind,
    broker: Option<u64>,
    /// Partitions the broker led when the fault began.
    led: Vec<u32>,
    /// When the fault was in full effect (signal sent, rules loaded, link
    /// down).
    start: Instant,
    /// When the healing began (restart spawned, SIGCONT, rules removed,
    /// link up).
    heal_began: Instant,
    /// When the healing was done (restarted brokers serve).
    healed: Instant,
}

impl Fault {
    fn describe(&self, t0: Instant) -> String {
        format!(
            "fault #{} {}{} (leading {:?}) from t={:.2}s to t={:.2}s",
            self.n,
            self.kind.name(),
            self.broker
                .map(|b| format!(" broker {b}"))
                .unwrap_or_default(),
            self.led,
            secs(self.start, t0),
            secs(self.healed, t0),
        )
    }
}

fn secs(at: Instant, t0: Instant) -> f64 {
    at.saturating_duration_since(t0).as_secs_f64()
}

// ------------------------------------------------------------ producers

#[derive(Debug, Clone)]
enum Outcome {
    Acked {
        offset: i64,
        at: Instant,
    },
    Failed(String),
    /// The future had not resolved when the test gave up waiting.
    Unresolved,
}

#[derive(Debug, Clone)]
struct Rec {
    producer: usize,
    seq: u64,
    partition: u32,
    /// When `send` returned (the record sat in a batch).
    sent_at: Instant,
    outcome: Outcome,
}

impl Rec {
    fn value(&self) -> String {
        value_of(self.producer, self.seq)
    }
}

fn value_of(producer: usize, seq: u64) -> String {
    format!("p{producer}/{seq}")
}

/// `p{producer}/{seq}` back to its parts.
fn parse_value(v: &str) -> Option<(usize, u64)> {
    let (p, s) = v.strip_prefix('p')?.split_once('/')?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

struct Sent {
    seq: u64,
    partition: u32,
    sent_at: Instant,
    fut: Result<RecordFuture, String>,
}

/// Sends `per_tick` records every [`TICK`] until `stop`, spreading them
/// over every partition; hands each record's future to the collector.
async fn send_loop(
    p: usize,
    producer: Producer,
    per_tick: u64,
    stop: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Sent>,
) -> (Producer, u64) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        for _ in 0..per_tick {
            let partition = ((seq + p as u64) % u64::from(PARTITIONS)) as u32;
            let rec = ProducerRecord::new(TOPIC, value_of(p, seq)).partition(partition);
            let fut = producer.send(rec).await.map_err(|e| format!("send: {e}"));
            let sent_at = Instant::now();
            if tx
                .send(Sent {
                    seq,
                    partition,
                    sent_at,
                    fut,
                })
                .is_err()
            {
                panic!("producer {p}: the collector stopped");
            }
            seq += 1;
        }
    }
    (producer, seq)
}

/// Awaits every future in send order and records its outcome (the
/// acknowledgement time is when the client completed the batch). Once
/// `abort` turns true, futures still open are recorded as unresolved.
async fn collect(
    p: usize,
    mut rx: mpsc::UnboundedReceiver<Sent>,
    mut abort: watch::Receiver<bool>,
    acked: Arc<AtomicU64>,
) -> Vec<Rec> {
    let mut out = Vec::new();
    while let Some(s) = rx.recv().await {
        let outcome = match s.fut {
            Err(e) => Outcome::Failed(e),
            Ok(mut f) => {
                let r = if *abort.borrow() {
                    f.try_result()
                } else {
                    tokio::select! {
                        r = &mut f => Some(r),
                        _ = abort.changed() => f.try_result(),
                    }
                };
                match r {
                    None => Outcome::Unresolved,
                    Some(Err(e)) => Outcome::Failed(e.to_string()),
                    Some(Ok(m)) if m.partition != s.partition => Outcome::Failed(format!(
                        "acknowledged on partition {} instead of {}",
                        m.partition, s.partition
                    )),
                    Some(Ok(m)) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        Outcome::Acked {
                            offset: m.offset,
                            at: f.completed_at().unwrap_or_else(Instant::now),
                        }
                    }
                }
            }
        };
        out.push(Rec {
            producer: p,
            seq: s.seq,
            partition: s.partition,
            sent_at: s.sent_at,
            outcome,
        });
    }
    out
}

// ------------------------------------------------------------ figures

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn fmt_d(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_string(), |d| format!("{:.2}s", d.as_secs_f64()))
}

/// The faults overlapping `[from, to]`, described.
fn faults_during(faults: &[Fault], from: Instant, to: Instant, t0: Instant) -> String {
    let hits: Vec<String> = faults
        .iter()
        .filter(|f| f.start <= to && f.healed >= from)
        .map(|f| f.describe(t0))
        .collect();
    if !hits.is_empty() {
        return hits.join("; ");
    }
    match faults.iter().rev().find(|f| f.healed < from) {
        Some(f) => format!(
            "no fault active; the last one before was {}",
            f.describe(t0)
        ),
        None => "no fault active".to_string(),
    }
}

// ------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_netns() {
    if !netns_or_skip() {
        return;
    }
    let seed = env_u64("STRATA_CHAOS_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    });
    let n_faults = env_u64("STRATA_CHAOS_FAULTS").unwrap_or(50) as usize;
    let rate = env_u64("STRATA_CHAOS_RATE").unwrap_or(3000).max(1);
    let ticks_per_sec = 1000 / TICK.as_millis() as u64;
    let per_tick = (rate / PRODUCERS as u64 / ticks_per_sec).max(1);
    eprintln!(
        "chaos: seed {seed} (STRATA_CHAOS_SEED={seed} STRATA_CHAOS_FAULTS={n_faults} to \
         repeat the schedule), {} records/s over {PRODUCERS} producers",
        per_tick * ticks_per_sec * PRODUCERS as u64
    );

    let mut c = NetnsCluster::start(3, &[]).await;
    if std::env::var("STRATA_CHAOS_KEEP").is_ok_and(|v| v == "1") {
        c.keep_files();
    }
    let ids = c.ids();
    if let Err(st) = c
        .create_topic_with(TOPIC, PARTITIONS, 3, &[("fsync", "always")])
        .await
    {
        panic!("create {TOPIC}: {}", strata_tests::describe_status(&st));
    }
    c.wait_all_in_sync(TOPIC, SYNC).await;

    // Producers.
    let stop = Arc::new(AtomicBool::new(false));
    let (abort_tx, abort_rx) = watch::channel(false);
    let acked = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut collectors = Vec::new();
    let t0 = Instant::now();
    eprintln!("t=0 at {}", strata_tests::netns::wall_clock());
    for p in 0..PRODUCERS {
        let cfg = ProducerConfig {
            idempotent: true,
            max_in_flight: 5,
            acks: Acks::All,
            ..Default::default()
        };
        let producer = Producer::new(c.client_config(), cfg)
            .await
            .unwrap_or_else(|e| panic!("producer {p}: {e}"));
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tokio::spawn(send_loop(
            p,
            producer,
            per_tick,
            stop.clone(),
            tx,
        )));
        collectors.push(tokio::spawn(collect(
            p,
            rx,
            abort_rx.clone(),
            acked.clone(),
        )));
    }
    let warm = Instant::now();
    while acked.load(Ordering::Relaxed) < 500 {
        assert!(
            warm.elapsed() < Duration::from_secs(30),
            "only {} records acknowledged in 30 s before any fault\n{}",
            acked.load(Ordering::Relaxed),
            c.logs(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The schedule.
    let schedule = plan(seed, n_faults);
    let schedule_start = Instant::now();
    let mut faults: Vec<Fault> = Vec::new();
    for (n, p) in schedule.iter().enumerate() {
        let leaders = c.leaders(TOPIC).await;
        let broker = match p.kind {
            Kind::KillAll => None,
            Kind::KillLeader => {
                let mut count: BTreeMap<u64, usize> = ids.iter().map(|&i| (i, 0)).collect();
                for l in leaders.values() {
                    *count.entry(*l).or_default() += 1;
                }
                // The most partitions; the lowest id among equals.
                count
                    .iter()
                    .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
                    .map(|(id, _)| *id)
            }
            Kind::KillRandom => Some(ids[(p.pick % ids.len() as u64) as usize]),
            Kind::Pause | Kind::Isolate | Kind::LinkDown => {
                let mut leading: Vec<u64> = leaders.values().copied().collect();
                leading.sort_unstable();
                leading.dedup();
                let from = if leading.is_empty() { &ids } else { &leading };
                Some(from[(p.pick % from.len() as u64) as usize])
            }
        };
        let led: Vec<u32> = leaders
            .iter()
            .filter(|(_, l)| Some(**l) == broker)
            .map(|(p, _)| *p)
            .collect();
        eprintln!(
            "[{:>7.2}s] #{n} {}{} (leads {led:?}) for {:.1}s; {} acknowledged so far; \
             leaders {leaders:?}",
            secs(Instant::now(), t0),
            p.kind.name(),
            broker.map(|b| format!(" broker {b}")).unwrap_or_default(),
            p.hold.as_secs_f64(),
            acked.load(Ordering::Relaxed),
        );
        c.note(&format!(
            "chaos fault #{n} at t={:.2}s: {}{}",
            secs(Instant::now(), t0),
            p.kind.name(),
            broker.map(|b| format!(" broker {b}")).unwrap_or_default(),
        ));
        match (p.kind, broker) {
            (Kind::KillRandom | Kind::KillLeader, Some(b)) => c.kill(b),
            (Kind::Pause, Some(b)) => c.pause(b),
            (Kind::Isolate, Some(b)) => c.isolate_from_peers(b),
            (Kind::LinkDown, Some(b)) => c.link_down(b),
            (Kind::KillAll, _) => c.kill_all(),
            (kind, None) => unreachable!("{kind:?} without a broker"),
        }
        // The fault is in full effect from here on.
        let start = Instant::now();
        tokio::time::sleep(p.hold).await;
        let heal_began = Instant::now();
        match (p.kind, broker) {
            (Kind::KillRandom | Kind::KillLeader, Some(b)) => c.restart(b).await,
            (Kind::Pause, Some(b)) => c.resume(b),
            (Kind::Isolate, Some(b)) => c.heal_peers(b),
            (Kind::LinkDown, Some(b)) => c.link_up(b),
            (Kind::KillAll, _) => c.restart_all().await,
            (kind, None) => unreachable!("{kind:?} without a broker"),
        }
        let healed = Instant::now();
        if healed - start > Duration::from_secs(10) {
            eprintln!(
                "  healed only {:.1}s after the fault (restart took {:.1}s)",
                (healed - start).as_secs_f64(),
                (healed - heal_began).as_secs_f64()
            );
        }
        faults.push(Fault {
            n,
            kind: p.kind,
            broker,
            led,
            start,
            heal_began,
            healed,
        });
        c.assert_not_broken();
        tokio::time::sleep(p.gap_after).await;
    }
    c.heal_all().await;
    // Some traffic on the healed cluster, so that the last fault's
    // partitions see acknowledgements.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let schedule_end = Instant::now();

    // Stop, flush, collect.
    stop.store(true, Ordering::SeqCst);
    let mut sent_total = 0u64;
    let mut producers = Vec::new();
    for (p, s) in senders.into_iter().enumerate() {
        let (producer, n) = s
            .await
            .unwrap_or_else(|e| panic!("producer {p} send loop: {e}"));
        sent_total += n;
        producers.push(producer);
    }
    let stopped_at = Instant::now();
    let mut flush_problems = Vec::new();
    for (p, producer) in producers.iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(150), producer.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => flush_problems.push(format!("producer {p}: flush failed: {e}")),
            Err(_) => flush_problems.push(format!("producer {p}: flush hung for 150 s")),
        }
    }
    let collect_deadline = Instant::now() + Duration::from_secs(30);
    let mut recs: Vec<Rec> = Vec::new();
    for (p, h) in collectors.into_iter().enumerate() {
        let left = collect_deadline.saturating_duration_since(Instant::now());
        let mut h = h;
        let r = match tokio::time::timeout(left, &mut h).await {
            Ok(r) => r,
            Err(_) => {
                flush_problems.push(format!(
                    "producer {p}: futures still open 30 s after the flush"
                ));
                let _ = abort_tx.send(true);
                h.await
            }
        };
        recs.extend(r.unwrap_or_else(|e| panic!("producer {p} collector: {e}")));
    }
    for producer in &producers {
        let _ = producer.close().await;
    }
    drop(producers);
    assert_eq!(
        recs.len() as u64,
        sent_total,
        "every sent record is accounted for"
    );
    c.wait_all_in_sync(TOPIC, SYNC).await;

    // ---------------------------------------------------------- checks
    let mut violations: Vec<String> = flush_problems;
    let mut failed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut unresolved = Vec::new();
    for r in &recs {
        match &r.outcome {
            Outcome::Failed(e) => failed.entry(e.clone()).or_default().push(r.value()),
            Outcome::Unresolved => unresolved.push(r.value()),
            Outcome::Acked { .. } => {}
        }
    }
    for (e, values) in &failed {
        violations.push(format!(
            "{} records failed with {e:?}, e.g. {:?}",
            values.len(),
            &values[..values.len().min(5)]
        ));
    }
    if !unresolved.is_empty() {
        violations.push(format!(
            "{} records never resolved, e.g. {:?}",
            unresolved.len(),
            &unresolved[..unresolved.len().min(5)]
        ));
    }
    let acked_recs: Vec<&Rec> = recs
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Acked { .. }))
        .collect();

    // The log of every partition against what was acknowledged.
    let sent_to: HashMap<(usize, u64), u32> = recs
        .iter()
        .map(|r| ((r.producer, r.seq), r.partition))
        .collect();
    let mut logs: Vec<Vec<(i64, String)>> = Vec::new();
    for p in 0..PARTITIONS {
        let log = c.read_partition(TOPIC, p).await;
        let mut problems = Vec::new();
        for w in log.windows(2) {
            if w[0].0 >= w[1].0 {
                problems.push(format!("offsets go backwards: {:?} then {:?}", w[0], w[1]));
            }
        }
        let mut at: HashMap<&str, i64> = HashMap::with_capacity(log.len());
        for (o, v) in &log {
            match parse_value(v) {
                Some(key) if sent_to.get(&key) == Some(&p) => {}
                Some(_) => problems.push(format!("{v} at {o} was not sent to this partition")),
                None => problems.push(format!("unknown value {v:?} at {o}")),
            }
            if let Some(prev) = at.insert(v.as_str(), *o) {
                problems.push(format!("duplicate: {v} at {prev} and at {o}"));
            }
        }
        // Per producer: acknowledged offsets in send order.
        let mut last: HashMap<usize, (u64, i64)> = HashMap::new();
        let mut lost = 0usize;
        for r in acked_recs.iter().filter(|r| r.partition == p) {
            let Outcome::Acked { offset, .. } = r.outcome else {
                continue;
            };
            let v = r.value();
            match at.get(v.as_str()) {
                None => {
                    lost += 1;
                    if lost <= 5 {
                        problems.push(format!(
                            "lost: {v} acknowledged at offset {offset}; at that offset the log \
                             has {:?}",
                            log.iter().find(|x| x.0 == offset)
                        ));
                    }
                }
                Some(&o) if o != offset => problems.push(format!(
                    "{v} acknowledged at offset {offset} but it is at {o}"
                )),
                Some(_) => {}
            }
            if let Some(&(pseq, poff)) = last.get(&r.producer)
                && poff >= offset
            {
                problems.push(format!(
                    "order: p{}/{pseq} acknowledged at {poff}, later p{}/{} at {offset}",
                    r.producer, r.producer, r.seq
                ));
            }
            last.insert(r.producer, (r.seq, offset));
        }
        if lost > 5 {
            problems.push(format!("... {lost} acknowledged records lost in all"));
        }
        let acked_here = acked_recs.iter().filter(|r| r.partition == p).count();
        eprintln!(
            "partition {p}: {} records in the log, {acked_here} acknowledged",
            log.len()
        );
        for pr in problems.iter().take(20) {
            violations.push(format!("partition {p}: {pr}"));
        }
        if problems.len() > 20 {
            violations.push(format!(
                "partition {p}: ... {} problems in all",
                problems.len()
            ));
        }
        logs.push(log);
    }

    // Every replica serves the same log when it leads.
    for &r in &ids {
        let mut moved = true;
        for p in 0..PARTITIONS {
            if let Err(e) = c
                .transfer_leader(TOPIC, p, r, Duration::from_secs(30))
                .await
            {
                violations.push(format!("replica check: {e}"));
                moved = false;
            }
        }
        if !moved {
            continue;
        }
        c.wait_all_in_sync(TOPIC, SYNC).await;
        for p in 0..PARTITIONS {
            match c.read_partition_from(r, TOPIC, p).await {
                Err(e) => violations.push(format!("replica check: {e}")),
                Ok(log) => {
                    let reference = &logs[p as usize];
                    if &log != reference {
                        let i = log
                            .iter()
                            .zip(reference)
                            .position(|(a, b)| a != b)
                            .unwrap_or(log.len().min(reference.len()));
                        violations.push(format!(
                            "partition {p}: broker {r} as leader serves {} records, the first \
                             read {}; first difference at #{i}: {:?} vs {:?}",
                            log.len(),
                            reference.len(),
                            log.get(i),
                            reference.get(i)
                        ));
                    }
                }
            }
        }
        eprintln!("replica check: broker {r} led every partition and served the same log");
    }
    // And their segment files are identical.
    let hw = c.high_watermarks(TOPIC).await;
    let converge_deadline = Instant::now() + Duration::from_secs(30);
    let diff = loop {
        let diff = (0..PARTITIONS)
            .find_map(|p| c.replicas_converged(TOPIC, p, &ids, hw[p as usize]).err());
        if diff.is_none() || Instant::now() > converge_deadline {
            break diff;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if let Some(d) = diff {
        violations.push(format!("replica segment files differ (running): {d}"));
    }

    // ---------------------------------------------------------- figures
    let mut ack_times: Vec<Instant> = Vec::with_capacity(acked_recs.len());
    let mut by_partition: Vec<Vec<Instant>> = vec![Vec::new(); PARTITIONS as usize];
    for r in &acked_recs {
        if let Outcome::Acked { at, .. } = r.outcome {
            ack_times.push(at);
            by_partition[r.partition as usize].push(at);
        }
    }
    ack_times.sort_unstable();
    for v in &mut by_partition {
        v.sort_unstable();
    }

    // Longest time without an acknowledgement while the faults ran; the
    // full-cluster outage only counts from the end of its restart.
    let full = faults.iter().find(|f| f.kind == Kind::KillAll).cloned();
    let mut points: Vec<Instant> = ack_times
        .iter()
        .copied()
        .filter(|&a| a >= schedule_start && a <= stopped_at)
        .collect();
    points.insert(0, schedule_start);
    points.push(stopped_at);
    let mut longest = (Duration::ZERO, schedule_start, schedule_start);
    let mut full_recovery = None;
    for w in points.windows(2) {
        let (mut from, to) = (w[0], w[1]);
        if let Some(f) = &full
            && from <= f.healed
            && to >= f.start
        {
            full_recovery = Some((to.saturating_duration_since(f.start), to));
            from = from.max(f.healed);
        }
        let gap = to.saturating_duration_since(from);
        if gap > longest.0 {
            longest = (gap, from, to);
        }
    }

    // Failover, per partition the faulted broker led: from the fault to
    // the first acknowledgement of a record sent after the fault (which
    // only a leader that took over, or the healed broker, can commit), and
    // to the first acknowledgement of any record (which may be one the old
    // leader committed just before the fault).
    let mut by_sent: Vec<Vec<(Instant, Instant)>> = vec![Vec::new(); PARTITIONS as usize];
    for r in &acked_recs {
        if let Outcome::Acked { at, .. } = r.outcome {
            by_sent[r.partition as usize].push((r.sent_at, at));
        }
    }
    // Per partition: sorted by send time, with the earliest acknowledgement
    // among the records sent at or after each position.
    let mut earliest_after: Vec<Vec<Instant>> = Vec::new();
    for v in &mut by_sent {
        v.sort_unstable();
        let mut suffix: Vec<Instant> = Vec::with_capacity(v.len());
        for (_, at) in v.iter().rev() {
            let best = suffix.last().map_or(*at, |b| (*b).min(*at));
            suffix.push(best);
        }
        suffix.reverse();
        earliest_after.push(suffix);
    }
    let mut failover: BTreeMap<Kind, Vec<Duration>> = BTreeMap::new();
    let mut any_ack: BTreeMap<Kind, Vec<Duration>> = BTreeMap::new();
    eprintln!();
    eprintln!("failover per fault (partition: first ack of a record sent after / of any record):");
    for f in &faults {
        let mut line = Vec::new();
        for &p in &f.led {
            let sent = &by_sent[p as usize];
            let i = sent.partition_point(|(s, _)| *s <= f.start);
            let after = earliest_after[p as usize]
                .get(i)
                .map(|&a| a.saturating_duration_since(f.start));
            match after {
                Some(d) => failover.entry(f.kind).or_default().push(d),
                None => violations.push(format!(
                    "partition {p}: no record sent after {} was acknowledged",
                    f.describe(t0)
                )),
            }
            let acks = &by_partition[p as usize];
            let any = acks
                .get(acks.partition_point(|&a| a <= f.start))
                .map(|&a| a - f.start);
            if let Some(d) = any {
                any_ack.entry(f.kind).or_default().push(d);
            }
            line.push(format!("p{p} {} / {}", fmt_d(after), fmt_d(any)));
        }
        if !line.is_empty() {
            eprintln!(
                "  #{} {} broker {}: {}",
                f.n,
                f.kind.name(),
                f.broker.unwrap_or_default(),
                line.join(", ")
            );
        }
    }
    // The longest pause of acknowledgements on each partition (for
    // information: a partition may stall while others go on).
    for (p, acks) in by_partition.iter().enumerate() {
        let window: Vec<Instant> = acks
            .iter()
            .copied()
            .filter(|&a| a >= schedule_start && a <= stopped_at)
            .collect();
        let worst = window
            .windows(2)
            .map(|w| (w[1] - w[0], w[0], w[1]))
            .filter(|(_, from, to)| {
                full.as_ref()
                    .is_none_or(|f| !(*from <= f.healed && *to >= f.start))
            })
            .max_by_key(|(d, _, _)| *d);
        if let Some((d, from, to)) = worst {
            eprintln!(
                "partition {p}: longest acknowledgement gap {:.2}s (t={:.2}s..{:.2}s; {})",
                d.as_secs_f64(),
                secs(from, t0),
                secs(to, t0),
                faults_during(&faults, from, to, t0)
            );
        }
    }
    for v in failover.values_mut().chain(any_ack.values_mut()) {
        v.sort_unstable();
    }

    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for f in &faults {
        *counts.entry(f.kind).or_default() += 1;
    }
    let run_secs = secs(schedule_end, schedule_start);
    eprintln!();
    eprintln!(
        "chaos summary: seed {seed}, {} faults in {run_secs:.0}s",
        faults.len()
    );
    eprintln!(
        "{:<20} {:>5} {:>8} {:>8} {:>8} {:>8}   {:>8} {:>8}",
        "kind", "count", "samples", "p50", "p99", "max", "any p50", "any p99"
    );
    for (kind, n) in &counts {
        let s = failover.get(kind).map(Vec::as_slice).unwrap_or_default();
        let a = any_ack.get(kind).map(Vec::as_slice).unwrap_or_default();
        eprintln!(
            "{:<20} {:>5} {:>8} {:>8} {:>8} {:>8}   {:>8} {:>8}",
            kind.name(),
            n,
            s.len(),
            fmt_d(percentile(s, 0.50)),
            fmt_d(percentile(s, 0.99)),
            fmt_d(s.last().copied()),
            fmt_d(percentile(a, 0.50)),
            fmt_d(percentile(a, 0.99)),
        );
    }
    eprintln!(
        "(one sample per partition the faulted broker led; p50/p99/max: fault to the first \
         acknowledgement of a record sent after the fault; any: to the first acknowledgement \
         of any record)"
    );
    if let (Some(f), Some((d, at))) = (&full, full_recovery) {
        eprintln!(
            "kill-all: every broker down for {:.2}s, all serving again {:.2}s after the restart \
             began; first acknowledgement {:.2}s after the kill, {:.2}s after the restart began",
            (f.heal_began - f.start).as_secs_f64(),
            (f.healed - f.heal_began).as_secs_f64(),
            d.as_secs_f64(),
            at.saturating_duration_since(f.heal_began).as_secs_f64()
        );
    }
    let n_failed: usize = failed.values().map(Vec::len).sum();
    eprintln!(
        "records: {sent_total} sent, {} acknowledged, {n_failed} failed, {} unresolved",
        acked_recs.len(),
        unresolved.len()
    );
    let (gap, from, to) = longest;
    let gap_faults = faults_during(&faults, from, to, t0);
    eprintln!(
        "longest acknowledgement gap: {:.2}s (t={:.2}s..{:.2}s; {gap_faults})",
        gap.as_secs_f64(),
        secs(from, t0),
        secs(to, t0),
    );
    if gap > MAX_GAP {
        violations.push(format!(
            "no acknowledgement for {:.2}s (> {MAX_GAP:?}) from t={:.2}s to t={:.2}s: {gap_faults}",
            gap.as_secs_f64(),
            secs(from, t0),
            secs(to, t0),
        ));
    }

    // Stopped brokers: the segment files once more, with nothing moving.
    c.terminate_all();
    for p in 0..PARTITIONS {
        if let Err(e) = c.replicas_converged(TOPIC, p, &ids, hw[p as usize]) {
            violations.push(format!("replica segment files differ (stopped): {e}"));
        }
    }

    assert!(
        violations.is_empty(),
        "chaos seed {seed}: {} violations:\n{}\n{}",
        violations.len(),
        violations.join("\n"),
        c.logs(30)
    );
}
