//! S3 credentials from the AWS profile's `credential_process`, end to end: a `strom serve`
//! broker with no access keys in its environment, whose profile names a script printing
//! temporary credentials, stores and serves records through moto (real PostgreSQL and moto
//! from strom-cluster's harness, the `strom` CLI as the client). The script counts its runs:
//! the broker ran it, and (credentials valid for an hour) not once per request.

mod cluster_common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_common::{Broker, ClusterServe};
use strom_cluster::testkit::{MotoServer, PostgresServer};

const BUCKET: &str = "strom-credential-process";
/// Bound of every wait in this test.
const STEP: Duration = Duration::from_secs(60);

/// Runs the `strom` CLI against `bootstrap`, bounded; its stdout, or a panic with its output.
fn strom(bootstrap: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(args)
        .args(["--bootstrap", bootstrap])
        .env_remove("STROM_BOOTSTRAP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < STEP {
            std::thread::sleep(Duration::from_millis(200));
            if !std::path::Path::new(&format!("/proc/{id}")).exists() {
                return;
            }
        }
        let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
    });
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    assert!(out.status.success(), "strom {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_broker_with_credential_process_stores_and_serves_records_through_moto() {
    let pg = PostgresServer::start().expect("postgres");
    let s3 = MotoServer::start().expect("moto");
    s3.create_bucket(BUCKET).expect("bucket");
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = dir.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{runs}'\n\
             exp=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\n\
             printf '{{\"Version\":1,\"AccessKeyId\":\"ASIATEST\",\"SecretAccessKey\":\"secret\",\"SessionToken\":\"token\",\"Expiration\":\"%s\"}}' \"$exp\"\n",
            runs = runs.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile strom]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let data = dir.path().join("data");
    let broker = Broker::start_with_env(
        &ClusterServe {
            n: 1,
            pg: &pg,
            s3: &s3,
            data: &data,
            bucket: BUCKET,
            prefix: "creds",
            lease_ttl_ms: 2_000,
            flush_delay_ms: 20,
            log: "warn".to_owned(),
            extra: Vec::new(),
        },
        &[
            ("AWS_ACCESS_KEY_ID", None),
            ("AWS_SECRET_ACCESS_KEY", None),
            ("AWS_SESSION_TOKEN", None),
            ("AWS_PROFILE", Some("strom")),
            ("AWS_CONFIG_FILE", Some(&config)),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                Some("/nonexistent/credentials"),
            ),
        ],
    );
    // Acknowledged only after the flush's object was PUT with the process's credentials.
    strom(
        &broker.kafka,
        &["produce", "creds"],
        "one\ntwo\nthree\nfour\n",
    );
    let consumed = strom(&broker.kafka, &["consume", "creds", "-n", "4"], "");
    assert_eq!(
        consumed.lines().collect::<Vec<_>>(),
        ["one", "two", "three", "four"]
    );
    let ran = std::fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(
        ran, 1,
        "the credentials are valid for an hour: run once, then cached"
    );
}
