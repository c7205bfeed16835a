//! A 3-broker Raft cluster of real `stratad` processes: acknowledged
//! (`acks=all`) records survive leader kills, a whole-cluster SIGKILL under
//! `fsync=always`, and a wiped replica; replicas end up with byte-identical
//! logs; leadership moves on request; cluster status reports dead brokers
//! and under-replicated partitions, through gRPC and the CLI.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_client::{Producer, ProducerConfig, ProducerRecord};
use strata_proto::v1::*;
use strata_tests::{
    Cluster, ClusterOpts, LoadReport, ProduceLoad, assert_replicas_identical, check_acked,
    consume_earliest, describe_status, error_code, produce_acked, read_partition, run_cli,
    wait_replicas_converged,
};

const SYNC: Duration = Duration::from_secs(60);

/// Reads every partition back and checks it against what was acknowledged;
/// returns each partition's high watermark.
async fn check_all(c: &Cluster, topic: &str, acked: &LoadReport) -> Vec<i64> {
    assert!(
        acked.anomalies.is_empty(),
        "acknowledgements with wrong offsets: {:?}",
        acked.anomalies
    );
    let hw = c.high_watermarks(topic).await;
    assert_eq!(hw.len(), acked.acked.len(), "partition count of {topic}");
    for (p, records) in acked.acked.iter().enumerate() {
        let log = read_partition(c, topic, p as u32).await;
        check_acked(p as u32, &log, records);
        if let Some(last) = records.last() {
            assert!(
                last.offset < hw[p],
                "{topic}-{p}: acknowledged offset {} is not below the high watermark {}",
                last.offset,
                hw[p]
            );
        }
    }
    hw
}

/// Waits until the files of every replica agree below the high watermarks,
/// stops every broker with SIGTERM, and asserts the files are identical.
async fn stop_and_compare(c: &mut Cluster, topic: &str, hw: &[i64]) {
    let ids = c.ids();
    if let Err(e) = wait_replicas_converged(c, topic, &ids, hw, Duration::from_secs(20)).await {
        panic!("replica logs of {topic} did not converge while running: {e}");
    }
    c.assert_not_broken();
    c.terminate_all();
    assert_replicas_identical(c, topic, &ids, hw);
}

