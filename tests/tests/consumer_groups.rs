//! Consumer groups with membership against a real broker: `strata consume
//! --group` processes share a topic's partitions; every record is read, and
//! the ownership log (each process's assigned/revoked/lost events, with
//! times) never has a partition owned by two processes at once; a SIGKILLed
//! member's partitions move on after its session timeout and resume from
//! its last commit; a paused member (a zombie) is fenced. In-process
//! clients check scaling (only what must move is revoked), static
//! membership and the error codes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_client::{
    Admin, AssignmentEvent, ClientConfig, Consumer, ConsumerConfig, ErrorCode, Producer,
    ProducerConfig, ProducerRecord, Subscription,
};
use strata_tests::{BrokerProc, bin};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// What one consumer process printed.
#[derive(Default)]
struct Seen {
    /// (partition, offset) of every record.
    records: Vec<(u32, i64)>,
    /// (at_ms, event, partitions).
    events: Vec<(u128, String, Vec<u32>)>,
    refused_commits: usize,
}

/// A `strata consume --group` process with its output collected.
struct Member {
    name: String,
    child: Child,
    seen: Arc<Mutex<Seen>>,
    /// When it was SIGKILLed or SIGSTOPped: its ownership ends then (a
    /// paused member is taken out once its session runs out; what it does
    /// after it resumes is fenced, see the zombie check).
    killed_at: Option<u128>,
}

impl Member {
    fn spawn(brokers: &str, topic: &str, group: &str, name: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(bin("strata"))
            .args(["--brokers", brokers, "consume", topic, "--group", group])
            .args(["--format", "json", "--session-timeout", "3000"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata consume");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let out = child.stdout.take().expect("stdout");
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: serde_json::Value = match serde_json::from_str(&line) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                let (Some(p), Some(o)) = (v["partition"].as_u64(), v["offset"].as_i64()) else {
                    continue;
                };
                s.lock().unwrap().records.push((p as u32, o));
            }
        });
        let err = child.stderr.take().expect("stderr");
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.starts_with("commit refused") {
                    s.lock().unwrap().refused_commits += 1;
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let (Some(ev), Some(at)) = (v["event"].as_str(), v["at_ms"].as_u64()) else {
                    continue;
                };
                let parts: Vec<u32> = v["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str()?.rsplit('/').next()?.parse().ok())
                    .collect();
                s.lock()
                    .unwrap()
                    .events
                    .push((u128::from(at), ev.to_owned(), parts));
            }
        });
        Self {
            name: name.to_owned(),
            child,
            seen,
            killed_at: None,
        }
    }

    /// Partitions it holds according to its events.
    fn owned(&self) -> BTreeSet<u32> {
        let mut owned = BTreeSet::new();
        for (_, ev, parts) in &self.seen.lock().unwrap().events {
            for p in parts {
                if ev == "assigned" {
                    owned.insert(*p);
                } else {
                    owned.remove(p);
                }
            }
        }
        owned
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.killed_at = Some(now_ms());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ownership intervals per partition, from every member's events: no two
/// overlap.
fn check_no_overlap(members: &[Member]) {
    let mut intervals: BTreeMap<u32, Vec<(u128, u128, String)>> = BTreeMap::new();
    for m in members {
        let seen = m.seen.lock().unwrap();
        let mut open: HashMap<u32, u128> = HashMap::new();
        // Ownership that began before a kill or pause ends with it.
        let cut = |from: u128, to: u128| match m.killed_at {
            Some(k) if from <= k => to.min(k),
            _ => to,
        };
        for (at, ev, parts) in &seen.events {
            for p in parts {
                if ev == "assigned" {
                    open.insert(*p, *at);
                } else if let Some(from) = open.remove(p) {
                    intervals
                        .entry(*p)
                        .or_default()
                        .push((from, cut(from, *at), m.name.clone()));
                }
            }
        }
        for (p, from) in open {
            intervals
                .entry(p)
                .or_default()
                .push((from, cut(from, u128::MAX), m.name.clone()));
        }
    }
    for (p, mut iv) in intervals {
        iv.sort();
        for w in iv.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "partition {p} owned by {} ({}..{}) and {} ({}..{}) at once",
                w[0].2,
                w[0].0,
                w[0].1,
                w[1].2,
                w[1].0,
                w[1].1
            );
        }
    }
}

