//! The sparse offset index: batch base offset → byte position in the segment.

use std::path::Path;

use super::IndexFile;
use crate::Result;

const ENTRY_LEN: usize = 8;

/// One entry: the batch starting at `position` has base offset `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) offset: i64,
    pub(crate) position: u64,
}

/// Offset index of one segment. Entries are strictly increasing in offset and position.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    base_offset: i64,
    entries: Vec<OffsetEntry>,
    file: IndexFile,
}

impl OffsetIndex {
    /// Opens the index and returns it with the entries read from disk, unchecked; the caller
    /// validates them against the log (see `recovery`).
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<(Self, Vec<OffsetEntry>, bool)> {
        let (file, content) = IndexFile::open(path)?;
        let torn = content.len() % ENTRY_LEN != 0;
        let entries = content
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                let mut rel = [0u8; 4];
                let mut pos = [0u8; 4];
                rel.copy_from_slice(c.get(..4).unwrap_or(&[0; 4]));
                pos.copy_from_slice(c.get(4..8).unwrap_or(&[0; 4]));
                OffsetEntry {
                    offset: base_offset + i64::from(u32::from_be_bytes(rel)),
                    position: u64::from(u32::from_be_bytes(pos)),
                }
            })
            .collect();
        Ok((
            OffsetIndex {
                base_offset,
                entries: Vec::new(),
                file,
            },
            entries,
            torn,
        ))
    }

    /// Installs `entries` (already validated) as the content, rewriting the file when
    /// `rewrite` is set.
    pub(crate) fn install(&mut self, entries: Vec<OffsetEntry>, rewrite: bool) -> Result<()> {
        self.entries = entries;
        if rewrite {
            let bytes: Vec<u8> = self.entries.iter().flat_map(|e| self.encode(*e)).collect();
            self.file.rewrite(&bytes);
        }
        Ok(())
    }

    fn encode(&self, e: OffsetEntry) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        let rel = (e.offset - self.base_offset) as u32;
        out[..4].copy_from_slice(&rel.to_be_bytes());
        out[4..].copy_from_slice(&(e.position as u32).to_be_bytes());
        out
    }

    /// Appends an entry for a new batch. Callers guarantee monotonicity.
    pub(crate) fn push(&mut self, entry: OffsetEntry) -> Result<()> {
        let bytes = self.encode(entry);
        self.entries.push(entry);
        self.file.append(&bytes);
        Ok(())
    }

    /// The last indexed batch whose base offset is `<= offset`, or the segment's first batch.
    pub(crate) fn lookup(&self, offset: i64) -> OffsetEntry {
        let idx = self.entries.partition_point(|e| e.offset <= offset);
        idx.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .copied()
            .unwrap_or(OffsetEntry {
                offset: self.base_offset,
                position: 0,
            })
    }

    /// The first indexed batch whose base offset is `> offset`.
    pub(crate) fn next_after(&self, offset: i64) -> Option<OffsetEntry> {
        let idx = self.entries.partition_point(|e| e.offset <= offset);
        self.entries.get(idx).copied()
    }

    /// Drops every entry at or after `position` (after a truncation of the log).
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

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }
}
