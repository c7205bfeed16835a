//! Kafka's classic-protocol sequences replayed against the state machine:
//! eager and cooperative-sticky clients, MEMBER_ID_REQUIRED, concurrent
//! joins during a rebalance, a leader leaving mid-rebalance, static
//! members, expiry, fenced commits and bad input.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn proto(name: &str, meta: &[u8]) -> MemberProtocol {
    MemberProtocol {
        name: name.into(),
        metadata: meta.to_vec(),
    }
}

fn join_req(member_id: &str, protocols: Vec<MemberProtocol>) -> Join {
    Join {
        member_id: member_id.into(),
        instance_id: None,
        protocol_type: "consumer".into(),
        protocols,
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        require_known_member: true,
    }
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("m{n}")
    }
}

/// The v4+ two-step join: MEMBER_ID_REQUIRED, then the join with the id.
fn join_new(g: &mut ClassicGroup, next: &mut impl FnMut() -> String, now: u64) -> String {
    let mut ch = Changes::default();
    let id = match g
        .join(
            join_req("", vec![proto("range", b"r")]),
            now,
            &mut *next,
            &mut ch,
        )
        .unwrap()
    {
        Joined::MemberIdRequired(id) => id,
        other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
    };
    match g
        .join(
            join_req(&id, vec![proto("range", b"r")]),
            now,
            || unreachable!(),
            &mut ch,
        )
        .unwrap()
    {
        Joined::Waiting(i) => assert_eq!(i, id),
        other => panic!("expected to wait, got {other:?}"),
    }
    id
}

fn complete(g: &mut ClassicGroup, now: u64) -> bool {
    let mut ch = Changes::default();
    g.try_complete_join(now, &mut ch)
}

fn sync_leader(g: &mut ClassicGroup, now: u64) {
    let leader = g.leader.clone().unwrap();
    let generation_now = g.generation;
    let assignments = g
        .members
        .keys()
        .map(|id| (id.clone(), format!("for-{id}").into_bytes()))
        .collect();
    let mut ch = Changes::default();
    let r = g
        .sync(&leader, None, generation_now, assignments, now, &mut ch)
        .unwrap();
    assert_eq!(r, Synced::Assignment(format!("for-{leader}").into_bytes()));
    assert!(ch.durable);
    assert_eq!(g.state, ClassicState::Stable);
}

#[test]
fn eager_join_sync_heartbeat_of_two_members() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let a = join_new(&mut g, &mut next, 0);
    assert!(complete(&mut g, 0), "the only member joined");
    assert_eq!(g.generation, 1);
    assert_eq!(g.state, ClassicState::CompletingRebalance);
    let ans = g.join_answer(&a).unwrap();
    assert_eq!(ans.leader, a);
    assert_eq!(ans.protocol, "range");
    assert_eq!(ans.members.len(), 1, "the leader sees the members");
    sync_leader(&mut g, 1);
    g.heartbeat(&a, None, 1, 2).unwrap();

    // A second member: the first is told to rejoin by its heartbeat.
    let b = join_new(&mut g, &mut next, 100);
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    assert!(matches!(
        g.heartbeat(&a, None, 1, 101),
        Err(BrokerError::RebalanceInProgress)
    ));
    assert!(!complete(&mut g, 101), "a has not rejoined");
    let mut ch = Changes::default();
    assert_eq!(
        g.join(
            join_req(&a, vec![proto("range", b"r")]),
            102,
            || unreachable!(),
            &mut ch
        )
        .unwrap(),
        Joined::Waiting(a.clone())
    );
    assert!(complete(&mut g, 102));
    assert_eq!(g.generation, 2);
    assert_eq!(g.leader.as_deref(), Some(a.as_str()), "the leader stays");
    assert!(
        g.join_answer(&b).unwrap().members.is_empty(),
        "followers see none"
    );
    // The follower syncs first and waits for the leader.
    let mut ch = Changes::default();
    assert_eq!(
        g.sync(&b, None, 2, vec![], 103, &mut ch).unwrap(),
        Synced::Waiting
    );
    assert!(g.sync_answer(&b, 2).is_none());
    sync_leader(&mut g, 104);
    assert_eq!(
        g.sync_answer(&b, 2).unwrap().unwrap(),
        format!("for-{b}").into_bytes()
    );
    // An old generation is refused.
    assert!(matches!(
        g.heartbeat(&b, None, 1, 105),
        Err(BrokerError::IllegalGeneration { got: 1, current: 2 })
    ));
}

