//! The crash-safe replacement of segments by a cleaned one, and its recovery at open.
//!
//! A clean of the segments `[base, end)` (several adjacent segments may be merged into one)
//! goes through these steps; a crash at any point leaves either the old segments or the new
//! one, never both or a mix:
//!
//! 1. Write `<base>.log.cleaned`, `.index.cleaned`, `.timeindex.cleaned`, `.txnindex.cleaned`
//!    and `fdatasync` them.
//! 2. Write `<base>.swap-end` holding `end` (atomically: temp file, sync, rename, sync dir).
//! 3. Rename the three index files `.cleaned` → `.swap`, then the log file last; sync the
//!    directory. **`<base>.log.swap` existing is the commit point.**
//! 4. Delete the files of the old segments in `(base, end)`; rename the `.swap` files over
//!    `<base>.*`, the log last; sync the directory; remove `<base>.swap-end`.
//!
//! At open ([`recover`]): `.cleaned` files are deleted (an unfinished clean); a
//! `<base>.log.swap` completes step 4 using `<base>.swap-end`; other `.swap` files (indexes
//! renamed before the crash, log not yet) are deleted, as are stale `.swap-end` files.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::segment::file_stem;
use crate::{Error, Result, fs};

/// Suffix of the files a clean is writing.
pub(crate) const CLEANED: &str = ".cleaned";
/// Suffix of the files of a committed (or committing) swap.
pub(crate) const SWAP: &str = ".swap";
/// Extension of the file holding the end of the offset range a swap replaces.
const SWAP_END_EXT: &str = "swap-end";

/// The extensions of a segment's files; the log file last, as swaps rename it last.
pub(crate) const SEGMENT_EXTS: [&str; 4] = ["index", "timeindex", "txnindex", "log"];

fn path(dir: &Path, base: i64, ext: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}.{ext}{suffix}", file_stem(base)))
}

fn swap_end_name(base: i64) -> String {
    format!("{}.{SWAP_END_EXT}", file_stem(base))
}

/// Removes `path` if it exists, through the fault seam (`crate::fault`).
fn remove_if_exists(path: &Path) -> Result<()> {
    fs::remove_file(path, "remove file")
}

/// Renames `from` over `to`, through the fault seam.
fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to, "rename segment file")
}

/// Removes the `.cleaned` files of the segment at `base` (a stale or abandoned clean).
pub(crate) fn remove_cleaned(dir: &Path, base: i64) -> Result<()> {
    for ext in SEGMENT_EXTS {
        remove_if_exists(&path(dir, base, ext, CLEANED))?;
    }
    Ok(())
}

/// Steps 2 to 4: makes the synced `.cleaned` segment at `base` replace the segments whose
/// bases are `old_bases` (sorted, the first being `base`), which cover `[base, end)`.
pub(crate) fn commit(dir: &Path, base: i64, end: i64, old_bases: &[i64]) -> Result<()> {
    fs::write_offset_file(dir, &swap_end_name(base), end)?;
    for ext in SEGMENT_EXTS {
        rename(&path(dir, base, ext, CLEANED), &path(dir, base, ext, SWAP))?;
    }
    fs::sync_dir(dir)?;
    finish(dir, base, end, old_bases)
}

/// Step 4, shared by [`commit`] and [`recover`].
fn finish(dir: &Path, base: i64, end: i64, old_bases: &[i64]) -> Result<()> {
    for &old in old_bases.iter().filter(|&&b| b > base && b < end) {
        for ext in SEGMENT_EXTS {
            remove_if_exists(&path(dir, old, ext, ""))?;
        }
    }
    for ext in SEGMENT_EXTS {
        let from = path(dir, base, ext, SWAP);
        if from.exists() {
            rename(&from, &path(dir, base, ext, ""))?;
        }
    }
    fs::sync_dir(dir)?;
    remove_if_exists(&dir.join(swap_end_name(base)))
}

