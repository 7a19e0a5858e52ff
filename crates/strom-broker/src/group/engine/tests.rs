//! Engine tests: events in, effects out, with explicit times (no clock, no sleeping).

use super::*;

fn config() -> GroupConfig {
    GroupConfig {
        min_session_timeout_ms: 10,
        max_session_timeout_ms: 100_000,
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn join_req(member: &str, instance: Option<&str>, meta: &'static [u8]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        instance_id: instance.map(str::to_owned),
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 1_000,
        rebalance_timeout_ms: 5_000,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(meta)),
            ("roundrobin".into(), Bytes::from_static(meta)),
        ],
        require_known_member_id: true,
    }
}

fn join_ok(effects: &[Effect], token: Token) -> JoinResponse {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Join(t, Ok(r)) if *t == token => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join answer for {token}: {effects:?}"))
}

/// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id.
fn new_member(engine: &mut GroupEngine, token: Token, now: i64) -> (String, Vec<Effect>) {
    let effects = engine.join(token, join_req("", None, b"m"), now);
    let Some(Effect::Join(_, Err((GroupError::MemberIdRequired, id)))) = effects.first() else {
        panic!("{effects:?}");
    };
    let id = id.clone();
    let effects = engine.join(token + 1000, join_req(&id, None, b"m"), now);
    (id, effects)
}

#[test]
fn single_member_join_sync_heartbeat() {
    let mut e = GroupEngine::new(config());
    let (a, effects) = new_member(&mut e, 1, 0);
    let r = join_ok(&effects, 1001);
    assert_eq!((r.generation_id, r.leader.as_str()), (1, a.as_str()));
    assert_eq!(r.protocol_name, "range");
    assert_eq!(r.members.len(), 1);
    let effects = e.sync(
        2,
        "g",
        &a,
        1,
        None,
        vec![(a.clone(), Bytes::from_static(b"A"))],
        1,
    );
    assert_eq!(
        effects,
        vec![Effect::Sync(
            2,
            Ok(SyncResponse {
                protocol_type: "consumer".into(),
                protocol_name: "range".into(),
                assignment: Bytes::from_static(b"A"),
            })
        )]
    );
    assert_eq!(e.state("g"), Some(GroupState::Stable));
    assert_eq!(e.heartbeat("g", &a, 1, None, 2), Ok(()));
    assert_eq!(
        e.heartbeat("g", &a, 7, None, 2),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        e.heartbeat("g", "x", 1, None, 2),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn second_member_triggers_rebalance_and_followers_wait_for_leader() {
    let mut e = GroupEngine::new(config());
    let (a, effects) = new_member(&mut e, 1, 0);
    join_ok(&effects, 1001);
    e.sync(2, "g", &a, 1, None, vec![], 0);
    let (b, effects) = new_member(&mut e, 3, 10);
    assert!(effects.is_empty(), "b waits for a: {effects:?}");
    assert_eq!(
        e.heartbeat("g", &a, 1, None, 11),
        Err(GroupError::RebalanceInProgress)
    );
    let effects = e.join(4, join_req(&a, None, b"m"), 12);
    let ra = join_ok(&effects, 4);
    let rb = join_ok(&effects, 1003);
    assert_eq!(ra.generation_id, 2);
    assert_eq!(ra.leader, a);
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty());
    // The follower's sync waits for the leader's.
    assert!(e.sync(5, "g", &b, 2, None, vec![], 13).is_empty());
    let effects = e.sync(
        6,
        "g",
        &a,
        2,
        None,
        vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ],
        14,
    );
    assert_eq!(effects.len(), 2);
    assert!(effects.contains(&Effect::Sync(
        5,
        Ok(SyncResponse {
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            assignment: Bytes::from_static(b"B"),
        })
    )));
}

#[test]
fn session_timeout_removes_member_and_rebalances() {
    let mut e = GroupEngine::new(config());
    let (a, _) = new_member(&mut e, 1, 0);
    e.sync(2, "g", &a, 1, None, vec![], 0);
    let (b, _) = new_member(&mut e, 3, 0);
    let effects = e.join(4, join_req(&a, None, b"m"), 0);
    join_ok(&effects, 4);
    e.sync(5, "g", &b, 2, None, vec![], 0);
    e.sync(6, "g", &a, 2, None, vec![], 0);
    assert_eq!(e.heartbeat("g", &a, 2, None, 900), Ok(()));
    // b never heartbeats: at 1001 its session (1000 ms) is over.
    assert!(e.tick(1_001).is_empty());
    assert_eq!(e.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        e.heartbeat("g", &b, 2, None, 1_002),
        Err(GroupError::UnknownMemberId)
    );
    let effects = e.join(7, join_req(&a, None, b"m"), 1_003);
    let r = join_ok(&effects, 7);
    assert_eq!((r.generation_id, r.members.len()), (3, 1));
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut e = GroupEngine::new(config());
    let (a, _) = new_member(&mut e, 1, 0);
    e.sync(2, "g", &a, 1, None, vec![], 0);
    let (_b, effects) = new_member(&mut e, 3, 0);
    assert!(effects.is_empty());
    // a keeps heartbeating but never rejoins.
    for t in (100..5_000).step_by(100) {
        let _ = e.heartbeat("g", &a, 1, None, t);
        assert!(e.tick(t).is_empty());
    }
    let effects = e.tick(5_000);
    let r = join_ok(&effects, 1003);
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
}

