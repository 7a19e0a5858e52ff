use super::*;
use proptest::prelude::*;

fn topics(list: &[(&str, u8, i32)]) -> Topics {
    list.iter()
        .map(|&(name, id, partitions)| {
            (
                name.to_owned(),
                TopicInfo {
                    id: Uuid::from_bytes([id; 16]),
                    partitions,
                },
            )
        })
        .collect()
}

fn tid(id: u8) -> Uuid {
    Uuid::from_bytes([id; 16])
}

fn join_req(member: &str, topic: &str) -> Heartbeat {
    Heartbeat {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 10_000,
        subscribed_topic_names: Some(vec![topic.into()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    }
}

fn beat(member: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
    Heartbeat {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned.clone()),
        ..Heartbeat::default()
    }
}

fn count(a: &Assignment) -> usize {
    a.values().map(BTreeSet::len).sum()
}

fn engine() -> ConsumerGroupEngine {
    ConsumerGroupEngine::new(ConsumerGroupConfig::default())
}

#[test]
fn first_member_gets_everything_at_epoch_one() {
    let mut e = engine();
    let t = topics(&[("t", 1, 4)]);
    let a = e.heartbeat(join_req("a", "t"), &t, 0).unwrap();
    assert_eq!(a.member_epoch, 1);
    assert_eq!(a.assignment.unwrap()[&tid(1)], BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(e.describe("g").unwrap().state, ConsumerGroupState::Stable);
    // A heartbeat with nothing new carries no assignment.
    let owned = e.describe("g").unwrap().members[0].assignment.clone();
    let again = e.heartbeat(beat("a", 1, &owned), &t, 10).unwrap();
    assert_eq!(again.member_epoch, 1);
    assert!(again.assignment.is_none());
}

#[test]
fn a_joining_member_waits_for_the_revocation() {
    let mut e = engine();
    let t = topics(&[("t", 1, 4)]);
    let a1 = e.heartbeat(join_req("a", "t"), &t, 0).unwrap();
    let owned_a = a1.assignment.unwrap();
    // b joins: the group epoch moves to 2; b gets epoch 2 but nothing yet (a still owns it).
    let b1 = e.heartbeat(join_req("b", "t"), &t, 1).unwrap();
    assert_eq!(b1.member_epoch, 2);
    assert_eq!(count(&b1.assignment.clone().unwrap()), 0);
    assert_eq!(
        e.describe("g").unwrap().state,
        ConsumerGroupState::Reconciling
    );
    // a is told to give up two partitions, at its old epoch.
    let a2 = e.heartbeat(beat("a", 1, &owned_a), &t, 2).unwrap();
    assert_eq!(a2.member_epoch, 1);
    let kept = a2.assignment.unwrap();
    assert_eq!(count(&kept), 2);
    // Until a confirms, b still gets nothing.
    let b2 = e
        .heartbeat(beat("b", 2, &Assignment::new()), &t, 3)
        .unwrap();
    assert!(b2.assignment.is_none_or(|a| count(&a) == 0));
    // a confirms by reporting what it kept: it moves to epoch 2.
    let a3 = e.heartbeat(beat("a", 1, &kept), &t, 4).unwrap();
    assert_eq!(a3.member_epoch, 2);
    // Now b gets the released partitions.
    let b3 = e
        .heartbeat(beat("b", 2, &Assignment::new()), &t, 5)
        .unwrap();
    let got = b3.assignment.unwrap();
    assert_eq!(count(&got), 2);
    assert!(got[&tid(1)].is_disjoint(&kept[&tid(1)]));
    let b4 = e.heartbeat(beat("b", 2, &got), &t, 6).unwrap();
    assert!(b4.assignment.is_none());
    assert_eq!(e.describe("g").unwrap().state, ConsumerGroupState::Stable);
}

#[test]
fn protocol_errors() {
    let mut e = engine();
    let t = topics(&[("t", 1, 2)]);
    e.heartbeat(join_req("a", "t"), &t, 0).unwrap();
    assert_eq!(
        e.heartbeat(beat("nobody", 1, &Assignment::new()), &t, 1),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        e.heartbeat(beat("a", 7, &Assignment::new()), &t, 1),
        Err(GroupError::FencedMemberEpoch)
    );
    let mut bad = join_req("b", "t");
    bad.server_assignor = Some("sticky".into());
    assert_eq!(
        e.heartbeat(bad, &t, 1),
        Err(GroupError::UnsupportedAssignor)
    );
    let mut no_subs = join_req("b", "t");
    no_subs.subscribed_topic_names = None;
    assert_eq!(e.heartbeat(no_subs, &t, 1), Err(GroupError::InvalidRequest));
    let mut bad_regex = join_req("b", "t");
    bad_regex.subscribed_topic_names = None;
    bad_regex.subscribed_topic_regex = Some("(".into());
    assert_eq!(
        e.heartbeat(bad_regex, &t, 1),
        Err(GroupError::InvalidRegularExpression)
    );
    assert_eq!(
        e.heartbeat(beat("", 3, &Assignment::new()), &t, 1),
        Err(GroupError::InvalidRequest)
    );
    assert_eq!(e.validate_commit("g", "a", 1), Ok(()));
    assert_eq!(
        e.validate_commit("g", "a", 0),
        Err(GroupError::StaleMemberEpoch)
    );
    assert_eq!(
        e.validate_commit("g", "x", 1),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        e.validate_commit("g", "", -1),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(e.delete("g"), Err(GroupError::NonEmptyGroup));
    let left = e
        .heartbeat(beat("a", LEAVE_EPOCH, &Assignment::new()), &t, 2)
        .unwrap();
    assert_eq!(left.member_epoch, LEAVE_EPOCH);
    assert_eq!(e.describe("g").unwrap().state, ConsumerGroupState::Empty);
    assert_eq!(e.validate_commit("g", "", -1), Ok(()));
    assert_eq!(e.delete("g"), Ok(()));
    assert!(e.describe("g").is_none());
}

#[test]
fn regex_subscriptions_follow_new_topics() {
    let mut e = engine();
    let mut req = join_req("a", "unused");
    req.subscribed_topic_names = None;
    req.subscribed_topic_regex = Some("orders-.*".into());
    let t = topics(&[
        ("orders-eu", 1, 1),
        ("other", 2, 1),
        ("__consumer_offsets", 3, 1),
    ]);
    let a = e.heartbeat(req, &t, 0).unwrap();
    let got = a.assignment.unwrap();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), [tid(1)]);
    // A matching topic appears: the group epoch moves and the member gets it.
    let t2 = topics(&[("orders-eu", 1, 1), ("orders-us", 4, 2), ("other", 2, 1)]);
    let b = e.heartbeat(beat("a", 1, &got), &t2, 1).unwrap();
    assert_eq!(b.member_epoch, 2);
    assert_eq!(count(&b.assignment.unwrap()), 3);
}

#[test]
fn sessions_expire_and_partitions_move() {
    let mut e = engine();
    let t = topics(&[("t", 1, 2)]);
    let a = e.heartbeat(join_req("a", "t"), &t, 0).unwrap();
    let mut owned_a = a.assignment.unwrap();
    e.heartbeat(join_req("b", "t"), &t, 0).unwrap();
    owned_a = e
        .heartbeat(beat("a", 1, &owned_a), &t, 1)
        .unwrap()
        .assignment
        .unwrap();
    e.heartbeat(beat("a", 1, &owned_a), &t, 2).unwrap();
    // b stops heartbeating; a keeps going.
    e.tick(30_000);
    e.heartbeat(beat("a", 2, &owned_a), &t, 30_000).unwrap();
    e.tick(46_000);
    assert_eq!(e.describe("g").unwrap().members.len(), 1);
    let back = e.heartbeat(beat("a", 2, &owned_a), &t, 46_001).unwrap();
    assert_eq!(back.member_epoch, 3);
    assert_eq!(count(&back.assignment.unwrap()), 2);
}

#[test]
fn a_member_that_never_revokes_is_fenced_after_its_rebalance_timeout() {
    let mut e = engine();
    let t = topics(&[("t", 1, 2)]);
    let a = e.heartbeat(join_req("a", "t"), &t, 0).unwrap();
    let owned_a = a.assignment.unwrap();
    e.heartbeat(join_req("b", "t"), &t, 0).unwrap();
    // a is asked to revoke and keeps reporting the old set.
    e.heartbeat(beat("a", 1, &owned_a), &t, 1).unwrap();
    e.heartbeat(beat("a", 1, &owned_a), &t, 5_000).unwrap();
    e.tick(10_002);
    let d = e.describe("g").unwrap();
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].member_id, "b");
}