/// Completes or rolls back the swaps a crash interrupted; called by `PartitionLog::open`
/// before it lists the segments.
pub(crate) fn recover(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list log dir", dir, e)),
    };
    let mut cleaned = Vec::new();
    let mut swaps = Vec::new();
    let mut log_swaps = Vec::new();
    let mut swap_ends = Vec::new();
    let mut log_bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list log dir", dir, e))?;
        let p = entry.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let stem_base = name.split('.').next().and_then(|s| s.parse::<i64>().ok());
        if name.ends_with(CLEANED) {
            cleaned.push(p.clone());
        } else if name.ends_with(SWAP) {
            if name.ends_with(&format!(".log{SWAP}"))
                && let Some(b) = stem_base
            {
                log_swaps.push(b);
            }
            swaps.push(p.clone());
        } else if name.ends_with(&format!(".{SWAP_END_EXT}")) {
            swap_ends.push(p.clone());
        } else if name.ends_with(".log")
            && let Some(b) = stem_base
        {
            log_bases.push(b);
        }
    }
    if cleaned.is_empty() && swaps.is_empty() && swap_ends.is_empty() {
        return Ok(());
    }
    for p in &cleaned {
        warn!(file = %p.display(), "removing the output of an interrupted clean");
        remove_if_exists(p)?;
    }
    log_bases.sort_unstable();
    log_swaps.sort_unstable();
    for &base in &log_swaps {
        match fs::read_offset_file(&dir.join(swap_end_name(base))) {
            Ok(Some(end)) => {
                info!(dir = %dir.display(), base_offset = base, end, "completing an interrupted segment swap");
                finish(dir, base, end, &log_bases)?;
            }
            other => {
                // Cannot happen in the order `commit` writes, but be safe: without the end the
                // old segments are all still there (they are deleted only after it exists), so
                // roll back.
                warn!(dir = %dir.display(), base_offset = base, "segment swap without its end marker ({other:?}); rolling it back");
                for ext in SEGMENT_EXTS {
                    remove_if_exists(&path(dir, base, ext, SWAP))?;
                }
            }
        }
    }
    // What is left: index files renamed before a crash that came before the log's rename.
    for p in swaps.iter().filter(|p| p.exists()) {
        warn!(file = %p.display(), "removing an uncommitted segment swap file");
        remove_if_exists(p)?;
    }
    for p in &swap_ends {
        remove_if_exists(p)?;
    }
    fs::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Old segments at 0 and 10 (replaced by a cleaned segment at 0 covering `[0, 20)`), and a
    /// later segment at 20 that the swap must not touch.
    fn setup(dir: &Path) {
        for base in [0, 10, 20] {
            for ext in SEGMENT_EXTS {
                std::fs::write(path(dir, base, ext, ""), format!("old {base} {ext}")).unwrap();
            }
        }
        for ext in SEGMENT_EXTS {
            std::fs::write(path(dir, 0, ext, CLEANED), format!("new 0 {ext}")).unwrap();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn content(dir: &Path, base: i64, ext: &str) -> String {
        std::fs::read_to_string(path(dir, base, ext, "")).unwrap()
    }

    fn assert_old(dir: &Path) {
        for base in [0, 10, 20] {
            for ext in SEGMENT_EXTS {
                assert_eq!(content(dir, base, ext), format!("old {base} {ext}"));
            }
        }
        assert_eq!(names(dir).len(), 12, "{:?}", names(dir));
    }

    fn assert_new(dir: &Path) {
        for ext in SEGMENT_EXTS {
            assert_eq!(content(dir, 0, ext), format!("new 0 {ext}"));
            assert_eq!(content(dir, 20, ext), format!("old 20 {ext}"));
            assert!(!path(dir, 10, ext, "").exists());
        }
        assert_eq!(names(dir).len(), 8, "{:?}", names(dir));
    }

    #[test]
    fn an_unfinished_clean_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        recover(dir.path()).unwrap();
        assert_old(dir.path());
    }

    #[test]
    fn a_swap_before_the_log_rename_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        fs::write_offset_file(dir.path(), &swap_end_name(0), 20).unwrap();
        for ext in ["index", "timeindex"] {
            rename(
                &path(dir.path(), 0, ext, CLEANED),
                &path(dir.path(), 0, ext, SWAP),
            )
            .unwrap();
        }
        recover(dir.path()).unwrap();
        assert_old(dir.path());
    }

    #[test]
    fn a_committed_swap_is_completed_from_any_point() {
        // Crash after the log rename, then at every later step of `finish`.
        for step in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            setup(d);
            fs::write_offset_file(d, &swap_end_name(0), 20).unwrap();
            for ext in SEGMENT_EXTS {
                rename(&path(d, 0, ext, CLEANED), &path(d, 0, ext, SWAP)).unwrap();
            }
            if step >= 1 {
                for ext in SEGMENT_EXTS {
                    std::fs::remove_file(path(d, 10, ext, "")).unwrap();
                }
            }
            if step >= 2 {
                for ext in ["index", "timeindex", "txnindex"] {
                    rename(&path(d, 0, ext, SWAP), &path(d, 0, ext, "")).unwrap();
                }
            }
            if step >= 3 {
                rename(&path(d, 0, "log", SWAP), &path(d, 0, "log", "")).unwrap();
            }
            recover(d).unwrap();
            assert_new(d);
        }
    }

    #[test]
    fn commit_replaces_the_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        commit(dir.path(), 0, 20, &[0, 10]).unwrap();
        assert_new(dir.path());
        recover(dir.path()).unwrap();
        assert_new(dir.path());
    }
}
