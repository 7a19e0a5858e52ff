//! [`ClusterMetadataStore`]: the broker core's metadata events, shared by every broker through
//! PostgreSQL.
//!
//! **Why an event table.** The broker core already rebuilds its state (topics, configs,
//! Kinesis stream metadata, dynamic configs) from `MetadataEvent`s; storing those same events
//! in one ordered table (`strom_metadata_events`, migration 2) and having every broker replay
//! it at start and tail it afterwards (`seq > last seen`, every 250 ms) gives every broker the
//! same state with no second model of topics to keep in step, and every kind of event (even
//! ones added later) is shared without new code here. Appends take a transaction-scoped
//! advisory lock first, so `seq` order is commit order and a tailing broker never skips an
//! event committed late.
//!
//! **Conflicts.** Brokers decide on possibly stale state, so the append transaction checks
//! what must hold cluster-wide and keeps the tables the engine needs in step:
//! `TopicCreated` inserts the `strom_topics` row (a name taken by another broker →
//! `TopicAlreadyExists`) and its `strom_partitions` rows; `PartitionsCreated` only grows;
//! `ConfigsSet` updates the row; `TopicDeleted` deletes the row, which cascades to the
//! partitions, the batch index and the producer states (an unknown topic → `UnknownTopicId`).
//!
//! **Snapshot.** The table stays bounded by the live state, not by history, with the local
//! metadata log's rule: after an append, once the events after the snapshot exceed
//! `max(min_events, 2 × live events)` ([`crate::config::MetadataCompaction`]), the appending
//! broker folds the snapshot and those events into [`MetadataState`] under the same advisory
//! lock as appends and writes the fewest events that recreate it into the one
//! `strom_metadata_snapshot` row (migration 3), with the seq it covers. Covered events are
//! deleted only once older than `keep_events_for`, so a broker that paused its tailing for less
//! than that still reads every event it missed; `pruned_through` records the highest deleted
//! seq, and a broker whose cursor is below it gets [`Error::MetadataEventsPruned`] from its poll
//! instead of silently skipping events. Opening reads the snapshot, then the events after it.
//! A row this broker cannot decode (written by a newer Strom) stops the fold: compacting would
//! drop it, so the table is left as it is until a broker that reads every row compacts it.

use std::collections::BTreeMap;

use strom_broker::metadata::{MetadataEvent, MetadataState};
use strom_broker::storage::MetadataStore;
use uuid::Uuid;

use crate::backend::{Bridge, storage};
use crate::config::MetadataCompaction;
use crate::db::Db;
use crate::error::{DbOp, Error};

/// Advisory lock key of metadata appends ("strom" in ASCII, plus 2).
pub const METADATA_LOCK: i64 = 0x7374_726f_6d02;

/// The shared metadata store of one broker (see the module docs).
#[derive(Debug)]
pub struct ClusterMetadataStore {
    bridge: Bridge,
    db: std::sync::Arc<Db>,
    broker_id: i32,
    /// The highest `seq` read so far (or covered by the snapshot read at open).
    cursor: i64,
    /// When this broker compacts the table after an append.
    compaction: MetadataCompaction,
}

/// Why an append was refused, before it is turned into the broker's error.
enum Refused {
    Exists(String),
    UnknownTopic(Uuid),
    Shrink(i32),
    /// Another broker changed the same stream's Kinesis metadata after this broker last read
    /// the events: this change was decided on an older value.
    StaleStream,
    Db(Error),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Self {
        Refused::Db(e)
    }
}

fn pg(e: tokio_postgres::Error) -> Refused {
    Refused::Db(Error::Postgres {
        op: DbOp::Metadata,
        source: std::sync::Arc::new(e),
    })
}

