//! Transaction markers: the control batches a transaction coordinator writes to every partition
//! of a transaction when it ends.
//!
//! A marker is a batch with the transactional and control bits set, the producer's id and
//! epoch, no sequence, and exactly one record whose key is `version: i16 (0), type: i16`
//! (0 = abort, 1 = commit) and whose value is `version: i16 (0), coordinator_epoch: i32`.
//!
//! ```
//! use strom_record::{ControlType, marker_batch, parse_marker};
//!
//! let batch = marker_batch(7, 2, ControlType::Commit, 0, 1_700_000_000_000)?;
//! let marker = parse_marker(&batch)?;
//! assert_eq!((marker.producer_id, marker.producer_epoch, marker.control_type), (7, 2, ControlType::Commit));
//! # Ok::<(), strom_record::Error>(())
//! ```

use bytes::Bytes;

use crate::{BatchBuilder, DecodeLimits, Error, NO_SEQUENCE, Record, Result, decode_records};

/// The kind of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// The producer's transaction in this partition was aborted: its records are to be skipped
    /// by `read_committed` consumers.
    Abort,
    /// The producer's transaction in this partition was committed.
    Commit,
}

impl ControlType {
    /// The wire value of the type field.
    pub fn id(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// A decoded transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// The producer whose transaction ended.
    pub producer_id: i64,
    /// The producer epoch the marker was written with.
    pub producer_epoch: i16,
    /// Commit or abort.
    pub control_type: ControlType,
    /// The epoch of the coordinator that wrote it.
    pub coordinator_epoch: i32,
    /// Offset of the marker record (the batch's base offset).
    pub offset: i64,
}

/// Builds a marker batch (base offset 0; the log assigns the real one).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    control_type: ControlType,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<Vec<u8>> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control_type.id().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let builder = BatchBuilder {
        producer_id,
        producer_epoch,
        base_sequence: NO_SEQUENCE,
        transactional: true,
        control: true,
        ..BatchBuilder::new()
    };
    builder.build(&[Record::new(
        timestamp,
        Some(Bytes::from(key)),
        Some(Bytes::from(value)),
    )])
}

/// The control type of a control record's key, or `None` for a type this version does not know
/// (Kafka clients skip those).
pub fn control_type_of_key(key: &[u8]) -> Option<ControlType> {
    match key {
        [_, _, 0, 0, ..] => Some(ControlType::Abort),
        [_, _, 0, 1, ..] => Some(ControlType::Commit),
        _ => None,
    }
}

/// Decodes a stored control batch into its marker.
pub fn parse_marker(batch: &[u8]) -> Result<Marker> {
    let decoded = decode_records(&Bytes::copy_from_slice(batch), DecodeLimits::default())?;
    let header = decoded.header;
    if !header.is_control() {
        return Err(Error::OutOfRange {
            what: "not a control batch",
        });
    }
    let record = decoded.records.first().ok_or(Error::OutOfRange {
        what: "a control batch holds exactly one record",
    })?;
    let key = record.key.as_deref().unwrap_or_default();
    let control_type = control_type_of_key(key).ok_or(Error::OutOfRange {
        what: "unknown control record type",
    })?;
    let coordinator_epoch = match record.value.as_deref() {
        Some([_, _, a, b, c, d, ..]) => i32::from_be_bytes([*a, *b, *c, *d]),
        _ => -1,
    };
    Ok(Marker {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        control_type,
        coordinator_epoch,
        offset: header.base_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ValidationLimits, validate_batch};

    #[test]
    fn markers_round_trip_and_validate_as_control_batches() {
        for t in [ControlType::Abort, ControlType::Commit] {
            let mut batch = marker_batch(42, 3, t, 9, 1_000).unwrap();
            crate::set_base_offset(&mut batch, 77).unwrap();
            let h = validate_batch(&batch, ValidationLimits::default()).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, NO_SEQUENCE)
            );
            let m = parse_marker(&batch).unwrap();
            assert_eq!(m.control_type, t);
            assert_eq!((m.coordinator_epoch, m.offset), (9, 77));
        }
    }

    #[test]
    fn a_data_batch_is_not_a_marker() {
        let batch = BatchBuilder::new()
            .build(&[Record::new(1, None, Some(Bytes::from("x")))])
            .unwrap();
        assert!(parse_marker(&batch).is_err());
        assert_eq!(control_type_of_key(&[0, 0, 0, 5]), None);
        assert_eq!(control_type_of_key(&[0]), None);
    }
}
