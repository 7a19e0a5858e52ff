//! A cluster-wide view for `strom cluster status`: live brokers, leases (background jobs and
//! coordinators), the schema version, and uncommitted objects (a flush between its upload and
//! its commit, or an orphan waiting for the collector; their age is the lag between flushes and
//! commits).

use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::lease::{self, LeaseState};
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
            "SELECT count(*) FILTER (WHERE state <> 'committed'),
                    EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE state <> 'committed'))::float8,
                    count(*) FILTER (WHERE state = 'committed')
             FROM strom_objects",
            &[],
        )
        .await
        .map_err(pg())?;
    Ok(ClusterStatus {
        schema_version: version.try_get(0).map_err(pg())?,
        brokers,
        leases,
        uncommitted_objects: objects.try_get(0).map_err(pg())?,
        oldest_uncommitted_secs: objects.try_get(1).map_err(pg())?,
        committed_objects: objects.try_get(2).map_err(pg())?,
    })
}
