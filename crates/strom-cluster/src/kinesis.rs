//! Kinesis state every broker of a cluster shares (issue 18): each shard's AWS-limits buckets,
//! one row of `strom_kinesis_buckets` (migration 7) per shard, so a shard's limits hold for
//! the whole cluster rather than per broker.
//!
//! A step reads the row under its lock, lets the caller refill and charge the levels (the
//! arithmetic is the Kinesis front end's, `strom_kinesis::limits`), and stores them, in one
//! transaction; time is PostgreSQL's `clock_timestamp()`, one clock for every broker. Two
//! brokers charging one shard at once are serialised by the row lock, so together they are
//! admitted no more than the shard's rate. Cost: five statements per step on one of a few
//! dedicated connections (only in AWS-limits mode, which is for testing clients against AWS's
//! throttling, not for throughput).

use uuid::Uuid;

use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::tls::PgConfig;

/// Connections a broker's buckets use (steps of different shards run in parallel).
const CONNECTIONS: usize = 4;

/// A shard's token levels: write records, write bytes, read calls, read bytes.
pub type BucketLevels = [f64; 4];

/// The shared per-shard buckets of one broker's connection to the cluster.
#[derive(Debug)]
pub struct KinesisBuckets {
    db: Db,
}

impl KinesisBuckets {
    /// Buckets in the database `pg` names (connections opened on first use).
    pub fn new(pg: PgConfig) -> KinesisBuckets {
        KinesisBuckets {
            db: Db::with_connections(pg, CONNECTIONS),
        }
    }

    /// One step on shard `shard` of the stream whose topic id is `topic`: `update` gets the
    /// stored levels and the seconds since they were stored (`None` for a shard never charged
    /// before: its buckets are full) and returns the levels to store. Atomic with respect to
    /// every broker's steps on the same shard. Bounded by the database's query timeout.
    pub async fn update(
        &self,
        topic: Uuid,
        shard: i32,
        update: impl FnOnce(Option<(BucketLevels, f64)>) -> BucketLevels + Send,
    ) -> Result<()> {
        let pg = || Error::pg(DbOp::KinesisLimits);
        self.db
            .bounded(async {
                let mut conn = self.db.conn().await?;
                let tx = conn.transaction().await.map_err(pg())?;
                let inserted = tx
                    .execute(
                        "INSERT INTO strom_kinesis_buckets
                           (topic_id, shard, write_records, write_bytes, read_calls, read_bytes,
                            refilled_at)
                         VALUES ($1, $2, 0, 0, 0, 0, clock_timestamp())
                         ON CONFLICT (topic_id, shard) DO NOTHING",
                        &[&topic, &shard],
                    )
                    .await
                    .map_err(pg())?;
                let row = tx
                    .query_one(
                        "SELECT write_records, write_bytes, read_calls, read_bytes,
                                extract(epoch FROM clock_timestamp() - refilled_at)::float8,
                                clock_timestamp()
                         FROM strom_kinesis_buckets WHERE topic_id = $1 AND shard = $2
                         FOR UPDATE",
                        &[&topic, &shard],
                    )
                    .await
                    .map_err(pg())?;
                let stored: BucketLevels = [
                    row.try_get(0).map_err(pg())?,
                    row.try_get(1).map_err(pg())?,
                    row.try_get(2).map_err(pg())?,
                    row.try_get(3).map_err(pg())?,
                ];
                let elapsed: f64 = row.try_get(4).map_err(pg())?;
                let at: std::time::SystemTime = row.try_get(5).map_err(pg())?;
                let levels = update((inserted == 0).then_some((stored, elapsed)));
                tx.execute(
                    "UPDATE strom_kinesis_buckets
                     SET write_records = $3, write_bytes = $4, read_calls = $5, read_bytes = $6,
                         refilled_at = $7
                     WHERE topic_id = $1 AND shard = $2",
                    &[
                        &topic, &shard, &levels[0], &levels[1], &levels[2], &levels[3], &at,
                    ],
                )
                .await
                .map_err(pg())?;
                tx.commit().await.map_err(pg())?;
                Ok(())
            })
            .await
    }
}
