//! The cost of one authorization check against many ACLs (issue 19 Performance): a broker
//! opened on a scratch directory with the authorizer on and `--acls` ACLs stored through the
//! broker API, then `AclStore::authorize` timed in a loop for a few typical checks. Usage:
//!
//! ```text
//! cargo run --release -p strom-bench --bin acl_bench -- [--acls 1000] [--checks 2000000] [--runs 5]
//! ```
//!
//! The ACLs are spread as a real deployment's would be: per-team prefixed topic and group
//! ACLs, literal per-service topic ACLs, a few DENY rules and wildcard (`*`) ones, across
//! `--acls / 10` principals. The checks cover an allowed produce through a prefixed ACL, an
//! allowed read through a literal one, a refusal by a DENY, a principal with no ACL on the
//! resource, and a resource no ACL names. Prints ns per check (median of `--runs`); the
//! authorizer-off line is the floor every request pays.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use strom_bench::median;
use strom_broker::acl::{
    AclBinding, AclOperation, AclPermission, PatternType, Requester, Resource, ResourceType,
};
use strom_broker::{Broker, BrokerConfig};

#[derive(Debug, Parser)]
struct Args {
    /// How many ACLs to store.
    #[arg(long, default_value_t = 1000)]
    acls: usize,
    /// Checks per run and case.
    #[arg(long, default_value_t = 2_000_000)]
    checks: usize,
    /// Runs; the median is printed.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Scratch data directory (deleted before and after).
    #[arg(long, default_value = "target/acl_bench")]
    dir: PathBuf,
}

fn binding(
    resource_type: ResourceType,
    name: String,
    pattern_type: PatternType,
    principal: String,
    operation: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name,
        pattern_type,
        principal,
        host: "*".to_owned(),
        operation,
        permission,
    }
}

/// `count` distinct ACLs: for principal `svc-<i % (count / 10)>`, a rotating mix of kinds.
fn acls(count: usize) -> Vec<AclBinding> {
    let principals = (count / 10).max(1);
    let mut distinct = std::collections::BTreeSet::new();
    let all = (0..)
        .map(|i| {
            let who = format!("User:svc-{}", i % principals);
            let team = i % 37;
            match i % 10 {
                0..=3 => binding(
                    ResourceType::Topic,
                    format!("team{team}."),
                    PatternType::Prefixed,
                    who,
                    [
                        AclOperation::Write,
                        AclOperation::Read,
                        AclOperation::Describe,
                    ][i % 3],
                    AclPermission::Allow,
                ),
                4..=6 => binding(
                    ResourceType::Topic,
                    format!("team{team}.service-{i}"),
                    PatternType::Literal,
                    who,
                    AclOperation::Read,
                    AclPermission::Allow,
                ),
                7 => binding(
                    ResourceType::Group,
                    format!("team{team}-"),
                    PatternType::Prefixed,
                    who,
                    AclOperation::Read,
                    AclPermission::Allow,
                ),
                8 => binding(
                    ResourceType::Topic,
                    format!("team{team}.secret-{i}"),
                    PatternType::Literal,
                    "User:*".to_owned(),
                    AclOperation::Read,
                    AclPermission::Deny,
                ),
                _ => binding(
                    ResourceType::Topic,
                    "*".to_owned(),
                    PatternType::Literal,
                    who,
                    AclOperation::Describe,
                    AclPermission::Allow,
                ),
            }
        })
        .filter(move |acl| distinct.insert(acl.clone()));
    all.take(count).collect()
}

/// One timed case: ns per `authorize` call (median of `runs`), and the answer it gave.
fn time_case(
    broker: &Broker,
    runs: usize,
    checks: usize,
    who: &str,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> (f64, bool) {
    let requester = Requester {
        principal: who,
        host: "10.0.0.1",
    };
    let resource = Resource {
        resource_type,
        name,
    };
    let answer = broker.acls().authorize(requester, operation, resource);
    let mut per_run = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut allowed = 0usize;
        for _ in 0..checks {
            let r = Requester {
                principal: std::hint::black_box(who),
                host: "10.0.0.1",
            };
            let res = Resource {
                resource_type,
                name: std::hint::black_box(name),
            };
            allowed += usize::from(broker.acls().authorize(r, operation, res));
        }
        std::hint::black_box(allowed);
        per_run.push(start.elapsed().as_nanos() as f64 / checks as f64);
    }
    (median(&mut per_run), answer)
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let mut results = Vec::new();
    for (label, enabled, count) in [
        ("authorizer off", false, 0),
        ("authorizer on", true, args.acls),
    ] {
        let _ = std::fs::remove_dir_all(&args.dir);
        let mut config = BrokerConfig::new(&args.dir);
        config.authorizer.enabled = enabled;
        let broker = Broker::open(config).map_err(|e| format!("open: {e}"))?;
        if count > 0 {
            for chunk in acls(count).chunks(100) {
                broker
                    .create_acls_blocking(chunk.to_vec())
                    .map_err(|e| format!("create ACLs: {e}"))?;
            }
        }
        let stored = broker.acls().len();
        for (case, who, op, rt, name) in [
            (
                "produce via prefixed ACL",
                "User:svc-0",
                AclOperation::Write,
                ResourceType::Topic,
                "team0.orders",
            ),
            (
                "read via literal ACL",
                "User:svc-4",
                AclOperation::Read,
                ResourceType::Topic,
                "team4.service-4",
            ),
            (
                "read refused by DENY",
                "User:svc-8",
                AclOperation::Read,
                ResourceType::Topic,
                "team8.secret-8",
            ),
            (
                "principal without ACL",
                "User:stranger",
                AclOperation::Write,
                ResourceType::Topic,
                "team0.orders",
            ),
            (
                "resource no ACL names",
                "User:svc-0",
                AclOperation::Read,
                ResourceType::Group,
                "unrelated",
            ),
        ] {
            let (ns, answer) = time_case(&broker, args.runs, args.checks, who, op, rt, name);
            results.push(format!(
                "| {label} | {stored} | {case} | {answer} | {ns:.0} |"
            ));
        }
        broker
            .shutdown_blocking()
            .map_err(|e| format!("shutdown: {e}"))?;
        drop(broker);
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    println!(
        "# one authorization check, {} checks x {} runs (median)",
        args.checks, args.runs
    );
    println!("| authorizer | ACLs | check | allowed | ns/check |");
    println!("|---|---|---|---|---|");
    for r in results {
        println!("{r}");
    }
    Ok(())
}