fn print_report(what: &str, r: &LoadReport) {
    eprintln!(
        "{what}: acked {} records ({:?} per partition); failed attempts {:?}",
        r.total_acked(),
        r.acked.iter().map(Vec::len).collect::<Vec<_>>(),
        r.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rf3_survives_leader_kills() {
    let mut c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("rf3", 6, 3).await;
    let load = ProduceLoad::start(c.client_addrs(), "rf3", 6);
    assert!(
        load.wait_progress(20, Duration::from_secs(20)).await,
        "no produce progress before any fault: {:?}",
        load.progress()
    );

    for p in 0..6 {
        let leader = c.wait_leader("rf3", p, Duration::from_secs(20)).await;
        eprintln!("partition {p}: SIGKILL leader {leader}");
        c.kill(leader);
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.restart(leader).await;
    }
    let resumed = load.wait_progress(20, Duration::from_secs(30)).await;
    let progress = load.progress();
    let report = load.stop().await;
    print_report("rf3", &report);
    assert!(
        resumed,
        "produce did not resume on every partition after the leader kills: acked per \
         partition {progress:?}, failed attempts {:?}",
        report.errors
    );

    c.wait_all_in_sync("rf3", SYNC).await;
    c.assert_not_broken();
    let hw = check_all(&c, "rf3", &report).await;
    stop_and_compare(&mut c, "rf3", &hw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_killed_fsync_always() {
    let opts = ClusterOpts {
        extra: vec!["--fsync".into(), "always".into()],
        ..Default::default()
    };
    let mut c = Cluster::start(3, opts).await;
    c.create_in_sync("durable", 3, 3).await;
    let load = ProduceLoad::start(c.client_addrs(), "durable", 3);
    assert!(
        load.wait_progress(100, Duration::from_secs(30)).await,
        "no produce progress: {:?}",
        load.progress()
    );
    c.kill_all();
    let before = load.stop().await;
    print_report("before the crash", &before);

    c.restart_all().await;
    c.wait_all_in_sync("durable", SYNC).await;
    // The cluster takes writes again after the crash, behind the old ones.
    let load = ProduceLoad::start(c.client_addrs(), "durable", 3);
    let resumed = load.wait_progress(10, Duration::from_secs(30)).await;
    let after = load.stop().await;
    print_report("after the restart", &after);
    assert!(
        resumed,
        "no produce progress after restarting every broker: {:?}",
        after.errors
    );

    let mut all = before;
    for (p, records) in after.acked.into_iter().enumerate() {
        all.acked[p].extend(records);
    }
    all.anomalies.extend(after.anomalies);
    c.wait_all_in_sync("durable", SYNC).await;
    check_all(&c, "durable", &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_broker_rebuilds() {
    let mut c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("rebuild", 2, 3).await;
    let load = ProduceLoad::start(c.client_addrs(), "rebuild", 2);
    assert!(
        load.wait_progress(200, Duration::from_secs(30)).await,
        "no produce progress: {:?}",
        load.progress()
    );
    let report = load.stop().await;
    c.wait_all_in_sync("rebuild", SYNC).await;

    // A broker that leads neither partition (3 brokers, 2 partitions).
    let mut leaders = Vec::new();
    for p in 0..2 {
        leaders.push(c.wait_leader("rebuild", p, Duration::from_secs(10)).await);
    }
    let victim = c
        .ids()
        .into_iter()
        .find(|id| !leaders.contains(id))
        .expect("a broker without leaderships");
    assert!(
        !c.partition_batches(victim, "rebuild", 0).is_empty(),
        "follower {victim} has no batches of rebuild-0 before the wipe"
    );
    c.wipe(victim);
    assert!(c.partition_batches(victim, "rebuild", 0).is_empty());
    c.restart(victim).await;
    c.wait_all_in_sync("rebuild", SYNC).await;

    let hw = check_all(&c, "rebuild", &report).await;
    for (p, &h) in hw.iter().enumerate() {
        assert!(h > 0, "rebuild-{p} is empty");
    }
    stop_and_compare(&mut c, "rebuild", &hw).await;
}

/// TransferLeader through any broker.
async fn transfer(c: &Cluster, topic: &str, partition: u32, to: u64) -> Result<u64, tonic::Status> {
    let req = TransferLeaderRequest {
        topic: topic.into(),
        partition,
        to,
    };
    c.admin_retry(Duration::from_secs(15), |mut a| {
        let req = req.clone();
        async move { a.transfer_leader(req).await }
    })
    .await
    .map(|r| r.leader)
}

/// Waits until `to` leads the partition; how long it took.
async fn wait_leader_is(c: &Cluster, topic: &str, partition: u32, to: u64) -> Duration {
    let t0 = Instant::now();
    loop {
        if c.leader_of(topic, partition).await == Some(to) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{topic}-{partition} is not led by {to} 10 s after TransferLeader: {:?}",
            c.describe(topic).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_leader() {
    let c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("moves", 1, 3).await;
    c.create_in_sync("pair", 1, 2).await;

    // To each other replica in turn.
    let first = c.wait_leader("moves", 0, Duration::from_secs(10)).await;
    for to in c.ids().into_iter().filter(|&id| id != first) {
        if let Err(st) = transfer(&c, "moves", 0, to).await {
            panic!("transfer moves-0 to {to}: {}", describe_status(&st));
        }
        let took = wait_leader_is(&c, "moves", 0, to).await;
        eprintln!("moves-0 led by {to} after {took:?}");
        c.wait_all_in_sync("moves", Duration::from_secs(30)).await;
    }

    // To a broker that holds no replica, and to a broker that does not exist.
    let d = c.describe("pair").await.expect("describe pair");
    let replicas = d.partitions[0].replicas.clone();
    assert_eq!(replicas.len(), 2, "rf 2: {d:?}");
    let outsider = c
        .ids()
        .into_iter()
        .find(|id| !replicas.contains(id))
        .expect("a broker outside the replica set");
    let before = c.wait_leader("pair", 0, Duration::from_secs(10)).await;
    match transfer(&c, "pair", 0, outsider).await {
        Ok(l) => panic!("transfer to non-replica {outsider} accepted (answered leader {l})"),
        Err(st) => {
            let code = error_code(&st);
            assert!(
                !code.is_empty() && code != "NONE",
                "transfer to a non-replica needs a strata error code: {st:?}"
            );
            eprintln!("transfer to non-replica: {}", describe_status(&st));
        }
    }
    match transfer(&c, "pair", 0, 9).await {
        Ok(l) => panic!("transfer to unknown broker 9 accepted (answered leader {l})"),
        Err(st) => assert!(
            matches!(
                error_code(&st).as_str(),
                "UNKNOWN_BROKER" | "INVALID_REQUEST"
            ),
            "transfer to unknown broker 9: {}",
            describe_status(&st)
        ),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        c.leader_of("pair", 0).await,
        Some(before),
        "a refused transfer moved the leadership"
    );

    // The client follows leadership moves (NOT_LEADER) transparently.
    let producer = Producer::new(c.client_config(), ProducerConfig::default())
        .await
        .expect("producer");
    let mut sent = Vec::new();
    for round in 0..2 {
        let mut acks = Vec::new();
        for i in 0..50 {
            let v = format!("moved-{round}-{i:03}");
            let rec = ProducerRecord::new("moves", v.clone()).partition(0);
            acks.push((v, producer.send(rec).await.expect("send")));
        }
        producer.flush().await.expect("flush");
        for (v, a) in acks {
            let m = a
                .await
                .unwrap_or_else(|e| panic!("record {v} not acknowledged: {e}"));
            sent.push((m.offset, v));
        }
        // Move the leadership under the producer's feet.
        let leader = c.wait_leader("moves", 0, Duration::from_secs(10)).await;
        let to = c.ids().into_iter().find(|&id| id != leader).expect("other");
        if let Err(st) = transfer(&c, "moves", 0, to).await {
            panic!("transfer moves-0 to {to}: {}", describe_status(&st));
        }
        wait_leader_is(&c, "moves", 0, to).await;
    }
    producer.close().await.expect("close producer");
    sent.sort();

    let got = consume_earliest(c.client_config(), "moves", 0, sent.len()).await;
    assert_eq!(
        got, sent,
        "consumed records differ from the acknowledged ones"
    );
}

/// DeleteRecords is replicated: after the log start moved, whichever replica
/// leads serves nothing below it, and the records after it are intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_replicated() {
    let c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("trim", 1, 3).await;
    let values: Vec<String> = (0..100).map(|i| format!("r-{i:03}")).collect();
    let offsets = produce_acked(c.client_config(), "trim", 0, &values).await;
    let sent: Vec<(i64, String)> = offsets.into_iter().zip(values).collect();
    let cut = sent[60].0;

    let r = c
        .admin_retry(Duration::from_secs(15), |mut a| async move {
            a.delete_records(DeleteRecordsRequest {
                topic: "trim".into(),
                partition: 0,
                offset: cut,
            })
            .await
        })
        .await
        .unwrap_or_else(|st| panic!("delete records: {}", describe_status(&st)));
    assert_eq!(r.log_start_offset, cut, "log start after DeleteRecords");
    let kept: Vec<(i64, String)> = sent.iter().filter(|(o, _)| *o >= cut).cloned().collect();

    let first = c.wait_leader("trim", 0, Duration::from_secs(10)).await;
    let mut order = vec![first];
    order.extend(c.ids().into_iter().filter(|&id| id != first));
    for (i, &leader) in order.iter().enumerate() {
        if i > 0 {
            if let Err(st) = transfer(&c, "trim", 0, leader).await {
                panic!("transfer trim-0 to {leader}: {}", describe_status(&st));
            }
            wait_leader_is(&c, "trim", 0, leader).await;
        }
        let got = consume_earliest(c.client_config(), "trim", 0, kept.len()).await;
        assert_eq!(
            got, kept,
            "led by {leader}: records from earliest differ from those kept after offset {cut}"
        );
    }
}

/// A broker added after bootstrap (`AddBroker`) catches up with the
/// metadata, gets replicas of new topics, joins their in-sync sets, and can
/// lead one: records produced through it are consumed intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_broker_hosts_replicas() {
    let mut c = Cluster::start(3, ClusterOpts::default()).await;
    let id = c.spawn_joiner(&[]);
    let peer_addr = c.peer_addr(id).to_string();
    c.admin_retry(Duration::from_secs(15), |mut a| {
        let peer_addr = peer_addr.clone();
        async move { a.add_broker(AddBrokerRequest { id, peer_addr }).await }
    })
    .await
    .unwrap_or_else(|st| panic!("add broker {id}: {}", describe_status(&st)));
    c.broker(id).wait_ready().await;
    let s = wait_status(&c, "the added broker alive", Duration::from_secs(30), |s| {
        s.brokers.len() == 4 && alive(s, id) == Some(true)
    })
    .await;
    eprintln!("status after adding broker {id}: {s:?}");

    c.create_in_sync("grow", 4, 3).await;
    c.wait_all_in_sync("grow", Duration::from_secs(30)).await;
    let d = c.describe("grow").await.expect("describe grow");
    let hosted: Vec<u32> = d
        .partitions
        .iter()
        .filter(|p| p.replicas.contains(&id))
        .map(|p| p.partition)
        .collect();
    assert!(
        hosted.len() >= 2,
        "4 partitions x RF3 over 4 brokers must place replicas on the new broker {id}: {d:?}"
    );
    for p in d.partitions.iter().filter(|p| p.replicas.contains(&id)) {
        assert!(
            p.isr.contains(&id),
            "new broker {id} not in sync for grow-{}: {p:?}",
            p.partition
        );
    }

    let part = hosted[0];
    if let Err(st) = transfer(&c, "grow", part, id).await {
        panic!("transfer grow-{part} to {id}: {}", describe_status(&st));
    }
    wait_leader_is(&c, "grow", part, id).await;
    let values: Vec<String> = (0..50).map(|i| format!("g-{i:02}")).collect();
    let offsets = produce_acked(c.client_config(), "grow", part, &values).await;
    let sent: Vec<(i64, String)> = offsets.into_iter().zip(values).collect();
    let got = consume_earliest(c.client_config(), "grow", part, sent.len()).await;
    assert_eq!(got, sent, "records produced through the added broker");

    // It hosts replicas, so it cannot be removed.
    let refused = c
        .admin_retry(Duration::from_secs(15), |mut a| async move {
            a.remove_broker(RemoveBrokerRequest { id }).await
        })
        .await;
    match refused {
        Ok(_) => panic!("removing broker {id} that hosts replicas was accepted"),
        Err(st) => {
            assert!(
                !error_code(&st).is_empty(),
                "refusal needs a strata error code: {st:?}"
            );
            eprintln!(
                "remove of a hosting broker refused: {}",
                describe_status(&st)
            );
        }
    }
}

fn cli_ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "strata failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "strata printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn cli(c: &Cluster, args: &[&str]) -> Value {
    let brokers = c.bootstrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&brokers, &args, None)
    })
    .await
    .expect("cli task");
    cli_ok(&out)
}

/// Polls ClusterStatus until `ok` holds; panics with the last answer.
async fn wait_status(
    c: &Cluster,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&ClusterStatusResponse) -> bool,
) -> ClusterStatusResponse {
    let deadline = Instant::now() + timeout;
    loop {
        c.assert_not_broken();
        let s = c.cluster_status().await;
        if let Some(s) = &s
            && ok(s)
        {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "cluster status never showed {what} within {timeout:?}; last: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn alive(s: &ClusterStatusResponse, id: u64) -> Option<bool> {
    s.brokers.iter().find(|b| b.id == id).map(|b| b.alive)
}

fn healthy(s: &ClusterStatusResponse) -> bool {
    s.controller != 0
        && s.brokers.len() == 3
        && s.brokers.iter().all(|b| b.alive)
        && s.leaderless_partitions == 0
        && s.under_replicated_partitions == 0
}

fn json_alive(v: &Value, id: u64) -> Option<bool> {
    v["brokers"]
        .as_array()?
        .iter()
        .find(|b| b["id"].as_u64() == Some(id))?["alive"]
        .as_bool()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status() {
    let mut c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("st", 3, 3).await;
    let s = wait_status(
        &c,
        "3 alive brokers, all in sync",
        Duration::from_secs(20),
        healthy,
    )
    .await;
    assert!(
        c.ids().contains(&s.controller),
        "controller {} is not a broker",
        s.controller
    );

    // Metadata names every broker by its advertised client address.
    let md = c
        .admin()
        .await
        .metadata(MetadataRequest { topics: vec![] })
        .await
        .expect("metadata")
        .into_inner();
    for id in c.ids() {
        let b = md.brokers.iter().find(|b| b.id == id);
        assert_eq!(
            b.map(|b| b.addr.clone()),
            Some(c.client_addr(id).to_string()),
            "metadata brokers: {:?}",
            md.brokers
        );
    }
    let st = md
        .topics
        .iter()
        .find(|t| t.name == "st")
        .expect("st in metadata");
    assert!(
        st.partitions.len() == 3 && st.partitions.iter().all(|p| p.leader != 0),
        "metadata of st: {st:?}"
    );

    // One broker down: reported dead, its partitions under-replicated.
    let victim = c
        .ids()
        .into_iter()
        .find(|&id| id != s.controller)
        .expect("a non-controller broker");
    c.kill(victim);
    wait_status(
        &c,
        &format!("broker {victim} dead and partitions under-replicated"),
        Duration::from_secs(30),
        |s| {
            alive(s, victim) == Some(false)
                && s.under_replicated_partitions > 0
                && s.leaderless_partitions == 0
                && s.controller != 0
        },
    )
    .await;
    let v = cli(&c, &["--output", "json", "cluster", "status"]).await;
    for key in [
        "controller",
        "brokers",
        "leaderless_partitions",
        "under_replicated_partitions",
    ] {
        assert!(v.get(key).is_some(), "cluster status JSON lacks {key}: {v}");
    }
    assert_eq!(json_alive(&v, victim), Some(false), "CLI status: {v}");
    assert!(
        v["under_replicated_partitions"].as_u64() > Some(0),
        "CLI status: {v}"
    );

    // Back: all alive, nothing under-replicated.
    c.restart(victim).await;
    wait_status(&c, "every broker back in sync", SYNC, healthy).await;
    let v = cli(&c, &["--output", "json", "cluster", "status"]).await;
    assert!(v["controller"].as_u64().is_some_and(|id| id != 0), "{v}");
    assert_eq!(v["brokers"].as_array().map(Vec::len), Some(3), "{v}");
    for id in c.ids() {
        assert_eq!(json_alive(&v, id), Some(true), "CLI status: {v}");
        let b = v["brokers"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["id"].as_u64() == Some(id)));
        assert_eq!(
            b.and_then(|b| b["addr"].as_str()),
            Some(c.client_addr(id).to_string().as_str()),
            "CLI status: {v}"
        );
    }
    assert_eq!(v["leaderless_partitions"].as_u64(), Some(0), "{v}");
    assert_eq!(v["under_replicated_partitions"].as_u64(), Some(0), "{v}");

    let v = cli(&c, &["--output", "json", "topic", "describe", "st"]).await;
    assert_eq!(v["name"].as_str(), Some("st"), "{v}");
    let parts = v["partitions"].as_array().expect("partitions array");
    assert_eq!(parts.len(), 3, "{v}");
    for p in parts {
        let ids = |k: &str| -> Vec<u64> {
            let mut ids: Vec<u64> = p[k]
                .as_array()
                .unwrap_or_else(|| panic!("{k} is not an array: {p}"))
                .iter()
                .filter_map(Value::as_u64)
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(ids("replicas"), vec![1, 2, 3], "{p}");
        assert_eq!(ids("isr"), vec![1, 2, 3], "{p}");
        let leader = p["leader"].as_u64().expect("leader id");
        assert!((1..=3).contains(&leader), "{p}");
    }
}
