//! A compacted topic through the `strom` binary: keyed records produced with the CLI are
//! compacted by `strom serve`'s cleaner (`--log-cleaner-backoff-ms`), `topic describe` shows
//! `cleanup.policy` and the cleaner's state per partition (read from `/metrics`), and
//! `/metrics` carries the cleaner series.

use std::time::{Duration, Instant};

mod common;

use common::start_with;

#[test]
fn describe_shows_the_cleaner_state_of_a_compacted_topic() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), &["--log-cleaner-backoff-ms", "100"]);
    let admin = ["--admin", server.http.as_str()];
    server.ok(
        &[
            "topic",
            "create",
            "table",
            "-c",
            "cleanup.policy=compact",
            "-c",
            "segment.ms=100",
            "-c",
            "min.cleanable.dirty.ratio=0.01",
        ],
        "",
    );
    server.ok(&["topic", "create", "stream"], "");
    let updates: String = (0..200).map(|i| format!("k{}:v{i}\n", i % 10)).collect();
    server.ok(&["produce", "table", "-K", ":"], &updates);
    std::thread::sleep(Duration::from_millis(150));
    server.ok(&["produce", "table", "-K", ":"], "roll:roll\n");

    let deadline = Instant::now() + Duration::from_secs(30);
    let described = loop {
        let mut args = vec!["topic", "describe", "table"];
        args.extend(admin);
        let out = server.ok(&args, "");
        if out.contains("records removed 190") {
            break out;
        }
        assert!(Instant::now() < deadline, "never cleaned: {out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        described.contains("cleanup.policy = compact  (topic)"),
        "{described}"
    );
    assert!(described.contains("log cleaner (from "), "{described}");
    assert!(
        described.contains("  partition 0: dirty ratio 0.000"),
        "{described}"
    );
    assert!(!described.contains("last clean never"), "{described}");

    let mut args = vec!["topic", "describe", "stream"];
    args.extend(admin);
    let plain = server.ok(&args, "");
    assert!(plain.contains("cleanup.policy = delete"), "{plain}");
    assert!(!plain.contains("log cleaner"), "{plain}");

    // An unreachable admin endpoint is reported, the description still printed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = server.ok(&["topic", "describe", "table", "--admin", &gone], "");
    assert!(out.contains("log cleaner: state unavailable"), "{out}");
    assert!(out.contains("partition 0: offsets"), "{out}");

    let metrics = server.http_get("/metrics");
    for line in [
        "strom_log_cleaner_dirty_ratio{topic=\"table\",partition=\"0\"} ",
        "strom_log_cleaner_records_removed_total{topic=\"table\",partition=\"0\"} 190",
        "strom_log_cleaner_max_lag_seconds ",
    ] {
        assert!(metrics.contains(line), "{line} missing: {metrics}");
    }
    server.stop();
}
