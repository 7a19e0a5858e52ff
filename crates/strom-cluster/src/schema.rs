//! The PostgreSQL schema and its versioned migrations.
//!
//! Migrations are SQL embedded in the binary, numbered from 1 and never edited once released (a
//! change is a new migration). [`migrate`] applies each missing one in its own transaction that
//! first takes a transaction-scoped advisory lock ([`MIGRATION_LOCK`]), then checks
//! `strom_schema_migrations` again under the lock; so several brokers starting at once apply each
//! migration exactly once and the others wait, then see it recorded.

use tokio_postgres::Client;

use crate::error::{DbOp, Error, Result};

/// Advisory lock key taken by every migration transaction ("strom" in ASCII, plus 1).
pub const MIGRATION_LOCK: i64 = 0x7374_726f_6d01;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, strictly increasing from 1.
    pub version: i32,
    /// Short description, recorded with the version.
    pub name: &'static str,
    /// SQL statements, run in one transaction.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial cluster schema",
        sql: r#"
-- Brokers: one row per broker id; a broker is live while its lease has not expired.
CREATE TABLE strom_brokers (
    broker_id        integer PRIMARY KEY,
    addresses        jsonb NOT NULL,
    incarnation      uuid NOT NULL,
    registered_at    timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz NOT NULL
);

-- Named leases for coordinators and background jobs. `epoch` is the fencing token: it grows
-- each time the lease changes hands, and every fenced write checks it.
CREATE TABLE strom_leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE strom_topics (
    name       text PRIMARY KEY,
    topic_id   uuid NOT NULL UNIQUE,
    partitions integer NOT NULL CHECK (partitions > 0),
    configs    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The sequencer state of each partition: the commit transaction locks the row, assigns
-- offsets from next_offset and moves it forward.
CREATE TABLE strom_partitions (
    topic            text NOT NULL REFERENCES strom_topics(name) ON DELETE CASCADE,
    partition        integer NOT NULL CHECK (partition >= 0),
    next_offset      bigint NOT NULL DEFAULT 0,
    log_start_offset bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition)
);