async fn committed_offsets(admin: &Admin, group: &str) -> BTreeMap<u32, i64> {
    admin
        .describe_group(group)
        .await
        .expect("describe")
        .partitions
        .into_iter()
        .map(|p| (p.partition, p.committed_offset))
        .collect()
}

async fn produce(cfg: ClientConfig, topic: &str, partitions: u32, per_partition: usize) {
    let producer = Producer::new(cfg, ProducerConfig::default())
        .await
        .expect("producer");
    let mut acks = Vec::new();
    for i in 0..per_partition {
        for p in 0..partitions {
            let rec = ProducerRecord::new(topic, format!("{p}-{i}")).partition(p);
            acks.push(producer.send(rec).await.expect("send"));
        }
    }
    producer.flush().await.expect("flush");
    for a in acks {
        a.await.expect("acknowledged");
    }
    producer.close().await.expect("close");
}

/// Waits until `f` holds, panicking with `what` after `secs`.
async fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn distinct(members: &[Member]) -> BTreeSet<(u32, i64)> {
    members
        .iter()
        .flat_map(|m| m.seen.lock().unwrap().records.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_share_partitions_and_survive_a_kill_and_a_pause() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let brokers = broker.addr.to_string();
    let cfg = ClientConfig::new([brokers.clone()]);
    let admin = Admin::new(cfg.clone()).unwrap();
    admin
        .create_topic("jobs", 12, 1, Default::default())
        .await
        .expect("create topic");
    produce(cfg.clone(), "jobs", 12, 200).await;

    let mut members: Vec<Member> = (0..4)
        .map(|i| Member::spawn(&brokers, "jobs", "workers", &format!("c{i}"), &[]))
        .collect();
    wait_for(60, "3 partitions each", || {
        members.iter().all(|m| m.owned().len() == 3)
    })
    .await;
    wait_for(60, "every record read", || {
        distinct(&members).len() == 12 * 200
    })
    .await;
    check_no_overlap(&members);
    let all: BTreeSet<u32> = members.iter().flat_map(Member::owned).collect();
    assert_eq!(all.len(), 12, "every partition has an owner");

    // SIGKILL one member: after its session (3 s) its partitions move to
    // the others and resume from its last commit.
    let victim_parts = members[0].owned();
    // Its positions are committed every second: give it one more commit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    members[0].kill();
    let killed = now_ms();
    produce(cfg.clone(), "jobs", 12, 100).await;
    wait_for(60, "the survivors take over", || {
        let owned: BTreeSet<u32> = members[1..].iter().flat_map(Member::owned).collect();
        owned.len() == 12
    })
    .await;
    wait_for(60, "every record read after the kill", || {
        distinct(&members).len() == 12 * 300
    })
    .await;
    check_no_overlap(&members);
    // The victim's partitions were taken over after its session ran out.
    for m in &members[1..] {
        for (at, ev, parts) in &m.seen.lock().unwrap().events {
            if ev == "assigned" && parts.iter().any(|p| victim_parts.contains(p)) && *at > killed {
                assert!(
                    *at >= killed + 2_000,
                    "{} took a partition of the killed member {} ms after the kill",
                    m.name,
                    at - killed
                );
            }
        }
    }
    // Duplicates only of what the victim read but had not committed.
    let victim_records = members[0].seen.lock().unwrap().records.len();
    let total: usize = members
        .iter()
        .map(|m| m.seen.lock().unwrap().records.len())
        .sum();
    assert!(
        total - 12 * 300 <= victim_records,
        "{} duplicates, more than the victim's {victim_records} records",
        total - 12 * 300
    );

    // A zombie: paused past its session timeout, then resumed. It is
    // fenced: it loses its partitions and none of its commits land.
    members[1].signal("-STOP");
    members[1].killed_at = Some(now_ms());
    let zombie_commits_before = committed_offsets(&admin, "workers").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    members[1].signal("-CONT");
    wait_for(30, "the zombie learns it lost its partitions", || {
        let seen = members[1].seen.lock().unwrap();
        seen.events.iter().any(|(_, ev, _)| ev == "lost") || seen.refused_commits > 0
    })
    .await;
    wait_for(60, "partitions owned again", || {
        let owned: BTreeSet<u32> = members[1..].iter().flat_map(Member::owned).collect();
        owned.len() == 12
    })
    .await;
    check_no_overlap(&members);
    // Nothing the zombie committed after its pause landed: every committed
    // offset of its old partitions is one the new owners wrote (at or past
    // what was committed when it paused).
    let after = committed_offsets(&admin, "workers").await;
    for (p, o) in &zombie_commits_before {
        assert!(
            after.get(p).is_some_and(|a| a >= o),
            "partition {p} went back"
        );
    }

    // The zombie rejoins as a new member; the group as the CLI describes it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin
        .describe_group("workers")
        .await
        .map_or(0, |d| d.members.len())
        != 3
    {
        assert!(
            Instant::now() < deadline,
            "the group did not get back to 3 members"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = broker.cli(&["group", "describe", "workers", "--output", "json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["protocol"], "consumer");
    assert_eq!(d["members"].as_array().map(Vec::len), Some(3));
    let out = broker.cli(&["group", "list", "--output", "json"], None);
    let l: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(l[0]["members"], 3);
    // A group with members cannot be deleted.
    let out = broker.cli(&["group", "delete", "workers"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NON_EMPTY_GROUP"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn member_cfg(group: &str, instance: Option<&str>) -> ConsumerConfig {
    ConsumerConfig {
        group: Some(group.into()),
        group_instance_id: instance.map(str::to_owned),
        session_timeout: Duration::from_secs(3),
        ..ConsumerConfig::default()
    }
}

/// A subscribed in-process consumer, polled in the background; its events
/// are collected.
struct Polled {
    events: Arc<Mutex<Vec<AssignmentEvent>>>,
    task: tokio::task::JoinHandle<Consumer>,
    stop: tokio::sync::oneshot::Sender<()>,
}

fn start_polled(cfg: ClientConfig, ccfg: ConsumerConfig, topic: &str) -> Polled {
    let mut c = Consumer::new(cfg, ccfg).expect("consumer");
    c.subscribe(Subscription::Topics(vec![topic.to_owned()]))
        .expect("subscribe");
    let mut rx = c.assignment_events().expect("events");
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = Arc::clone(&events);
    let (stop, mut stop_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                Some(e) = rx.recv() => ev.lock().unwrap().push(e),
                b = c.next_batch() => {
                    if let Some(Err(e)) = b {
                        panic!("consumer failed: {e}");
                    }
                }
            }
        }
        c
    });
    Polled { events, task, stop }
}

fn holdings(p: &Polled) -> BTreeSet<u32> {
    let mut owned = BTreeSet::new();
    for e in p.events.lock().unwrap().iter() {
        match e {
            AssignmentEvent::Assigned(t) => owned.extend(t.iter().map(|(_, p)| *p)),
            AssignmentEvent::Revoked(t) | AssignmentEvent::Lost(t) => {
                for (_, p) in t {
                    owned.remove(p);
                }
            }
        }
    }
    owned
}

fn revocations(p: &Polled) -> usize {
    p.events
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            AssignmentEvent::Revoked(t) => t.len(),
            _ => 0,
        })
        .sum()
}

async fn close(p: Polled) {
    let _ = p.stop.send(());
    let c = p.task.await.expect("consumer task");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_moves_only_what_must_and_static_members_return() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let cfg = ClientConfig::new([broker.addr.to_string()]);
    let admin = Admin::new(cfg.clone()).unwrap();
    admin
        .create_topic("events", 12, 1, Default::default())
        .await
        .expect("create topic");
    // Load while the group scales.
    let load_cfg = cfg.clone();
    let load = tokio::spawn(async move { produce(load_cfg, "events", 12, 2000).await });

    // 1 -> 4, one member at a time: each step revokes exactly what the
    // newcomer takes (12 partitions: 6, then 4, then 3).
    let mut ps = vec![start_polled(
        cfg.clone(),
        member_cfg("scale", None),
        "events",
    )];
    wait_for(30, "one member with all", || holdings(&ps[0]).len() == 12).await;
    let mut revoked_before = 0;
    for (n, takes) in [(2usize, 6usize), (3, 4), (4, 3)] {
        ps.push(start_polled(
            cfg.clone(),
            member_cfg("scale", None),
            "events",
        ));
        wait_for(30, "a balanced group", || {
            let sizes: Vec<usize> = ps.iter().map(|p| holdings(p).len()).collect();
            sizes.iter().sum::<usize>() == 12 && sizes.iter().all(|s| *s == 12 / n)
        })
        .await;
        let revoked: usize = ps.iter().map(revocations).sum();
        assert_eq!(
            revoked - revoked_before,
            takes,
            "going to {n} members revokes only what the new one takes"
        );
        revoked_before = revoked;
    }
    let kept: Vec<BTreeSet<u32>> = ps[..2].iter().map(holdings).collect();
    let staying_revoked: usize = ps[..2].iter().map(revocations).sum();
    let leaving: Vec<Polled> = ps.drain(2..).collect();
    for p in leaving {
        close(p).await;
    }
    wait_for(30, "two members with 6 each", || {
        ps.iter().all(|p| holdings(p).len() == 6)
    })
    .await;
    for (p, k) in ps.iter().zip(&kept) {
        assert!(
            k.is_subset(&holdings(p)),
            "a staying member keeps its partitions"
        );
    }
    assert_eq!(
        ps.iter().map(revocations).sum::<usize>(),
        staying_revoked,
        "4 -> 2 revokes nothing from the members that stay"
    );
    for p in ps {
        close(p).await;
    }
    load.await.expect("load");

    // A static member restarts within its session timeout: same
    // partitions, no new group epoch.
    let a = start_polled(cfg.clone(), member_cfg("static", Some("a")), "events");
    let b = start_polled(cfg.clone(), member_cfg("static", Some("b")), "events");
    wait_for(30, "two static members", || {
        holdings(&a).len() == 6 && holdings(&b).len() == 6
    })
    .await;
    let before = holdings(&a);
    let b_revoked = revocations(&b);
    let epoch = admin.describe_group("static").await.unwrap().group_epoch;
    // Crash-like: the task stops without leaving.
    let _ = a.stop.send(());
    drop(a.task.await.expect("task"));
    let a2 = start_polled(cfg.clone(), member_cfg("static", Some("a")), "events");
    wait_for(30, "the restarted static member", || {
        holdings(&a2).len() == 6
    })
    .await;
    assert_eq!(holdings(&a2), before, "same partitions after the restart");
    assert_eq!(
        admin.describe_group("static").await.unwrap().group_epoch,
        epoch,
        "no rebalance"
    );
    assert_eq!(
        revocations(&b),
        b_revoked,
        "the other member gave up nothing"
    );
    close(a2).await;
    close(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_heartbeats_get_stable_codes() {
    use strata_proto::v1::ConsumerGroupHeartbeatRequest;
    let tmp = tempfile::tempdir().unwrap();
    let broker = BrokerProc::start(&tmp.path().join("data"), &[]).await;
    let admin = Admin::new(ClientConfig::new([broker.addr.to_string()])).unwrap();
    admin
        .create_topic("t", 1, 1, Default::default())
        .await
        .expect("create topic");
    let mut g = broker.groups().await;
    let code = |r: Result<_, tonic::Status>| match r {
        Ok(_) => "OK".to_owned(),
        Err(st) => strata_tests::error_code(&st),
    };
    let join = |group: &str| ConsumerGroupHeartbeatRequest {
        group: group.into(),
        has_subscription: true,
        subscribed_topics: vec!["t".into()],
        ..Default::default()
    };
    assert_eq!(
        code(g.consumer_group_heartbeat(join("")).await),
        "INVALID_GROUP"
    );
    let mut r = join("g");
    r.session_timeout_ms = 10;
    assert_eq!(code(g.consumer_group_heartbeat(r).await), "INVALID_REQUEST");
    let mut r = join("g");
    r.rebalance_timeout_ms = u32::MAX;
    assert_eq!(code(g.consumer_group_heartbeat(r).await), "INVALID_REQUEST");
    let mut r = join("g");
    r.assignor = "magic".into();
    assert_eq!(
        code(g.consumer_group_heartbeat(r).await),
        "UNSUPPORTED_ASSIGNOR"
    );
    let mut r = join("g");
    r.subscribed_topics.clear();
    r.subscribed_regex = "(".into();
    assert_eq!(code(g.consumer_group_heartbeat(r).await), "INVALID_REQUEST");
    let r = ConsumerGroupHeartbeatRequest {
        group: "g".into(),
        member_id: "nobody".into(),
        member_epoch: 3,
        ..Default::default()
    };
    assert_eq!(
        code(g.consumer_group_heartbeat(r).await),
        "UNKNOWN_MEMBER_ID"
    );
    let ok = g
        .consumer_group_heartbeat(join("g"))
        .await
        .expect("join")
        .into_inner();
    assert!(!ok.member_id.is_empty());
    let r = ConsumerGroupHeartbeatRequest {
        group: "g".into(),
        member_id: ok.member_id.clone(),
        member_epoch: ok.member_epoch + 7,
        ..Default::default()
    };
    assert_eq!(
        code(g.consumer_group_heartbeat(r).await),
        "FENCED_MEMBER_EPOCH"
    );
    // A simple commit to a group with members is refused.
    let e = admin
        .commit_group_offsets("g", &[("t".into(), 0, 1)])
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Some(ErrorCode::UnknownMemberId), "{e}");
}

/// Kafka's rule for a group's offsets partition (Java `String.hashCode`).
fn shard_for(group: &str, n: u32) -> u32 {
    let mut h: i32 = 0;
    for c in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(c));
    }
    h.unsigned_abs() % n
}

/// Holdings of every member, checked disjoint.
fn disjoint_holdings(ps: &[Polled]) -> Vec<BTreeSet<u32>> {
    let hs: Vec<BTreeSet<u32>> = ps.iter().map(holdings).collect();
    let mut seen = BTreeSet::new();
    for h in &hs {
        for p in h {
            assert!(seen.insert(*p), "partition {p} held by two members: {hs:?}");
        }
    }
    hs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_group_survives_its_coordinators_death() {
    use strata_tests::{Cluster, ClusterOpts};
    let mut cluster = Cluster::start(
        3,
        ClusterOpts {
            extra: vec!["--offsets-partitions".into(), "3".into()],
            ..Default::default()
        },
    )
    .await;
    let cfg = cluster.client_config();
    let admin = Admin::new(cfg.clone()).unwrap();
    admin
        .create_topic("work", 6, 3, Default::default())
        .await
        .expect("create topic");
    let mut ps: Vec<Polled> = (0..3)
        .map(|_| start_polled(cfg.clone(), member_cfg("crew", None), "work"))
        .collect();
    wait_for(60, "two partitions each", || {
        disjoint_holdings(&ps).iter().all(|h| h.len() == 2)
    })
    .await;
    let before = disjoint_holdings(&ps);
    let epoch = admin.describe_group("crew").await.unwrap().group_epoch;

    // While the members are stable: the group's state is on the offsets
    // partition's log, so the new leader continues it. No partition moves.
    let shard = shard_for("crew", 3);
    let coordinator = cluster
        .wait_leader("__consumer_offsets", shard, Duration::from_secs(30))
        .await;
    cluster.kill(coordinator);
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        disjoint_holdings(&ps);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(disjoint_holdings(&ps), before, "no partition moved");
    assert_eq!(
        admin.describe_group("crew").await.unwrap().group_epoch,
        epoch,
        "the new coordinator continued the group without a rebalance"
    );
    cluster.restart(coordinator).await;

    // During a rebalance: a fourth member joins and the coordinator dies.
    ps.push(start_polled(cfg.clone(), member_cfg("crew", None), "work"));
    let coordinator = cluster
        .wait_leader("__consumer_offsets", shard, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill(coordinator);
    wait_for(60, "the group settles on four members", || {
        let hs = disjoint_holdings(&ps);
        hs.iter().map(BTreeSet::len).sum::<usize>() == 6 && hs.iter().all(|h| !h.is_empty())
    })
    .await;
    for p in ps {
        close(p).await;
    }
}