#[test]
fn leave_triggers_rebalance_and_batch_reports_each_member() {
    let mut e = GroupEngine::new(config());
    let (a, _) = new_member(&mut e, 1, 0);
    e.sync(2, "g", &a, 1, None, vec![], 0);
    let (_b, _) = new_member(&mut e, 3, 0);
    let effects = e.join(4, join_req(&a, None, b"m"), 0);
    join_ok(&effects, 4);
    let (results, _) = e.leave("g", &[(a.clone(), None), ("nobody".into(), None)], 1);
    assert_eq!(results, vec![Ok(()), Err(GroupError::UnknownMemberId)]);
    assert_eq!(e.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(e.delete("g"), Err(GroupError::NonEmptyGroup));
}

#[test]
fn static_member_rejoin_keeps_assignment_without_rebalance() {
    let mut e = GroupEngine::new(config());
    let effects = e.join(1, join_req("", Some("i1"), b"m"), 0);
    let r = join_ok(&effects, 1);
    let old = r.member_id.clone();
    e.sync(
        2,
        "g",
        &old,
        1,
        Some("i1"),
        vec![(old.clone(), Bytes::from_static(b"A"))],
        0,
    );
    // Restarted: same instance id, no member id, same metadata.
    let effects = e.join(3, join_req("", Some("i1"), b"m"), 10);
    let r = join_ok(&effects, 3);
    assert_ne!(r.member_id, old);
    assert_eq!(r.generation_id, 1);
    assert_eq!(e.state("g"), Some(GroupState::Stable));
    let effects = e.sync(4, "g", &r.member_id, 1, Some("i1"), vec![], 11);
    assert!(
        matches!(&effects[0], Effect::Sync(4, Ok(s)) if s.assignment == Bytes::from_static(b"A"))
    );
    // The old id is fenced.
    assert_eq!(
        e.heartbeat("g", &old, 1, Some("i1"), 12),
        Err(GroupError::FencedInstanceId)
    );
    // Changed metadata does rebalance.
    let effects = e.join(5, join_req("", Some("i1"), b"other"), 13);
    let r = join_ok(&effects, 5);
    assert_eq!(r.generation_id, 2);
}

#[test]
fn protocol_selection_and_inconsistent_protocols() {
    let mut e = GroupEngine::new(config());
    let (a, _) = new_member(&mut e, 1, 0);
    e.sync(2, "g", &a, 1, None, vec![], 0);
    let mut req = join_req("", None, b"m");
    req.require_known_member_id = false;
    req.protocols = vec![("sticky".into(), Bytes::new())];
    let effects = e.join(3, req, 0);
    assert!(matches!(
        &effects[0],
        Effect::Join(3, Err((GroupError::InconsistentGroupProtocol, _)))
    ));
    let mut req = join_req("", None, b"m");
    req.require_known_member_id = false;
    req.protocols = vec![
        ("roundrobin".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    assert!(e.join(4, req, 0).is_empty());
    let effects = e.join(5, join_req(&a, None, b"m"), 0);
    // One vote each: the tie goes to the first member's preference.
    assert_eq!(join_ok(&effects, 5).protocol_name, "range");
}

#[test]
fn simple_consumer_commits_only_without_members() {
    let mut e = GroupEngine::new(config());
    assert_eq!(e.validate_commit("g", "", -1, None), Ok(()));
    let (a, _) = new_member(&mut e, 1, 0);
    assert_eq!(
        e.validate_commit("g", "", -1, None),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        e.validate_commit("g", &a, 1, None),
        Err(GroupError::RebalanceInProgress)
    );
    e.sync(2, "g", &a, 1, None, vec![], 0);
    assert_eq!(e.validate_commit("g", &a, 1, None), Ok(()));
    assert_eq!(
        e.validate_commit("g", &a, 0, None),
        Err(GroupError::IllegalGeneration)
    );
}
