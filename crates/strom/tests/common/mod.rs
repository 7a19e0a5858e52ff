//! The `strom` binary as a process, shared by the process tests: start `strom serve` on
//! ephemeral ports, talk to its admin HTTP port, run CLI subcommands against it, stop it.
#![allow(
    dead_code,
    reason = "each test crate uses a different part of the harness"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Spawns `strom serve` on `data_dir` with every listener on an ephemeral port.
pub(crate) fn spawn_serve(data_dir: &Path) -> (Child, BufReader<ChildStdout>) {
    spawn_serve_with(data_dir, &[])
}

/// [`spawn_serve`] with more `serve` flags.
pub(crate) fn spawn_serve_with(data_dir: &Path, extra: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["serve", "--kafka-listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--kinesis-listen", "127.0.0.1:0"])
        .args(["--log", "warn"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("STROM_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// A running `strom serve`.
pub(crate) struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// The Kafka listener, `host:port`.
    pub(crate) addr: String,
    /// The admin HTTP listener, `host:port`.
    pub(crate) http: String,
    /// What it printed up to the HTTP line.
    pub(crate) printed: String,
}

/// Starts a broker and waits until it printed its addresses.
pub(crate) fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// [`start`] with more `serve` flags.
pub(crate) fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
    let (child, mut stdout) = spawn_serve_with(data_dir, extra);
    let mut printed = String::new();
    let mut addr = None;
    let http = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "exited early: {printed}"
        );
        printed.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("kafka:") {
            addr = Some(rest.split_whitespace().next().unwrap().to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("http:") {
            break rest
                .trim()
                .trim_start_matches("http://")
                .trim_end_matches("/metrics")
                .to_owned();
        }
    };
    Server {
        child,
        stdout,
        addr: addr.expect("kafka address printed before http"),
        http,
        printed,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed assertion must not leave the broker running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child at most `secs`, killing it (and failing) if it takes longer.
pub(crate) fn wait_bounded(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {secs}s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    /// `GET path` on the admin port; the whole response, headers included.
    pub(crate) fn http_get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(&self.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: strom\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    }

    /// SIGTERM, then checks a clean exit that printed "stopped cleanly"; returns what it printed
    /// after start-up.
    pub(crate) fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
        assert!(rest.contains("stopped cleanly"), "{rest}");
        rest
    }

    /// The bound address of the Kafka listener named `name`, as `serve` printed it
    /// (`<addr> (<NAME> <PROTOCOL>, advertised as …)`).
    pub(crate) fn listener_addr(&self, name: &str) -> String {
        let marker = format!("({name} ");
        self.printed
            .lines()
            .find(|l| l.contains(&marker))
            .and_then(|l| {
                l.trim()
                    .trim_start_matches("kafka:")
                    .split_whitespace()
                    .next()
            })
            .unwrap_or_else(|| panic!("no listener {name} in {}", self.printed))
            .to_owned()
    }

    /// Starts a CLI command against this broker (stdin closed after `stdin` is written).
    pub(crate) fn spawn(&self, args: &[&str], stdin: &str) -> Child {
        self.spawn_at(&self.addr, args, stdin)
    }

    /// [`Server::spawn`] against the listener at `bootstrap`.
    pub(crate) fn spawn_at(&self, bootstrap: &str, args: &[&str], stdin: &str) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(args)
            .args(["--bootstrap", bootstrap])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child
    }

    /// Runs a CLI command (at most 60 s).
    pub(crate) fn cli(&self, args: &[&str], stdin: &str) -> Output {
        wait_bounded(self.spawn(args, stdin), 60)
    }

    /// Runs a CLI command that must succeed; its standard output.
    pub(crate) fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.cli(args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