#[test]
fn cooperative_sticky_rebalances_twice_and_keeps_members_going() {
    // Cooperative clients rejoin right after a rebalance in which they
    // gave partitions up; the coordinator treats it as any rejoin.
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let coop = |owned: &[u8]| vec![proto("cooperative-sticky", owned)];
    let mut ch = Changes::default();
    let Joined::MemberIdRequired(a) = g
        .join(join_req("", coop(b"")), 0, &mut next, &mut ch)
        .unwrap()
    else {
        panic!()
    };
    g.join(join_req(&a, coop(b"")), 0, || unreachable!(), &mut ch)
        .unwrap();
    complete(&mut g, 0);
    sync_leader(&mut g, 0);
    // b joins: first rebalance; a rejoins with its owned partitions.
    let Joined::MemberIdRequired(b) = g
        .join(join_req("", coop(b"")), 10, &mut next, &mut ch)
        .unwrap()
    else {
        panic!()
    };
    g.join(join_req(&b, coop(b"")), 10, || unreachable!(), &mut ch)
        .unwrap();
    g.join(join_req(&a, coop(b"p0-p5")), 11, || unreachable!(), &mut ch)
        .unwrap();
    assert!(complete(&mut g, 11));
    assert_eq!(g.generation, 2);
    assert_eq!(g.protocol.as_deref(), Some("cooperative-sticky"));
    sync_leader(&mut g, 12);
    // a revoked p3-p5 and rejoins at once: the second rebalance.
    g.join(join_req(&a, coop(b"p0-p2")), 13, || unreachable!(), &mut ch)
        .unwrap();
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    g.join(join_req(&b, coop(b"")), 14, || unreachable!(), &mut ch)
        .unwrap();
    assert!(complete(&mut g, 14));
    assert_eq!(g.generation, 3);
    let leader = g.join_answer(&a).unwrap();
    let meta_a = leader.members.iter().find(|(id, ..)| *id == a).unwrap();
    assert_eq!(meta_a.2, b"p0-p2", "the leader sees what each member owns");
}

#[test]
fn concurrent_joins_during_a_rebalance_wait_for_each_other() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let a = join_new(&mut g, &mut next, 0);
    // b asks for an id before the first phase completes: the phase waits
    // for the pending id too.
    let mut ch = Changes::default();
    let Joined::MemberIdRequired(b) = g
        .join(
            join_req("", vec![proto("range", b"r")]),
            1,
            &mut next,
            &mut ch,
        )
        .unwrap()
    else {
        panic!()
    };
    assert!(!complete(&mut g, 1), "a pending member id holds the phase");
    g.join(
        join_req(&b, vec![proto("range", b"r")]),
        2,
        || unreachable!(),
        &mut ch,
    )
    .unwrap();
    let c = join_new(&mut g, &mut next, 3);
    assert!(complete(&mut g, 3), "every member in");
    assert_eq!(g.generation, 1, "one generation for the three joins");
    for id in [&a, &b, &c] {
        assert_eq!(g.join_answer(id).unwrap().generation, 1);
    }
}

#[test]
fn leader_leaving_mid_rebalance_hands_leadership_on() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let a = join_new(&mut g, &mut next, 0);
    complete(&mut g, 0);
    sync_leader(&mut g, 0);
    let b = join_new(&mut g, &mut next, 10);
    // The leader leaves before rejoining: the phase completes with b.
    let mut ch = Changes::default();
    g.leave(&a, None, 11, &mut ch).unwrap();
    assert_eq!(ch.removed, vec![a.clone()]);
    assert_eq!(g.state, ClassicState::CompletingRebalance);
    assert_eq!(g.leader.as_deref(), Some(b.as_str()));
    assert_eq!(g.join_answer(&b).unwrap().members.len(), 1);
    // The leader leaving while followers wait for its sync: a new phase.
    let c = join_new(&mut g, &mut next, 20);
    let mut ch = Changes::default();
    g.join(
        join_req(&b, vec![proto("range", b"r")]),
        21,
        || unreachable!(),
        &mut ch,
    )
    .unwrap();
    assert!(complete(&mut g, 21));
    let generation_now = g.generation;
    let leader = g.leader.clone().unwrap();
    let follower = if leader == b { c.clone() } else { b.clone() };
    assert_eq!(
        g.sync(&follower, None, generation_now, vec![], 22, &mut ch)
            .unwrap(),
        Synced::Waiting
    );
    g.leave(&leader, None, 23, &mut ch).unwrap();
    assert!(matches!(
        g.sync_answer(&follower, generation_now),
        Some(Err(BrokerError::RebalanceInProgress)) | None
    ));
    assert_ne!(g.state, ClassicState::Stable);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_deadline() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let a = join_new(&mut g, &mut next, 0);
    complete(&mut g, 0);
    sync_leader(&mut g, 0);
    let b = join_new(&mut g, &mut next, 100);
    assert!(!complete(&mut g, 100 + REBALANCE as u64 - 1));
    let mut ch = Changes::default();
    g.tick(100 + REBALANCE as u64, &mut ch);
    assert_eq!(ch.removed, vec![a.clone()]);
    assert_eq!(g.state, ClassicState::CompletingRebalance);
    assert_eq!(g.members.keys().collect::<Vec<_>>(), vec![&b]);
    assert!(matches!(
        g.heartbeat(&a, None, g.generation, 100 + REBALANCE as u64),
        Err(BrokerError::UnknownMember(_))
    ));
}

