//! The storage seam: what the broker core needs from storage, whatever the backend.
//!
//! The single-node backend ([`local`]) keeps each partition in `strom-log` segment files under
//! the data directory; the cluster backend (`strom-cluster`) keeps record data in object
//! storage and ordering and metadata in PostgreSQL. The front ends and the coordinators see
//! only the types of this module: [`StorageError`] for failures, and the aborted-transaction
//! types of a `read_committed` read.

mod error;
pub mod local;

pub use error::StorageError;
/// The aborted transactions of a `read_committed` read and the filter a reader applies to skip
/// their batches (plain data types, shared by every backend).
pub use strom_log::{AbortedFilter, AbortedTxn, OngoingTxn, ProducerInfo};
