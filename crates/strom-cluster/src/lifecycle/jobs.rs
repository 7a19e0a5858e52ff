//! The job runner: each background job runs on whichever broker holds its lease.
//!
//! Every broker starts a task per job ([`spawn_job`]). Each interval the task tries to take (or
//! extend) the lease `job/<name>` ([`lease_name`]); the broker that holds it runs one pass of
//! the job, renewing the lease while the pass lasts, and records the outcome in
//! `strom_job_runs` (holder, epoch, start and end time, error, the pass's statistics) for
//! `strom cluster status`. A holder that dies stops renewing; once its lease expires (by the
//! database clock) the next broker to try takes it with a higher epoch, and the dead holder's
//! fenced statements, should it wake up, change nothing ([`crate::lease::HELD`]). A pass whose
//! lease cannot be renewed is abandoned at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::lease::{self, Lease};

/// One pass of a job: given the lease it runs under, returns its statistics (shown by
/// `strom cluster status`).
pub type JobPass =
    Arc<dyn Fn(Lease) -> BoxFuture<'static, Result<serde_json::Value>> + Send + Sync>;

/// A background job.
#[derive(Clone)]
pub struct Job {
    /// Short name (`orphans`, `retention`, `reclaim`, `merge`, `compaction`); the lease is
    /// [`lease_name`] of it.
    pub name: &'static str,
    /// Time between passes.
    pub interval: Duration,
    /// What a pass does.
    pub pass: JobPass,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Who runs the jobs and for how long a lease is granted.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This broker's holder name in `strom_leases` (`broker-<id>`).
    pub holder: String,
    /// Lease time to live: another broker takes a job over about this long after its holder
    /// died.
    pub lease_ttl: Duration,
}

/// The lease name of job `name`.
pub fn lease_name(name: &str) -> String {
    format!("job/{name}")
}

/// Runs `job` every `job.interval` on whichever broker holds its lease (see the module docs),
/// until the task is aborted or the runtime stops.
pub fn spawn_job(db: Arc<Db>, config: RunnerConfig, job: Job) -> JoinHandle<()> {
    tokio::spawn(async move {
        let name = lease_name(job.name);
        loop {
            tokio::time::sleep(job.interval).await;
            let held = match lease::acquire(&db, &name, &config.holder, config.lease_ttl).await {
                Ok(held) => held,
                Err(error) => {
                    tracing::debug!(%error, job = job.name, "lease acquisition failed");
                    continue;
                }
            };
            let Some(lease) = held else { continue };
            let outcome = run_pass(&db, &job, &lease).await;
            match &outcome {
                Ok(stats) => tracing::debug!(job = job.name, %stats, "job pass done"),
                Err(error) => tracing::warn!(job = job.name, %error, "job pass failed"),
            }
        }
    })
}

/// Runs one pass of `job` under `lease` (renewing it meanwhile) and records the outcome.
/// Returns the pass's statistics or its error.
pub async fn run_pass(db: &Db, job: &Job, lease: &Lease) -> Result<serde_json::Value> {
    let started = Instant::now();
    let pass = (job.pass)(lease.clone());
    let keep = async {
        loop {
            tokio::time::sleep(lease.ttl / 3).await;
            if let Err(error) = lease::renew(db, lease).await {
                return error;
            }
        }
    };
    let outcome = tokio::select! {
        outcome = pass => outcome,
        lost = keep => Err(lost),
    };
    if let Err(error) = record_run(db, job.name, lease, started.elapsed(), &outcome).await {
        tracing::debug!(%error, job = job.name, "recording the job run failed");
    }
    outcome
}

/// Writes the outcome of a pass to `strom_job_runs`, fenced by the lease.
async fn record_run(
    db: &Db,
    name: &str,
    lease: &Lease,
    took: Duration,
    outcome: &Result<serde_json::Value>,
) -> Result<()> {
    let (ok, error, stats) = match outcome {
        Ok(stats) => (true, None, stats.clone()),
        Err(e) => (false, Some(e.to_string()), serde_json::json!({})),
    };
    let conn = db.conn().await?;
    conn.execute(
        &format!(
            "INSERT INTO strom_job_runs AS r (name, holder, epoch, started_at, ok, error, stats)
             SELECT $4, $2, $3, now() - make_interval(secs => $5), $6, $7, $8 WHERE {}
             ON CONFLICT (name) DO UPDATE SET
                 holder = EXCLUDED.holder, epoch = EXCLUDED.epoch,
                 started_at = EXCLUDED.started_at, finished_at = now(), ok = EXCLUDED.ok,
                 error = EXCLUDED.error, stats = EXCLUDED.stats, runs = r.runs + 1",
            lease::HELD
        ),
        &[
            &lease.name,
            &lease.holder,
            &lease.epoch,
            &name,
            &took.as_secs_f64(),
            &ok,
            &error,
            &stats,
        ],
    )
    .await
    .map_err(Error::pg(DbOp::Lifecycle))?;
    Ok(())
}

/// The last run of a job, as recorded in `strom_job_runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Job name.
    pub name: String,
    /// Who ran it last.
    pub holder: String,
    /// Lease epoch of that run.
    pub epoch: i64,
    /// Seconds since that run finished, by the database clock.
    pub finished_secs_ago: f64,
    /// How long it took, in seconds.
    pub took_secs: f64,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its error, when it failed.
    pub error: Option<String>,
    /// What it did (job-specific counters).
    pub stats: serde_json::Value,
    /// Passes recorded so far.
    pub runs: i64,
}

/// Every job's last run, by name.
pub async fn job_runs(db: &Db) -> Result<Vec<JobRun>> {
    let conn = db.conn().await?;
    let rows = conn
        .query(
            "SELECT name, holder, epoch, EXTRACT(EPOCH FROM now() - finished_at)::float8,
                    EXTRACT(EPOCH FROM finished_at - started_at)::float8, ok, error, stats, runs
             FROM strom_job_runs ORDER BY name",
            &[],
        )
        .await
        .map_err(Error::pg(DbOp::Lifecycle))?;
    rows.iter()
        .map(|r| {
            Ok(JobRun {
                name: r.try_get(0)?,
                holder: r.try_get(1)?,
                epoch: r.try_get(2)?,
                finished_secs_ago: r.try_get(3)?,
                took_secs: r.try_get(4)?,
                ok: r.try_get(5)?,
                error: r.try_get(6)?,
                stats: r.try_get(7)?,
                runs: r.try_get(8)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(Error::pg(DbOp::Lifecycle))
}
