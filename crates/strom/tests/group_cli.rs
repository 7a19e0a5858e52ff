//! Consumer groups through the `strom` binary: `consume --group` joins, commits and resumes;
//! `group describe` shows lag = log end − committed (and `/metrics` the same); `group
//! reset-offsets` only commits with `--execute` and only while the group is empty; `group
//! delete` is refused while members are active; two members split a two-partition topic.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Server, start, wait_bounded};

/// Test-specific helpers on the shared harness.
trait GroupCli {
    fn describe(&self, group: &str) -> serde_json::Value;
    fn offsets(&self, group: &str, topic: &str) -> Vec<(i64, i64, i64, i64)>;
    fn wait_for_state(&self, group: &str, state: &str);
}

impl GroupCli for Server {
    fn describe(&self, group: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["group", "describe", group, "--format", "json"], ""))
            .unwrap()
    }

    /// `(partition, committed, log end, lag)` of a topic's rows in `group describe`.
    fn offsets(&self, group: &str, topic: &str) -> Vec<(i64, i64, i64, i64)> {
        self.describe(group)["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["topic"] == topic)
            .map(|p| {
                (
                    p["partition"].as_i64().unwrap(),
                    p["current_offset"].as_i64().unwrap_or(-1),
                    p["log_end_offset"].as_i64().unwrap(),
                    p["lag"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }

    fn wait_for_state(&self, group: &str, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.describe(group)["state"] != state {
            assert!(
                Instant::now() < deadline,
                "group {group} never became {state}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn metric(metrics: &str, name: &str, group: &str, topic: &str, partition: i64) -> Option<i64> {
    let prefix =
        format!("{name}{{group=\"{group}\",topic=\"{topic}\",partition=\"{partition}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn group_consume_commit_describe_reset_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.ok(&["topic", "create", "orders", "-p", "2"], "");
    let p0: String = (0..10).map(|i| format!("a{i}\n")).collect();
    let p1: String = (0..10).map(|i| format!("b{i}\n")).collect();
    server.ok(&["produce", "orders", "-p", "0"], &p0);
    server.ok(&["produce", "orders", "-p", "1"], &p1);

    // K = 15 of N = 20: printed, committed, and the group left.
    let out = server.cli(&["consume", "orders", "--group", "g", "-n", "15"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("assigned [orders-0, orders-1]"), "{stderr}");
    let first: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(first.len(), 15);

    // The lag shown by the CLI is produced minus committed, per partition.
    let offsets = server.offsets("g", "orders");
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    let committed: i64 = offsets.iter().map(|o| o.1).sum();
    assert_eq!(committed, 15);
    for &(p, c, end, lag) in &offsets {
        assert_eq!(end, 10, "partition {p}");
        assert_eq!(lag, end - c, "partition {p}");
        let printed = first
            .iter()
            .filter(|v| v.starts_with(if p == 0 { 'a' } else { 'b' }))
            .count();
        assert_eq!(
            i64::try_from(printed).unwrap(),
            c,
            "committed what was printed"
        );
    }
    let total_lag: i64 = offsets.iter().map(|o| o.3).sum();
    assert_eq!(total_lag, 20 - 15);
    let described = server.describe("g");
    assert_eq!(described["state"], "Empty");
    assert_eq!(described["members"], serde_json::json!([]));
    let table = server.ok(&["group", "describe", "g"], "");
    assert!(table.contains("has no active members"), "{table}");
    for &(p, c, end, lag) in &offsets {
        let row = format!("g orders {p} {c} {end} {lag} - - -");
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == row),
            "{row} in {table}"
        );
    }
    let list = server.ok(&["group", "list"], "");
    assert!(list.starts_with("GROUP"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().take(2).eq(["g", "Empty"])),
        "{list}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&server.ok(&["group", "list", "--format", "json"], "")).unwrap();
    assert_eq!(listed[0]["group"], "g");

    // /metrics: the same lag and committed offsets.
    let metrics = server.http_get("/metrics");
    for &(p, c, _, lag) in &offsets {
        assert_eq!(
            metric(&metrics, "strom_consumer_group_lag", "g", "orders", p),
            Some(lag),
            "{metrics}"
        );
        assert_eq!(
            metric(
                &metrics,
                "strom_consumer_group_committed_offset",
                "g",
                "orders",
                p
            ),
            Some(c)
        );
    }

    // Resuming prints exactly the five records not yet committed.
    let rest = server.ok(&["consume", "orders", "--group", "g"], "");
    let mut all: Vec<String> = first.clone();
    all.extend(rest.lines().map(str::to_owned));
    assert_eq!(rest.lines().count(), 5, "{rest}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20);
    assert!(
        server
            .offsets("g", "orders")
            .iter()
            .all(|o| o.1 == 10 && o.3 == 0)
    );

    // reset-offsets: a dry run by default, committed with --execute.
    let dry = server.cli(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to-earliest",
        ],
        "",
    );
    assert!(dry.status.success());
    let plan = String::from_utf8(dry.stdout).unwrap();
    assert!(
        plan.lines()
            .any(|l| l.split_whitespace().eq(["g", "orders", "0", "10", "0"])),
        "{plan}"
    );
    assert!(String::from_utf8_lossy(&dry.stderr).contains("dry run"));
    assert!(
        server.offsets("g", "orders").iter().all(|o| o.1 == 10),
        "dry run changed nothing"
    );
    server.ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to-earliest",
            "--execute",
        ],
        "",
    );
    assert!(
        server
            .offsets("g", "orders")
            .iter()
            .all(|o| o.1 == 0 && o.3 == 10)
    );
    server.ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "-p",
            "1",
            "--shift-by",
            "3",
            "--execute",
        ],
        "",
    );
    server.ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "-p",
            "0",
            "--to-offset",
            "100",
            "--execute",
        ],
        "",
    );
    let now = server.offsets("g", "orders");
    assert_eq!(
        now.iter().map(|o| (o.0, o.1)).collect::<Vec<_>>(),
        [(0, 10), (1, 3)]
    );
    let back = server.ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "-p",
            "1",
            "--shift-by",
            "-5",
        ],
        "",
    );
    assert!(
        back.lines()
            .any(|l| l.split_whitespace().eq(["g", "orders", "1", "3", "0"])),
        "{back}"
    );
    let dated = server.ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to-datetime",
            "99999999999999",
        ],
        "",
    );
    assert!(
        dated
            .lines()
            .any(|l| l.split_whitespace().eq(["g", "orders", "1", "3", "10"])),
        "{dated}"
    );
    let none = server.cli(&["group", "reset-offsets", "g", "--topic", "orders"], "");
    assert!(!none.status.success(), "a target is required");

    // Resume from the reset offsets: p1 from 3, p0 at its end.
    let json = server.ok(
        &["consume", "orders", "--group", "g", "--format", "json"],
        "",
    );
    let records: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 7);
    assert!(records.iter().all(|r| r["partition"] == 1));
    assert_eq!(records[0]["offset"], 3);
    assert_eq!(records[0]["value"], "b3");

    // With an active member: delete and reset are refused with Kafka's errors.
    let follower = server.spawn(&["consume", "orders", "--group", "g", "--follow"], "");
    server.wait_for_state("g", "Stable");
    let described = server.describe("g");
    let members = described["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["client_id"], "strom-cli");
    assert_eq!(
        members[0]["assignment"],
        serde_json::json!([{"topic": "orders", "partitions": [0, 1]}])
    );
    assert_eq!(described["protocol_type"], "consumer");
    assert_eq!(described["protocol"], "range");
    let table = server.ok(&["group", "describe", "g"], "");
    let member_id = members[0]["member_id"].as_str().unwrap();
    assert!(table.contains(member_id), "{table}");
    let refused = server.cli(&["group", "delete", "g"], "");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("NonEmptyGroup"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = server.cli(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to-earliest",
            "--execute",
        ],
        "",
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("can only be reset if the group 'g' is inactive"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // New records reach the follower, which commits them.
    server.ok(&["produce", "orders", "-p", "0"], "late\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .offsets("g", "orders")
        .iter()
        .find(|o| o.0 == 0)
        .map(|o| o.1)
        != Some(11)
    {
        assert!(
            Instant::now() < deadline,
            "the follower never committed the new record"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Ctrl-C: the member leaves at once.
    let status = Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = wait_bounded(follower, 30);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "late\n");
    assert_eq!(server.describe("g")["state"], "Empty");

    assert_eq!(
        server.ok(&["group", "delete", "g"], ""),
        "deleted group g\n"
    );
    assert!(!server.ok(&["group", "list"], "").contains("\ng "));
    assert_eq!(server.describe("g")["state"], "Dead");
    assert!(!server.http_get("/metrics").contains("group=\"g\""));
    let gone = server.cli(&["group", "delete", "g"], "");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("GroupIdNotFound"));
    server.stop();
}

#[test]
fn two_group_members_split_a_two_partition_topic() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.ok(&["topic", "create", "split", "-p", "2"], "");
    for p in 0..2 {
        let lines: String = (0..5).map(|i| format!("p{p}-{i}\n")).collect();
        server.ok(&["produce", "split", "-p", &p.to_string()], &lines);
    }
    // Both join within the initial rebalance delay, so one generation has both members.
    let a = server.spawn(&["consume", "split", "--group", "s", "-n", "5"], "");
    let b = server.spawn(&["consume", "split", "--group", "s", "-n", "5"], "");
    let outputs = [wait_bounded(a, 60), wait_bounded(b, 60)];
    let mut prefixes = Vec::new();
    for out in &outputs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let last = stderr.lines().rfind(|l| l.contains("assigned")).unwrap();
        assert!(
            last.ends_with("assigned [split-0]") || last.ends_with("assigned [split-1]"),
            "{stderr}"
        );
        let values: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(values.len(), 5, "{values:?}");
        let prefix = &values[0][..2];
        assert!(values.iter().all(|v| v.starts_with(prefix)), "{values:?}");
        prefixes.push(prefix.to_owned());
    }
    prefixes.sort();
    assert_eq!(prefixes, ["p0", "p1"]);
    let offsets = server.offsets("s", "split");
    assert!(offsets.iter().all(|o| o.1 == 5 && o.3 == 0), "{offsets:?}");
    server.stop();
}
