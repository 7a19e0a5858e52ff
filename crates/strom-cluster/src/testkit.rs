//! Test harness: real PostgreSQL and a real S3-compatible server (moto) on loopback.
//!
//! Both servers run as child processes in their own process group, in a scratch directory, on a
//! free port chosen at start. Start-up is bounded (poll until ready, then give up with
//! [`HarnessError::NotReady`]); tear-down kills the whole process group and removes the scratch
//! directory, from [`Drop`] too, so a panicking test leaves nothing running.
//!
//! PostgreSQL comes from Debian's `postgresql` package (`/usr/lib/postgresql/<major>/bin`). It
//! refuses to run as root, so when the tests run as root (CI does) every PostgreSQL command is
//! run as the `postgres` user through `runuser -u postgres --` and the data directory is given to
//! that user. The S3 server is `python3 -m moto.server`; `.ci/run` installs both when missing.
//!
//! This module is compiled only with the `testkit` feature and is never part of a broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a killed process group may take to exit before it is sent `SIGKILL`.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a test server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A command could not be spawned or its output read.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program that failed.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A set-up command ran but failed.
    #[error("{program} exited with {status}: {stderr}")]
    Command {
        /// The program that failed.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of what it printed on stderr.
        stderr: String,
    },
    /// The server did not become ready in time.
    #[error("{server} not ready after {waited:?}; log: {log}")]
    NotReady {
        /// Which server.
        server: &'static str,
        /// How long we waited.
        waited: Duration,
        /// The end of its log.
        log: String,
    },
    /// No PostgreSQL installation was found.
    #[error("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")]
    NoPostgres,
    /// Scratch directory handling failed.
    #[error("scratch directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn is_root() -> bool {
    // `id -u` avoids an unsafe libc call for the one fact we need.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(mut cmd: Command) -> Result<(), HarnessError> {
    let program = format!("{:?}", cmd.get_program());
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        program: program.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(HarnessError::Command {
        program,
        status: out.status,
        stderr: tail(&String::from_utf8_lossy(&out.stderr)),
    })
}

fn tail(text: &str) -> String {
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| tail(&s))
        .unwrap_or_default()
}

/// Sends `signal` to the process group of `child`, waits up to [`STOP_TIMEOUT`], then `SIGKILL`s
/// the group.
fn stop_group(child: &mut Child, signal: &str) {
    let pgid = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &pgid])
        .stderr(Stdio::null())
        .status();
    // A paused (SIGSTOPped) group only acts on the signal once continued.
    let _ = Command::new("kill")
        .args(["-CONT", "--", &pgid])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Children of the group leader (postgres backends, runuser's child) may outlive it.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// Starts a shell in the process group of `leader` that kills the whole group once this test
/// process is gone, so servers do not outlive a test binary killed before its `Drop`s ran.
fn spawn_watchdog(leader: u32) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -KILL 0",
        std::process::id()
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(i32::try_from(leader).unwrap_or(0))
        .spawn();
    if let Ok(mut child) = spawned {
        // Reap it in the background so it does not linger as a zombie.
        std::thread::spawn(move || child.wait());
    }
}

