//! Availability across leader changes: nothing waits for a leader that is
//! gone, a restarting broker never calls an existing topic unknown, and an
//! idempotent producer with batches in flight across a leader kill delivers
//! every record exactly once; a producer starting as the controller dies
//! still gets its producer id; a consumer of a paused leader moves on.

use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_client::{
    Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StartOffset,
};
use strata_proto::v1::*;
use strata_tests::{Cluster, ClusterOpts, batch_of, describe_status, error_code, read_partition};

const SYNC: Duration = Duration::from_secs(60);

/// A produce waiting for commit on a leader that is cut off from its
/// followers is answered NOT_LEADER as soon as the leader steps down
/// (check-quorum), not at the request's 30 s timeout; and it never commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_waiting_on_an_isolated_leader_answers_not_leader() {
    let opts = ClusterOpts {
        proxied: true,
        ..Default::default()
    };
    let c = Cluster::start(3, opts).await;
    c.create_in_sync("wait", 1, 3).await;
    let leader = c.wait_leader("wait", 0, Duration::from_secs(10)).await;
    let mut api = c.get(leader).try_data().await.expect("connect to leader");
    let produce = |value: &str, cid: u64| ProduceRequest {
        topic: "wait".into(),
        partition: 0,
        acks: Acks::All as i32,
        records: batch_of(&[value.to_string()]),
        timeout_ms: 30_000,
        correlation_id: cid,
    };
    let warm = api.produce(produce("before", 1)).await.expect("warm-up");
    assert!(
        warm.get_ref().error.as_ref().is_none_or(|e| e.code == 0),
        "warm-up produce failed: {:?}",
        warm.get_ref().error
    );

    c.isolate(leader);
    let t0 = Instant::now();
    let answer =
        tokio::time::timeout(Duration::from_secs(25), api.produce(produce("stranded", 2))).await;
    let took = t0.elapsed();
    let code = match answer {
        Err(_) => panic!("the isolated leader {leader} left the produce unanswered for 25 s"),
        Ok(Ok(r)) => {
            let r = r.into_inner();
            match r.error.filter(|e| e.code != 0) {
                Some(e) => ErrorCode::try_from(e.code)
                    .map(|c| c.as_str_name().to_string())
                    .unwrap_or_default(),
                None => panic!(
                    "isolated leader {leader} acknowledged a record at {}",
                    r.base_offset
                ),
            }
        }
        Ok(Err(st)) => error_code(&st),
    };
    eprintln!("isolated leader {leader} answered {code} after {took:?}");
    assert_eq!(code, "NOT_LEADER", "answer of the isolated leader");
    // Check-quorum steps the leader down within two election timeouts
    // (0.6-1.2 s); allow for a loaded machine.
    assert!(
        took < Duration::from_secs(4),
        "NOT_LEADER came only after {took:?}"
    );

    c.heal_all();
    c.wait_all_in_sync("wait", SYNC).await;
    let log = read_partition(&c, "wait", 0).await;
    assert!(log.iter().any(|(_, v)| v == "before"));
    assert!(
        !log.iter().any(|(_, v)| v == "stranded"),
        "a record only the isolated leader took was committed"
    );
    c.assert_not_broken();
}