impl ClusterMetadataStore {
    /// Opens the store: makes sure the cluster has an id, and reads every event. Returns the
    /// events the broker replays, the cluster id first. BLOCKING.
    pub(crate) fn open(
        bridge: Bridge,
        db: Db,
        broker_id: i32,
        compaction: MetadataCompaction,
    ) -> strom_broker::Result<(ClusterMetadataStore, Vec<MetadataEvent>)> {
        let db = std::sync::Arc::new(db);
        let (cluster_id, snapshot, events) = {
            let db = std::sync::Arc::clone(&db);
            bridge.run(async move {
                let conn = db.conn().await?;
                let proposed = Uuid::new_v4().simple().to_string();
                conn.execute(
                    "INSERT INTO strom_cluster (cluster_id) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&proposed],
                )
                .await
                .map_err(Error::pg(DbOp::Metadata))?;
                let cluster_id: String = conn
                    .query_one("SELECT cluster_id FROM strom_cluster", &[])
                    .await
                    .and_then(|r| r.try_get(0))
                    .map_err(Error::pg(DbOp::Metadata))?;
                let snapshot = read_snapshot(&*conn).await?;
                drop(conn);
                let through = snapshot.as_ref().map_or(0, |s| s.through_seq);
                let events = read_events(&db, through, false).await?;
                Ok::<_, Error>((cluster_id, snapshot, events))
            })?
        }
        .map_err(storage)?;
        let through = snapshot.as_ref().map_or(0, |s| s.through_seq);
        let cursor = events.last().map_or(through, |(seq, _)| *seq);
        let mut out = vec![MetadataEvent::ClusterInitialized { cluster_id }];
        if let Some(snapshot) = snapshot {
            out.extend(snapshot.events);
        }
        out.extend(events.into_iter().map(|(_, e)| e));
        Ok((
            ClusterMetadataStore {
                bridge,
                db,
                broker_id,
                cursor,
                compaction,
            },
            out,
        ))
    }
}

/// Events with `seq > after`, in order. Rows that do not decode (written by a newer Strom)
/// are skipped with a warning. With `check_pruned`, fails instead when compaction deleted
/// events after `after` (read in the same snapshot of the database as the events).
async fn read_events(
    db: &Db,
    after: i64,
    check_pruned: bool,
) -> Result<Vec<(i64, MetadataEvent)>, Error> {
    let mut conn = db.conn().await?;
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    if check_pruned {
        let pruned_through: Option<i64> = tx
            .query_opt("SELECT pruned_through FROM strom_metadata_snapshot", &[])
            .await
            .and_then(|row| row.map(|r| r.try_get(0)).transpose())
            .map_err(Error::pg(DbOp::Metadata))?;
        if let Some(pruned_through) = pruned_through.filter(|p| *p > after) {
            return Err(Error::MetadataEventsPruned {
                cursor: after,
                pruned_through,
            });
        }
    }
    let rows = tx
        .query(
            "SELECT seq, event FROM strom_metadata_events WHERE seq > $1 ORDER BY seq",
            &[&after],
        )
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get(0).map_err(Error::pg(DbOp::Metadata))?;
        let json: serde_json::Value = row.try_get(1).map_err(Error::pg(DbOp::Metadata))?;
        match serde_json::from_value::<MetadataEvent>(json) {
            Ok(event) => out.push((seq, event)),
            Err(error) => {
                tracing::warn!(seq, %error, "skipping a metadata event this broker cannot read")
            }
        }
    }
    tx.commit().await.map_err(Error::pg(DbOp::Metadata))?;
    Ok(out)
}

/// The snapshot row, decoded.
struct Snapshot {
    /// The highest event seq it covers.
    through_seq: i64,
    /// How many events it holds (the live state's size).
    live_events: i64,
    /// The fewest events that recreate the state.
    events: Vec<MetadataEvent>,
}

async fn read_snapshot(
    conn: &impl tokio_postgres::GenericClient,
) -> Result<Option<Snapshot>, Error> {
    let Some(row) = conn
        .query_opt(
            "SELECT through_seq, live_events, events FROM strom_metadata_snapshot",
            &[],
        )
        .await
        .map_err(Error::pg(DbOp::Metadata))?
    else {
        return Ok(None);
    };
    let through_seq: i64 = row.try_get(0).map_err(Error::pg(DbOp::Metadata))?;
    let live_events: i64 = row.try_get(1).map_err(Error::pg(DbOp::Metadata))?;
    let json: serde_json::Value = row.try_get(2).map_err(Error::pg(DbOp::Metadata))?;
    let events = match json {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match serde_json::from_value::<MetadataEvent>(item) {
                Ok(event) => Some(event),
                Err(error) => {
                    tracing::warn!(%error, "skipping a snapshot event this broker cannot read");
                    None
                }
            })
            .collect(),
        _ => {
            return Err(Error::CorruptMetadataSnapshot { through_seq });
        }
    };
    Ok(Some(Snapshot {
        through_seq,
        live_events,
        events,
    }))
}

