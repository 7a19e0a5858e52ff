//! `strom serve` as a process: prints where it listens, serves, exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn serve_prints_addresses_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["serve", "--kafka-listen", "127.0.0.1:0", "--log", "warn"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("STROM_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "exited early: {printed}"
        );
        printed.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("kafka:") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(printed.contains("data directory:"), "{printed}");

    // A raw ApiVersions v0 request: size, key 18, version 0, correlation id 1, null client id.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body[..4], &[0, 0, 0, 1], "correlation id");
    assert_eq!(&body[4..6], &[0, 0], "error code");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(rest.contains("stopped cleanly"), "{rest}");
    assert!(dir.path().join("metadata").join("events.log").exists());
}
