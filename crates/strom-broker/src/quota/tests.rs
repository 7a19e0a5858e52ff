use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn named(n: &str) -> Option<EntityName> {
    Some(EntityName::Named(n.to_owned()))
}

fn entity(user: Option<EntityName>, client_id: Option<EntityName>) -> QuotaEntity {
    QuotaEntity { user, client_id }
}

fn set(entity: QuotaEntity, key: QuotaKey, value: f64) -> QuotaChange {
    QuotaChange {
        entity,
        key,
        value: Some(QuotaValue(value)),
    }
}

fn store(changes: Vec<QuotaChange>) -> QuotaStore {
    let store = QuotaStore::default();
    store.apply(&MetadataEvent::ClientQuotasAltered { changes });
    store
}

fn alteration(entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) -> QuotaAlteration {
    QuotaAlteration {
        entity: entity
            .iter()
            .map(|(t, n)| ((*t).to_owned(), n.map(str::to_owned)))
            .collect(),
        ops: ops
            .iter()
            .map(|(k, v, r)| QuotaOp {
                key: (*k).to_owned(),
                value: *v,
                remove: *r,
            })
            .collect(),
    }
}

fn refusal(r: &Result<()>) -> Option<QuotaRefusal> {
    match r {
        Err(Error::Quota { reason }) => Some(*reason),
        _ => None,
    }
}

#[test]
fn precedence_follows_kafka_and_tags_name_the_measured_entity() {
    let d = Some(EntityName::Default);
    let k = QuotaKey::ProducerByteRate;
    // Each level in Kafka's order, from the least to the most specific; adding the next one
    // must take over.
    let levels = [
        (entity(None, d.clone()), ("", "c")),
        (entity(None, named("c")), ("", "c")),
        (entity(d.clone(), None), ("u", "")),
        (entity(d.clone(), d.clone()), ("u", "c")),
        (entity(d.clone(), named("c")), ("u", "c")),
        (entity(named("u"), None), ("u", "")),
        (entity(named("u"), d.clone()), ("u", "c")),
        (entity(named("u"), named("c")), ("u", "c")),
    ];
    let mut changes = Vec::new();
    for (i, (e, (user, client))) in levels.iter().enumerate() {
        let value = 100.0 * (i as f64 + 1.0);
        changes.push(set(e.clone(), k, value));
        let s = store(changes.clone());
        let r = s.resolve(k, "u", "c").unwrap();
        assert_eq!(r.limit, value, "level {i}: {e}");
        assert_eq!(
            (r.tags.user.as_str(), r.tags.client_id.as_str()),
            (*user, *client)
        );
        // Another user/client still falls back to the defaults only.
        assert!(s.resolve(QuotaKey::ConsumerByteRate, "u", "c").is_none());
    }
    let s = store(changes);
    let other = s.resolve(k, "v", "x").unwrap();
    assert_eq!(other.limit, 400.0, "default user + default client");
    assert_eq!(other.tags.user, "v");
}

#[test]
fn keys_resolve_independently() {
    let s = store(vec![
        set(entity(named("u"), None), QuotaKey::ProducerByteRate, 10.0),
        set(entity(None, named("c")), QuotaKey::ConsumerByteRate, 20.0),
    ]);
    assert_eq!(
        s.resolve(QuotaKey::ProducerByteRate, "u", "c")
            .unwrap()
            .limit,
        10.0
    );
    assert_eq!(
        s.resolve(QuotaKey::ConsumerByteRate, "u", "c")
            .unwrap()
            .limit,
        20.0
    );
    assert!(s.resolve(QuotaKey::RequestPercentage, "u", "c").is_none());
    assert!(QuotaStore::default().is_empty());
}

