//! # strom-broker
//!
//! The protocol-agnostic broker core: the registry of topics and their partitions, topic and
//! broker configs with Kafka's names, the durable metadata event log (snapshotted), the
//! per-partition high-watermark channels that long-poll fetches wait on, the group and
//! transaction coordinators, the Kinesis stream metadata, the log cleaner threads and the
//! broker-wide commit window. Front ends (Kafka and Kinesis) decode requests, call into
//! [`Broker`] and [`Partition`], and map [`Error`] to their own codes.
//!
//! Storage is reached through the seam in [`storage`]: one [`storage::PartitionStore`] per
//! partition and a [`storage::MetadataStore`], opened by a [`storage::StorageBackend`]. The
//! default backend ([`storage::local::LocalBackend`]) keeps each partition in `strom-log`
//! segment files under `<data-dir>/<topic>-<partition>/` and the metadata in its event log; a
//! cluster backend (`strom-cluster`) is passed to [`Broker::open_with_backend`]. Storage calls
//! block (file I/O, `fdatasync`, network), so every method that reaches them is named
//! `*_blocking`, and async callers go through the blocking pool ([`Broker::run_blocking`],
//! [`Partition::append`]).
//!
//! The group coordinator ([`group::GroupCoordinator`]), the transaction coordinator
//! ([`txn::TxnCoordinator`]) and the Kinesis stream registry ([`stream::StreamRegistry`]) own
//! their state; what they need of the broker is a narrow interface (a host trait, or the
//! metadata store handed in), and [`Broker`]'s methods for them delegate.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod acl;
mod broker;
pub mod broker_config;
pub mod cleaner;
pub mod config;
pub mod durability;
mod error;
pub mod group;
mod healing;
mod internal;
pub mod metadata;
mod partition;
pub mod quota;
pub mod scram;
pub mod storage;
pub mod stream;
mod topic;
pub mod txn;

pub use broker::{Broker, BrokerConfig, MAX_PARTITIONS, partition_dir};
pub use error::{Error, RecordRejection, Result};
pub use internal::internal_topic_damaged_batches;
pub use partition::{LEADER_EPOCH, Partition, PendingPartitionAppend, ReadOutcome};
pub use storage::StorageError;
pub use topic::{
    ConfigOp, CreateTopic, MAX_TOPIC_NAME_LEN, Topic, TopicSummary, validate_topic_name,
};

/// Re-exported storage types that appear in this crate's API.
pub use strom_log::{AppendInfo, Clock, FsyncPolicy, ManualClock, PendingAppend, SystemClock};
