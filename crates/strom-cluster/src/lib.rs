//! Strom's cluster backend: stateless brokers over S3-compatible object storage, with
//! PostgreSQL as the sequencer, the batch index and the home of metadata and leases (issue 17).
//! This first cut has the configuration, the connection handling and the test harness.

pub mod config;
pub mod db;
pub mod error;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use config::{ClusterConfig, FlushConfig, ObjectStoreUrl, S3Settings};
pub use db::Db;
pub use error::{Error, Result};
