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
            "index" | "timeindex" | "txnindex" if !path.with_extension("log").exists() => {
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

/// Name of the producer-state snapshot taken at `offset`: `<offset, 20 digits>.snapshot`.
pub(crate) fn snapshot_name(offset: i64) -> String {
    format!("{}.snapshot", crate::segment::file_stem(offset))
}

/// Offsets of the producer-state snapshots in `dir`, sorted.
pub(crate) fn list_snapshots(dir: &Path) -> Result<Vec<i64>> {
    let mut offsets = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list log dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list log dir", dir, e))?;
        let path = entry.path();
        if path.extension().and_then(|s| s.to_str()) != Some("snapshot") {
            continue;
        }
        if let Some(offset) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i64>().ok())
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Removes the snapshot taken at `offset` (not an error if it is gone already).
pub(crate) fn remove_snapshot(dir: &Path, offset: i64) -> Result<()> {
    let path = dir.join(snapshot_name(offset));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove snapshot", &path, e)),
    }
}

/// Replaces `dir/name` with `bytes` by writing `name.tmp` and renaming it; with `sync`, the temp
/// file is `fdatasync`ed before and the directory `fsync`ed after the rename. Without, the
/// caller syncs later ([`sync_file`]) and a reader must tolerate a torn file after power loss.
/// A leftover `.tmp` is removed by [`list_segments`] on the next open.
pub(crate) fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(|e| Error::io("create file", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| if sync { f.sync_data() } else { Ok(()) })
        .map_err(|e| Error::io("write file", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename file", &path, e))?;
    if sync { sync_dir(dir) } else { Ok(()) }
}

/// `fdatasync`s `path` (the deferred half of [`write_file_atomic`]; the caller syncs the
/// directory). A file already gone (superseded) is not an error.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    match File::open(path) {
        Ok(f) => f
            .sync_data()
            .map_err(|e| Error::io("fdatasync file", path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("open file", path, e)),
    }
}
