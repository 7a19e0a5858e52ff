//! The authorizer against a reference evaluation written straight from Kafka's rules, plus
//! the filter semantics and durability.

use proptest::prelude::*;

use super::model::*;
use super::*;

/// The reference: every rule spelled out, no index, no shortcuts.
fn reference(
    config: &AuthorizerConfig,
    acls: &[AclBinding],
    principal: &str,
    host: &str,
    op: AclOperation,
    rtype: ResourceType,
    name: &str,
) -> bool {
    if config.super_users.iter().any(|s| s == principal) {
        return true;
    }
    let on_resource: Vec<&AclBinding> = acls
        .iter()
        .filter(|a| a.resource_type == rtype)
        .filter(|a| match a.pattern_type {
            PatternType::Literal => a.resource_name == name || a.resource_name == "*",
            PatternType::Prefixed => name.starts_with(&a.resource_name),
        })
        .collect();
    if on_resource.is_empty() {
        return config.allow_everyone_if_no_acl_found;
    }
    let mine: Vec<&&AclBinding> = on_resource
        .iter()
        .filter(|a| a.principal == principal || a.principal == "User:*")
        .filter(|a| a.host == host || a.host == "*")
        .collect();
    let denied = mine.iter().any(|a| {
        a.permission == AclPermission::Deny
            && (a.operation == op || a.operation == AclOperation::All)
    });
    if denied {
        return false;
    }
    let implied: &[AclOperation] = match op {
        AclOperation::Describe => &[
            AclOperation::Describe,
            AclOperation::Read,
            AclOperation::Write,
            AclOperation::Delete,
            AclOperation::Alter,
        ],
        AclOperation::DescribeConfigs => {
            &[AclOperation::DescribeConfigs, AclOperation::AlterConfigs]
        }
        _ => std::slice::from_ref(&op),
    };
    mine.iter().any(|a| {
        a.permission == AclPermission::Allow
            && (a.operation == AclOperation::All || implied.contains(&a.operation))
    })
}

fn names() -> impl Strategy<Value = String> {
    prop::sample::select(NAMES).prop_map(str::to_owned)
}

fn principals() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("User:*".to_owned()),
        Just("User:alice".to_owned()),
        Just("User:bob".to_owned()),
        Just("Group:alice".to_owned()),
    ]
}

fn hosts() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_owned()),
        Just("10.0.0.1".to_owned()),
        Just("10.0.0.2".to_owned())
    ]
}

fn rtypes() -> impl Strategy<Value = ResourceType> {
    prop::sample::select(vec![ResourceType::Topic, ResourceType::Group])
}

fn acl() -> impl Strategy<Value = AclBinding> {
    (
        rtypes(),
        names(),
        prop::sample::select(PatternType::ALL_VALUES.to_vec()),
        principals(),
        hosts(),
        prop::sample::select(AclOperation::ALL_VALUES.to_vec()),
        prop::sample::select(AclPermission::ALL_VALUES.to_vec()),
    )
        .prop_map(
            |(
                resource_type,
                resource_name,
                pattern_type,
                principal,
                host,
                operation,
                permission,
            )| {
                AclBinding {
                    resource_type,
                    resource_name,
                    pattern_type,
                    principal,
                    host,
                    operation,
                    permission,
                }
            },
        )
}

fn store_with(config: AuthorizerConfig, acls: &[AclBinding]) -> AclStore {
    let store = AclStore::new(config);
    store.apply(&MetadataEvent::AclsCreated {
        acls: acls.to_vec(),
    });
    store
}

const NAMES: &[&str] = &["*", "t", "to", "topic", "topic-a", "other", "é", "éa"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every query of a small universe (principals, hosts, operations, resources) gets the
    /// reference's answer, from the index and from the pure function alike.
    #[test]
    fn indexed_authorizer_agrees_with_the_reference(
        acls in prop::collection::vec(acl(), 0..12),
        deleted in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        allow_everyone in any::<bool>(),
        super_bob in any::<bool>(),
    ) {
        let config = AuthorizerConfig {
            enabled: true,
            super_users: if super_bob { vec!["User:bob".to_owned()] } else { Vec::new() },
            allow_everyone_if_no_acl_found: allow_everyone,
        };
        let store = store_with(config.clone(), &acls);
        // Deletions go through the index too.
        let mut live: Vec<AclBinding> = acls.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        if !live.is_empty() {
            let gone: Vec<AclBinding> = deleted.iter().map(|i| i.get(&live).clone()).collect();
            store.apply(&MetadataEvent::AclsDeleted { acls: gone.clone() });
            live.retain(|a| !gone.contains(a));
        }
        for principal in ["User:alice", "User:bob", "Group:alice"] {
            for host in ["10.0.0.1", "10.0.0.2"] {
                for &op in AclOperation::ALL_VALUES {
                    for rtype in [ResourceType::Topic, ResourceType::Group] {
                        for name in NAMES {
                            let expected = reference(&config, &live, principal, host, op, rtype, name);
                            let resource = Resource { resource_type: rtype, name };
                            let who = Requester { principal, host };
                            prop_assert_eq!(store.authorize(who, op, resource), expected,
                                "{:?} {:?} {:?} {:?}", who, op, resource, live);
                            prop_assert_eq!(model::authorize(&config, &live, who, op, resource), expected);
                        }
                    }
                }
            }
        }
    }
}

