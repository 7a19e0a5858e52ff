//! The `strom` binary as a process: `serve` prints where it listens, serves, exits cleanly on
//! SIGTERM; the client subcommands work against it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod common;

use common::start;

#[test]
fn serve_prints_addresses_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    assert!(
        server.printed.contains("data directory:"),
        "{}",
        server.printed
    );
    // A raw ApiVersions v0 request: size, key 18, version 0, correlation id 1, null client id.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body[..4], &[0, 0, 0, 1], "correlation id");
    assert_eq!(&body[4..6], &[0, 0], "error code");

    let rest = server.stop();
    assert!(rest.contains("stopped cleanly"), "{rest}");
    assert!(dir.path().join("metadata").join("events.log").exists());
}

#[test]
fn topic_produce_consume_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    assert_eq!(
        server.ok(
            &[
                "topic",
                "create",
                "cli",
                "-p",
                "2",
                "-c",
                "retention.ms=60000"
            ],
            ""
        ),
        "created topic cli\n"
    );
    assert!(
        server
            .ok(&["topic", "list"], "")
            .starts_with("cli\t2 partitions\t")
    );
    let lines: String = (0..1000).map(|i| format!("k{i}:v{i}\n")).collect();
    server.ok(
        &["produce", "cli", "-p", "1", "-K", ":", "--batch", "64"],
        &lines,
    );
    let all = server.ok(&["consume", "cli", "-p", "1"], "");
    assert_eq!(all.lines().count(), 1000);
    assert_eq!(all.lines().next(), Some("v0"));
    let tail = server.ok(&["consume", "cli", "-p", "1", "--from", "998", "-v"], "");
    assert_eq!(tail, "998\tk998\tv998\n999\tk999\tv999\n");
    let head = server.ok(&["consume", "cli", "-p", "1", "-n", "2"], "");
    assert_eq!(head, "v0\nv1\n");
    let described = server.ok(&["topic", "describe", "cli"], "");
    assert!(
        described.contains("partition 1: offsets 0..1000"),
        "{described}"
    );
    assert!(
        described.contains("retention.ms = 60000  (topic)"),
        "{described}"
    );
    let bad = server.cli(&["topic", "create", "bad name"], "");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("InvalidTopicException"));
    let metrics = server.http_get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("strom_partition_high_watermark{topic=\"cli\",partition=\"1\"} 1000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strom_kafka_requests_total{api=\"Produce\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strom_partition_syncs_total{topic=\"cli\",partition=\"1\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strom_internal_topic_damaged_batches_total 0"),
        "{metrics}"
    );
    assert!(server.http_get("/health").ends_with("ok\n"));
    server.ok(&["topic", "delete", "cli"], "");
    assert!(!server.http_get("/metrics").contains("topic=\"cli\""));
    assert_eq!(server.ok(&["topic", "list"], ""), "");
    server.stop();
}

#[test]
fn cli_alter_file_input_timestamp_start_and_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.ok(&["topic", "create", "more", "-c", "retention.ms=60000"], "");
    assert_eq!(
        server.ok(
            &[
                "topic",
                "alter",
                "more",
                "-c",
                "retention.bytes=1048576",
                "--delete-config",
                "retention.ms"
            ],
            ""
        ),
        "altered topic more\n"
    );
    let described = server.ok(&["topic", "describe", "more"], "");
    assert!(
        described.contains("retention.bytes = 1048576  (topic)"),
        "{described}"
    );
    assert!(!described.contains("retention.ms = 60000"), "{described}");
    let bad = server.cli(&["topic", "alter", "more", "-c", "retention.ms=soon"], "");
    assert!(!bad.status.success());

    let input = dir.path().join("input.txt");
    let lines: String = (0..300).map(|i| format!("k{i}|v{i}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    server.ok(
        &[
            "produce",
            "more",
            "-K",
            "|",
            "--file",
            input.to_str().unwrap(),
        ],
        "",
    );

    let json = server.ok(&["consume", "more", "--format", "json", "-n", "1"], "");
    let first: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(first["offset"], 0);
    assert_eq!(first["key"], "k0");
    assert_eq!(first["value"], "v0");
    assert!(first["timestamp"].as_i64().unwrap() > 0);
    assert_eq!(first["headers"], serde_json::json!([]));

    // From a timestamp: everything was produced after 0, nothing after the far future.
    assert_eq!(
        server
            .ok(&["consume", "more", "--from", "@0"], "")
            .lines()
            .count(),
        300
    );
    assert_eq!(
        server.ok(&["consume", "more", "--from", "@99999999999999"], ""),
        ""
    );
    server.stop();
}

/// With stdout and stderr redirected to a full disk (`/dev/full` answers every write with
/// ENOSPC), `serve` still serves and still stops cleanly: its status lines are dropped, not a
/// panic (seen as an abort at shutdown with the log on a full disk).
#[test]
fn serve_survives_a_full_stdout_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["serve", "--kafka-listen", &format!("127.0.0.1:{port}")])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--kinesis-listen",
            "127.0.0.1:0",
        ])
        .args(["--log", "info"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("STROM_CONFIG")
        .stdout(full())
        .stderr(full())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "strom exited before listening"
                );
                assert!(std::time::Instant::now() < deadline, "never listened: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(std::time::Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
