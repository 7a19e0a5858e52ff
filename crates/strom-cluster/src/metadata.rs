//! Topics, partitions and producer ids in PostgreSQL.
//!
//! Only what the write and read paths need today: creating a topic with its partition rows,
//! looking one up, a partition's offsets, and producer-id allocation. The full admin surface
//! (delete, add partitions, configs) comes with the broker seam.

use uuid::Uuid;

use crate::db::Db;
use crate::error::{DbOp, Error, Result};

/// A topic name and partition index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A topic as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    /// Name.
    pub name: String,
    /// Kafka topic id.
    pub topic_id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level configs (Kafka names → values).
    pub configs: serde_json::Value,
}

/// The offsets of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// First offset still readable.
    pub log_start_offset: i64,
    /// Offset the next committed batch gets (the high watermark).
    pub next_offset: i64,
    /// First offset of the earliest open transaction, if one is open.
    pub first_open_txn: Option<i64>,
    /// Version of the partition's index content: compaction increments it when it rewrites
    /// rows, so cached index runs from before are dropped.
    pub index_version: i64,
}

impl PartitionOffsets {
    /// The last stable offset: the first offset of the earliest open transaction (never below
    /// the log start), else the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        match self.first_open_txn {
            Some(first) => self.next_offset.min(first.max(self.log_start_offset)),
            None => self.next_offset,
        }
    }
}

/// Creates a topic and its partition rows in one transaction.
pub async fn create_topic(
    db: &Db,
    name: &str,
    partitions: i32,
    configs: &serde_json::Value,
) -> Result<Uuid> {
    let mut conn = db.conn().await?;
    let tx = conn
        .transaction()
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    let topic_id = Uuid::new_v4();
    let inserted = tx
        .execute(
            "INSERT INTO strom_topics (name, topic_id, partitions, configs)
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            &[&name, &topic_id, &partitions, configs],
        )
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    if inserted == 0 {
        return Err(Error::TopicExists {
            topic: name.to_owned(),
        });
    }
    tx.execute(
        "INSERT INTO strom_partitions (topic, partition)
         SELECT $1, p FROM generate_series(0, $2 - 1) AS p",
        &[&name, &partitions],
    )
    .await
    .map_err(Error::pg(DbOp::Metadata))?;
    tx.commit().await.map_err(Error::pg(DbOp::Metadata))?;
    Ok(topic_id)
}

/// The topic named `name`, if any.
pub async fn topic(db: &Db, name: &str) -> Result<Option<TopicInfo>> {
    let conn = db.conn().await?;
    let row = conn
        .query_opt(
            "SELECT name, topic_id, partitions, configs FROM strom_topics WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(Error::pg(DbOp::Metadata))?;
    let Some(r) = row else { return Ok(None) };
    let info = (|| {
        Ok::<_, tokio_postgres::Error>(TopicInfo {
            name: r.try_get(0)?,
            topic_id: r.try_get(1)?,
            partitions: r.try_get(2)?,
            configs: r.try_get(3)?,
        })
    })()
    .map_err(Error::pg(DbOp::Metadata))?;
    Ok(Some(info))
}

/// The log start and next offset of a partition, and the first offset of its earliest open
/// transaction (one statement, so the three are consistent).
pub async fn partition_offsets(db: &Db, tp: &TopicPartition) -> Result<PartitionOffsets> {
    let conn = db.conn().await?;
    let row = conn
        .query_opt(
            "SELECT p.log_start_offset, p.next_offset,
                    (SELECT min(s.txn_first_offset) FROM strom_producer_states s
                     WHERE s.topic = p.topic AND s.partition = p.partition
                       AND s.txn_first_offset IS NOT NULL),
                    p.index_version
             FROM strom_partitions p
             WHERE p.topic = $1 AND p.partition = $2",
            &[&tp.topic, &tp.partition],
        )
        .await
        .map_err(Error::pg(DbOp::Metadata))?
        .ok_or_else(|| Error::UnknownPartition {
            topic: tp.topic.clone(),
            partition: tp.partition,
        })?;
    Ok(PartitionOffsets {
        log_start_offset: row.try_get(0).map_err(Error::pg(DbOp::Metadata))?,
        next_offset: row.try_get(1).map_err(Error::pg(DbOp::Metadata))?,
        first_open_txn: row.try_get(2).map_err(Error::pg(DbOp::Metadata))?,
        index_version: row.try_get(3).map_err(Error::pg(DbOp::Metadata))?,
    })
}

/// A producer id never handed out before, cluster-wide.
pub async fn allocate_producer_id(db: &Db) -> Result<i64> {
    let conn = db.conn().await?;
    let row = conn
        .query_one("SELECT nextval('strom_producer_ids')", &[])
        .await
        .map_err(Error::pg(DbOp::ProducerId))?;
    row.try_get(0).map_err(Error::pg(DbOp::ProducerId))
}
