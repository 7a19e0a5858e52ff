//! Transaction indexes: the `<base>.txnindex` file of a segment, one entry per aborted
//! transaction whose ABORT marker lies in that segment (Kafka's `TransactionIndex`), plus the
//! read-side types a `read_committed` reader needs.
//!
//! An entry is 34 bytes, big-endian: version `i16` (0), producer id `i64`, first offset `i64`,
//! last offset `i64` (the marker's), last stable offset `i64` (the first offset of the
//! earliest transaction still open right after the marker, else the marker's offset + 1).
//! Entries are in marker order. The last stable offset lets a search stop early: no entry after
//! one whose last stable offset is `>= to` can begin below `to`.
//!
//! The entries are kept in memory as well (a few dozen bytes per aborted transaction), so a
//! fetch never reads the file. A file whose tail is torn or garbage keeps its valid prefix and
//! is flagged [`TxnIndex::damaged`]; the log then rebuilds it from the segments.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use strom_record::BatchHeader;
use tracing::{debug, warn};

use crate::{Error, Result};

/// Bytes of one `.txnindex` entry.
pub const TXN_INDEX_ENTRY_LEN: usize = 34;

/// An aborted transaction as a `read_committed` fetch reports it (Kafka's
/// `AbortedTransaction`): the reader skips the producer's transactional batches from
/// `first_offset` until that producer's ABORT marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
}

/// An open transaction of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OngoingTxn {
    /// The producer.
    pub producer_id: i64,
    /// The producer's epoch.
    pub producer_epoch: i16,
    /// Offset of the transaction's first record.
    pub first_offset: i64,
}

/// One producer as `DescribeProducers` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub producer_epoch: i16,
    /// Sequence number of its last batch, `-1` if none is remembered.
    pub last_sequence: i32,
    /// Timestamp of its last batch or marker.
    pub last_timestamp: i64,
    /// Coordinator epoch of its last marker, `-1` if none.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction, if one is open.
    pub current_txn_start_offset: Option<i64>,
}

/// One `.txnindex` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnIndexEntry {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) last_stable_offset: i64,
}

impl TxnIndexEntry {
    fn encode(&self) -> [u8; TXN_INDEX_ENTRY_LEN] {
        let mut out = [0u8; TXN_INDEX_ENTRY_LEN];
        let fields = [
            self.producer_id,
            self.first_offset,
            self.last_offset,
            self.last_stable_offset,
        ];
        for (i, f) in fields.iter().enumerate() {
            if let Some(dst) = out.get_mut(2 + i * 8..10 + i * 8) {
                dst.copy_from_slice(&f.to_be_bytes());
            }
        }
        out
    }

    fn decode(buf: &[u8]) -> Option<Self> {
        let field = |i: usize| -> Option<i64> {
            let bytes: [u8; 8] = buf.get(2 + i * 8..10 + i * 8)?.try_into().ok()?;
            Some(i64::from_be_bytes(bytes))
        };
        let version = i16::from_be_bytes(buf.get(..2)?.try_into().ok()?);
        if version != 0 {
            return None;
        }
        Some(TxnIndexEntry {
            producer_id: field(0)?,
            first_offset: field(1)?,
            last_offset: field(2)?,
            last_stable_offset: field(3)?,
        })
    }
}

/// The transaction index of one segment.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    base_offset: i64,
    entries: Vec<TxnIndexEntry>,
    /// Opened on the first append (most segments never get one).
    file: Option<File>,
    /// The file had a torn or invalid tail (dropped from `entries`): rebuild from the log.
    damaged: bool,
}