/// Starts a shell outside every server's process group that removes `dir` once this test
/// process is gone, for servers kept in a `static` (whose `Drop` never runs) or a test binary
/// killed before its `Drop`s ran; the server watchdogs have killed the servers by then.
fn spawn_dir_reaper(dir: &Path) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; sleep 2; rm -rf -- \"$1\"",
        std::process::id()
    );
    let spawned = Command::new("sh")
        .args(["-c", &script, "reaper"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Ok(mut child) = spawned {
        std::thread::spawn(move || child.wait());
    }
}

/// Sends `signal` to the process group led by `child`.
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

/// Sends `signal` to each of `pids`.
fn signal_pids(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The pids whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    Command::new("ps")
        .args(["-o", "pid=", "--ppid", &parent.to_string()])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A PostgreSQL server in a scratch directory, stopped and removed on drop.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    fsync: bool,
    /// More `-c NAME=VALUE` server settings.
    settings: Vec<String>,
    child: Option<Child>,
}

impl PostgresServer {
    /// Runs `initdb` in a new scratch directory and starts the server on a free port, with
    /// `fsync=off` (tests need ordering and crash semantics of the server process, not of the
    /// disk, and this shares the machine's disk with everything else).
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_with_fsync(false)
    }

    /// As [`Self::start`], choosing `fsync` (on for commit-rate measurements).
    pub fn start_with_fsync(fsync: bool) -> Result<Self, HarnessError> {
        Self::start_with(fsync, &[], &[])
    }

    /// As [`Self::start`], with more server settings (`-c NAME=VALUE`) and files copied into
    /// the data directory first, readable by the server only (`(name, bytes)`: TLS keys and
    /// certificates for `ssl_cert_file`/`ssl_key_file`, relative to the data directory).
    pub fn start_with_settings(
        settings: &[(&str, &str)],
        files: &[(&str, &[u8])],
    ) -> Result<Self, HarnessError> {
        Self::start_with(false, settings, files)
    }

    fn start_with(
        fsync: bool,
        settings: &[(&str, &str)],
        files: &[(&str, &[u8])],
    ) -> Result<Self, HarnessError> {
        let bin = postgres_bin()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("strom-pg-").tempdir()?;
        spawn_dir_reaper(dir.path());
        if as_postgres {
            // The postgres user must be able to reach and own its directories.
            run({
                let mut c = Command::new("chmod");
                c.arg("0755").arg(dir.path());
                c
            })?;
        }
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&data)?;
        std::fs::create_dir(&sock)?;
        if as_postgres {
            run({
                let mut c = Command::new("chown");
                c.arg("-R").arg("postgres:postgres").arg(&data).arg(&sock);
                c
            })?;
        }
        let mut initdb = pg_command(as_postgres, &bin.join("initdb"));
        initdb.args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ]);
        initdb.arg(&data);
        run(initdb)?;
        for (name, bytes) in files {
            let path = data.join(name);
            std::fs::write(&path, bytes)?;
            run({
                let mut c = Command::new("chmod");
                c.arg("0600").arg(&path);
                c
            })?;
            if as_postgres {
                run({
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(&path);
                    c
                })?;
            }
        }
        let mut server = PostgresServer {
            bin,
            dir,
            port: 0,
            as_postgres,
            fsync,
            settings: settings.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let mut last = None;
        for _ in 0..3 {
            self.port = free_port()?;
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.kill();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(HarnessError::NoPostgres))
    }

    /// Spawns `postgres` on `self.port` and waits until it accepts connections.
    fn launch(&mut self) -> Result<(), HarnessError> {
        let log_path = self.dir.path().join("postgres.log");
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = pg_command(self.as_postgres, &self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(if self.fsync { "fsync=on" } else { "fsync=off" })
            .args(["-c", "max_connections=200"])
            .args(self.settings.iter().flat_map(|kv| ["-c", kv.as_str()]))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().map_err(|source| HarnessError::Spawn {
            program: "postgres".into(),
            source,
        })?;
        spawn_watchdog(child.id());
        self.child = Some(child);
        self.wait_ready(&log_path)
    }

    fn wait_ready(&mut self, log: &Path) -> Result<(), HarnessError> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                break;
            }
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HarnessError::NotReady {
            server: "postgres",
            waited: started.elapsed(),
            log: read_log(log),
        })
    }

    /// A connection URL for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=5",
            self.port
        )
    }

    /// Creates the database `name` (a plain identifier) and returns its connection URL, so
    /// tests can share one server with a database each.
    pub fn create_database(&self, name: &str) -> Result<String, HarnessError> {
        run(self.client_command("createdb", name))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}?connect_timeout=5",
            self.port
        ))
    }

    /// Drops the database `name`, closing its sessions first.
    pub fn drop_database(&self, name: &str) -> Result<(), HarnessError> {
        let mut cmd = self.client_command("dropdb", name);
        cmd.arg("--force");
        run(cmd)
    }

    /// `program` (a client binary of the server's installation) against this server as the
    /// `postgres` user, naming the database `name`.
    fn client_command(&self, program: &str, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .arg(name)
        .stdin(Stdio::null());
        cmd
    }

    /// The TCP port the server listens on (kept across [`PostgresServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (`SIGQUIT`: immediate shutdown, as a crash would) and keeps the
    /// data directory.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Freezes every server process (`SIGSTOP`): connections stay open but nothing answers,
    /// as with a hung database or a network partition. [`Self::resume`] undoes it.
    pub fn pause(&self) {
        // PostgreSQL's children call setsid(), so the process group holds only the postmaster:
        // stop it first (no new backends), then each of its children.
        let Some(postmaster) = self.postmaster_pid() else {
            return;
        };
        signal_pids("STOP", &[postmaster]);
        signal_pids("STOP", &children(postmaster));
    }

    /// Lets a [`Self::pause`]d server run again.
    pub fn resume(&self) {
        let Some(postmaster) = self.postmaster_pid() else {
            return;
        };
        signal_pids("CONT", &children(postmaster));
        signal_pids("CONT", &[postmaster]);
    }

    /// The postmaster's pid, from the first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Starts the server again on the same port and data directory after [`Self::stop`].
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let started = Instant::now();
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                // The old port can linger for a moment; try again, bounded.
                Err(e) if started.elapsed() > START_TIMEOUT => return Err(e),
                Err(_) => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn kill(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, "QUIT");
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pg_command(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// The newest `/usr/lib/postgresql/<major>/bin` that has `initdb`.
fn postgres_bin() -> Result<PathBuf, HarnessError> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| HarnessError::NoPostgres)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(HarnessError::NoPostgres)
}

