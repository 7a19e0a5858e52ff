//! The `strom` binary.
//!
//! With `--cluster-postgres URL --cluster-object-store s3://BUCKET/PREFIX` it is one broker of
//! a cluster of stateless brokers over PostgreSQL and object storage (`strom-cluster`).
//!
//! `strom serve` runs a single-node broker with embedded defaults: data in `./strom-data`, the
//! Kafka protocol on `127.0.0.1:9092`, the Kinesis Data Streams API on `127.0.0.1:4567`. Settings come from, in increasing precedence, built-in
//! defaults, a TOML file (`--config FILE`), `STROM_*` environment variables and flags.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
mod acl_cli;
mod cli;
mod client_config;
mod cluster_cli;
mod cluster_metrics;
mod config;
mod group_cli;
mod jwks;
mod listeners;
mod quota_cli;
mod txn_cli;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use strom_broker::Broker;
use strom_kafka::KafkaServer;
use strom_kinesis::KinesisServer;

use crate::config::{ServeArgs, Settings};

/// See `strom-alloc`: huge reservations (from hostile length prefixes the Kafka codec trusts)
/// are mapped lazily instead of aborting the process.
#[global_allocator]
static ALLOC: strom_alloc::GuardedAlloc = strom_alloc::GuardedAlloc;

/// How often `strom serve` returns freed allocator memory to the kernel.
const MEMORY_TRIM_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Strom: a streaming broker that speaks the Kafka protocol over one append-only log.
#[derive(Debug, Parser)]
#[command(name = "strom", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker until SIGTERM or Ctrl-C.
    Serve(Box<ServeArgs>),
    /// Create, list, describe or delete topics on a running broker.
    Topic {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(subcommand)]
        command: cli::TopicCommand,
    },
    /// Produce lines of standard input as records.
    Produce {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(flatten)]
        args: cli::ProduceArgs,
    },
    /// Print records of a partition.
    Consume {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(flatten)]
        args: cli::ConsumeArgs,
    },
    /// List, describe, delete consumer groups and reset their offsets.
    Group {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(subcommand)]
        command: group_cli::GroupCommand,
    },
    /// Cluster mode: brokers, leases, background jobs and uncommitted objects.
    Cluster {
        #[command(subcommand)]
        command: cluster_cli::ClusterCommand,
    },
    /// List and describe transactions, and the producers each partition remembers.
    Txn {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(subcommand)]
        command: txn_cli::TxnCommand,
    },
    /// Add, remove and list ACLs (the broker needs `[security] authorizer = true`).
    Acl {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(subcommand)]
        command: acl_cli::AclCommand,
    },
    /// Manage users' SCRAM credentials.
    User {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(subcommand)]
        command: acl_cli::UserCommand,
    },
    /// Set, remove and describe Kafka client quotas (byte rates and request percentage per
    /// user and/or client id).
    Quota {
        #[command(flatten)]
        connect: cli::Connect,
        #[command(subcommand)]
        command: quota_cli::QuotaCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Ignore a failing stderr (a full disk under a redirect): the exit code still tells.
            let _ = writeln!(std::io::stderr(), "strom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `strom topic list | head` closes our stdout early; that is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::load(&args)?;
            init_tracing(settings.log.as_deref());
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("strom")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(settings))
        }
        Command::Topic { connect, command } => {
            client_runtime()?.block_on(cli::topic(&connect, command))
        }
        Command::Produce { connect, args } => {
            client_runtime()?.block_on(cli::produce(&connect, args))
        }
        Command::Consume { connect, args } => {
            client_runtime()?.block_on(cli::consume(&connect, args))
        }
        Command::Group { connect, command } => {
            client_runtime()?.block_on(group_cli::group(&connect, command))
        }
        Command::Cluster { command } => client_runtime()?.block_on(cluster_cli::cluster(command)),
        Command::Txn { connect, command } => {
            client_runtime()?.block_on(txn_cli::txn(&connect, command))
        }
        Command::Acl { connect, command } => {
            client_runtime()?.block_on(acl_cli::acl(&connect, command))
        }
        Command::User { connect, command } => {
            client_runtime()?.block_on(acl_cli::user(&connect, command))
        }
        Command::Quota { connect, command } => {
            client_runtime()?.block_on(quota_cli::quota(&connect, command))
        }
    }
}

fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init_tracing(filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr redirected to a full disk) is dropped;
        // reporting that failure would print to stderr again, and printing panics.
        .log_internal_errors(false)
        .init();
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Freed fetch and request buffers stay in the heaps for reuse until the periodic trim
    // below returns them (see strom-alloc): returning them at every free made multi-partition
    // fetches fault in and zero fresh pages for every response.
    if !strom_alloc::keep_freed_memory_until_trim() {
        tracing::debug!("allocator keeps its default trim and mapping thresholds");
    }
    let mut broker_config = settings.broker_config();
    let data_dir = broker_config.data_dir.clone();
    let (broker, cluster) = match settings.cluster.clone() {
        None => {
            let broker = Broker::start(broker_config)
                .await
                .with_context(|| format!("opening the data directory {}", data_dir.display()))?;
            (broker, None)
        }
        Some(config) => {
            let store = config.object_store.to_string();
            let node = strom_cluster::ClusterNode::start(config, settings.node_id)
                .await
                .with_context(|| format!("joining the cluster (object store {store})"))?;
            broker_config.node_id = node.node_id();
            let broker = Broker::start_with_backend(broker_config, node.backend())
                .await
                .context("opening the broker on the cluster backend")?;
            node.start_collector()
                .context("starting the orphan collector")?;
            (broker, Some(node))
        }
    };
    let kafka_config = settings.kafka_config();
    if let (Some((url, refresh)), Some(oauth)) = (
        settings.jwks_url.clone(),
        kafka_config
            .sasl
            .as_ref()
            .and_then(|s| s.oauthbearer.clone()),
    ) {
        jwks::fetch_into(&url, &oauth)
            .await
            .with_context(|| format!("fetching the OAUTHBEARER keys from {url}"))?;
        tokio::spawn(jwks::refresh(url, refresh, oauth));
    }
    let listen = if kafka_config.listeners.is_empty() {
        kafka_config.listen.to_string()
    } else {
        kafka_config
            .listeners
            .iter()
            .map(|l| format!("{}://{}", l.name, l.listen))
            .collect::<Vec<_>>()
            .join(",")
    };
    let client_auth: std::collections::HashMap<String, strom_tls::ClientAuth> = kafka_config
        .listeners
        .iter()
        .filter_map(|l| Some((l.name.clone(), l.tls.as_ref()?.files().client_auth)))
        .collect();
    let server = KafkaServer::bind(kafka_config, Arc::clone(&broker))
        .await
        .with_context(|| format!("binding the Kafka listeners on {listen}"))?;
    let bound = server.listeners().context("reading the bound addresses")?;
    for (info, addr) in &bound {
        if let Some(warning) = listeners::exposure_warning(
            &info.name,
            info.security_protocol,
            client_auth.get(&info.name).copied(),
            *addr,
        ) {
            tracing::warn!("{warning}");
        }
    }
    let kafka_line = bound
        .iter()
        .map(|(info, addr)| {
            // The address first: scripts and tests take the first word after `kafka:`.
            format!(
                "{addr} ({} {}, advertised as {}:{})",
                info.name, info.security_protocol, info.advertised_host, info.advertised_port
            )
        })
        .collect::<Vec<_>>()
        .join("\n                  ");
    let ctx = Arc::clone(server.context());
    for tls in &settings.tls {
        tls.spawn_watcher(settings.tls_reload_check_interval);
    }
    if !settings.tls.is_empty() {
        spawn_sighup_reload(settings.tls.clone());
    }
    let mut kinesis_config = settings.kinesis_config();
    if let Some(node) = &cluster
        && kinesis_config.iterator_secret_file.is_none()
    {
        let secret = node
            .shared_secret(
                "kinesis-iterator",
                strom_kinesis::iterator::IteratorKey::random_secret(),
            )
            .await
            .context("reading the cluster's shard-iterator secret")?;
        kinesis_config.iterator_secret = Some(secret);
    }
    if let Some(node) = &cluster
        && kinesis_config.aws_limits
    {
        // A shard's limits hold for the cluster, not per broker.
        let buckets = node
            .kinesis_buckets()
            .context("connecting the Kinesis limit buckets")?;
        kinesis_config.shared_limits = Some(std::sync::Arc::new(
            strom_cluster::kinesis_limits::ClusterShardLimits(buckets),
        ));
    }
    let kinesis_listen = kinesis_config.listen;
    // The admin endpoint does not authenticate; the Kinesis one does unless `auth = "none"`.
    let kinesis_open = kinesis_config.auth == strom_kinesis::sigv4::KinesisAuth::None;
    for (what, addr, open) in [
        ("Kinesis endpoint", kinesis_listen, kinesis_open),
        ("admin HTTP endpoint", settings.http_listen, true),
    ] {
        if open && !addr.ip().is_loopback() {
            tracing::warn!(
                "{what} on {addr} is reachable beyond loopback and does not authenticate clients"
            );
        }
    }
    let kinesis_scheme = if kinesis_config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Like the admin endpoint, a taken Kinesis port must not take the Kafka service down
    // (several brokers on one machine all default to 4567): say so loudly and go on.
    let (kinesis, kinesis_line) =
        match KinesisServer::bind(kinesis_config, Arc::clone(&broker)).await {
            Ok(server) => {
                let line = match server.local_addr() {
                    Ok(addr) => format!("{kinesis_scheme}://{addr}"),
                    Err(_) => format!("{kinesis_scheme}://{kinesis_listen}"),
                };
                (Some(server), line)
            }
            Err(e) => {
                tracing::warn!(listen = %kinesis_listen, error = %e, "Kinesis listener disabled");
                (None, format!("not serving ({kinesis_listen}: {e})"))
            }
        };

    let mut registry = prometheus_client::registry::Registry::default();
    ctx.metrics.register(&mut registry);
    ctx.quotas.register(&mut registry);
    registry.register_collector(Box::new(strom_http::PartitionCollector::new(&broker)));
    registry.register_collector(Box::new(strom_http::GroupCollector::new(&broker)));
    registry.register_collector(Box::new(strom_http::CleanerCollector::new(&broker)));
    if let Some(node) = &cluster {
        registry.register_collector(Box::new(cluster_metrics::ClusterCollector::new(
            node.observer(),
        )));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // The admin endpoint must not take the Kafka service down: if its port is taken, say so
    // loudly and serve Kafka without it.
    // The admin endpoint's base URL as other hosts reach it (advertised in cluster mode, so
    // `strom cluster status` can read every broker's counters).
    let mut http_url = None;
    let (http, http_line) = match tokio::net::TcpListener::bind(settings.http_listen).await {
        Ok(listener) => {
            let scheme = if settings.http_tls.is_some() {
                "https"
            } else {
                "http"
            };
            if let Ok(addr) = listener.local_addr() {
                http_url = Some(if addr.ip().is_unspecified() {
                    format!("{scheme}://{}:{}", ctx.advertised_host, addr.port())
                } else {
                    format!("{scheme}://{addr}")
                });
            }
            let line = match listener.local_addr() {
                Ok(addr) => format!("{scheme}://{addr}/metrics"),
                Err(_) => format!("{scheme}://{}/metrics", settings.http_listen),
            };
            let registry = Arc::new(registry);
            let task = match settings.http_tls.clone() {
                None => tokio::spawn(strom_http::serve(
                    listener,
                    registry,
                    stopped(stop_rx.clone()),
                )),
                Some(tls) => tokio::spawn(strom_http::serve_tls(
                    listener,
                    tls,
                    registry,
                    stopped(stop_rx.clone()),
                )),
            };
            (Some(task), line)
        }
        Err(e) => {
            tracing::warn!(listen = %settings.http_listen, error = %e, "admin HTTP listener disabled");
            (None, format!("not serving ({}: {e})", settings.http_listen))
        }
    };
    let cluster_line = match &cluster {
        Some(node) => {
            let mut addresses = std::collections::BTreeMap::new();
            addresses.insert(
                strom_cluster::membership::KAFKA_ADDRESS.to_owned(),
                format!("{}:{}", ctx.advertised_host, ctx.advertised_port),
            );
            // Every listener, so other brokers' Metadata answers each client with this
            // broker's address on the client's own listener.
            for (info, _) in &bound {
                addresses.insert(
                    strom_cluster::membership::kafka_listener_key(&info.name),
                    format!("{}:{}", info.advertised_host, info.advertised_port),
                );
            }
            if let Some(k) = kinesis.as_ref().and_then(|k| k.local_addr().ok()) {
                addresses.insert("kinesis".to_owned(), k.to_string());
            }
            if let Some(url) = &http_url {
                addresses.insert("http".to_owned(), url.clone());
            }
            node.advertise(&addresses)
                .await
                .context("advertising this broker's listeners")?;
            format!("node {} of the cluster", node.node_id())
        }
        None => "no (single node)".to_owned(),
    };
    say(&format!(
        "strom {} serving\n  cluster:        {cluster_line}\n  data directory: {}\n  kafka:          {kafka_line}\n  kinesis:        {kinesis_line}\n  http:           {http_line}\n  topics:         {}\n",
        env!("CARGO_PKG_VERSION"),
        absolute(&data_dir).display(),
        broker.topics().len()
    ));

    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    // Give memory freed after a burst back to the kernel now and then (see strom-alloc).
    let trim_stop = stopped(stop_rx.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(MEMORY_TRIM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(trim_stop);
        loop {
            tokio::select! {
                () = &mut trim_stop => return,
                _ = tick.tick() => {
                    let _ = tokio::task::spawn_blocking(strom_alloc::release_free_memory).await;
                }
            }
        }
    });
    let kinesis_task = kinesis.map(|k| tokio::spawn(k.serve(stopped(stop_rx.clone()))));
    server.serve(stopped(stop_rx)).await;
    if let Some(task) = kinesis_task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "kinesis task failed");
    }
    if let Some(task) = http {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "http listener failed"),
            Err(e) => tracing::error!(error = %e, "http task failed"),
        }
    }

    tracing::info!("shutting down: flushing and closing partitions");
    broker
        .run_blocking(|b| b.shutdown_blocking())
        .await
        .context("closing the partitions")?;
    if let Some(node) = cluster {
        node.shutdown(std::time::Duration::from_secs(10)).await;
    }
    say("strom stopped cleanly\n");
    Ok(())
}

/// Prints a status line of `strom serve`. A failing stdout (a redirect to a full disk) must not
/// take the broker down, as `println!` would by panicking: the line is dropped.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Re-reads every TLS configuration's files on SIGHUP (a failed reload keeps the previous
/// certificate and logs why).
fn spawn_sighup_reload(servers: Vec<Arc<strom_tls::TlsServer>>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; TLS files are still reloaded when they change");
                return;
            }
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading TLS certificates");
            for server in &servers {
                if let Err(e) = server.reload() {
                    tracing::warn!(error = %e, "TLS reload failed; the previous certificate stays in force");
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop(servers);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
