//! The cluster's background jobs: orphan collection, retention, reclaiming unreferenced
//! objects, merging small objects and compaction, each run by exactly one broker at a time
//! under its lease ([`jobs`]).
//!
//! | job | lease | does |
//! |---|---|---|
//! | `orphans` | `job/orphans` | deletes objects of flushes that never committed ([`crate::collector`]) |
//! | `retention` | `job/retention` | `retention.ms` / `retention.bytes` move the log start; index rows below any log start (also DeleteRecords') are dropped ([`retention`]) |
//! | `compaction` | `job/compaction` | `cleanup.policy=compact`: keeps the latest record per key, rewriting batches into new objects ([`compaction`]) |
//! | `merge` | `job/merge` | copies the live batches of small objects into one bigger object ([`merge`]) |
//! | `reclaim` | `job/reclaim` | retires objects no index row names, deletes them after the delete delay ([`reclaim`]) |
//!
//! Every effect is fenced by the job's lease epoch, in the same statement or transaction, so
//! a holder that stalled past its lease changes nothing once another broker took over.

pub mod compaction;
pub mod jobs;
pub mod merge;
pub mod reclaim;
pub mod retention;
pub(crate) mod rewrite;

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use object_store::ObjectStore;
use tokio::task::JoinHandle;

use crate::db::Db;
pub use compaction::CompactionStats;
pub use jobs::{Job, JobRun, RunnerConfig, job_runs, lease_name, run_pass, spawn_job};
pub use merge::{MergeConfig, MergeStats};
pub use reclaim::ReclaimStats;
pub use retention::{RetentionPolicy, RetentionStats};

/// Settings of the background jobs.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// Object key prefix (objects are under `PREFIX/data/`).
    pub prefix: String,
    /// Lease holder name and lease time to live.
    pub runner: RunnerConfig,
    /// Time between two passes of each job.
    pub interval: Duration,
    /// Age after which a pending object is an orphan.
    pub orphan_grace: Duration,
    /// How long an unreferenced object stays readable before it is deleted.
    pub delete_delay: Duration,
    /// Merging small objects.
    pub merge: MergeConfig,
}

impl LifecycleConfig {
    /// The defaults for the broker `runner` names: passes every half lease, objects deleted a
    /// minute after their last row went (Kafka's `file.delete.delay.ms`).
    pub fn new(prefix: String, runner: RunnerConfig, orphan_grace: Duration) -> Self {
        LifecycleConfig {
            prefix,
            interval: runner.lease_ttl / 2,
            runner,
            orphan_grace,
            delete_delay: Duration::from_secs(60),
            merge: MergeConfig::default(),
        }
    }
}

/// Every job, with the passes they run.
pub fn jobs(db: Arc<Db>, store: Arc<dyn ObjectStore>, config: &LifecycleConfig) -> Vec<Job> {
    let interval = config.interval;
    let mut out = Vec::new();
    {
        let (db, store, prefix, grace) = (
            Arc::clone(&db),
            Arc::clone(&store),
            config.prefix.clone(),
            config.orphan_grace,
        );
        out.push(Job {
            name: "orphans",
            interval,
            pass: Arc::new(move |lease| {
                let (db, store, prefix) = (Arc::clone(&db), Arc::clone(&store), prefix.clone());
                async move {
                    let s = crate::collector::collect_orphans(&db, &store, &prefix, &lease, grace)
                        .await?;
                    Ok(serde_json::json!({
                        "pending_deleted": s.pending_deleted,
                        "unknown_deleted": s.unknown_deleted,
                    }))
                }
                .boxed()
            }),
        });
    }
    {
        let db = Arc::clone(&db);
        out.push(Job {
            name: "retention",
            interval,
            pass: Arc::new(move |lease| {
                let db = Arc::clone(&db);
                async move { Ok(retention::apply_retention(&db, &lease).await?.to_json()) }.boxed()
            }),
        });
    }
    {
        let (db, store, prefix) = (Arc::clone(&db), Arc::clone(&store), config.prefix.clone());
        out.push(Job {
            name: "compaction",
            interval,
            pass: Arc::new(move |lease| {
                let (db, store, prefix) = (Arc::clone(&db), Arc::clone(&store), prefix.clone());
                async move {
                    Ok(compaction::compact(&db, &store, &prefix, &lease)
                        .await?
                        .to_json())
                }
                .boxed()
            }),
        });
    }
    {
        let (db, store, prefix, merge) = (
            Arc::clone(&db),
            Arc::clone(&store),
            config.prefix.clone(),
            config.merge,
        );
        out.push(Job {
            name: "merge",
            interval,
            pass: Arc::new(move |lease| {
                let (db, store, prefix) = (Arc::clone(&db), Arc::clone(&store), prefix.clone());
                async move {
                    Ok(
                        merge::merge_small_objects(&db, &store, &prefix, &lease, merge)
                            .await?
                            .to_json(),
                    )
                }
                .boxed()
            }),
        });
    }
    {
        let (db, store, delay) = (Arc::clone(&db), Arc::clone(&store), config.delete_delay);
        out.push(Job {
            name: "reclaim",
            interval,
            pass: Arc::new(move |lease| {
                let (db, store) = (Arc::clone(&db), Arc::clone(&store));
                async move {
                    Ok(reclaim::reclaim(&db, &store, &lease, delay)
                        .await?
                        .to_json())
                }
                .boxed()
            }),
        });
    }
    out
}

/// Starts every job on this broker (each runs wherever its lease is held); the tasks run
/// until aborted or the runtime stops.
pub fn spawn(
    pg: crate::PgConfig,
    store: Arc<dyn ObjectStore>,
    config: &LifecycleConfig,
) -> Vec<JoinHandle<()>> {
    let db = Arc::new(Db::with_connections(pg, 2));
    jobs(Arc::clone(&db), store, config)
        .into_iter()
        .map(|job| spawn_job(Arc::clone(&db), config.runner.clone(), job))
        .collect()
}