#[test]
fn sessions_expire_and_a_silent_leader_restarts_the_rebalance() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let a = join_new(&mut g, &mut next, 0);
    complete(&mut g, 0);
    sync_leader(&mut g, 0);
    let mut ch = Changes::default();
    g.tick(SESSION as u64, &mut ch);
    assert!(ch.removed.is_empty(), "exactly the session is still alive");
    g.tick(SESSION as u64 + 1, &mut ch);
    assert_eq!(ch.removed, vec![a]);
    assert_eq!(g.state, ClassicState::Empty);
    // A leader that never syncs: after the rebalance timeout the phase
    // starts over.
    let b = join_new(&mut g, &mut next, 50_000);
    complete(&mut g, 50_000);
    assert_eq!(g.state, ClassicState::CompletingRebalance);
    g.heartbeat(&b, None, g.generation, 60_000).unwrap();
    g.heartbeat(&b, None, g.generation, 70_000).unwrap();
    let mut ch = Changes::default();
    g.tick(50_000 + REBALANCE as u64, &mut ch);
    assert_eq!(g.state, ClassicState::PreparingRebalance);
}

#[test]
fn static_member_restart_takes_its_place_without_a_rebalance() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let stat = |member: &str, inst: &str| {
        let mut r = join_req(member, vec![proto("range", b"r")]);
        r.instance_id = Some(inst.into());
        r
    };
    let mut ch = Changes::default();
    // Static members get their id at once (no MEMBER_ID_REQUIRED).
    let Joined::Waiting(a) = g.join(stat("", "app-1"), 0, &mut next, &mut ch).unwrap() else {
        panic!()
    };
    let Joined::Waiting(b) = g.join(stat("", "app-2"), 0, &mut next, &mut ch).unwrap() else {
        panic!()
    };
    complete(&mut g, 0);
    sync_leader(&mut g, 0);
    let generation_now = g.generation;
    let assignment_b = g.members[&b].assignment.clone();
    // app-2 restarts (new process, no member id) with the same metadata.
    let mut ch = Changes::default();
    let Joined::Current(b2) = g.join(stat("", "app-2"), 5, &mut next, &mut ch).unwrap() else {
        panic!("expected no rebalance")
    };
    assert!(!ch.rebalance);
    assert_eq!(g.state, ClassicState::Stable);
    assert_eq!(g.generation, generation_now);
    assert_eq!(g.members[&b2].assignment, assignment_b);
    let ans = g.join_answer(&b2).unwrap();
    assert_eq!(ans.generation, generation_now);
    // The old process is fenced.
    assert!(matches!(
        g.heartbeat(&b, Some("app-2"), generation_now, 6),
        Err(BrokerError::FencedInstanceId(_))
    ));
    let mut ch = Changes::default();
    assert_eq!(
        g.sync(&b2, Some("app-2"), generation_now, vec![], 6, &mut ch)
            .unwrap(),
        Synced::Assignment(assignment_b)
    );
    // A static member leaving by instance id.
    g.leave("", Some("app-1"), 7, &mut ch).unwrap();
    assert!(!g.members.contains_key(&a));
    assert_eq!(g.state, ClassicState::PreparingRebalance);
}

#[test]
fn commits_are_fenced_by_member_and_generation() {
    let mut g = ClassicGroup::default();
    g.check_commit("", -1).unwrap();
    let mut next = ids();
    let a = join_new(&mut g, &mut next, 0);
    complete(&mut g, 0);
    assert!(matches!(
        g.check_commit(&a, 1),
        Err(BrokerError::RebalanceInProgress)
    ));
    sync_leader(&mut g, 0);
    g.check_commit(&a, 1).unwrap();
    assert!(matches!(
        g.check_commit(&a, 0),
        Err(BrokerError::IllegalGeneration { .. })
    ));
    assert!(matches!(
        g.check_commit("", -1),
        Err(BrokerError::UnknownMember(_))
    ));
    assert!(matches!(
        g.check_commit("zombie", 1),
        Err(BrokerError::UnknownMember(_))
    ));
}