/// Compacts the event table into the snapshot when the events after it exceed the policy's
/// bound (module docs). Returns whether a snapshot was written.
pub(crate) async fn compact(db: &Db, policy: MetadataCompaction) -> Result<bool, Error> {
    let mut conn = db.conn().await?;
    let tx = conn
        .transaction()
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&METADATA_LOCK])
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    let snapshot = read_snapshot(&tx).await?;
    let (through, live) = snapshot
        .as_ref()
        .map_or((0, 0), |s| (s.through_seq, s.live_events));
    let pending: i64 = tx
        .query_one(
            "SELECT count(*) FROM strom_metadata_events WHERE seq > $1",
            &[&through],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(Error::pg(DbOp::Metadata))?;
    let bound = (policy.min_events as i64).max(live.saturating_mul(2));
    if pending <= bound {
        return Ok(false);
    }
    let rows = tx
        .query(
            "SELECT seq, event FROM strom_metadata_events WHERE seq > $1 ORDER BY seq",
            &[&through],
        )
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    let mut state = MetadataState::default();
    for event in snapshot.iter().flat_map(|s| s.events.iter()) {
        state.apply(event);
    }
    let mut new_through = through;
    for row in rows {
        let seq: i64 = row.try_get(0).map_err(Error::pg(DbOp::Metadata))?;
        let json: serde_json::Value = row.try_get(1).map_err(Error::pg(DbOp::Metadata))?;
        match serde_json::from_value::<MetadataEvent>(json) {
            Ok(event) => state.apply(&event),
            Err(error) => {
                tracing::warn!(seq, %error, "not compacting metadata: an event this broker cannot read would be lost");
                return Ok(false);
            }
        }
        new_through = seq;
    }
    let events = serde_json::to_value(state.events()).map_err(|_| Error::InvalidConfig {
        setting: "metadata snapshot",
        value: String::new(),
        reason: "does not serialise",
    })?;
    let live_events = i64::try_from(state.size()).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO strom_metadata_snapshot (through_seq, live_events, events)
         VALUES ($1, $2, $3)
         ON CONFLICT (singleton) DO UPDATE SET through_seq = EXCLUDED.through_seq,
             live_events = EXCLUDED.live_events, events = EXCLUDED.events, taken_at = now()",
        &[&new_through, &live_events, &events],
    )
    .await
    .map_err(Error::pg(DbOp::Metadata))?;
    let keep_ms = i64::try_from(policy.keep_events_for.as_millis()).unwrap_or(i64::MAX);
    tx.execute(
        "WITH gone AS (
             DELETE FROM strom_metadata_events
             WHERE seq <= $1 AND created_at < now() - make_interval(secs => $2::float8 / 1000)
             RETURNING seq)
         UPDATE strom_metadata_snapshot
         SET pruned_through = greatest(pruned_through, coalesce((SELECT max(seq) FROM gone), 0))",
        &[&new_through, &(keep_ms as f64)],
    )
    .await
    .map_err(Error::pg(DbOp::Metadata))?;
    tx.commit().await.map_err(Error::pg(DbOp::Metadata))?;
    tracing::info!(
        through_seq = new_through,
        live_events,
        "compacted the cluster metadata events into a snapshot"
    );
    Ok(true)
}