impl TxnIndex {
    /// Loads `path` (missing = empty). A torn or invalid tail is dropped and flags the index
    /// damaged; only a failing read is an error.
    pub(crate) fn open(path: PathBuf, base_offset: i64) -> Result<Self> {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read txn index", &path, e)),
        };
        let mut entries = Vec::with_capacity(bytes.len() / TXN_INDEX_ENTRY_LEN);
        let mut damaged = bytes.len() % TXN_INDEX_ENTRY_LEN != 0;
        for chunk in bytes.chunks_exact(TXN_INDEX_ENTRY_LEN) {
            let valid = TxnIndexEntry::decode(chunk).filter(|e| {
                e.producer_id >= 0
                    && e.first_offset >= 0
                    && e.first_offset < e.last_offset
                    && e.last_offset >= base_offset
                    && entries
                        .last()
                        .is_none_or(|p: &TxnIndexEntry| p.last_offset < e.last_offset)
            });
            match valid {
                Some(e) => entries.push(e),
                None => {
                    damaged = true;
                    break;
                }
            }
        }
        if damaged {
            warn!(path = %path.display(), kept = entries.len(), "transaction index has a damaged tail; it will be rebuilt from the log");
        }
        Ok(TxnIndex {
            path,
            base_offset,
            entries,
            file: None,
            damaged,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entries(&self) -> &[TxnIndexEntry] {
        &self.entries
    }

    pub(crate) fn is_damaged(&self) -> bool {
        self.damaged
    }

    /// Flags the index for a rebuild (an entry does not fit the segment).
    pub(crate) fn mark_damaged(&mut self) {
        self.damaged = true;
    }

    fn file(&mut self) -> Result<&File> {
        if self.file.is_none() {
            let f = crate::fs::open_rw(&self.path, "open txn index")?;
            self.file = Some(f);
        }
        self.file.as_ref().ok_or_else(|| Error::Corrupt {
            path: self.path.clone(),
            reason: "txn index file not open".into(),
        })
    }

    /// Appends an entry (in memory, then to the file).
    pub(crate) fn append(&mut self, entry: TxnIndexEntry) -> Result<()> {
        let at = (self.entries.len() * TXN_INDEX_ENTRY_LEN) as u64;
        let path = self.path.clone();
        crate::fs::write_all_at(self.file()?, &entry.encode(), at, "write txn index", &path)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Drops the entries whose marker is at or after `from` and appends `rebuilt` (the
    /// entries a scan of the log from `from` found), rewriting the file only if something
    /// changed. Clears the damaged flag.
    pub(crate) fn replace_from(&mut self, from: i64, rebuilt: &[TxnIndexEntry]) -> Result<()> {
        let keep = self.entries.partition_point(|e| e.last_offset < from);
        let unchanged = !self.damaged && self.entries.get(keep..) == Some(rebuilt);
        if unchanged {
            return Ok(());
        }
        let was_damaged = self.damaged;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(rebuilt);
        self.damaged = false;
        if self.entries.is_empty() {
            self.file = None;
            return crate::fs::remove_file(&self.path, "remove txn index");
        }
        let mut bytes = Vec::with_capacity(self.entries.len() * TXN_INDEX_ENTRY_LEN);
        for e in &self.entries {
            bytes.extend_from_slice(&e.encode());
        }
        let path = self.path.clone();
        let file = self.file()?;
        let written = crate::fs::set_len(file, 0, "rewrite txn index", &path)
            .and_then(|()| crate::fs::write_all_at(file, &bytes, 0, "rewrite txn index", &path))
            .and_then(|()| crate::fs::sync_data(file, "rewrite txn index", &path));
        if let Err(e) = written {
            // The entries in memory are right; the file must not be trusted as it is (a short
            // one would forget aborted transactions). A length that is no multiple of an entry
            // makes the next open rebuild it from the log; growing a file needs no free space.
            let marked = crate::fs::set_len(file, 1, "mark txn index damaged", &path);
            warn!(path = %path.display(), marked = marked.is_ok(), "cannot rewrite the transaction index (kept in memory, rebuilt at the next open): {e}");
            return Ok(());
        }
        if was_damaged {
            warn!(path = %path.display(), entries = self.entries.len(), base_offset = self.base_offset, "rebuilt transaction index from the log");
        } else {
            debug!(path = %path.display(), entries = self.entries.len(), "transaction index follows the log after recovery or truncation");
        }
        Ok(())
    }

    /// `fdatasync`s the file, if it exists.
    pub(crate) fn sync(&self) -> Result<()> {
        match &self.file {
            Some(f) => crate::fs::sync_data(f, "fdatasync txn index", &self.path),
            None => Ok(()),
        }
    }
}

/// Skips the batches of aborted transactions, as a Kafka `read_committed` consumer does with
/// the aborted-transactions list of a fetch: feed it the batches in offset order.
///
/// ```
/// use strom_log::{AbortedFilter, AbortedTxn};
/// let filter = AbortedFilter::new(vec![AbortedTxn { producer_id: 7, first_offset: 10 }]);
/// # let _ = filter;
/// ```
#[derive(Debug, Clone, Default)]
pub struct AbortedFilter {
    /// Aborted transactions not yet reached, by first offset.
    pending: BTreeMap<i64, Vec<i64>>,
    /// Producers inside an aborted transaction at the current position.
    active: BTreeSet<i64>,
}

impl AbortedFilter {
    /// A filter for the aborted transactions of one read.
    pub fn new(aborted: impl IntoIterator<Item = AbortedTxn>) -> Self {
        let mut pending: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for a in aborted {
            pending
                .entry(a.first_offset)
                .or_default()
                .push(a.producer_id);
        }
        AbortedFilter {
            pending,
            active: BTreeSet::new(),
        }
    }

    /// Whether the batch with `header` (the next one in offset order) belongs to an aborted
    /// transaction and must be skipped. `marker_is_abort` tells, for a control batch, whether
    /// it is an ABORT marker (which ends the producer's aborted transaction; markers are
    /// always skipped by readers anyway, so a control batch answers `true`).
    pub fn skip(&mut self, header: &BatchHeader, marker_is_abort: bool) -> bool {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > header.last_offset() {
                break;
            }
            self.active.extend(entry.remove());
        }
        if header.is_control() {
            if marker_is_abort {
                self.active.remove(&header.producer_id);
            }
            return true;
        }
        header.is_transactional() && self.active.contains(&header.producer_id)
    }
}
