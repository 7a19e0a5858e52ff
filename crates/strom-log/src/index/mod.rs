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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Bytes of entries buffered before they are written to the file. Entries not yet written are
/// simply re-derived by recovery, which then scans at most this many entries' worth of log more.
const PENDING_LIMIT: usize = 1024;

/// An append-only file of fixed-size entries, mirrored by the in-memory index that owns it.
/// Appends are buffered (see [`PENDING_LIMIT`]) so the hot path costs no extra system call.
#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
}

impl IndexFile {
    /// Opens (creating) the file and returns it with its whole content.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<u8>)> {
        let content = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read index", path, e)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("open index", path, e))?;
        Ok((
            IndexFile {
                path: path.to_path_buf(),
                file,
                pending: Vec::new(),
            },
            content,
        ))
    }

    pub(crate) fn append(&mut self, entry: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(entry);
        if self.pending.len() >= PENDING_LIMIT {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.file
                .write_all(&self.pending)
                .map_err(|e| Error::io("append index", &self.path, e))?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Replaces the whole content (after a rebuild or truncation).
    pub(crate) fn rewrite(&mut self, content: &[u8]) -> Result<()> {
        self.pending.clear();
        self.file
            .set_len(0)
            .map_err(|e| Error::io("truncate index", &self.path, e))?;
        self.pending.extend_from_slice(content);
        self.write_pending()
    }

    /// Writes buffered entries and `fdatasync`s the file.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.write_pending()?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync index", &self.path, e))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
