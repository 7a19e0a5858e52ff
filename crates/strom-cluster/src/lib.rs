//! Strom's cluster backend: stateless brokers over S3-compatible object storage, with
//! PostgreSQL as the sequencer, the batch index and the home of metadata and leases.
//!
//! This crate is the engine and, in [`backend`], its adapter to the broker core's storage seam
//! (`strom serve --cluster-postgres … --cluster-object-store …`, issue 17). It knows
//! nothing of Kafka or Kinesis requests: it appends and serves opaque record batches (Kafka
//! record-batch v2, whose header it reads for offsets, timestamps and producer fields).
//!
//! # Data model
//!
//! **Objects** (object store, `s3://BUCKET/PREFIX/data/<uuid v7>.batches`) hold the batches of
//! one flush of one broker, from any number of partitions, grouped by partition and in arrival
//! order, byte for byte as the producers sent them. Objects are immutable and their names unique,
//! so no conditional write is needed. The `baseOffset` inside is not meaningful; the served bytes
//! get the committed offset (the field is outside the CRC).
//!
//! **PostgreSQL** (schema in [`schema`], created and migrated by Strom under an advisory lock):
//!
//! | table | one row per | holds |
//! |---|---|---|
//! | `strom_schema_migrations` | applied migration | version, name |
//! | `strom_brokers` | broker id | advertised addresses, incarnation, lease expiry |
//! | `strom_leases` | job or coordinator role | holder, fencing epoch, expiry |
//! | `strom_topics` | topic | topic id, partition count, configs (jsonb) |
//! | `strom_partitions` | partition | `next_offset` (the high watermark), `log_start_offset` |
//! | `strom_objects` | object | size, state `pending` → `committed` → `retired` (no row names it) → `deleting` |
//! | `strom_batches` | committed batch | offsets, object key, byte range, max timestamp, producer id/epoch/sequences, transactional/control bits |
//! | `strom_producer_states` | (partition, producer) | last epoch, sequence and offset |
//! | sequence `strom_producer_ids` | — | producer id allocation |
//! | `strom_job_runs` | background job | last run: holder, epoch, times, error, counters |
//! | `strom_compaction` | compacted partition | cleaned offset, when a kept tombstone expires |
//!
//! # Write path ([`writer`])
//!
//! A [`Writer`] buffers appended batches until `max_bytes`, `max_delay`, or (with no flush in
//! flight) a `quiet` gap in arrivals, uploads them as one object under a key it reserved
//! earlier (several flushes upload at once while it keeps collecting), then one transaction per
//! flush, in flush order, locks the touched partition rows in a fixed order, checks idempotent
//! sequences, assigns offsets, indexes the batches, marks the object committed, notifies
//! listeners and reserves the writer's next keys; only then are producers answered. Offsets are
//! therefore assigned by the database: gapless and unique per partition whichever broker wrote
//! them.
//!
//! # Read path ([`reader`], [`notify`])
//!
//! A [`Reader`] finds batches through a cached copy of the index, downloads byte ranges through a
//! bounded LRU [`ObjectCache`] (shared with the writer, so tail reads are served from memory),
//! and answers ListOffsets from the index. A [`Notifier`] turns `LISTEN strom_commits` into a
//! `watch` channel of each partition's high watermark, for long polls.
//!
//! # Liveness ([`registry`], [`lease`], [`collector`])
//!
//! Brokers register with a lease and heartbeat; expired ones are not listed. Named leases with
//! a fencing epoch pick one broker per background job; the orphan [`collector`] deletes objects of
//! flushes that never committed; the [`lifecycle`] jobs apply retention and DeleteRecords to the
//! index, compact, merge small objects and delete objects no index row refers to. [`status::cluster_status`] gathers brokers, leases and
//! uncommitted objects for `strom cluster status`.
//!
//! # Errors
//!
//! One [`Error`] enum; [`Error::is_retriable`] separates outages (database, object store: the
//! client retries, possibly through another broker) from request errors (sequence, fencing).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod cache;
pub mod collector;
pub mod config;
pub mod coordinator;
pub mod credential_process;
pub mod db;
pub mod error;
pub mod kinesis;
#[cfg(feature = "kinesis")]
pub mod kinesis_limits;
pub mod lease;
pub mod lifecycle;
pub mod membership;
pub mod metadata;
pub mod metadata_store;
pub mod notify;
pub mod partition_store;
pub mod profile;
pub mod reader;
pub mod registry;
pub mod schema;
pub mod status;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod writer;

pub use backend::{ClusterBackend, ClusterNode, ClusterObserver};
pub use cache::ObjectCache;
pub use config::{
    ClusterConfig, FlushConfig, LifecycleSettings, MetadataCompaction, ObjectStoreUrl, S3Settings,
};
pub use db::Db;
pub use error::{Error, Result};
pub use kinesis::{BucketLevels, KinesisBuckets};
pub use metadata::TopicPartition;
pub use notify::Notifier;
pub use reader::{FetchResult, ListedOffset, OffsetSpec, Reader, ReaderConfig};
pub use tls::{PgConfig, PgTimeouts, TlsMode};
pub use writer::{Appended, Enqueued, Writer, WriterConfig};