-- Every object ever written. 'pending' from before its PUT until the commit that indexes it;
-- 'committed' after; 'deleting' once a collector claimed it.
CREATE TABLE strom_objects (
    key        text PRIMARY KEY,
    size       bigint NOT NULL,
    state      text NOT NULL CHECK (state IN ('pending', 'committed', 'deleting')),
    writer     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX strom_objects_pending ON strom_objects (created_at) WHERE state <> 'committed';

-- The batch index: where each committed batch lives.
CREATE TABLE strom_batches (
    topic            text NOT NULL,
    partition        integer NOT NULL,
    base_offset      bigint NOT NULL,
    last_offset      bigint NOT NULL,
    object_key       text NOT NULL REFERENCES strom_objects(key),
    byte_offset      bigint NOT NULL,
    byte_length      integer NOT NULL,
    max_timestamp    bigint NOT NULL,
    producer_id      bigint NOT NULL,
    producer_epoch   smallint NOT NULL,
    base_sequence    integer NOT NULL,
    last_sequence    integer NOT NULL,
    is_transactional boolean NOT NULL,
    is_control       boolean NOT NULL,
    PRIMARY KEY (topic, partition, base_offset),
    FOREIGN KEY (topic, partition) REFERENCES strom_partitions ON DELETE CASCADE
);
CREATE INDEX strom_batches_last_offset ON strom_batches (topic, partition, last_offset);
CREATE INDEX strom_batches_max_timestamp ON strom_batches (topic, partition, max_timestamp);
CREATE INDEX strom_batches_object ON strom_batches (object_key);
-- Duplicate detection of idempotent retries looks a batch up by its producer and sequences.
CREATE INDEX strom_batches_producer ON strom_batches (topic, partition, producer_id, base_sequence)
    WHERE producer_id >= 0;

-- Producer ids for idempotent and transactional producers.
CREATE SEQUENCE strom_producer_ids AS bigint MINVALUE 0 START 0;

-- The idempotence state of each producer on each partition: the last epoch and sequence
-- written and the offsets of that batch.
CREATE TABLE strom_producer_states (
    topic          text NOT NULL,
    partition      integer NOT NULL,
    producer_id    bigint NOT NULL,
    producer_epoch smallint NOT NULL,
    last_sequence  integer NOT NULL,
    last_offset    bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, producer_id),
    FOREIGN KEY (topic, partition) REFERENCES strom_partitions ON DELETE CASCADE
);
"#,
    },
    Migration {
        version: 2,
        name: "shared broker metadata events",
        sql: r#"
-- The broker core's metadata events (topics, configs, Kinesis stream metadata, dynamic
-- configs), in one order for every broker: appended under an advisory lock, so `seq` order is
-- commit order and a broker tailing `seq > last seen` never skips an event. strom_topics and
-- strom_partitions are kept in step in the same transactions (the writer needs the partition
-- rows; their unique names refuse a topic two brokers create at once).
CREATE TABLE strom_metadata_events (
    seq        bigserial PRIMARY KEY,
    event      jsonb NOT NULL,
    broker_id  integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The cluster id, chosen by the first broker that starts.
CREATE TABLE strom_cluster (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    cluster_id text NOT NULL
);
"#,
    },
    Migration {
        version: 3,
        name: "metadata snapshot",
        sql: r#"
-- The checkpoint of strom_metadata_events: `events` are the fewest events that recreate the
-- state after every event with seq <= through_seq (`live_events` of them). Events the snapshot
-- covers are deleted once they are older than the compaction's retention; `pruned_through` is
-- the highest seq deleted, so a broker whose cursor is below it knows it missed events.
CREATE TABLE strom_metadata_snapshot (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    through_seq    bigint NOT NULL,
    live_events    bigint NOT NULL,
    events         jsonb NOT NULL,
    pruned_through bigint NOT NULL DEFAULT 0,
    taken_at       timestamptz NOT NULL DEFAULT now()
);
"#,
    },
    Migration {
        version: 4,
        name: "lifecycle: retired objects, job runs, compaction progress",
        sql: include_str!("../migrations/0004_lifecycle.sql"),
    },
    Migration {
        version: 5,
        name: "shared secrets",
        sql: include_str!("../migrations/0005_secrets.sql"),
    },
    Migration {
        version: 6,
        name: "transactions: open transactions per producer, aborted-transaction index",
        sql: include_str!("../migrations/0006_transactions.sql"),
    },
    Migration {
        version: 7,
        name: "kinesis: sealed partitions, shared shard limits",
        sql: include_str!("../migrations/0007_kinesis.sql"),
    },
    Migration {
        version: 8,
        name: "index version: readers drop cached index runs a compaction rewrote",
        sql: include_str!("../migrations/0008_index_version.sql"),
    },
];

/// Brings the schema up to the newest migration; safe to call from many brokers at once.
/// Returns the versions this call applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let tx = client
            .transaction()
            .await
            .map_err(Error::pg(DbOp::Migrate))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(Error::pg(DbOp::Migrate))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS strom_schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(Error::pg(DbOp::Migrate))?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM strom_schema_migrations WHERE version = $1",
                &[&migration.version],
            )
            .await
            .map_err(Error::pg(DbOp::Migrate))?
            .is_some();
        if done {
            tx.rollback().await.map_err(Error::pg(DbOp::Migrate))?;
            continue;
        }
        tx.batch_execute(migration.sql)
            .await
            .map_err(Error::pg(DbOp::Migrate))?;
        tx.execute(
            "INSERT INTO strom_schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(Error::pg(DbOp::Migrate))?;
        tx.commit().await.map_err(Error::pg(DbOp::Migrate))?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied.push(migration.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
        }
    }
}
