//! Internal topics (`__consumer_offsets`, `__transaction_state`): single-partition compacted
//! topics the coordinators write their state to and replay when the broker opens.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records, stored_batches};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::topic::CreateTopic;

/// `segment.bytes` of the internal topics (Kafka's default for both: 100 MiB).
const INTERNAL_SEGMENT_BYTES: u64 = 100 << 20;

fn invalid(e: strom_record::Error) -> Error {
    Error::Log(strom_log::Error::InvalidBatch(e))
}

/// Calls `f(key, value)` for every record of `partition` from its log start to its high
/// watermark, in offset order. Control batches are skipped. BLOCKING.
///
/// The topic is compacted, so the log has offset gaps and batches that compaction emptied or
/// thinned: batches are walked as stored (framing only; `decode_records` checks the CRC and
/// accepts increasing offset deltas), and the next read starts after the last batch returned.
/// Records that compaction kept are the latest of their key, so replaying them in order gives
/// the same state as replaying the whole history.
pub(crate) fn replay(
    partition: &Partition,
    mut f: impl FnMut(Option<Bytes>, Option<Bytes>),
) -> Result<()> {
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let read = partition.read_blocking(offset, 1 << 20)?;
        if read.records.is_empty() {
            break;
        }
        let start = offset;
        for batch in stored_batches(&read.records) {
            let (header, range) = batch.map_err(invalid)?;
            offset = header.next_offset();
            if header.is_control() {
                continue;
            }
            let bytes = read.records.slice(range);
            let decoded = decode_records(&bytes, DecodeLimits::default()).map_err(invalid)?;
            for record in decoded.records {
                f(record.key, record.value);
            }
        }
        if offset <= start {
            break;
        }
    }
    Ok(())
}

/// Encodes `(key, value)` records (a `None` value is a tombstone) as one batch stamped `now`.
pub(crate) fn batch_of(records: &[(Bytes, Option<Bytes>)], now: i64) -> Result<Vec<u8>> {
    let records: Vec<Record> = records
        .iter()
        .map(|(k, v)| Record::new(now, Some(k.clone()), v.clone()))
        .collect();
    BatchBuilder::new().build(&records).map_err(invalid)
}

impl Broker {
    /// Partition 0 of the internal topic `name`, created (compacted, one partition) if missing.
    /// BLOCKING.
    pub(crate) fn internal_partition_blocking(&self, name: &str) -> Result<Arc<Partition>> {
        let topic = match self.topic(name) {
            Ok(t) => t,
            Err(_) => {
                let mut configs = BTreeMap::new();
                configs.insert("cleanup.policy".to_owned(), "compact".to_owned());
                // Kafka's offsets.topic.segment.bytes and transaction.state.log.segment.bytes:
                // smaller segments than ordinary topics, so the cleaner can reach the state
                // soon (only closed segments are cleaned).
                configs.insert(
                    "segment.bytes".to_owned(),
                    INTERNAL_SEGMENT_BYTES.to_string(),
                );
                let req = CreateTopic {
                    name: name.to_owned(),
                    partitions: Some(1),
                    replication_factor: None,
                    configs,
                    validate_only: false,
                };
                match self.create_topic_blocking(req) {
                    Ok(_) | Err(Error::TopicAlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
                self.topic(name)?
            }
        };
        Ok(Arc::clone(topic.partition(0)?))
    }
}
