//! `strom acl add|list|remove` and `strom user scram set|list|delete` against a real
//! `strom serve` with the authorizer on (and the ACL commands refused without it).

mod common;

/// Whether a printed table has a row with exactly these cells.
fn has_row(table: &str, cells: &[&str]) -> bool {
    table
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == cells)
}

#[test]
fn acl_commands_add_list_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start_with(
        dir.path(),
        &["--authorizer", "--super-users", "User:admin;User:ANONYMOUS"],
    );
    let out = server.ok(
        &[
            "acl",
            "add",
            "--resource-type",
            "topic",
            "--resource",
            "orders",
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--operation",
            "describe",
        ],
        "",
    );
    assert!(
        out.contains("added ALLOW User:alice READ on TOPIC orders (LITERAL)"),
        "{out}"
    );
    server.ok(
        &[
            "acl",
            "add",
            "--resource-type",
            "group",
            "--resource",
            "app-",
            "--pattern",
            "prefixed",
            "--principal",
            "User:*",
            "--operation",
            "read",
            "--deny",
        ],
        "",
    );
    let list = server.ok(&["acl", "list"], "");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(lines[0].starts_with("RESOURCE-TYPE"), "{list}");
    assert!(
        list.contains("GROUP") && list.contains("PREFIXED") && list.contains("DENY"),
        "{list}"
    );
    // What applies to topic "orders".
    let matching = server.ok(
        &[
            "acl",
            "list",
            "--resource-type",
            "topic",
            "--resource",
            "orders",
            "--pattern",
            "match",
        ],
        "",
    );
    assert_eq!(matching.lines().count(), 3, "{matching}");
    let removed = server.ok(
        &[
            "acl",
            "remove",
            "--resource-type",
            "topic",
            "--operation",
            "describe",
        ],
        "",
    );
    assert!(removed.starts_with("removed 1 ACLs"), "{removed}");
    assert_eq!(server.ok(&["acl", "list"], "").lines().count(), 3);
    // A principal without a type is refused before asking; a CLUSTER ACL on another name is
    // refused by the broker (INVALID_REQUEST).
    let bad = server.cli(
        &[
            "acl",
            "add",
            "--resource-type",
            "topic",
            "--resource",
            "t",
            "--principal",
            "alice",
            "--operation",
            "read",
        ],
        "",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("<type>:<name>"));
    let bad = server.cli(
        &[
            "acl",
            "add",
            "--resource-type",
            "cluster",
            "--resource",
            "other",
            "--principal",
            "User:a",
            "--operation",
            "alter",
        ],
        "",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("InvalidRequest"));
    server.stop();

    // Without the authorizer: SECURITY_DISABLED.
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path());
    let off = server.cli(&["acl", "list"], "");
    assert!(!off.status.success());
    assert!(String::from_utf8_lossy(&off.stderr).contains("SecurityDisabled"));
    server.stop();
}

#[test]
fn user_scram_commands_set_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path());
    let set = server.ok(
        &[
            "user",
            "scram",
            "set",
            "alice",
            "--password",
            "-",
            "--iterations",
            "4096",
        ],
        "s3cret\n",
    );
    assert!(
        set.contains("set SCRAM-SHA-256 credential for alice"),
        "{set}"
    );
    server.ok(
        &[
            "user",
            "scram",
            "set",
            "alice",
            "--mechanism",
            "SCRAM-SHA-512",
            "--password",
            "x",
        ],
        "",
    );
    let list = server.ok(&["user", "scram", "list"], "");
    assert!(
        has_row(&list, &["alice", "SCRAM-SHA-256", "4096"]),
        "{list}"
    );
    assert!(
        has_row(&list, &["alice", "SCRAM-SHA-512", "8192"]),
        "{list}"
    );
    let unknown = server.ok(&["user", "scram", "list", "bob"], "");
    assert!(unknown.contains("ResourceNotFound"), "{unknown}");
    server.ok(&["user", "scram", "delete", "alice"], "");
    let list = server.ok(&["user", "scram", "list"], "");
    assert!(
        !list.contains("SCRAM-SHA-256") && list.contains("SCRAM-SHA-512"),
        "{list}"
    );
    let missing = server.cli(&["user", "scram", "delete", "alice"], "");
    assert!(!missing.status.success());
    let few = server.cli(
        &[
            "user",
            "scram",
            "set",
            "bob",
            "--password",
            "x",
            "--iterations",
            "10",
        ],
        "",
    );
    assert!(!few.status.success());
    // The password is not in the metadata log, only the derived keys.
    let stopped = server.stop();
    let log = std::fs::read_to_string(dir.path().join("metadata/events.log")).unwrap();
    assert!(log.contains("scram_credentials_altered"), "{stopped}");
    assert!(!log.contains("s3cret"));
}