fn configs_json(configs: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        configs
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// The append transaction: lock, check and project the event, insert it.
async fn append(db: &Db, broker_id: i32, cursor: i64, event: MetadataEvent) -> Result<(), Refused> {
    let json = serde_json::to_value(&event).map_err(|_| {
        Refused::Db(Error::InvalidConfig {
            setting: "metadata event",
            value: format!("{event:?}"),
            reason: "does not serialise",
        })
    })?;
    let mut conn = db.conn().await?;
    let tx = conn.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&METADATA_LOCK])
        .await
        .map_err(pg)?;
    match &event {
        MetadataEvent::TopicCreated {
            name,
            id,
            partitions,
            configs,
        } => {
            let inserted = tx
                .execute(
                    "INSERT INTO strom_topics (name, topic_id, partitions, configs)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                    &[name, id, partitions, &configs_json(configs)],
                )
                .await
                .map_err(pg)?;
            if inserted == 0 {
                return Err(Refused::Exists(name.clone()));
            }
            tx.execute(
                "INSERT INTO strom_partitions (topic, partition)
                 SELECT $1, p FROM generate_series(0, $2 - 1) AS p",
                &[name, partitions],
            )
            .await
            .map_err(pg)?;
        }
        MetadataEvent::PartitionsCreated { id, total } => {
            let row = tx
                .query_opt(
                    "SELECT name, partitions FROM strom_topics WHERE topic_id = $1 FOR UPDATE",
                    &[id],
                )
                .await
                .map_err(pg)?
                .ok_or(Refused::UnknownTopic(*id))?;
            let name: String = row.try_get(0).map_err(pg)?;
            let current: i32 = row.try_get(1).map_err(pg)?;
            if *total <= current {
                return Err(Refused::Shrink(*total));
            }
            tx.execute(
                "UPDATE strom_topics SET partitions = $2 WHERE topic_id = $1",
                &[id, total],
            )
            .await
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO strom_partitions (topic, partition)
                 SELECT $1, p FROM generate_series($2, $3 - 1) AS p",
                &[&name, &current, total],
            )
            .await
            .map_err(pg)?;
        }
        MetadataEvent::ConfigsSet { id, configs } => {
            let n = tx
                .execute(
                    "UPDATE strom_topics SET configs = $2 WHERE topic_id = $1",
                    &[id, &configs_json(configs)],
                )
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(Refused::UnknownTopic(*id));
            }
        }
        MetadataEvent::StreamMetaSet { id, .. } => {
            // A stream's Kinesis metadata is replaced whole, decided on the value this broker
            // last read: refused if another broker replaced it since (a lost update otherwise,
            // e.g. a tag added through one broker dropped by a reshard through another).
            let newer = tx
                .query_opt(
                    "SELECT 1 FROM strom_metadata_events
                     WHERE seq > $1 AND broker_id <> $2
                       AND event->>'event' = 'stream_meta_set' AND event->>'id' = $3
                     LIMIT 1",
                    &[&cursor, &broker_id, &id.to_string()],
                )
                .await
                .map_err(pg)?;
            if newer.is_some() {
                return Err(Refused::StaleStream);
            }
        }
        MetadataEvent::TopicDeleted { id } => {
            let n = tx
                .execute("DELETE FROM strom_topics WHERE topic_id = $1", &[id])
                .await
                .map_err(pg)?;
            if n == 0 {
                return Err(Refused::UnknownTopic(*id));
            }
        }
        _ => {}
    }
    tx.execute(
        "INSERT INTO strom_metadata_events (event, broker_id) VALUES ($1, $2)",
        &[&json, &broker_id],
    )
    .await
    .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(())
}

impl MetadataStore for ClusterMetadataStore {
    fn append(&mut self, event: &MetadataEvent) -> strom_broker::Result<()> {
        let db = std::sync::Arc::clone(&self.db);
        let broker_id = self.broker_id;
        let cursor = self.cursor;
        let event = event.clone();
        let policy = self.compaction;
        // Bounded: a database that stopped answering fails the admin request retriably.
        let appended = self.bridge.run(async move {
            let appended = db
                .bounded(async { Ok(append(&db, broker_id, cursor, event).await) })
                .await
                .unwrap_or_else(|e| Err(Refused::Db(e)));
            if appended.is_ok() {
                // The event is committed whatever happens here: a failed compaction is retried
                // after the next append.
                match db.bounded(compact(&db, policy)).await {
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "compacting the cluster metadata events failed")
                    }
                }
            }
            appended
        })?;
        match appended {
            Ok(()) => Ok(()),
            Err(Refused::Exists(name)) => Err(strom_broker::Error::TopicAlreadyExists { name }),
            Err(Refused::UnknownTopic(id)) => Err(strom_broker::Error::UnknownTopicId { id }),
            Err(Refused::Shrink(count)) => Err(strom_broker::Error::InvalidPartitions {
                count,
                reason: "a topic's partition count can only grow",
            }),
            Err(Refused::StaleStream) => Err(strom_broker::Error::InvalidPartitions {
                count: 0,
                reason: "another broker changed the stream meanwhile",
            }),
            Err(Refused::Db(e)) => Err(storage(e)),
        }
    }

    fn poll(&mut self) -> strom_broker::Result<Vec<MetadataEvent>> {
        let db = std::sync::Arc::clone(&self.db);
        let after = self.cursor;
        let events = self
            .bridge
            .run(async move { db.bounded(read_events(&db, after, true)).await })?
            .map_err(storage)?;
        if let Some((seq, _)) = events.last() {
            self.cursor = *seq;
        }
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    fn allocate_producer_id(&mut self) -> Option<strom_broker::Result<i64>> {
        let db = std::sync::Arc::clone(&self.db);
        let allocated = self
            .bridge
            .run(async move { db.bounded(crate::metadata::allocate_producer_id(&db)).await });
        Some(match allocated {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(e)) => Err(storage(e)),
            Err(e) => Err(strom_broker::Error::Storage(e)),
        })
    }
}
