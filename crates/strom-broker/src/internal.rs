//! Internal topics (`__consumer_offsets`, `__transaction_state`): single-partition compacted
//! topics the coordinators write their state to and replay when the broker opens.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use strom_log::PartitionLog;
use strom_record::{BatchBuilder, DecodeLimits, Record, decode_records, stored_batches};

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::storage::StorageError;
use crate::topic::CreateTopic;

fn invalid(e: strom_record::Error) -> Error {
    Error::Storage(StorageError::InvalidBatch(e))
}

/// Batches of internal topics found damaged by replays in this process (a metric: a non-zero
/// value means a coordinator's state may miss what those batches held).
static DAMAGED_BATCHES: AtomicU64 = AtomicU64::new(0);

/// How many damaged batches (or unreadable ranges) replays of internal topics have skipped in
/// this process since it started.
pub fn internal_topic_damaged_batches() -> u64 {
    DAMAGED_BATCHES.load(Ordering::Relaxed)
}

/// `segment.bytes` of the internal topics: 100 MiB, as Kafka's.
pub(crate) const INTERNAL_SEGMENT_BYTES: u32 = 100 * 1024 * 1024;

/// What a replay went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReplayReport {
    /// Records handed to the callback.
    pub(crate) records: u64,
    /// Batches whose checksum or records did not decode; skipped.
    pub(crate) damaged_batches: u64,
    /// `[from, to)` offset ranges that could not be read at all (a damaged batch header);
    /// skipped to the next place the log knows a batch starts.
    pub(crate) unreadable: Vec<(i64, i64)>,
    /// The offset after the last batch replayed.
    pub(crate) end: i64,
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
    f: impl FnMut(Option<Bytes>, Option<Bytes>),
) -> Result<ReplayReport> {
    replay_from(partition, partition.log_start_offset(), f)
}

/// How many damaged ranges one read position may have taken out of service before replay
/// falls back to skipping by the index.
const MAX_QUARANTINES_PER_OFFSET: usize = 4;

