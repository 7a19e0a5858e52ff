//! Named leases with fencing tokens, kept in `strom_leases`.
//!
//! A lease names a role that exactly one broker may play at a time: a background job
//! (`job/orphans`, later retention and compaction), a group or transaction coordinator. Expiry is
//! judged by PostgreSQL's clock (`now()`), never by a broker's, so brokers with skewed clocks agree
//! on who holds what. Each change of holder increments `epoch`, the fencing token: work done under
//! a lease re-checks `(name, holder, epoch)` in the same transaction as its effect, so a holder that
//! stalled past its expiry cannot act after another took over.

use std::time::Duration;

use crate::db::Db;
use crate::error::{DbOp, Error, Result};

/// A lease held by `holder` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Lease name (`job/orphans`, `group/<id>`, …).
    pub name: String,
    /// Who holds it (a broker id or any unique string).
    pub holder: String,
    /// Fencing token: grows by one each time the lease changes hands.
    pub epoch: i64,
    /// How long it was granted for.
    pub ttl: Duration,
}

/// The current state of a lease, for status displays.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseState {
    /// Lease name.
    pub name: String,
    /// Last holder.
    pub holder: String,
    /// Fencing token.
    pub epoch: i64,
    /// Seconds until expiry by the database clock; negative once expired.
    pub expires_in_secs: f64,
}

/// Takes the lease if it is free, expired, or already held by `holder` (then it is extended and
/// keeps its epoch). `None` when someone else holds it.
pub async fn acquire(db: &Db, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
    let conn = db.conn().await?;
    let row = conn
        .query_opt(
            "INSERT INTO strom_leases AS l (name, holder, epoch, expires_at)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3))
             ON CONFLICT (name) DO UPDATE SET
                 holder = EXCLUDED.holder,
                 epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                              THEN l.epoch ELSE l.epoch + 1 END,
                 expires_at = EXCLUDED.expires_at
             WHERE l.expires_at <= now() OR l.holder = EXCLUDED.holder
             RETURNING epoch",
            &[&name, &holder, &ttl.as_secs_f64()],
        )
        .await
        .map_err(Error::pg(DbOp::Lease))?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Lease {
        name: name.to_owned(),
        holder: holder.to_owned(),
        epoch: row.try_get(0).map_err(Error::pg(DbOp::Lease))?,
        ttl,
    }))
}

/// Extends a lease still held at its epoch; [`Error::LeaseLost`] when it expired (even if
/// nobody took it since: an expired lease must be re-acquired, which bumps the epoch).
pub async fn renew(db: &Db, lease: &Lease) -> Result<()> {
    let conn = db.conn().await?;
    let n = conn
        .execute(
            "UPDATE strom_leases SET expires_at = now() + make_interval(secs => $4)
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()",
            &[
                &lease.name,
                &lease.holder,
                &lease.epoch,
                &lease.ttl.as_secs_f64(),
            ],
        )
        .await
        .map_err(Error::pg(DbOp::Lease))?;
    if n == 1 { Ok(()) } else { Err(lost(lease)) }
}

/// Gives the lease up at once so another broker can take it without waiting for expiry.
pub async fn release(db: &Db, lease: &Lease) -> Result<()> {
    let conn = db.conn().await?;
    conn.execute(
        "UPDATE strom_leases SET expires_at = now()
         WHERE name = $1 AND holder = $2 AND epoch = $3",
        &[&lease.name, &lease.holder, &lease.epoch],
    )
    .await
    .map_err(Error::pg(DbOp::Lease))?;
    Ok(())
}

/// Every lease, by name.
pub async fn list(db: &Db) -> Result<Vec<LeaseState>> {
    let conn = db.conn().await?;
    let rows = conn
        .query(
            "SELECT name, holder, epoch, EXTRACT(EPOCH FROM (expires_at - now()))::float8
             FROM strom_leases ORDER BY name",
            &[],
        )
        .await
        .map_err(Error::pg(DbOp::Lease))?;
    rows.iter()
        .map(|r| {
            Ok(LeaseState {
                name: r.try_get(0)?,
                holder: r.try_get(1)?,
                epoch: r.try_get(2)?,
                expires_in_secs: r.try_get(3)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(Error::pg(DbOp::Lease))
}

pub(crate) fn lost(lease: &Lease) -> Error {
    Error::LeaseLost {
        name: lease.name.clone(),
        holder: lease.holder.clone(),
        epoch: lease.epoch,
    }
}

/// SQL condition, true while the lease with parameters `$1, $2, $3` = (name, holder, epoch) is
/// held; put it in the `WHERE` of a fenced statement so its effect and the check are atomic.
pub const HELD: &str = "EXISTS (SELECT 1 FROM strom_leases fl WHERE fl.name = $1
     AND fl.holder = $2 AND fl.epoch = $3 AND fl.expires_at > now())";
