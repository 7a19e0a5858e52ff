//! `strom serve` in cluster mode as a process, shared by the cluster process tests
//! (`cluster*.rs`): every listener on an ephemeral port, over the harness's PostgreSQL and
//! moto; killed (SIGKILL) when dropped. `Broker::listener_addr` finds a named listener's
//! address (with `--listeners` in `extra`), `Broker::metrics` scrapes `/metrics`.
#![allow(
    dead_code,
    reason = "each test crate uses a different part of the harness"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use strom_cluster::testkit::{MotoServer, PostgresServer};

/// How to start one broker of a test cluster.
pub(crate) struct ClusterServe<'a> {
    /// The broker's index in the test (its data directory is `data/broker-{n}`).
    pub(crate) n: usize,
    pub(crate) pg: &'a PostgresServer,
    pub(crate) s3: &'a MotoServer,
    pub(crate) data: &'a Path,
    /// `s3://{bucket}/{prefix}`.
    pub(crate) bucket: &'a str,
    pub(crate) prefix: &'a str,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) flush_delay_ms: u64,
    /// `--log` filter.
    pub(crate) log: String,
    /// More `serve` flags.
    pub(crate) extra: Vec<String>,
}

/// A running cluster broker and the addresses it printed.
pub(crate) struct Broker {
    child: Child,
    /// The Kafka listener, `host:port`.
    pub(crate) kafka: String,
    /// The Kinesis endpoint, `host:port`.
    pub(crate) kinesis: String,
    /// The admin listener (`/metrics`), `host:port`.
    pub(crate) http: String,
    /// The node id the cluster gave it.
    pub(crate) node_id: i32,
    /// What it printed at start (its listeners, one `ADDR (NAME PROTOCOL, …)` line each).
    printed: String,
}

impl Broker {
    /// Starts the broker and waits until it printed its addresses and node id.
    pub(crate) fn start(serve: &ClusterServe<'_>) -> Broker {
        Self::start_with_env(serve, &[])
    }

    /// As [`Broker::start`], with the broker's environment changed after the harness's own
    /// settings (the static test keys `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`): `Some`
    /// sets a variable, `None` removes it.
    pub(crate) fn start_with_env(serve: &ClusterServe<'_>, env: &[(&str, Option<&str>)]) -> Broker {
        Self::spawn(serve, env, &serve.pg.url(), &serve.s3.endpoint())
    }

    /// As [`Broker::start`], reaching PostgreSQL at `postgres` (a URL) and the object store at
    /// `s3_endpoint` instead of the servers' own addresses (through a proxy).
    pub(crate) fn start_through(
        serve: &ClusterServe<'_>,
        postgres: &str,
        s3_endpoint: &str,
    ) -> Broker {
        Self::spawn(serve, &[], postgres, s3_endpoint)
    }

    fn spawn(
        serve: &ClusterServe<'_>,
        env: &[(&str, Option<&str>)],
        postgres: &str,
        s3_endpoint: &str,
    ) -> Broker {
        let n = serve.n;
        let mut command = Command::new(env!("CARGO_BIN_EXE_strom"));
        command
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("STROM_CONFIG");
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .args(["serve", "--kafka-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--kinesis-listen", "127.0.0.1:0"])
            .args(["--log", &serve.log])
            .arg("--data-dir")
            .arg(serve.data.join(format!("broker-{n}")))
            .args(["--cluster-postgres", postgres])
            .args([
                "--cluster-object-store",
                &format!("s3://{}/{}", serve.bucket, serve.prefix),
            ])
            .args(["--cluster-s3-endpoint", s3_endpoint])
            .args([
                "--cluster-s3-region",
                "us-east-1",
                "--cluster-s3-allow-http",
            ])
            .args(["--cluster-lease-ttl-ms", &serve.lease_ttl_ms.to_string()])
            .args([
                "--cluster-flush-delay-ms",
                &serve.flush_delay_ms.to_string(),
            ])
            .args(&serve.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (mut kafka, mut kinesis, mut http, mut node_id) = (None, None, None, None);
        let mut printed = String::new();
        while kafka.is_none() || kinesis.is_none() || http.is_none() || node_id.is_none() {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "broker {n} exited early: {printed}"
            );
            printed.push_str(&line);
            let line = line.trim();
            // `kafka: ADDR (NAME PROTOCOL, advertised as …)`: the first socket address.
            if let Some(rest) = line.strip_prefix("kafka:") {
                kafka = rest
                    .split_whitespace()
                    .find(|t| t.parse::<std::net::SocketAddr>().is_ok())
                    .map(str::to_owned);
            }
            if let Some(rest) = line.strip_prefix("kinesis:") {
                kinesis = Some(rest.trim().trim_start_matches("http://").to_owned());
            }
            if let Some(rest) = line.strip_prefix("http:") {
                let addr = rest.trim().trim_start_matches("http://");
                http = Some(addr.trim_end_matches("/metrics").to_owned());
            }
            if let Some(rest) = line.strip_prefix("cluster:") {
                let id = rest.trim().strip_prefix("node ").unwrap();
                node_id = Some(id.split_whitespace().next().unwrap().parse().unwrap());
            }
        }
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in stdout.lines() {});
        Broker {
            child,
            kafka: kafka.unwrap(),
            kinesis: kinesis.unwrap(),
            http: http.unwrap(),
            node_id: node_id.unwrap(),
            printed,
        }
    }

    /// The bound address of the Kafka listener `name` (as `--listeners` named it).
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

    /// `GET /metrics` of the broker's admin listener.
    pub(crate) fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.http).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: strom\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    }

    /// Kills the broker (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Assigns `consumer` partitions `0..partitions` of `topic`, each from its beginning (no
/// group offsets: the readers of the cluster tests see everything).
pub(crate) fn assign_from_beginning(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partitions: i32,
) {
    use rdkafka::consumer::Consumer as _;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("a partition of the assignment");
    }
    consumer.assign(&assignment).expect("assign");
}
