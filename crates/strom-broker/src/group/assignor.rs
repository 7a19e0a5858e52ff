//! Server-side assignors of the consumer group protocol (KIP-848): `uniform` and `range`.
//!
//! An assignor maps every member to the partitions it should own (the *target assignment*),
//! given each member's subscription and the partition counts of the subscribed topics. Both
//! are pure functions of their inputs plus, for `uniform`, the current assignment (it is
//! sticky: a partition stays with its owner while that keeps the group balanced).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions per topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The assignors this broker offers, default first (`group.consumer.assignors`).
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What an assignor sees of one member.
#[derive(Debug, Clone)]
pub struct AssignorMember<'a> {
    /// Member id.
    pub member_id: &'a str,
    /// Subscribed topics (ids of topics that exist).
    pub topics: BTreeSet<Uuid>,
    /// What the member is meant to own now (its current target), for stickiness.
    pub current: &'a Assignment,
}

/// Computes the target assignment with the named assignor (`None` for an unknown name).
pub fn assign(
    name: &str,
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> Option<BTreeMap<String, Assignment>> {
    match name {
        "uniform" => Some(uniform(members, partitions)),
        "range" => Some(range(members, partitions)),
        _ => None,
    }
}

fn empty_targets(members: &[AssignorMember<'_>]) -> BTreeMap<String, Assignment> {
    members
        .iter()
        .map(|m| (m.member_id.to_owned(), Assignment::new()))
        .collect()
}

/// Range: for each topic, its subscribers sorted by member id get contiguous ranges, the first
/// `partitions % subscribers` of them one partition more.
pub fn range(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut targets = empty_targets(members);
    for (&topic, &count) in partitions {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(&topic))
            .map(|m| m.member_id)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        subscribers.sort_unstable();
        let n = subscribers.len() as i32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in subscribers.iter().enumerate() {
            let take = base + i32::from((i as i32) < extra);
            if take > 0
                && let Some(t) = targets.get_mut(*member)
            {
                t.entry(topic).or_default().extend(next..next + take);
            }
            next += take;
        }
    }
    targets
}

/// Uniform: spreads all subscribed partitions as evenly as the subscriptions allow, keeping
/// each partition with its current owner when that owner is still subscribed and not above
/// its fair share.
pub fn uniform(
    members: &[AssignorMember<'_>],
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut targets = empty_targets(members);
    if members.is_empty() {
        return targets;
    }
    // Every partition some member subscribes to, with its eligible members.
    let mut eligible: BTreeMap<(Uuid, i32), Vec<usize>> = BTreeMap::new();
    for (&topic, &count) in partitions {
        let subs: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].topics.contains(&topic))
            .collect();
        if subs.is_empty() {
            continue;
        }
        for p in 0..count.max(0) {
            eligible.insert((topic, p), subs.clone());
        }
    }
    let total = eligible.len();
    let n = members.len();
    // The fair share: at most ceil(total / n); exactly `total % n` members may have the extra one
    // when subscriptions are uniform.
    let floor = total / n;
    let mut extra_slots = total % n;
    let mut counts = vec![0usize; n];
    let mut owner: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    // Sticky pass 1: keep up to `floor` current partitions per member.
    for (i, m) in members.iter().enumerate() {
        for (topic, parts) in m.current {
            for &p in parts {
                let key = (*topic, p);
                let Some(subs) = eligible.get(&key) else {
                    continue;
                };
                if !subs.contains(&i) || owner.contains_key(&key) || counts[i] >= floor {
                    continue;
                }
                owner.insert(key, i);
                counts[i] += 1;
            }
        }
    }
    // Sticky pass 2: members that owned more may keep one extra while extra slots remain.
    for (i, m) in members.iter().enumerate() {
        if extra_slots == 0 {
            break;
        }
        if counts[i] != floor {
            continue;
        }
        let kept = m.current.iter().find_map(|(topic, parts)| {
            parts.iter().find_map(|&p| {
                let key = (*topic, p);
                let ok =
                    eligible.get(&key).is_some_and(|s| s.contains(&i)) && !owner.contains_key(&key);
                ok.then_some(key)
            })
        });
        if let Some(key) = kept {
            owner.insert(key, i);
            counts[i] += 1;
            extra_slots -= 1;
        }
    }
    // Everything else goes to the eligible member with the fewest partitions (ties: lowest
    // member id, i.e. input order).
    let unassigned: Vec<(Uuid, i32)> = eligible
        .keys()
        .filter(|k| !owner.contains_key(k))
        .copied()
        .collect();
    for key in unassigned {
        let Some(subs) = eligible.get(&key) else {
            continue;
        };
        if let Some(&best) = subs.iter().min_by_key(|&&i| (counts[i], i)) {
            owner.insert(key, best);
            counts[best] += 1;
        }
    }
    for ((topic, p), i) in owner {
        if let Some(t) = targets.get_mut(members[i].member_id) {
            t.entry(topic).or_default().insert(p);
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn range_splits_each_topic_in_contiguous_ranges() {
        let empty = Assignment::new();
        let all: BTreeSet<Uuid> = [topic(1), topic(2)].into();
        let members = [
            AssignorMember {
                member_id: "b",
                topics: all.clone(),
                current: &empty,
            },
            AssignorMember {
                member_id: "a",
                topics: all,
                current: &empty,
            },
        ];
        let parts = BTreeMap::from([(topic(1), 3), (topic(2), 2)]);
        let t = range(&members, &parts);
        assert_eq!(t["a"][&topic(1)], BTreeSet::from([0, 1]));
        assert_eq!(t["b"][&topic(1)], BTreeSet::from([2]));
        assert_eq!(t["a"][&topic(2)], BTreeSet::from([0]));
        assert_eq!(t["b"][&topic(2)], BTreeSet::from([1]));
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let t1 = topic(1);
        let subs: BTreeSet<Uuid> = [t1].into();
        let empty = Assignment::new();
        let parts = BTreeMap::from([(t1, 6)]);
        let two = [
            AssignorMember {
                member_id: "a",
                topics: subs.clone(),
                current: &empty,
            },
            AssignorMember {
                member_id: "b",
                topics: subs.clone(),
                current: &empty,
            },
        ];
        let first = uniform(&two, &parts);
        assert_eq!(count(&first["a"]), 3);
        assert_eq!(count(&first["b"]), 3);
        let three = [
            AssignorMember {
                member_id: "a",
                topics: subs.clone(),
                current: &first["a"],
            },
            AssignorMember {
                member_id: "b",
                topics: subs.clone(),
                current: &first["b"],
            },
            AssignorMember {
                member_id: "c",
                topics: subs,
                current: &empty,
            },
        ];
        let second = uniform(&three, &parts);
        for m in ["a", "b", "c"] {
            assert_eq!(count(&second[m]), 2, "{m}: {second:?}");
        }
        // a and b keep two of their three partitions each: only two partitions move.
        assert!(second["a"][&t1].is_subset(&first["a"][&t1]));
        assert!(second["b"][&t1].is_subset(&first["b"][&t1]));
    }

    #[test]
    fn unknown_assignor_is_refused() {
        assert!(assign("sticky", &[], &BTreeMap::new()).is_none());
    }

    proptest! {
        /// Every subscribed partition is assigned exactly once, only to a subscriber; with
        /// uniform subscriptions the counts differ by at most one.
        #[test]
        fn assignments_are_complete_and_exclusive(
            counts in proptest::collection::vec(0i32..12, 1..4),
            subs in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 4), 1..6),
            uniform_subs in any::<bool>(),
            use_range in any::<bool>(),
        ) {
            let topics: Vec<Uuid> = (0..counts.len()).map(|i| topic(i as u8 + 1)).collect();
            let parts: BTreeMap<Uuid, i32> = topics.iter().copied().zip(counts.iter().copied()).collect();
            let ids: Vec<String> = (0..subs.len()).map(|i| format!("m{i}")).collect();
            let empty = Assignment::new();
            let members: Vec<AssignorMember<'_>> = subs.iter().enumerate().map(|(i, s)| {
                let topics_of: BTreeSet<Uuid> = if uniform_subs {
                    topics.iter().copied().collect()
                } else {
                    topics.iter().zip(s).filter(|(_, on)| **on).map(|(t, _)| *t).collect()
                };
                AssignorMember { member_id: &ids[i], topics: topics_of, current: &empty }
            }).collect();
            let targets = if use_range { range(&members, &parts) } else { uniform(&members, &parts) };
            let mut seen = BTreeSet::new();
            for m in &members {
                for (t, ps) in &targets[m.member_id] {
                    prop_assert!(m.topics.contains(t));
                    for p in ps {
                        prop_assert!(seen.insert((*t, *p)), "assigned twice");
                    }
                }
            }
            let expected: usize = parts.iter()
                .filter(|(t, _)| members.iter().any(|m| m.topics.contains(t)))
                .map(|(_, c)| *c as usize).sum();
            prop_assert_eq!(seen.len(), expected);
            if uniform_subs && !use_range {
                let sizes: Vec<usize> = targets.values().map(count).collect();
                let (lo, hi) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
                prop_assert!(hi - lo <= 1, "{sizes:?}");
            }
        }
    }
}
