//! The local (single-node) storage backend: `strom-log` segment files per partition, the
//! metadata event log and the internal topics, all under the broker's data directory.

mod error;
