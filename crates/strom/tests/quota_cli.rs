//! `strom quota set|describe|remove` against a real `strom serve`: entities with names and
//! defaults, validate-only, Kafka's refusals, durability across a restart, and the per-entity
//! quota series on `/metrics`.

mod common;

/// Whether a printed table has a row with exactly these cells.
fn has_row(table: &str, cells: &[&str]) -> bool {
    table
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
}

#[test]
fn quota_commands_set_describe_remove_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path());
    let out = server.ok(
        &[
            "quota",
            "set",
            "--user",
            "alice",
            "producer_byte_rate=1048576",
            "request_percentage=50",
        ],
        "",
    );
    assert!(out.contains("set: producer_byte_rate=1048576"), "{out}");
    server.ok(
        &[
            "quota",
            "set",
            "--user",
            "<default>",
            "--client-id",
            "<default>",
            "consumer_byte_rate=2048",
        ],
        "",
    );
    server.ok(
        &[
            "quota",
            "set",
            "--client-id",
            "batch",
            "consumer_byte_rate=4096",
        ],
        "",
    );
    // Validate-only stores nothing; Kafka's refusals reach the user.
    server.ok(
        &[
            "quota",
            "set",
            "--client-id",
            "ghost",
            "consumer_byte_rate=1",
            "--validate-only",
        ],
        "",
    );
    for bad in [
        "unknown_key=1",
        "producer_byte_rate=1.5",
        "consumer_byte_rate=-3",
    ] {
        let refused = server.cli(&["quota", "set", "--user", "bob", bad], "");
        assert!(!refused.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("InvalidRequest"), "{bad}: {err}");
    }

    let all = server.ok(&["quota", "describe"], "");
    assert!(
        has_row(&all, &["USER", "CLIENT-ID", "KEY", "VALUE"]),
        "{all}"
    );
    assert!(
        has_row(&all, &["alice", "producer_byte_rate", "1048576"]),
        "{all}"
    );
    assert!(
        has_row(&all, &["alice", "request_percentage", "50"]),
        "{all}"
    );
    assert!(
        has_row(
            &all,
            &["<default>", "<default>", "consumer_byte_rate", "2048"]
        ),
        "{all}"
    );
    assert!(
        has_row(&all, &["batch", "consumer_byte_rate", "4096"]),
        "{all}"
    );
    assert!(!all.contains("ghost") && !all.contains("bob"), "{all}");
    // Filters: a user exactly, the default user, any client id, strictly.
    let alice = server.ok(&["quota", "describe", "--user", "alice"], "");
    assert_eq!(alice.lines().count(), 3, "{alice}");
    let defaults = server.ok(&["quota", "describe", "--user", "<default>"], "");
    assert!(has_row(
        &defaults,
        &["<default>", "<default>", "consumer_byte_rate", "2048"]
    ));
    assert_eq!(defaults.lines().count(), 2, "{defaults}");
    let clients = server.ok(&["quota", "describe", "--any-client-id", "--strict"], "");
    assert!(
        has_row(&clients, &["batch", "consumer_byte_rate", "4096"]),
        "{clients}"
    );
    assert_eq!(clients.lines().count(), 2, "{clients}");

    // A quota in force gets its series on /metrics once the client it applies to is measured
    // (the CLI's producer is ANONYMOUS with client id `strom-cli`, under the default user).
    server.ok(
        &[
            "quota",
            "set",
            "--user",
            "<default>",
            "producer_byte_rate=1000000",
        ],
        "",
    );
    server.ok(&["produce", "metered"], "one\ntwo\n");
    let metrics = server.http_get("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strom_kafka_quota_rate{")
                && l.contains("quota_type=\"Produce\"")
                && l.contains("user=\"ANONYMOUS\"")),
        "{metrics}"
    );

    server.ok(
        &["quota", "remove", "--user", "alice", "request_percentage"],
        "",
    );
    server.stop();

    let server = common::start(dir.path());
    let all = server.ok(&["quota", "describe"], "");
    assert!(
        has_row(&all, &["alice", "producer_byte_rate", "1048576"]),
        "{all}"
    );
    assert!(!all.contains("request_percentage"), "{all}");
    assert!(
        has_row(&all, &["batch", "consumer_byte_rate", "4096"]),
        "{all}"
    );
    server.ok(
        &["quota", "remove", "--user", "alice", "producer_byte_rate"],
        "",
    );
    let all = server.ok(&["quota", "describe", "--user", "alice"], "");
    assert_eq!(all.lines().count(), 1, "only the header is left: {all}");
    server.stop();
}