/// [`replay`] from `from` (clamped to the log start).
///
/// Damage does not stop it: a batch whose checksum or records fail is reported (error log,
/// [`internal_topic_damaged_batches`]) and skipped, and the batches after it in the same read
/// are still replayed; a read that fails outright (a damaged header, an I/O error) is reported
/// and replay resumes at [`strom_log::PartitionLog::next_readable_offset`], or, for a range
/// the log took out of service ([`strom_log::Error::DamagedRange`]), right after it. So
/// everything intact before and after the damage is salvaged. Offset gaps (compaction) and
/// tombstones are normal: each read continues at the offset after the last batch it returned.
pub(crate) fn replay_from(
    partition: &Partition,
    from: i64,
    mut f: impl FnMut(Option<Bytes>, Option<Bytes>),
) -> Result<ReplayReport> {
    // The salvage below needs the local log; other backends are replayed plainly (damage is
    // theirs to report).
    let Some(local) = partition.store().as_local() else {
        return replay_plain(partition, from, f);
    };
    let log = local.log();
    let mut report = ReplayReport::default();
    let mut offset = from.max(partition.log_start_offset());
    let limits = DecodeLimits::default();
    let mut quarantines = 0;
    while offset < partition.high_watermark() {
        let chunk = match read_raw(&log, offset, 1 << 20) {
            Ok(Some(chunk)) => {
                quarantines = 0;
                chunk
            }
            Ok(None) => break,
            // Damage met for the first time: the log locates it and takes exactly the damaged
            // batches out of service, then the read is retried (bounded).
            Err(Error::Storage(StorageError::Corrupt { .. }))
                if quarantines < MAX_QUARANTINES_PER_OFFSET
                    && matches!(log.quarantine(offset), Ok(Some(_))) =>
            {
                quarantines += 1;
                continue;
            }
            // A range the log took out of service (damaged on disk): exactly its offsets are
            // lost; replay resumes at the first intact batch after it.
            Err(Error::Storage(StorageError::DamagedRange {
                first_offset,
                end_offset,
                ..
            })) if end_offset > offset => {
                tracing::error!(
                    dir = %log.dir().display(),
                    offset,
                    first_offset,
                    end_offset,
                    "internal topic: damaged range skipped in replay"
                );
                DAMAGED_BATCHES.fetch_add(1, Ordering::Relaxed);
                report.unreadable.push((offset, end_offset));
                offset = end_offset;
                continue;
            }
            Err(e) => {
                let next = log.next_readable_offset(offset);
                tracing::error!(
                    dir = %log.dir().display(),
                    offset,
                    resume_at = ?next,
                    error = %e,
                    "internal topic: unreadable range skipped in replay"
                );
                DAMAGED_BATCHES.fetch_add(1, Ordering::Relaxed);
                report.unreadable.push((offset, next.unwrap_or(offset)));
                match next {
                    Some(n) if n > offset => {
                        offset = n;
                        continue;
                    }
                    _ => break,
                }
            }
        };
        let start = offset;
        for batch in stored_batches(&chunk) {
            // The log walked these headers before answering; a framing error here means the
            // bytes changed under the read: the next read starts at the batch and reports it.
            let Ok((header, range)) = batch else { break };
            offset = header.next_offset();
            if header.is_control() {
                continue;
            }
            match decode_records(&chunk.slice(range), limits) {
                Ok(decoded) => {
                    for record in decoded.records {
                        report.records += 1;
                        f(record.key, record.value);
                    }
                }
                Err(e) => {
                    tracing::error!(
                        dir = %log.dir().display(),
                        base_offset = header.base_offset,
                        last_offset = header.last_offset(),
                        error = %e,
                        "internal topic: damaged batch skipped in replay"
                    );
                    DAMAGED_BATCHES.fetch_add(1, Ordering::Relaxed);
                    report.damaged_batches += 1;
                }
            }
        }
        if offset <= start {
            // No batch could be framed at `start`: treat it as unreadable.
            let next = log.next_readable_offset(start);
            tracing::error!(dir = %log.dir().display(), offset = start, resume_at = ?next, "internal topic: unframeable batch skipped in replay");
            DAMAGED_BATCHES.fetch_add(1, Ordering::Relaxed);
            report.unreadable.push((start, next.unwrap_or(start)));
            match next {
                Some(n) if n > start => offset = n,
                _ => break,
            }
        }
    }
    report.end = offset;
    Ok(report)
}

/// [`replay_from`] on a backend without the local salvage: reads and decodes every batch, and
/// fails on the first error.
fn replay_plain(
    partition: &Partition,
    from: i64,
    mut f: impl FnMut(Option<Bytes>, Option<Bytes>),
) -> Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let mut offset = from.max(partition.log_start_offset());
    let limits = DecodeLimits::default();
    while offset < partition.high_watermark() {
        let read = partition.read_blocking(offset, 1 << 20)?;
        offset = offset.max(read.log_start_offset);
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
            for record in decode_records(&read.records.slice(range), limits)
                .map_err(invalid)?
                .records
            {
                report.records += 1;
                f(record.key, record.value);
            }
        }
        if offset <= start {
            break;
        }
    }
    report.end = offset;
    Ok(report)
}