#[test]
fn a_static_member_coming_back_keeps_its_partitions_without_a_new_epoch() {
    let mut e = engine();
    let t = topics(&[("t", 1, 4)]);
    let mut ja = join_req("a1", "t");
    ja.instance_id = Some("inst-a".into());
    e.heartbeat(ja, &t, 0).unwrap();
    let b = e.heartbeat(join_req("b", "t"), &t, 0).unwrap();
    assert_eq!(b.member_epoch, 2);
    // Settle.
    let mut owned = BTreeMap::new();
    for _ in 0..3 {
        for id in ["a1", "b"] {
            let d = e.describe("g").unwrap();
            let m = d
                .members
                .iter()
                .find(|m| m.member_id == id)
                .unwrap()
                .clone();
            let o: &Assignment = owned.entry(id).or_insert(m.assignment.clone());
            let ans = e.heartbeat(beat(id, m.member_epoch, o), &t, 1).unwrap();
            if let Some(a) = ans.assignment {
                owned.insert(id, a);
            }
        }
    }
    let before = e.describe("g").unwrap();
    assert_eq!(before.state, ConsumerGroupState::Stable);
    let a_parts = owned["a1"].clone();
    assert_eq!(count(&a_parts), 2);
    // a1 goes away as a static member (-2) and a new incarnation a2 joins with the same id.
    let mut away = beat("a1", STATIC_LEAVE_EPOCH, &a_parts);
    away.instance_id = Some("inst-a".into());
    e.heartbeat(away, &t, 2).unwrap();
    let mut ja2 = join_req("a2", "t");
    ja2.instance_id = Some("inst-a".into());
    let back = e.heartbeat(ja2, &t, 3).unwrap();
    assert_eq!(back.member_epoch, 2);
    assert_eq!(back.assignment.unwrap(), a_parts);
    let after = e.describe("g").unwrap();
    assert_eq!(after.group_epoch, before.group_epoch);
    // While a2 is live, a third incarnation is refused.
    let mut ja3 = join_req("a3", "t");
    ja3.instance_id = Some("inst-a".into());
    assert_eq!(
        e.heartbeat(ja3, &t, 4),
        Err(GroupError::UnreleasedInstanceId)
    );
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Leave(usize),
    Beat(usize),
    Partitions(i32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..5).prop_map(Op::Join),
        (0usize..5).prop_map(Op::Leave),
        (0usize..5).prop_map(Op::Beat),
        (0usize..5).prop_map(Op::Beat),
        (0usize..5).prop_map(Op::Beat),
        (1i32..10).prop_map(Op::Partitions),
    ]
}

