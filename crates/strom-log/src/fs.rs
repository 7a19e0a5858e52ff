//! File-system helpers: directory listing, directory fsync, small checkpoint files,
//! preallocation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::warn;

use crate::fault::{self, FileOp};
use crate::{Error, Result};

/// Writes all of `buf` at `position` of `file` (`path` names it in errors and for the fault
/// seam).
pub(crate) fn write_all_at(
    file: &File,
    buf: &[u8],
    position: u64,
    op: &'static str,
    path: &Path,
) -> Result<()> {
    fault::check(FileOp::Write, path)
        .and_then(|()| file.write_all_at(buf, position))
        .map_err(|e| Error::io(op, path, e))
}

/// Appends all of `buf` to `file` (opened for appending).
pub(crate) fn write_all(mut file: &File, buf: &[u8], op: &'static str, path: &Path) -> Result<()> {
    fault::check(FileOp::Write, path)
        .and_then(|()| file.write_all(buf))
        .map_err(|e| Error::io(op, path, e))
}

/// `fdatasync`s `file`.
pub(crate) fn sync_data(file: &File, op: &'static str, path: &Path) -> Result<()> {
    fault::check(FileOp::Sync, path)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(op, path, e))
}

/// Sets the length of `file`.
pub(crate) fn set_len(file: &File, len: u64, op: &'static str, path: &Path) -> Result<()> {
    fault::check(FileOp::Truncate, path)
        .and_then(|()| file.set_len(len))
        .map_err(|e| Error::io(op, path, e))
}

/// Opens `path` for reading and writing, creating it if missing (never truncating).
pub(crate) fn open_rw(path: &Path, op: &'static str) -> Result<File> {
    fault::check(FileOp::Create, path)
        .and_then(|()| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        })
        .map_err(|e| Error::io(op, path, e))
}

/// Opens `path` for appending, creating it if missing.
pub(crate) fn open_append(path: &Path, op: &'static str) -> Result<File> {
    fault::check(FileOp::Create, path)
        .and_then(|()| OpenOptions::new().create(true).append(true).open(path))
        .map_err(|e| Error::io(op, path, e))
}

/// Removes `path`; a file already gone is not an error.
pub(crate) fn remove_file(path: &Path, op: &'static str) -> Result<()> {
    match fault::check(FileOp::Remove, path).and_then(|()| std::fs::remove_file(path)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(op, path, e)),
    }
}

/// Creates `dir` and any missing parent, durably: after creating them it `fsync`s the parent
/// of every directory it created, so a crash cannot make a directory (and what is written in
/// it) disappear.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d);
        at = d.parent();
    }
    fault::check_dir(FileOp::Create, dir)
        .and_then(|()| std::fs::create_dir_all(dir))
        .map_err(|e| Error::io("create dir", dir, e))?;
    // Outermost first: each parent's entry for the new child becomes durable.
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

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
    // Leftovers are harmless (ignored by everything else): failing to remove one, for example on
    // a read-only or failing disk, must not stop the log from opening.
    for path in orphans {
        if let Err(e) = remove_file(&path, "remove leftover") {
            warn!(path = %path.display(), "cannot remove a leftover file: {e}");
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// `fsync` a directory so created, renamed or deleted entries are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fault::check_dir(FileOp::SyncDir, dir)
        .and_then(|()| File::open(dir))
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
    let mut f = fault::check(FileOp::Create, &tmp)
        .and_then(|()| File::create(&tmp))
        .map_err(|e| Error::io("create checkpoint", &tmp, e))?;
    let written = fault::check(FileOp::Write, &tmp)
        .and_then(|()| f.write_all(format!("{offset}\n").as_bytes()))
        .and_then(|()| fault::check(FileOp::Sync, &tmp))
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io("write checkpoint", &tmp, e))
        .and_then(|()| rename(&tmp, &path, "rename checkpoint"));
    if let Err(e) = written {
        // Do not leave a (possibly large, possibly torn) temp file on a full disk.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Renames `from` over `to` (the fault seam sees `to`).
pub(crate) fn rename(from: &Path, to: &Path, op: &'static str) -> Result<()> {
    fault::check(FileOp::Rename, to)
        .and_then(|()| std::fs::rename(from, to))
        .map_err(|e| Error::io(op, to, e))
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
    remove_file(&dir.join(snapshot_name(offset)), "remove snapshot")
}

/// Replaces `dir/name` with `bytes` by writing `name.tmp` and renaming it; with `sync`, the temp
/// file is `fdatasync`ed before and the directory `fsync`ed after the rename. Without, the
/// caller syncs later ([`sync_file`]) and a reader must tolerate a torn file after power loss.
/// A leftover `.tmp` is removed by [`list_segments`] on the next open.
pub(crate) fn write_file_atomic(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = fault::check(FileOp::Create, &tmp)
        .and_then(|()| File::create(&tmp))
        .map_err(|e| Error::io("create file", &tmp, e))?;
    let written = fault::check(FileOp::Write, &tmp)
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| {
            if sync {
                fault::check(FileOp::Sync, &tmp).and_then(|()| f.sync_data())
            } else {
                Ok(())
            }
        })
        .map_err(|e| Error::io("write file", &tmp, e))
        .and_then(|()| rename(&tmp, &path, "rename file"));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if sync { sync_dir(dir) } else { Ok(()) }
}

/// `fdatasync`s `path` (the deferred half of [`write_file_atomic`]; the caller syncs the
/// directory). A file already gone (superseded) is not an error.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    match File::open(path) {
        Ok(f) => sync_data(&f, "fdatasync file", path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("open file", path, e)),
    }
}