#[test]
fn filters_match_as_kafka() {
    let ua = entity(named("a"), None);
    let ud = entity(Some(EntityName::Default), None);
    let uac = entity(named("a"), named("c"));
    let c = entity(None, named("c"));
    let f = |components: Vec<(&str, QuotaMatch)>, strict| QuotaFilter {
        components: components
            .into_iter()
            .map(|(t, m)| (t.to_owned(), m))
            .collect(),
        strict,
    };
    let exact_a = f(vec![(USER, QuotaMatch::Exact("a".into()))], false);
    assert!(exact_a.matches(&ua) && exact_a.matches(&uac) && !exact_a.matches(&ud));
    let exact_a_strict = f(vec![(USER, QuotaMatch::Exact("a".into()))], true);
    assert!(exact_a_strict.matches(&ua) && !exact_a_strict.matches(&uac));
    let default_user = f(vec![(USER, QuotaMatch::Default)], false);
    assert!(default_user.matches(&ud) && !default_user.matches(&ua));
    let any_user = f(vec![(USER, QuotaMatch::Specified)], false);
    assert!(any_user.matches(&ua) && any_user.matches(&ud) && !any_user.matches(&c));
    let all = f(vec![], false);
    assert!([&ua, &ud, &uac, &c].iter().all(|e| all.matches(e)));
    assert!(!f(vec![], true).matches(&ua));
    assert_eq!(
        f(
            vec![(USER, QuotaMatch::Default), (USER, QuotaMatch::Specified)],
            false
        )
        .validate(),
        Err(QuotaRefusal::DuplicateEntityType)
    );
    assert_eq!(
        f(
            vec![(IP, QuotaMatch::Specified), (USER, QuotaMatch::Specified)],
            false
        )
        .validate(),
        Err(QuotaRefusal::IpCombined)
    );
    assert_eq!(
        f(vec![("group", QuotaMatch::Specified)], false).validate(),
        Err(QuotaRefusal::UnsupportedEntityType)
    );
    assert_eq!(QuotaMatch::from_wire(0, None), Err(QuotaRefusal::BadMatch));
    assert_eq!(
        QuotaMatch::from_wire(1, Some("x")),
        Err(QuotaRefusal::BadMatch)
    );
    assert_eq!(QuotaMatch::from_wire(3, None), Err(QuotaRefusal::BadMatch));
}

#[test]
fn values_are_validated_as_kafka() {
    assert_eq!(
        QuotaValue::validate(QuotaKey::ProducerByteRate, 0.0),
        Err(QuotaRefusal::NotPositive)
    );
    assert_eq!(
        QuotaValue::validate(QuotaKey::ConsumerByteRate, 1.5),
        Err(QuotaRefusal::Fractional)
    );
    assert_eq!(
        QuotaValue::validate(QuotaKey::ProducerByteRate, 1e30),
        Err(QuotaRefusal::TooLarge)
    );
    assert_eq!(
        QuotaValue::validate(QuotaKey::RequestPercentage, 12.5),
        Ok(QuotaValue(12.5))
    );
    assert_eq!(
        QuotaValue::validate(QuotaKey::RequestPercentage, f64::NAN),
        Err(QuotaRefusal::NotPositive)
    );
    assert_eq!("nope".parse::<QuotaKey>(), Err(QuotaRefusal::UnknownKey));
}

#[test]
fn alterations_follow_kafka_rules_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::BrokerConfig::new(dir.path());
    {
        let broker = Broker::open(config.clone()).unwrap();
        let results = broker.alter_client_quotas_blocking(
            &[
                alteration(
                    &[(USER, Some("alice"))],
                    &[("producer_byte_rate", 1024.0, false)],
                ),
                alteration(
                    &[(USER, None), (CLIENT_ID, None)],
                    &[("request_percentage", 50.0, false)],
                ),
                alteration(&[(USER, Some("bob"))], &[("nope", 1.0, false)]),
                alteration(
                    &[(USER, Some("bob"))],
                    &[("consumer_byte_rate", 1.0, false)],
                ),
                alteration(
                    &[("group", Some("g"))],
                    &[("consumer_byte_rate", 1.0, false)],
                ),
                alteration(&[], &[("consumer_byte_rate", 1.0, false)]),
                alteration(&[(USER, Some(""))], &[("consumer_byte_rate", 1.0, false)]),
                alteration(
                    &[(CLIENT_ID, Some("c"))],
                    &[
                        ("consumer_byte_rate", 1.0, false),
                        ("consumer_byte_rate", 2.0, false),
                    ],
                ),
                alteration(
                    &[(CLIENT_ID, Some("d"))],
                    &[("consumer_byte_rate", -1.0, false)],
                ),
            ],
            false,
        );
        assert!(results[0].is_ok() && results[1].is_ok());
        assert_eq!(refusal(&results[2]), Some(QuotaRefusal::UnknownKey));
        assert_eq!(refusal(&results[3]), Some(QuotaRefusal::DuplicateEntity));
        assert_eq!(refusal(&results[4]), Some(QuotaRefusal::UnknownEntityType));
        assert_eq!(refusal(&results[5]), Some(QuotaRefusal::EmptyEntity));
        assert_eq!(refusal(&results[6]), Some(QuotaRefusal::EmptyName));
        assert_eq!(refusal(&results[7]), Some(QuotaRefusal::DuplicateKey));
        assert_eq!(refusal(&results[8]), Some(QuotaRefusal::NotPositive));
        // validate_only checks and stores nothing.
        let checked = broker.alter_client_quotas_blocking(
            &[alteration(
                &[(CLIENT_ID, Some("c"))],
                &[("consumer_byte_rate", 7.0, false)],
            )],
            true,
        );
        assert!(checked[0].is_ok());
        let all = broker
            .describe_client_quotas(&QuotaFilter::default())
            .unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        // Removing what is not set is accepted and changes nothing.
        let removed = broker.alter_client_quotas_blocking(
            &[alteration(
                &[(USER, Some("alice"))],
                &[("consumer_byte_rate", 0.0, true)],
            )],
            false,
        );
        assert!(removed[0].is_ok());
        broker.shutdown_blocking().unwrap();
    }
    let broker = Broker::open(config.clone()).unwrap();
    let all: BTreeMap<_, _> = broker
        .describe_client_quotas(&QuotaFilter::default())
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        all[&entity(named("alice"), None)][&QuotaKey::ProducerByteRate],
        1024.0
    );
    let dd = entity(Some(EntityName::Default), Some(EntityName::Default));
    assert_eq!(all[&dd][&QuotaKey::RequestPercentage], 50.0);
    // Removing the last key removes the entity, durably.
    let removed = broker.alter_client_quotas_blocking(
        &[alteration(
            &[(USER, Some("alice"))],
            &[("producer_byte_rate", 0.0, true)],
        )],
        false,
    );
    assert!(removed[0].is_ok());
    broker.shutdown_blocking().unwrap();
    drop(broker);
    let broker = Broker::open(config).unwrap();
    let all = broker
        .describe_client_quotas(&QuotaFilter::default())
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, dd);
    broker.shutdown_blocking().unwrap();
}