proptest! {
    /// Clients that do what they are told never own a partition at the same time, and once
    /// membership stops changing every partition ends up owned exactly once.
    #[test]
    fn no_partition_is_ever_owned_twice(ops in proptest::collection::vec(op(), 1..60), range in any::<bool>()) {
        let mut e = engine();
        let mut partitions = 6;
        // Per simulated client: (epoch, owned) while in the group.
        let mut clients: BTreeMap<usize, (i32, Assignment)> = BTreeMap::new();
        let mut now = 0;
        let heartbeat = |e: &mut ConsumerGroupEngine, clients: &mut BTreeMap<usize, (i32, Assignment)>, i: usize, t: &Topics, now: i64| {
            let Some((epoch, owned)) = clients.get(&i).cloned() else { return; };
            match e.heartbeat(beat(&format!("m{i}"), epoch, &owned), t, now) {
                Ok(ans) => {
                    let entry = clients.entry(i).or_default();
                    entry.0 = ans.member_epoch;
                    if let Some(a) = ans.assignment { entry.1 = a; }
                }
                Err(_) => { clients.remove(&i); }
            }
        };
        for op in ops {
            now += 1;
            let t = topics(&[("t", 1, partitions)]);
            match op {
                Op::Join(i) => {
                    if clients.contains_key(&i) { continue; }
                    let mut req = join_req(&format!("m{i}"), "t");
                    if range { req.server_assignor = Some("range".into()); }
                    let ans = e.heartbeat(req, &t, now).unwrap();
                    clients.insert(i, (ans.member_epoch, ans.assignment.unwrap_or_default()));
                }
                Op::Leave(i) => {
                    if clients.remove(&i).is_some() {
                        e.heartbeat(beat(&format!("m{i}"), LEAVE_EPOCH, &Assignment::new()), &t, now).unwrap();
                    }
                }
                Op::Beat(i) => heartbeat(&mut e, &mut clients, i, &t, now),
                Op::Partitions(n) => partitions = partitions.max(n),
            }
            let mut seen = BTreeSet::new();
            for (_, owned) in clients.values() {
                for (topic, ps) in owned {
                    for p in ps {
                        prop_assert!(seen.insert((*topic, *p)), "partition {p} owned twice: {clients:?}");
                    }
                }
            }
        }
        // Quiesce: everyone heartbeats a few rounds.
        let t = topics(&[("t", 1, partitions)]);
        for _ in 0..4 {
            let ids: Vec<usize> = clients.keys().copied().collect();
            for i in ids { now += 1; heartbeat(&mut e, &mut clients, i, &t, now); }
        }
        if !clients.is_empty() {
            let total: usize = clients.values().map(|(_, o)| count(o)).sum();
            prop_assert_eq!(total, partitions as usize);
            prop_assert_eq!(e.describe("g").unwrap().state, ConsumerGroupState::Stable);
        }
    }
}
