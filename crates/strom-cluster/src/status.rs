//! A cluster-wide view for `strom cluster status`: live brokers, leases (background jobs and
//! coordinators), the schema version, uncommitted objects (a flush between its upload and
//! its commit, or an orphan waiting for the collector; their age is the lag between flushes and
//! commits), each background job's last run, and per writer its last committed flush.

use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::lease::{self, LeaseState};
use crate::lifecycle::{JobRun, job_runs};
use crate::registry::{LiveBroker, live_brokers};

/// What `strom cluster status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStatus {
    /// Highest applied schema migration.
    pub schema_version: i32,
    /// Brokers with a live lease.
    pub brokers: Vec<LiveBroker>,
    /// Every named lease.
    pub leases: Vec<LeaseState>,
    /// Objects not committed (yet): in-flight flushes and orphans.
    pub uncommitted_objects: i64,
    /// Age in seconds of the oldest of them, by the database clock.
    pub oldest_uncommitted_secs: Option<f64>,
    /// Committed objects.
    pub committed_objects: i64,
    /// Objects retired (no index row left), waiting for the delete delay.
    pub retired_objects: i64,
    /// Each background job's last run.
    pub jobs: Vec<JobRun>,
    /// Per writer (broker), the age in seconds of its newest committed object, measured from
    /// the object's creation (just before its upload): the time since its last commit, plus
    /// that flush's upload-to-commit time.
    pub last_commit_secs: Vec<(String, f64)>,
}

/// Reads the status; a handful of small queries.
pub async fn cluster_status(db: &Db) -> Result<ClusterStatus> {
    let brokers = live_brokers(db).await?;
    let leases = lease::list(db).await?;
    let conn = db.conn().await?;
    let pg = || Error::pg(DbOp::Metadata);
    let version = conn
        .query_one(
            "SELECT coalesce(max(version), 0) FROM strom_schema_migrations",
            &[],
        )
        .await
        .map_err(pg())?;
    let objects = conn
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'pending'),
                    EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE state = 'pending'))::float8,
                    count(*) FILTER (WHERE state = 'committed'),
                    count(*) FILTER (WHERE state = 'retired')
             FROM strom_objects",
            &[],
        )
        .await
        .map_err(pg())?;
    let last_commit_secs = conn
        .query(
            "SELECT writer, EXTRACT(EPOCH FROM now() - max(created_at))::float8
             FROM strom_objects WHERE state = 'committed' GROUP BY writer ORDER BY writer",
            &[],
        )
        .await
        .map_err(pg())?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(pg())?;
    drop(conn);
    let jobs = job_runs(db).await?;
    Ok(ClusterStatus {
        schema_version: version.try_get(0).map_err(pg())?,
        brokers,
        leases,
        uncommitted_objects: objects.try_get(0).map_err(pg())?,
        oldest_uncommitted_secs: objects.try_get(1).map_err(pg())?,
        committed_objects: objects.try_get(2).map_err(pg())?,
        retired_objects: objects.try_get(3).map_err(pg())?,
        jobs,
        last_commit_secs,
    })
}