/// A moto S3 server on loopback, killed on drop. Its storage is in memory: a restart loses every
/// bucket and object.
#[derive(Debug)]
pub struct MotoServer {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts `python3 -m moto.server` on a free port and waits until it answers HTTP.
    pub fn start() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new().prefix("strom-moto-").tempdir()?;
        spawn_dir_reaper(dir.path());
        let mut server = MotoServer {
            dir,
            port: 0,
            child: None,
        };
        let mut last = None;
        for _ in 0..3 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.kill();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(HarnessError::NotReady {
            server: "moto",
            waited: Duration::ZERO,
            log: String::new(),
        }))
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let log_path = self.dir.path().join("moto.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: "python3 -m moto.server".into(),
                source,
            })?;
        spawn_watchdog(child.id());
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                break;
            }
            if http(self.addr(), "GET", "/").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HarnessError::NotReady {
            server: "moto",
            waited: started.elapsed(),
            log: read_log(&log_path),
        })
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), HarnessError> {
        let status = http(self.addr(), "PUT", &format!("/{bucket}"))?;
        if status == 200 {
            Ok(())
        } else {
            Err(HarnessError::Io(std::io::Error::other(format!(
                "create bucket {bucket}: HTTP {status}"
            ))))
        }
    }

    /// Kills the server; requests fail until [`Self::restart`].
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Freezes the server (`SIGSTOP` to its process group): connections are accepted by the
    /// kernel but never answered, as with a stalled store. [`Self::resume`] undoes it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a [`Self::pause`]d server run again.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            signal_group(child, signal);
        }
    }

    /// Starts the server again on the same port (with empty storage).
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        let started = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() > START_TIMEOUT => return Err(e),
                Err(_) => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, "TERM");
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One bounded HTTP/1.0 request; returns the status code.
fn http(addr: SocketAddr, method: &str, path: &str) -> Result<u16, HarnessError> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| HarnessError::Io(std::io::Error::other("malformed HTTP response")))
}

/// A TCP proxy on loopback that a test can cut, for partial network partitions: a broker
/// connects to PostgreSQL or the object store through it while other brokers connect
/// directly.
///
/// [`TcpProxy::cut`] closes every connection through it and, until [`TcpProxy::restore`],
/// accepts new connections but never forwards them (as a partition whose packets are
/// dropped looks to a client on loopback: connected, then silence), so clients must rely on
/// their own timeouts. Restoring closes the held connections and forwards again. Dropping
/// the proxy stops it and closes everything.
#[derive(Debug)]
pub struct TcpProxy {
    port: u16,
    shared: std::sync::Arc<ProxyShared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct ProxyShared {
    upstream: SocketAddr,
    stop: std::sync::atomic::AtomicBool,
    /// Whether the path is cut, and every socket to close on a change (both ends of live
    /// connections, clients held while cut).
    state: std::sync::Mutex<(bool, Vec<TcpStream>)>,
}

impl TcpProxy {
    /// Starts forwarding a free port on 127.0.0.1 to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<TcpProxy> {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = std::sync::Arc::new(ProxyShared {
            upstream,
            stop: std::sync::atomic::AtomicBool::new(false),
            state: std::sync::Mutex::new((false, Vec::new())),
        });
        let s = std::sync::Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    Err(_) => continue,
                };
                if client.set_nonblocking(false).is_err() {
                    continue;
                }
                if s.state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0
                {
                    // Cut: hold the connection without answering.
                    s.state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .1
                        .push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&s.upstream, Duration::from_secs(2))
                else {
                    continue;
                };
                let mut state = s
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if state.0 {
                    // Cut while connecting.
                    let _ = server.shutdown(std::net::Shutdown::Both);
                    state.1.push(client);
                    continue;
                }
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                state.1.push(c2);
                state.1.push(s2);
                drop(state);
                pipe(client, server);
            }
        });
        Ok(TcpProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Cuts the path: closes every connection and holds new ones unanswered.
    pub fn cut(&self) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.0 = true;
        close_all(&mut state.1);
    }

    /// Restores the path: closes the connections held while cut and forwards new ones.
    pub fn restore(&self) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.0 = false;
        close_all(&mut state.1);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        close_all(
            &mut self
                .shared
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .1,
        );
    }
}

fn close_all(sockets: &mut Vec<TcpStream>) {
    for socket in sockets.drain(..) {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Copies bytes both ways between `a` and `b` until either side closes (two threads).
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
        });
    };
    one_way(a, b2);
    one_way(b, a2);
}
