//! Sparse per-segment indexes, held in memory and mirrored to append-only files.
//!
//! Both indexes are hints: recovery checks them against the log and rebuilds them from the log
//! when they disagree, so they are written without `fsync` on the append path and synced only
//! when a segment is rolled or closed.
//!
//! On disk (big-endian), entries relative to the segment's base offset:
//! - `<base>.index`: `relative_offset: u32, position: u32` (8 bytes), one entry at most every
//!   `index.interval.bytes` of log, for the batch starting at `position`.
//! - `<base>.timeindex`: `max_timestamp_so_far: i64, relative_offset: u32, position: u32`
//!   (16 bytes), written with an offset entry when the segment's largest timestamp grew.

pub(crate) mod offset;
pub(crate) mod time;

use std::fs::File;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::{Error, Result};

/// Bytes of entries buffered before they are written to the file. Entries not yet written are
/// simply re-derived by recovery, which then scans at most this many entries' worth of log more.
const PENDING_LIMIT: usize = 1024;

/// An append-only file of fixed-size entries, mirrored by the in-memory index that owns it.
/// Appends are buffered (see [`PENDING_LIMIT`]) so the hot path costs no extra system call.
///
/// The file is a hint, so a failure to write or sync it (disk full, I/O error) never fails the
/// log operation that caused it: the in-memory index stays complete and correct, and the file
/// is emptied (best effort) and left alone until the next [`IndexFile::rewrite`]. An empty or
/// torn index file makes recovery rebuild the index from the segment; a mere prefix would not
/// (and a prefix of a time index would understate the segment's largest timestamp), which is
/// why the file is emptied rather than left short.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    /// A write or sync failed: the file no longer mirrors the index (it is empty if emptying it
    /// worked). Appends stay in memory until a rewrite.
    lost: bool,
}

impl IndexFile {
    /// Opens (creating) the file and returns it with its whole content.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<u8>)> {
        let content = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read index", path, e)),
        };
        let file = crate::fs::open_append(path, "open index")?;
        Ok((
            IndexFile {
                path: path.to_path_buf(),
                file,
                pending: Vec::new(),
                lost: false,
            },
            content,
        ))
    }

    pub(crate) fn append(&mut self, entry: &[u8]) {
        if self.lost {
            return;
        }
        self.pending.extend_from_slice(entry);
        if self.pending.len() >= PENDING_LIMIT {
            self.write_pending();
        }
    }

    fn write_pending(&mut self) {
        if self.lost {
            self.pending.clear();
            return;
        }
        if !self.pending.is_empty() {
            let written =
                crate::fs::write_all(&self.file, &self.pending, "append index", &self.path);
            self.pending.clear();
            if let Err(e) = written {
                self.give_up(&e);
            }
        }
    }

    /// Stops mirroring the index to the file after `e`, emptying the file so recovery rebuilds
    /// the index instead of trusting a partial one.
    fn give_up(&mut self, e: &Error) {
        self.lost = true;
        self.pending.clear();
        let emptied = crate::fs::set_len(&self.file, 0, "truncate index", &self.path);
        warn!(
            path = %self.path.display(),
            emptied = emptied.is_ok(),
            "index file write failed; the index is kept in memory and rebuilt from the log at the next open: {e}"
        );
    }

    /// Replaces the whole content (after a rebuild or truncation), mirroring the index to the
    /// file again after an earlier failure.
    pub(crate) fn rewrite(&mut self, content: &[u8]) {
        self.pending.clear();
        self.lost = false;
        if let Err(e) = crate::fs::set_len(&self.file, 0, "truncate index", &self.path) {
            self.give_up(&e);
            return;
        }
        self.pending.extend_from_slice(content);
        self.write_pending();
    }

    /// Writes buffered entries and `fdatasync`s the file (neither can fail the caller: see the
    /// type's docs).
    pub(crate) fn sync(&mut self) {
        self.write_pending();
        if self.lost {
            return;
        }
        if let Err(e) = crate::fs::sync_data(&self.file, "fdatasync index", &self.path) {
            self.give_up(&e);
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