#[test]
fn snapshot_state_recreates_the_quotas() {
    let mut state = crate::metadata::MetadataState::default();
    let a = entity(named("a"), None);
    let events = [
        MetadataEvent::ClientQuotasAltered {
            changes: vec![
                set(a.clone(), QuotaKey::ProducerByteRate, 5.0),
                set(a.clone(), QuotaKey::ConsumerByteRate, 6.0),
            ],
        },
        MetadataEvent::ClientQuotasAltered {
            changes: vec![QuotaChange {
                entity: a.clone(),
                key: QuotaKey::ProducerByteRate,
                value: None,
            }],
        },
    ];
    for e in &events {
        state.apply(e);
    }
    let mut replayed = crate::metadata::MetadataState::default();
    for e in state.events() {
        replayed.apply(&e);
    }
    assert_eq!(replayed, state);
    assert_eq!(
        state.events(),
        vec![MetadataEvent::ClientQuotasAltered {
            changes: vec![set(a, QuotaKey::ConsumerByteRate, 6.0)]
        }]
    );
    // The event's JSON is stable: a value is a plain number, a default name a tag.
    let json = serde_json::to_string(&events[0]).unwrap();
    assert!(
        json.contains("\"producer_byte_rate\"") && json.contains("5.0"),
        "{json}"
    );
}

proptest! {
    /// The store's resolution equals a reference scan of the eight precedence levels.
    #[test]
    fn resolution_matches_a_reference(
        sets in proptest::collection::vec((0usize..3, 0usize..3, 0usize..2, 1u32..1000), 0..12),
        user in 0usize..2,
        client in 0usize..2,
    ) {
        let names = ["x", "y"];
        let pick = |i: usize| match i {
            0 => None,
            1 => Some(EntityName::Default),
            _ => Some(EntityName::Named(names[0].to_owned())),
        };
        let changes: Vec<QuotaChange> = sets
            .iter()
            .filter(|(u, c, _, _)| *u != 0 || *c != 0)
            .map(|(u, c, k, v)| set(entity(pick(*u), pick(*c)), QuotaKey::ALL[*k], f64::from(*v)))
            .collect();
        let s = store(changes.clone());
        let mut map = QuotaMap::new();
        apply_changes(&mut map, &changes);
        let (u, c) = (names[user], names[client]);
        for key in [QuotaKey::ProducerByteRate, QuotaKey::ConsumerByteRate] {
            let level = |eu: Option<EntityName>, ec: Option<EntityName>| {
                map.get(&entity(eu, ec)).and_then(|k| k.get(&key)).map(|v| v.0)
            };
            let d = || Some(EntityName::Default);
            let n = |x: &str| Some(EntityName::Named(x.to_owned()));
            let expected = level(n(u), n(c))
                .or_else(|| level(n(u), d()))
                .or_else(|| level(n(u), None))
                .or_else(|| level(d(), n(c)))
                .or_else(|| level(d(), d()))
                .or_else(|| level(d(), None))
                .or_else(|| level(None, n(c)))
                .or_else(|| level(None, d()));
            prop_assert_eq!(s.resolve(key, u, c).map(|r| r.limit), expected);
        }
    }
}
