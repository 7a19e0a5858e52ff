//! File-system helpers: directory listing, directory fsync, small checkpoint files,
//! preallocation.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Base offsets of the segments in `dir`, sorted. Removes leftovers of interrupted operations
/// (`*.tmp`) and index files whose log file is gone.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    let mut orphans = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list log dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list log dir", dir, e))?;
        let path = entry.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        match ext {
            "log" => {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
            "tmp" => orphans.push(path.clone()),
            "index" | "timeindex" if !path.with_extension("log").exists() => {
                orphans.push(path.clone());
            }
            _ => {}
        }
    }
    for path in orphans {
        std::fs::remove_file(&path).map_err(|e| Error::io("remove leftover", &path, e))?;
    }
    bases.sort_unstable();
    Ok(bases)
}

/// `fsync` a directory so created, renamed or deleted entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", dir, e))
}

/// Reads a decimal offset from a small checkpoint file, `None` if it does not exist.
pub(crate) fn read_offset_file(path: &Path) -> Result<Option<i64>> {
    match std::fs::read_to_string(path) {
        Ok(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::Corrupt {
                path: path.to_path_buf(),
                reason: format!("not an offset: {:?}", s.trim()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read checkpoint", path, e)),
    }
}

/// Atomically replaces `dir/name` with `offset` (write temp, fsync, rename, fsync dir).
pub(crate) fn write_offset_file(dir: &Path, name: &str, offset: i64) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| Error::io("create checkpoint", &tmp, e))?;
    f.write_all(format!("{offset}\n").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io("write checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename checkpoint", &path, e))?;
    sync_dir(dir)
}

/// Modification time of `path` in milliseconds since the epoch.
pub(crate) fn mtime_ms(path: &Path) -> Result<i64> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| Error::io("stat segment", path, e))?;
    Ok(modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

/// Reserves `len` bytes of disk for `file` without changing its length (`FALLOC_FL_KEEP_SIZE`),
/// so appends into the segment need no block allocation. Best effort: a file system that does
/// not support it just skips it.
pub(crate) fn preallocate(file: &File, len: u64) {
    let flags = rustix::fs::FallocateFlags::KEEP_SIZE;
    if let Err(e) = rustix::fs::fallocate(file, flags, 0, len) {
        tracing::debug!("fallocate not supported here: {e}");
    }
}