/// While a broker restarts (from the moment its client port accepts until
/// well after it is ready) every answer about an existing topic is data, a
/// retriable code or NOT_LEADER: never UNKNOWN_TOPIC / UNKNOWN_PARTITION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_broker_never_answers_unknown_topic() {
    let mut c = Cluster::start(3, ClusterOpts::default()).await;
    const PARTS: u32 = 24;
    c.create_in_sync("boot", PARTS, 3).await;
    let producer = Producer::new(c.client_config(), ProducerConfig::default())
        .await
        .expect("producer");
    for p in 0..PARTS {
        let f = producer
            .send(ProducerRecord::new("boot", format!("v{p}")).partition(p))
            .await
            .expect("send");
        producer.flush().await.expect("flush");
        f.await.expect("acknowledged");
    }

    let id = 3;
    c.kill(id);
    c.broker(id).spawn();
    let started = Instant::now();
    let mut answers: std::collections::BTreeMap<String, u64> = Default::default();
    let mut ready_at: Option<Instant> = None;
    let bad = |code: &str| code == "UNKNOWN_TOPIC" || code == "UNKNOWN_PARTITION";
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "broker {id} did not become ready: {answers:?}"
        );
        if ready_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            break;
        }
        let Ok(mut api) = c.get(id).try_data().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        for p in 0..PARTS {
            let r = api
                .list_offsets(ListOffsetsRequest {
                    topic: "boot".into(),
                    partition: p,
                    spec: OffsetSpec::Latest as i32,
                    timestamp: 0,
                })
                .await;
            let code = match r {
                Ok(_) => "OK".to_string(),
                Err(st) => {
                    let code = error_code(&st);
                    if code.is_empty() {
                        "TRANSPORT".to_string()
                    } else {
                        code
                    }
                }
            };
            assert!(
                !bad(&code),
                "restarting broker {id} said {code} for boot-{p} after {:?}",
                started.elapsed()
            );
            *answers.entry(format!("list_offsets {code}")).or_default() += 1;
            let r = api
                .fetch(FetchRequest {
                    partitions: vec![FetchPartition {
                        topic: "boot".into(),
                        partition: p,
                        offset: 0,
                        max_bytes: 0,
                    }],
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: 0,
                })
                .await;
            match r {
                Ok(r) => {
                    for fp in r.into_inner().partitions {
                        let code = fp
                            .error
                            .and_then(|e| ErrorCode::try_from(e.code).ok())
                            .map_or("OK", |c| c.as_str_name())
                            .to_string();
                        assert!(
                            !bad(&code),
                            "restarting broker {id} said {code} for a fetch of boot-{p} after {:?}",
                            started.elapsed()
                        );
                        *answers.entry(format!("fetch {code}")).or_default() += 1;
                    }
                }
                Err(st) => {
                    let code = error_code(&st);
                    assert!(!bad(&code), "fetch of boot-{p}: {}", describe_status(&st));
                    *answers.entry(format!("fetch {code}")).or_default() += 1;
                }
            }
        }
        if ready_at.is_none() && serves_admin(&c, id).await {
            ready_at = Some(Instant::now());
        }
    }
    eprintln!("answers of the restarting broker: {answers:?}");
    assert!(
        answers.values().sum::<u64>() >= u64::from(PARTS),
        "the restarting broker was hardly polled: {answers:?}"
    );
    c.assert_not_broken();
}

/// Whether the broker answers admin calls (it is ready).
async fn serves_admin(c: &Cluster, id: u64) -> bool {
    let Ok(mut a) = c.get(id).try_admin().await else {
        return false;
    };
    let req = ListTopicsRequest {
        include_internal: false,
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), a.list_topics(req)).await,
        Ok(Ok(_))
    )
}

/// An idempotent producer with five small batches in flight keeps sending
/// while the partition's leader is SIGKILLed (and later restarted): every
/// record is acknowledged, none fails, and the log holds each exactly once,
/// at its acknowledged offset, in send order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_delivers_exactly_once_across_a_leader_kill() {
    let mut c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("idem", 1, 3).await;
    let cfg = ProducerConfig {
        max_in_flight: 5,
        batch_size: 2048,
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(c.client_config(), cfg)
        .await
        .expect("producer");
    const N: usize = 6000;
    let mut futures = Vec::with_capacity(N);
    let mut killed = None;
    let t0 = Instant::now();
    for i in 0..N {
        let v = format!("idem-{i:06}-{}", "x".repeat(200));
        let f = producer
            .send(ProducerRecord::new("idem", v.clone()).partition(0))
            .await
            .expect("send");
        futures.push((v, f));
        if i == N / 3 {
            let leader = c.wait_leader("idem", 0, Duration::from_secs(10)).await;
            eprintln!("killing leader {leader} at record {i} ({:?})", t0.elapsed());
            c.kill(leader);
            killed = Some(leader);
        }
        if i == 2 * N / 3
            && let Some(id) = killed.take()
        {
            c.restart(id).await;
        }
        if i % 64 == 0 {
            // A steady stream, so that batches are in flight at the kill.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    producer.flush().await.expect("flush");
    let mut acked = Vec::with_capacity(N);
    for (v, f) in futures {
        match f.await {
            Ok(m) => acked.push((m.offset, v)),
            Err(e) => panic!("record {} failed: {e}", &v[..11]),
        }
    }
    if let Some(id) = killed {
        c.restart(id).await;
    }
    for w in acked.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "acknowledged offsets out of send order: {} at {} then {} at {}",
            &w[0].1[..11],
            w[0].0,
            &w[1].1[..11],
            w[1].0
        );
    }
    c.wait_all_in_sync("idem", SYNC).await;
    let log = read_partition(&c, "idem", 0).await;
    let mut seen = std::collections::HashMap::new();
    for (o, v) in &log {
        if let Some(prev) = seen.insert(v.clone(), *o) {
            panic!("{} is in the log twice: at {prev} and {o}", &v[..11]);
        }
    }
    for (o, v) in &acked {
        assert_eq!(
            seen.get(v),
            Some(o),
            "{} acknowledged at {o} is not there",
            &v[..11]
        );
    }
    eprintln!(
        "{} records acknowledged exactly once across the kill in {:?}",
        acked.len(),
        t0.elapsed()
    );
    c.assert_not_broken();
}

