//! The one place where the local backend's errors ([`strom_log::Error`]) become the seam's
//! [`StorageError`].

use crate::error::Error;
use crate::storage::StorageError;

impl From<strom_log::Error> for StorageError {
    fn from(e: strom_log::Error) -> Self {
        use strom_log::Error as L;
        match e {
            L::InvalidBatch(e) => StorageError::InvalidBatch(e),
            L::KeylessRecords { indexes } => StorageError::KeylessRecords { indexes },
            L::BatchTooLarge { size, max } => StorageError::BatchTooLarge { size, max },
            L::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark,
            } => StorageError::OffsetOutOfRange {
                requested: offset,
                start: log_start,
                end: high_watermark,
            },
            L::InvalidOffset { offset, reason } => StorageError::InvalidOffset { offset, reason },
            L::Io { op, path, source } => StorageError::Unavailable {
                op,
                resource: path.display().to_string(),
                source,
            },
            L::Poisoned => StorageError::Poisoned,
            L::Closed => StorageError::Closed,
            L::ProducerFenced {
                producer_id,
                epoch,
                current_epoch,
            } => StorageError::ProducerFenced {
                producer_id,
                epoch,
                current_epoch,
            },
            L::OutOfOrderSequence {
                producer_id,
                epoch,
                expected,
                found,
            } => StorageError::OutOfOrderSequence {
                producer_id,
                epoch,
                expected,
                found,
            },
            L::DuplicateSequence {
                producer_id,
                first_seq,
            } => StorageError::DuplicateSequence {
                producer_id,
                first_seq,
            },
            L::InvalidTxnState {
                producer_id,
                reason,
            } => StorageError::InvalidTxnState {
                producer_id,
                reason,
            },
            L::DamagedRange {
                path,
                first_offset,
                end_offset,
            } => StorageError::DamagedRange {
                location: path.display().to_string(),
                first_offset,
                end_offset,
            },
            L::InvalidTimestamp {
                timestamp,
                now,
                earliest,
                latest,
            } => StorageError::InvalidTimestamp {
                timestamp,
                now,
                earliest,
                latest,
            },
            L::Corrupt { path, reason } => StorageError::Corrupt {
                location: path.display().to_string(),
                reason,
            },
        }
    }
}

impl From<strom_log::Error> for Error {
    fn from(e: strom_log::Error) -> Self {
        Error::Storage(StorageError::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn out_of_range_keeps_its_bounds() {
        let e = StorageError::from(strom_log::Error::OffsetOutOfRange {
            offset: 9,
            log_start: 2,
            high_watermark: 5,
        });
        assert!(matches!(
            e,
            StorageError::OffsetOutOfRange {
                requested: 9,
                start: 2,
                end: 5
            }
        ));
    }

    #[test]
    fn io_keeps_op_path_and_source() {
        let e = StorageError::from(strom_log::Error::Io {
            op: "fdatasync",
            path: "/d/0.log".into(),
            source: Arc::new(std::io::Error::from_raw_os_error(28)),
        });
        match e {
            StorageError::Unavailable {
                op,
                resource,
                source,
            } => {
                assert_eq!(op, "fdatasync");
                assert_eq!(resource, "/d/0.log");
                let io = source.downcast_ref::<std::io::Error>();
                assert_eq!(io.and_then(std::io::Error::raw_os_error), Some(28));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn damaged_range_and_states_map() {
        let damaged = StorageError::from(strom_log::Error::DamagedRange {
            path: "/d/0.log".into(),
            first_offset: 5,
            end_offset: 7,
        });
        assert!(matches!(
            damaged,
            StorageError::DamagedRange {
                first_offset: 5,
                end_offset: 7,
                ..
            }
        ));
        assert!(matches!(
            StorageError::from(strom_log::Error::Poisoned),
            StorageError::Poisoned
        ));
        assert!(matches!(
            StorageError::from(strom_log::Error::Closed),
            StorageError::Closed
        ));
        assert!(matches!(
            Error::from(strom_log::Error::BatchTooLarge { size: 2, max: 1 }),
            Error::Storage(StorageError::BatchTooLarge { size: 2, max: 1 })
        ));
    }
}
