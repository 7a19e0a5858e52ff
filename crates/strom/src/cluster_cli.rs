//! `strom cluster status`: what PostgreSQL says about a cluster — schema version, live
//! brokers and their listeners, leases (background jobs, and which broker coordinates which
//! shard of consumer groups, with expiries), and the objects not committed (yet),
//! whose oldest age is the lag between a flush's upload and its commit (or an orphan waiting
//! for the collector). It reads the database directly, so it works with every broker down; each
//! live broker's own counters (its writer's flushes, PostgreSQL transactions, objects, bytes and
//! PUT retries; coordinator takeovers, failovers and the rebalances they caused) are read from
//! the `/metrics` of the admin endpoint it advertises (plain HTTP only), bounded by a timeout.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;

use crate::group_cli::{GroupFormat as Format, write_table};

/// `strom cluster ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Show brokers, leases, background jobs and uncommitted objects.
    Status {
        /// PostgreSQL URL of the cluster.
        #[arg(long, env = "STROM_CLUSTER_POSTGRES", value_name = "URL")]
        cluster_postgres: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub(crate) async fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Status {
        cluster_postgres,
        format,
    } = command;
    let status = strom_cluster::backend::status_at(&cluster_postgres)
        .await
        .context("reading the cluster status")?;
    use strom_cluster::coordinator::{CoordinatorKind, holder_node};
    let mut counters: BTreeMap<i32, Option<BTreeMap<String, u64>>> = BTreeMap::new();
    for b in &status.brokers {
        let scraped = match b.addresses.get("http") {
            Some(url) => broker_counters(url).await,
            None => None,
        };
        counters.insert(b.broker_id.0, scraped);
    }
    let (coordinators, job_leases): (Vec<_>, Vec<_>) = status
        .leases
        .iter()
        .partition(|l| CoordinatorKind::parse(&l.name).is_some());
    let (coordinators, txn_coordinators): (Vec<_>, Vec<_>) = coordinators
        .into_iter()
        .partition(|l| CoordinatorKind::Group.shard_of(&l.name).is_some());
    let shard_of = |name: &str| CoordinatorKind::parse(name).map(|(_, shard)| shard);
    let left = |secs: f64| {
        if secs > 0.0 {
            format!("{secs:.1}s")
        } else {
            "expired".to_owned()
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Json => {
            let brokers: Vec<serde_json::Value> = status
                .brokers
                .iter()
                .map(|b| {
                    serde_json::json!({
                        "node_id": b.broker_id.0,
                        "addresses": b.addresses,
                        "lease_expires_in_secs": b.expires_in_secs,
                        "counters": counters.get(&b.broker_id.0).cloned().flatten(),
                    })
                })
                .collect();
            let shards = |leases: &[&strom_cluster::lease::LeaseState]| -> Vec<serde_json::Value> {
                leases
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "shard": shard_of(&l.name).map(|s| s.0),
                            "node_id": holder_node(&l.holder),
                            "holder": l.holder,
                            "epoch": l.epoch,
                            "expires_in_secs": l.expires_in_secs,
                        })
                    })
                    .collect()
            };
            let groups = shards(&coordinators);
            let txns = shards(&txn_coordinators);
            let leases: Vec<serde_json::Value> = job_leases
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "name": l.name,
                        "holder": l.holder,
                        "epoch": l.epoch,
                        "expires_in_secs": l.expires_in_secs,
                    })
                })
                .collect();
            let jobs: Vec<serde_json::Value> = status
                .jobs
                .iter()
                .map(|j| {
                    serde_json::json!({
                        "name": j.name,
                        "holder": j.holder,
                        "epoch": j.epoch,
                        "last_run_secs_ago": j.finished_secs_ago,
                        "took_secs": j.took_secs,
                        "ok": j.ok,
                        "error": j.error,
                        "stats": j.stats,
                        "runs": j.runs,
                    })
                })
                .collect();
            let last_commits: serde_json::Map<String, serde_json::Value> = status
                .last_commit_secs
                .iter()
                .map(|(writer, secs)| (writer.clone(), serde_json::json!(secs)))
                .collect();
            let doc = serde_json::json!({
                "schema_version": status.schema_version,
                "brokers": brokers,
                "leases": leases,
                "jobs": jobs,
                "group_coordinators": groups,
                "txn_coordinators": txns,
                "committed_objects": status.committed_objects,
                "uncommitted_objects": status.uncommitted_objects,
                "retired_objects": status.retired_objects,
                "oldest_uncommitted_secs": status.oldest_uncommitted_secs,
                "last_commit_secs_ago": last_commits,
            });
            writeln!(out, "{doc}")?;
        }
        Format::Table => {
            writeln!(out, "schema version: {}", status.schema_version)?;
            writeln!(out, "\nbrokers:")?;
            let rows: Vec<Vec<String>> = status
                .brokers
                .iter()
                .map(|b| {
                    let listeners: Vec<String> = b
                        .addresses
                        .iter()
                        .map(|(name, addr)| format!("{name}={addr}"))
                        .collect();
                    vec![
                        b.broker_id.0.to_string(),
                        listeners.join(" "),
                        format!("{:.1}s", b.expires_in_secs),
                    ]
                })
                .collect();
            write_table(&mut out, &["NODE", "LISTENERS", "LEASE LEFT"], &rows)?;
            writeln!(out, "\nleases (background jobs):")?;
            let rows: Vec<Vec<String>> = job_leases
                .iter()
                .map(|l| {
                    vec![
                        l.name.clone(),
                        l.holder.clone(),
                        l.epoch.to_string(),
                        left(l.expires_in_secs),
                    ]
                })
                .collect();
            write_table(&mut out, &["LEASE", "HOLDER", "EPOCH", "LEFT"], &rows)?;
            writeln!(out, "\nbackground jobs (last run):")?;
            let rows: Vec<Vec<String>> = status
                .jobs
                .iter()
                .map(|j| {
                    vec![
                        j.name.clone(),
                        j.holder.clone(),
                        j.epoch.to_string(),
                        format!("{:.1}s ago", j.finished_secs_ago),
                        format!("{:.2}s", j.took_secs),
                        match &j.error {
                            None => format!("ok {}", j.stats),
                            Some(e) => format!("failed: {e}"),
                        },
                    ]
                })
                .collect();
            write_table(
                &mut out,
                &["JOB", "HOLDER", "EPOCH", "LAST RUN", "TOOK", "OUTCOME"],
                &rows,
            )?;
            writeln!(out, "\nlast committed flush per writer:")?;
            let rows: Vec<Vec<String>> = status
                .last_commit_secs
                .iter()
                .map(|(writer, secs)| vec![writer.clone(), format!("{secs:.1}s ago")])
                .collect();
            write_table(&mut out, &["WRITER", "LAST COMMIT"], &rows)?;
            writeln!(
                out,
                "\nbroker counters since start (from each broker's /metrics):"
            )?;
            let rows: Vec<Vec<String>> = status
                .brokers
                .iter()
                .map(|b| {
                    let mut row = vec![b.broker_id.0.to_string()];
                    match counters.get(&b.broker_id.0).and_then(Option::as_ref) {
                        Some(c) => row.extend(COUNTERS.iter().map(|(key, _)| {
                            c.get(*key).map_or_else(|| "-".to_owned(), u64::to_string)
                        })),
                        None => row.extend(COUNTERS.iter().map(|_| "?".to_owned())),
                    }
                    row
                })
                .collect();
            let mut header = vec!["NODE"];
            header.extend(COUNTERS.iter().map(|(_, h)| *h));
            write_table(&mut out, &header, &rows)?;
            let shard_rows = |leases: &[&strom_cluster::lease::LeaseState]| -> Vec<Vec<String>> {
                leases
                    .iter()
                    .map(|l| {
                        vec![
                            shard_of(&l.name).map_or_else(String::new, |s| s.0.to_string()),
                            holder_node(&l.holder)
                                .map_or_else(|| l.holder.clone(), |n| n.to_string()),
                            l.epoch.to_string(),
                            left(l.expires_in_secs),
                        ]
                    })
                    .collect()
            };
            writeln!(out, "\ngroup coordinators (consumer-group shards):")?;
            let rows = shard_rows(&coordinators);
            write_table(&mut out, &["SHARD", "NODE", "EPOCH", "LEFT"], &rows)?;
            writeln!(out, "\ntransaction coordinators (transactional-id shards):")?;
            let rows = shard_rows(&txn_coordinators);
            write_table(&mut out, &["SHARD", "NODE", "EPOCH", "LEFT"], &rows)?;
            writeln!(
                out,
                "\nobjects: {} committed, {} retired (deleted after the delay), {} not committed{}",
                status.committed_objects,
                status.retired_objects,
                status.uncommitted_objects,
                status
                    .oldest_uncommitted_secs
                    .map(|s| format!(" (oldest {s:.1}s: flush-to-commit lag or an orphan)"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

/// The counters `strom cluster status` shows per broker: key in its JSON (the metric name
/// without `strom_` and `_total`) and table header.
const COUNTERS: [(&str, &str); 9] = [
    ("cluster_writer_commits", "COMMITS"),
    ("cluster_writer_transactions", "PG TXNS"),
    ("cluster_writer_objects", "OBJECTS"),
    ("cluster_writer_bytes", "BYTES"),
    ("cluster_writer_put_retries", "PUT RETRIES"),
    ("cluster_writer_failed_flushes", "FAILED FLUSHES"),
    ("group_coordinator_takeovers", "TAKEOVERS"),
    ("group_coordinator_failovers", "FAILOVERS"),
    (
        "group_coordinator_takeover_rebalances",
        "TAKEOVER REBALANCES",
    ),
];

/// How long reading one broker's `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// The [`COUNTERS`] of the broker whose admin endpoint is `url` (`http://host:port`); `None`
/// when it cannot be read (TLS, unreachable, too slow).
async fn broker_counters(url: &str) -> Option<BTreeMap<String, u64>> {
    let addr = url.strip_prefix("http://")?;
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, get_metrics(addr))
        .await
        .ok()?
        .ok()?;
    Some(parse_counters(&text))
}

/// `GET /metrics` over plain HTTP/1.1 (`Connection: close`): the response, headers included.
async fn get_metrics(addr: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The [`COUNTERS`] found in an OpenMetrics text (`strom_<key>_total <value>` lines).
fn parse_counters(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        let Some(key) = name
            .strip_prefix("strom_")
            .and_then(|n| n.strip_suffix("_total"))
        else {
            continue;
        };
        if let (Some((key, _)), Ok(v)) = (
            COUNTERS.iter().find(|(k, _)| *k == key),
            value.trim().parse::<u64>(),
        ) {
            out.insert((*key).to_owned(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_openmetrics_text() {
        let text = "# HELP strom_cluster_writer_commits Flushes\n\
                    # TYPE strom_cluster_writer_commits counter\n\
                    strom_cluster_writer_commits_total 12\n\
                    strom_group_coordinator_failovers_total 2\n\
                    strom_group_coordinator_shard_epoch{shard=\"3\"} 7\n\
                    strom_other_total 5\n";
        let c = parse_counters(text);
        assert_eq!(c.get("cluster_writer_commits"), Some(&12));
        assert_eq!(c.get("group_coordinator_failovers"), Some(&2));
        assert_eq!(c.len(), 2, "{c:?}");
    }
}