fn topic_acl(
    name: &str,
    pattern: PatternType,
    op: AclOperation,
    perm: AclPermission,
) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.to_owned(),
        pattern_type: pattern,
        principal: "User:alice".to_owned(),
        host: "*".to_owned(),
        operation: op,
        permission: perm,
    }
}

fn alice() -> Requester<'static> {
    Requester {
        principal: "User:alice",
        host: "10.0.0.1",
    }
}

fn topic(name: &str) -> Resource<'_> {
    Resource {
        resource_type: ResourceType::Topic,
        name,
    }
}

#[test]
fn kafka_examples() {
    let config = AuthorizerConfig {
        enabled: true,
        super_users: vec!["User:admin".to_owned()],
        allow_everyone_if_no_acl_found: false,
    };
    let store = store_with(
        config,
        &[
            topic_acl(
                "pay",
                PatternType::Prefixed,
                AclOperation::Read,
                AclPermission::Allow,
            ),
            topic_acl(
                "payroll",
                PatternType::Literal,
                AclOperation::Read,
                AclPermission::Deny,
            ),
            topic_acl(
                "*",
                PatternType::Literal,
                AclOperation::AlterConfigs,
                AclPermission::Allow,
            ),
        ],
    );
    // Prefixed allow, READ implies DESCRIBE.
    assert!(store.authorize(alice(), AclOperation::Read, topic("payments")));
    assert!(store.authorize(alice(), AclOperation::Describe, topic("payments")));
    assert!(!store.authorize(alice(), AclOperation::Write, topic("payments")));
    // Deny wins, but a DENY READ does not deny DESCRIBE.
    assert!(!store.authorize(alice(), AclOperation::Read, topic("payroll")));
    assert!(store.authorize(alice(), AclOperation::Describe, topic("payroll")));
    // The wildcard ALTER_CONFIGS implies DESCRIBE_CONFIGS on every topic.
    assert!(store.authorize(alice(), AclOperation::DescribeConfigs, topic("x")));
    // Another principal gets nothing; the super user everything.
    let bob = Requester {
        principal: "User:bob",
        host: "10.0.0.1",
    };
    assert!(!store.authorize(bob, AclOperation::Read, topic("payments")));
    let admin = Requester {
        principal: "User:admin",
        host: "10.0.0.1",
    };
    assert!(store.authorize(admin, AclOperation::Delete, topic("payroll")));
    // No ACL on a group: allow.everyone.if.no.acl.found = false refuses.
    let group = Resource {
        resource_type: ResourceType::Group,
        name: "g",
    };
    assert!(!store.authorize(alice(), AclOperation::Read, group));
}

#[test]
fn disabled_authorizer_allows_everything() {
    let store = store_with(
        AuthorizerConfig::default(),
        &[topic_acl(
            "t",
            PatternType::Literal,
            AclOperation::All,
            AclPermission::Deny,
        )],
    );
    assert!(store.authorize(alice(), AclOperation::Read, topic("t")));
}