/// The bytes of the whole batches the log returns from `offset`, without the checksum pass of
/// [`strom_log::FileSlice::read_to_vec`] (which stops at the first damaged batch): replay
/// checks each batch itself so it can skip exactly the damaged ones.
fn read_raw(log: &PartitionLog, offset: i64, max_bytes: usize) -> Result<Option<Bytes>> {
    let Some(slice) = log.read(offset, max_bytes)?.data else {
        return Ok(None);
    };
    let mut buf = vec![0u8; slice.len];
    slice
        .file
        .read_exact_at(&mut buf, slice.position)
        .map_err(|e| {
            Error::Storage(StorageError::Unavailable {
                op: "read segment",
                resource: log.dir().display().to_string(),
                source: Arc::new(e),
            })
        })?;
    Ok(Some(Bytes::from(buf)))
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
    /// Gives internal topics created before they got [`INTERNAL_SEGMENT_BYTES`] (which then
    /// inherited the 1 GiB topic default: no `segment.bytes` override) the 100 MiB segments new
    /// ones get, durably (a `ConfigsSet` in the metadata log); the next roll uses them. A
    /// `segment.bytes` someone set on the topic is left alone. Failure (a full disk) is logged
    /// and retried at the next open: it must not stop the broker from starting. BLOCKING.
    pub(crate) fn migrate_internal_segment_bytes_blocking(&self) {
        for name in [
            crate::group::OFFSETS_TOPIC,
            crate::txn::TRANSACTION_STATE_TOPIC,
        ] {
            let Ok(topic) = self.topic(name) else {
                continue;
            };
            if topic.overrides().contains_key("segment.bytes") {
                continue;
            }
            let mut configs = topic.overrides().clone();
            configs.insert(
                "segment.bytes".to_owned(),
                INTERNAL_SEGMENT_BYTES.to_string(),
            );
            match self.set_topic_configs_blocking(name, configs, false) {
                Ok(()) => tracing::info!(
                    topic = name,
                    segment_bytes = INTERNAL_SEGMENT_BYTES,
                    "internal topic moved to the internal segment size"
                ),
                Err(e) => tracing::warn!(
                    topic = name,
                    error = %e,
                    "could not move an internal topic to the internal segment size; retried at the next start"
                ),
            }
        }
    }

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

#[cfg(test)]
mod tests {
    use crate::group::OffsetCommit;
    use crate::topic::CreateTopic;
    use crate::{Broker, BrokerConfig};

    fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut logs: Vec<_> = std::fs::read_dir(dir.join("__consumer_offsets-0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        logs
    }

    /// A damaged batch (bad checksum) and a damaged header in closed segments of
    /// `__consumer_offsets`: the broker opens, reports them, and keeps every offset whose batch
    /// is intact, before and after the damage.
    #[test]
    fn damaged_offsets_topic_is_salvaged_around_the_damage() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::new(dir.path());
        let groups: Vec<String> = (0..60).map(|i| format!("g{i:02}")).collect();
        {
            let broker = Broker::open(config.clone()).unwrap();
            broker
                .create_topic_blocking(CreateTopic {
                    name: "t".into(),
                    ..CreateTopic::default()
                })
                .unwrap();
            for (i, g) in groups.iter().enumerate() {
                let c = OffsetCommit {
                    topic: "t".into(),
                    partition: 0,
                    offset: i as i64,
                    leader_epoch: -1,
                    metadata: None,
                };
                let r = broker
                    .commit_offsets_blocking(g, "", -1, None, vec![c])
                    .unwrap();
                assert!(r[0].is_ok());
                if i == 0 {
                    // Tiny segments, so the damage is in closed ones.
                    let configs = [("cleanup.policy", "compact"), ("segment.bytes", "1024")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    broker
                        .set_topic_configs_blocking(crate::group::OFFSETS_TOPIC, configs, false)
                        .unwrap();
                }
            }
            broker.shutdown_blocking().unwrap();
        }
        // Without the checkpoint of the clean shutdown, so the whole topic is replayed.
        std::fs::remove_file(
            dir.path()
                .join("metadata")
                .join("consumer-offsets.checkpoint"),
        )
        .unwrap();
        let logs = segments(dir.path());
        assert!(logs.len() >= 6, "{} segments", logs.len());
        // Segment 1: a flipped byte in the last record of its first batch (checksum fails).
        let mut bytes = std::fs::read(&logs[1]).unwrap();
        let first = strom_record::check_stored_batch(&bytes).unwrap();
        bytes[first.total_len() - 1] ^= 0xff;
        std::fs::write(&logs[1], &bytes).unwrap();
        // Segment 3: the length of its second batch destroyed (the header cannot be walked).
        let mut bytes = std::fs::read(&logs[3]).unwrap();
        let first = strom_record::check_stored_batch(&bytes).unwrap();
        let at = first.total_len() + 8;
        bytes[at..at + 4].copy_from_slice(&0x7fff_fff0_i32.to_be_bytes());
        std::fs::write(&logs[3], &bytes).unwrap();

        let damaged_before = super::internal_topic_damaged_batches();
        let broker = Broker::open(config).unwrap();
        assert!(super::internal_topic_damaged_batches() >= damaged_before + 2);
        let present: Vec<&String> = groups
            .iter()
            .filter(|g| !broker.groups().fetch_offsets(g, None).is_empty())
            .collect();
        let missing = groups.len() - present.len();
        // One batch from segment 1, at most the rest of segment 3 (about 8 batches a segment).
        assert!((2..=12).contains(&missing), "{missing} groups lost");
        // Before and after the damage: kept, with their offsets.
        for (i, g) in groups.iter().enumerate() {
            if i < 3 || i >= groups.len() - 15 {
                let got = broker.groups().fetch_offsets(g, None);
                assert_eq!(got.len(), 1, "{g}");
                assert_eq!(got[0].1.as_ref().unwrap().offset, i as i64);
            }
        }
    }
}

#[cfg(test)]
mod segment_bytes_tests {
    use std::collections::BTreeMap;

    use super::INTERNAL_SEGMENT_BYTES;
    use crate::topic::CreateTopic;
    use crate::{Broker, BrokerConfig};

    fn create(broker: &Broker, name: &str, configs: &[(&str, &str)]) {
        broker
            .create_topic_blocking(CreateTopic {
                name: name.to_owned(),
                partitions: Some(1),
                replication_factor: None,
                configs: configs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
                validate_only: false,
            })
            .unwrap();
    }

    fn segment_bytes(broker: &Broker, name: &str) -> (Option<String>, u64) {
        let topic = broker.topic(name).unwrap();
        let log_config = topic.partition(0).unwrap().store().config();
        (
            topic.overrides().get("segment.bytes").cloned(),
            log_config.segment_bytes,
        )
    }

    /// Internal topics created before they got 100 MiB segments (no `segment.bytes` override,
    /// so the 1 GiB default) are moved to 100 MiB when the broker opens, durably; a value
    /// someone set is kept, as are the topic's other configs.
    #[test]
    fn old_internal_topics_move_to_the_internal_segment_size_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::new(dir.path());
        {
            let broker = Broker::open(config.clone()).unwrap();
            // As the broker created them before: compacted, default segment size.
            create(
                &broker,
                crate::group::OFFSETS_TOPIC,
                &[("cleanup.policy", "compact")],
            );
            // Set on purpose to the old default: kept.
            create(
                &broker,
                crate::txn::TRANSACTION_STATE_TOPIC,
                &[
                    ("cleanup.policy", "compact"),
                    ("segment.bytes", "1073741824"),
                ],
            );
            assert_eq!(
                segment_bytes(&broker, crate::group::OFFSETS_TOPIC),
                (None, 1 << 30)
            );
            broker.shutdown_blocking().unwrap();
        }
        let want = INTERNAL_SEGMENT_BYTES.to_string();
        for _ in 0..2 {
            let broker = Broker::open(config.clone()).unwrap();
            assert_eq!(
                segment_bytes(&broker, crate::group::OFFSETS_TOPIC),
                (Some(want.clone()), u64::from(INTERNAL_SEGMENT_BYTES))
            );
            let offsets = broker.topic(crate::group::OFFSETS_TOPIC).unwrap();
            assert_eq!(
                offsets
                    .overrides()
                    .get("cleanup.policy")
                    .map(String::as_str),
                Some("compact")
            );
            assert_eq!(
                segment_bytes(&broker, crate::txn::TRANSACTION_STATE_TOPIC),
                (Some("1073741824".to_owned()), 1 << 30)
            );
            broker.shutdown_blocking().unwrap();
        }
        // Persisted: the metadata log holds the change, it is not only redone at each open.
        let events = std::fs::read_to_string(dir.path().join("metadata").join("events.log"))
            .unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("metadata").join("snapshot"))
                .unwrap_or_default();
        assert!(
            events.contains(&format!("\"segment.bytes\":\"{want}\"")),
            "{events}"
        );
    }
}
