//! The sparse time index: largest timestamp so far → the batch where it was reached.

use std::path::Path;

use super::IndexFile;
use crate::Result;

const ENTRY_LEN: usize = 16;

/// One entry: every record in batches before and including the batch at (`offset`,
/// `position`) has a timestamp `<= max_timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) max_timestamp: i64,
    pub(crate) offset: i64,
    pub(crate) position: u64,
}

/// Time index of one segment. Entries are strictly increasing in all three fields.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    entries: Vec<TimeEntry>,
    file: IndexFile,
}

impl TimeIndex {
    /// Opens the index and returns it with the unchecked entries read from disk.
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<(Self, Vec<TimeEntry>, bool)> {
        let (file, content) = IndexFile::open(path)?;
        let torn = content.len() % ENTRY_LEN != 0;
        let entries = content
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                let mut ts = [0u8; 8];
                let mut rel = [0u8; 4];
                let mut pos = [0u8; 4];
                ts.copy_from_slice(c.get(..8).unwrap_or(&[0; 8]));
                rel.copy_from_slice(c.get(8..12).unwrap_or(&[0; 4]));
                pos.copy_from_slice(c.get(12..16).unwrap_or(&[0; 4]));
                TimeEntry {
                    max_timestamp: i64::from_be_bytes(ts),
                    offset: base_offset + i64::from(u32::from_be_bytes(rel)),
                    position: u64::from(u32::from_be_bytes(pos)),
                }
            })
            .collect();
        Ok((
            TimeIndex {
                base_offset,
                entries: Vec::new(),
                file,
            },
            entries,
            torn,
        ))
    }

    /// Installs validated entries, rewriting the file when `rewrite` is set.
    pub(crate) fn install(&mut self, entries: Vec<TimeEntry>, rewrite: bool) -> Result<()> {
        self.entries = entries;
        if rewrite {
            let bytes: Vec<u8> = self.entries.iter().flat_map(|e| self.encode(*e)).collect();
            self.file.rewrite(&bytes);
        }
        Ok(())
    }

    fn encode(&self, e: TimeEntry) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[..8].copy_from_slice(&e.max_timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&((e.offset - self.base_offset) as u32).to_be_bytes());
        out[12..].copy_from_slice(&(e.position as u32).to_be_bytes());
        out
    }

    /// Appends an entry if it raises the largest timestamp.
    pub(crate) fn maybe_push(&mut self, entry: TimeEntry) -> Result<()> {
        let grows = self.entries.last().is_none_or(|last| {
            entry.max_timestamp > last.max_timestamp && entry.position > last.position
        });
        if grows {
            let bytes = self.encode(entry);
            self.entries.push(entry);
            self.file.append(&bytes);
        }
        Ok(())
    }

    /// Where a scan for the first record with timestamp `>= ts` may start: the batch of the
    /// last entry whose timestamp is still `< ts` (every batch before it is older), as
    /// `(base_offset, position)`, or the segment's first batch.
    pub(crate) fn lookup(&self, ts: i64) -> (i64, u64) {
        let idx = self.entries.partition_point(|e| e.max_timestamp < ts);
        idx.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or((self.base_offset, 0), |e| (e.offset, e.position))
    }

    /// The largest timestamp recorded, if any.
    pub(crate) fn last(&self) -> Option<TimeEntry> {
        self.entries.last().copied()
    }

    /// Drops every entry at or after `position`.
    pub(crate) fn truncate_to_position(&mut self, position: u64) -> Result<()> {
        let keep = self.entries.partition_point(|e| e.position < position);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            let entries = std::mem::take(&mut self.entries);
            self.install(entries, true)?;
        }
        Ok(())
    }

    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync();
        Ok(())
    }
}