#[test]
fn filters_follow_kafka() {
    let lit = topic_acl(
        "topic",
        PatternType::Literal,
        AclOperation::Read,
        AclPermission::Allow,
    );
    let wild = topic_acl(
        "*",
        PatternType::Literal,
        AclOperation::Read,
        AclPermission::Allow,
    );
    let pre = topic_acl(
        "top",
        PatternType::Prefixed,
        AclOperation::Write,
        AclPermission::Deny,
    );
    let other = topic_acl(
        "zzz",
        PatternType::Prefixed,
        AclOperation::Write,
        AclPermission::Deny,
    );
    let all = [lit.clone(), wild.clone(), pre.clone(), other.clone()];
    let run = |f: &AclBindingFilter| -> Vec<AclBinding> {
        all.iter().filter(|a| f.matches(a)).cloned().collect()
    };
    let mut f = AclBindingFilter::any();
    assert_eq!(run(&f).len(), 4);
    f.resource_name = Some("topic".to_owned());
    assert_eq!(run(&f), vec![lit.clone()]);
    f.pattern = PatternFilter::Match;
    assert_eq!(run(&f), vec![lit.clone(), wild.clone(), pre.clone()]);
    f.pattern = PatternFilter::Exact(PatternType::Prefixed);
    assert!(run(&f).is_empty());
    f.resource_name = None;
    assert_eq!(run(&f), vec![pre.clone(), other.clone()]);
    f.operation = Some(AclOperation::Write);
    f.permission = Some(AclPermission::Deny);
    f.principal = Some("User:alice".to_owned());
    f.host = Some("*".to_owned());
    assert_eq!(run(&f), vec![pre, other]);
    f.host = Some("10.0.0.1".to_owned());
    assert!(run(&f).is_empty());
}

#[test]
fn validation() {
    let mut a = topic_acl(
        "t",
        PatternType::Literal,
        AclOperation::Read,
        AclPermission::Allow,
    );
    assert_eq!(a.validate(), Ok(()));
    a.resource_type = ResourceType::Cluster;
    assert_eq!(a.validate(), Err(InvalidAcl::ClusterName));
    a.resource_name = "kafka-cluster".to_owned();
    assert_eq!(a.validate(), Ok(()));
    a.resource_type = ResourceType::Topic;
    a.resource_name.clear();
    assert_eq!(a.validate(), Err(InvalidAcl::EmptyResourceName));
    assert!(ResourceType::try_from(1).is_err());
    assert!(AclOperation::try_from(1).is_err());
    assert_eq!(PatternFilter::from_code(2), Ok(PatternFilter::Match));
    assert!(PatternFilter::from_code(0).is_err());
}

#[test]
fn acls_and_scram_credentials_survive_reopen_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::BrokerConfig::new(dir.path());
    config.authorizer.enabled = true;
    let a = topic_acl(
        "t",
        PatternType::Literal,
        AclOperation::Read,
        AclPermission::Allow,
    );
    let b = topic_acl(
        "u",
        PatternType::Prefixed,
        AclOperation::Write,
        AclPermission::Deny,
    );
    {
        let broker = Broker::open(config.clone()).unwrap();
        broker
            .create_acls_blocking(vec![a.clone(), b.clone(), a.clone()])
            .unwrap();
        let deleted = broker
            .delete_acls_blocking(&[AclBindingFilter {
                resource_name: Some("u".to_owned()),
                ..AclBindingFilter::any()
            }])
            .unwrap();
        assert_eq!(deleted, vec![vec![b.clone()]]);
        let results = broker.alter_scram_credentials_blocking(
            &[],
            &[crate::scram::ScramUpsertion {
                user: "alice".to_owned(),
                mechanism: 2,
                iterations: 8192,
                salt: b"salt".to_vec(),
                salted_password: b"x".repeat(64),
            }],
        );
        assert!(results[0].1.is_ok());
        broker.shutdown_blocking().unwrap();
    }
    let broker = Broker::open(config.clone()).unwrap();
    assert_eq!(
        broker.describe_acls(&AclBindingFilter::any()).unwrap(),
        vec![a.clone()]
    );
    let cred = broker
        .scram()
        .credential("alice", crate::scram::ScramMechanism::Sha512)
        .unwrap();
    assert_eq!(cred.iterations, 8192);
    assert_eq!(cred.salt, b"salt");
    broker.shutdown_blocking().unwrap();
    drop(broker);
    // Through a snapshot: the state's minimal events carry them too.
    let (log, events) = crate::metadata::MetadataLog::open(dir.path()).unwrap();
    drop(log);
    assert!(events.contains(&MetadataEvent::AclsCreated { acls: vec![a] }));
    assert!(events.iter().any(|e| matches!(e, MetadataEvent::ScramCredentialsAltered { upserted, .. } if upserted.len() == 1)));
    // Without an authorizer the ACL APIs are refused.
    config.authorizer.enabled = false;
    let broker = Broker::open(config).unwrap();
    assert!(matches!(
        broker.describe_acls(&AclBindingFilter::any()),
        Err(Error::SecurityDisabled)
    ));
}