#[test]
fn bad_joins_get_stable_errors() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let mut ch = Changes::default();
    let mut r = join_req("", vec![proto("range", b"")]);
    r.session_timeout_ms = 10;
    assert!(matches!(
        g.join(r, 0, &mut next, &mut ch),
        Err(BrokerError::InvalidSessionTimeout(10))
    ));
    let mut r = join_req("", vec![proto("range", b"")]);
    r.session_timeout_ms = i32::MAX;
    assert!(g.join(r, 0, &mut next, &mut ch).is_err());
    assert!(matches!(
        g.join(join_req("", vec![]), 0, &mut next, &mut ch),
        Err(BrokerError::InconsistentGroupProtocol(_))
    ));
    assert!(matches!(
        g.join(
            join_req("nobody", vec![proto("range", b"")]),
            0,
            &mut next,
            &mut ch
        ),
        Err(BrokerError::UnknownMember(_))
    ));
    let _a = join_new(&mut g, &mut next, 0);
    // No protocol in common with the group.
    let mut other = join_req("", vec![proto("roundrobin", b"")]);
    other.require_known_member = false;
    assert!(matches!(
        g.join(other, 0, &mut next, &mut ch),
        Err(BrokerError::InconsistentGroupProtocol(_))
    ));
    // Another protocol type.
    let mut conn = join_req("", vec![proto("range", b"")]);
    conn.protocol_type = "connect".into();
    assert!(matches!(
        g.join(conn, 0, &mut next, &mut ch),
        Err(BrokerError::InconsistentGroupProtocol(_))
    ));
}

#[test]
fn protocol_is_the_most_voted_common_one() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let mut ch = Changes::default();
    for prefs in [
        vec![proto("range", b""), proto("roundrobin", b"")],
        vec![proto("roundrobin", b""), proto("range", b"")],
        vec![proto("roundrobin", b""), proto("range", b"")],
    ] {
        let mut r = join_req("", prefs);
        r.require_known_member = false;
        g.join(r, 0, &mut next, &mut ch).unwrap();
    }
    assert!(complete(&mut g, 0));
    assert_eq!(g.protocol.as_deref(), Some("roundrobin"));
}

#[test]
fn the_durable_record_round_trips_and_drops_transient_state() {
    let mut g = ClassicGroup::default();
    let mut next = ids();
    let a = join_new(&mut g, &mut next, 0);
    complete(&mut g, 0);
    sync_leader(&mut g, 0);
    let json = serde_json::to_vec(&g).unwrap();
    let back: ClassicGroup = serde_json::from_slice(&json).unwrap();
    assert_eq!(back.generation, g.generation);
    assert_eq!(back.members[&a].assignment, g.members[&a].assignment);
    assert_eq!(back.members[&a].protocols, g.members[&a].protocols);
    assert!(back.pending.is_empty() && back.deadline_ms.is_none());
}

#[test]
fn consumer_assignments_decode_and_hostile_ones_do_not() {
    // Version 0: one topic "t" with partitions 1 and 4, then user data.
    let mut a = vec![
        0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 4,
    ];
    a.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    assert_eq!(consumer_assignment(&a), vec![("t".to_owned(), vec![1, 4])]);
    // Counts far beyond the bytes, negative lengths, truncation at every
    // point: nothing, and no allocation from the claimed counts.
    assert!(consumer_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_empty());
    assert!(consumer_assignment(&[0, 0, 0, 0, 0, 1, 0xff, 0xfe]).is_empty());
    assert!(
        consumer_assignment(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff]).is_empty()
    );
    for cut in 0..21 {
        let r = consumer_assignment(&a[..cut]);
        assert!(r.is_empty() || cut >= 21, "cut {cut}: {r:?}");
    }
}

#[test]
fn consumer_subscriptions_decode_and_hostile_ones_do_not() {
    // v1: two topics, then user data and owned partitions (ignored).
    let mut s = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
    s.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(
        consumer_subscription(&s),
        Some(vec!["a".to_owned(), "bc".to_owned()])
    );
    // A count far beyond the bytes, every truncation, a negative length.
    assert_eq!(consumer_subscription(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    for n in 0..13 {
        assert_eq!(consumer_subscription(&s[..n]), None, "{n} bytes");
    }
    assert_eq!(consumer_subscription(&[0, 0, 0, 0, 0, 1, 0xff, 0xff]), None);
}
