//! `strom cluster status`: what PostgreSQL says about a cluster — schema version, live
//! brokers and their listeners, leases (background jobs, and which broker coordinates which
//! shard of consumer groups, with expiries), and the objects not committed (yet),
//! whose oldest age is the lag between a flush's upload and its commit (or an orphan waiting
//! for the collector). It reads the database directly, so it works with every broker down.

use std::io::Write;

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