/// A producer starting right after the controller leader's broker died
/// gets its producer id from the controller that replaces it: brokers ride
/// out the election instead of answering NOT_CONTROLLER, so a client that
/// does not retry at all still gets one. (W7 found `strata produce` runs
/// failing with "no controller leader is available" after such a kill.)
/// On a fresh cluster no broker holds a block of producer ids yet, so
/// every InitProducerId goes to the controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_id_is_handed_out_across_the_controllers_death() {
    let mut c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("pid", 1, 3).await;
    let controller = c
        .cluster_status()
        .await
        .map(|s| s.controller)
        .filter(|id| *id != 0)
        .expect("a controller leader");
    c.kill(controller);
    let t0 = Instant::now();
    let mut cfg = c.client_config();
    cfg.retries = 0;
    let producer = Producer::new(cfg, ProducerConfig::default()).await;
    let producer = match producer {
        Ok(p) => p,
        Err(e) => panic!(
            "no producer id right after the controller's death: {e}\n{}",
            c.logs(120)
        ),
    };
    let ack = producer
        .send(ProducerRecord::new("pid", "after the kill").partition(0))
        .await
        .expect("send");
    ack.await.expect("acknowledged");
    eprintln!("acknowledged {:?} after the kill", t0.elapsed());
    c.restart(controller).await;
    c.assert_not_broken();
}

/// A consumer reading a partition whose leader's process is paused
/// (SIGSTOP: its sockets stay open, it answers nothing and cannot step
/// down) moves to the new leader once its connection's keep-alive fails,
/// and reads on without a gap or a repeat. Before client keep-alives the
/// subscription stayed silent until the broker resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_moves_off_a_paused_leader() {
    let c = Cluster::start(3, ClusterOpts::default()).await;
    c.create_in_sync("paused", 1, 3).await;
    let producer = Producer::new(c.client_config(), ProducerConfig::default())
        .await
        .expect("producer");
    let send = |from: usize, to: usize| {
        let producer = &producer;
        async move {
            let mut acks = Vec::new();
            for i in from..to {
                let rec = ProducerRecord::new("paused", format!("r{i:05}")).partition(0);
                acks.push(producer.send(rec).await.expect("send"));
            }
            producer.flush().await.expect("flush");
            for (i, a) in acks.into_iter().enumerate() {
                let m = a
                    .await
                    .unwrap_or_else(|e| panic!("record {}: {e}", from + i));
                assert_eq!(m.offset, (from + i) as i64, "acknowledged offset");
            }
        }
    };
    send(0, 100).await;
    let mut consumer =
        Consumer::new(c.client_config(), ConsumerConfig::default()).expect("consumer");
    consumer
        .assign_topic("paused", StartOffset::Earliest)
        .await
        .expect("assign");
    let mut records = consumer.records();
    let expect_record =
        |i: i64, r: Option<strata_client::Result<strata_client::ConsumerRecord>>| {
            let r = r.expect("stream open").expect("record");
            assert_eq!(
                (r.offset, r.value.as_deref()),
                (i, Some(format!("r{i:05}").as_bytes()))
            );
        };
    for i in 0..100 {
        let r = tokio::time::timeout(Duration::from_secs(30), records.next()).await;
        expect_record(i, r.expect("a record within 30 s"));
    }

    let leader = c.wait_leader("paused", 0, Duration::from_secs(10)).await;
    c.get(leader).pause();
    let t0 = Instant::now();
    send(100, 200).await;
    eprintln!(
        "produced past the paused leader {leader} in {:?}",
        t0.elapsed()
    );
    for i in 100..200 {
        let r = tokio::time::timeout(Duration::from_secs(25), records.next()).await;
        expect_record(i, r.expect("a record within 25 s of the pause"));
    }
    let took = t0.elapsed();
    eprintln!("consumer read past the paused leader {leader} in {took:?}");
    // Keep-alive (1 s + 3 s) plus an election; the old 30 s keep-alive
    // cannot pass this.
    assert!(
        took < Duration::from_secs(15),
        "consumer stalled for {took:?}"
    );
    c.get(leader).resume();
    c.wait_all_in_sync("paused", SYNC).await;
    c.assert_not_broken();
}
