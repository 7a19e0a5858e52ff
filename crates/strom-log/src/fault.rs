//! The fault-injection seam: every file operation the log makes that can fail with a full or
//! broken disk (create, write, truncate, `fdatasync`, rename, remove, directory `fsync`) first
//! asks [`check`], which lets a test fail it with `ENOSPC`, `EIO` or any other error.
//!
//! In production no injector is installed and [`check`] is one relaxed atomic load. Injectors
//! are process-wide (installed with [`install`], removed when the returned [`Installed`] guard is
//! dropped) and see the path of every operation, so a test confines its faults to its own
//! directory (see [`FailNth`]) and tests running in parallel do not disturb each other.
//!
//! ```
//! use std::sync::Arc;
//! use strom_log::fault::{self, FailNth, FaultError, FileKind, FileOp};
//!
//! let dir = tempfile::tempdir()?;
//! // The 1st write to a segment file under `dir` fails with ENOSPC.
//! let plan = Arc::new(FailNth::new(dir.path(), FileKind::Segment, FileOp::Write, 1, FaultError::NoSpace));
//! let _guard = fault::install(plan.clone());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A kind of file operation, as seen by a [`FaultInjector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOp {
    /// Creating or opening a file for writing (or creating a directory).
    Create,
    /// Writing bytes (append or positional write).
    Write,
    /// Changing a file's length (undoing a write, cutting a torn tail, rewriting an index).
    Truncate,
    /// `fdatasync` of a file.
    Sync,
    /// `fsync` of a directory (making created, renamed or removed entries durable).
    SyncDir,
    /// Renaming a temporary file over its target.
    Rename,
    /// Removing a file.
    Remove,
}

/// What a file is, derived from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A `.log` segment file.
    Segment,
    /// A `.index` offset index.
    OffsetIndex,
    /// A `.timeindex` time index.
    TimeIndex,
    /// A `.txnindex` transaction index.
    TxnIndex,
    /// A `.snapshot` producer-state snapshot (or its `.snapshot.tmp`).
    ProducerSnapshot,
    /// The `recovery-point`, `log-start-offset` or `cleaner-offset-checkpoint` checkpoint (or
    /// its `.tmp`).
    Checkpoint,
    /// A file of a log clean in progress: a segment's files being written (`.cleaned`) or
    /// being swapped in (`.swap`), and the `.swap-end` record of a swap (or its `.tmp`).
    Cleaner,
    /// A directory.
    Directory,
    /// Anything else.
    Other,
}

impl FileKind {
    /// Classifies `path` by its name (a `.tmp` suffix is looked through).
    pub fn of(path: &Path) -> FileKind {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let name = name.strip_suffix(".tmp").unwrap_or(name);
        let ext = name.rsplit_once('.').map(|(_, e)| e);
        match (name, ext) {
            ("recovery-point" | "log-start-offset" | "cleaner-offset-checkpoint", _) => {
                FileKind::Checkpoint
            }
            (_, Some("cleaned" | "swap" | "swap-end")) => FileKind::Cleaner,
            (_, Some("log")) => FileKind::Segment,
            (_, Some("index")) => FileKind::OffsetIndex,
            (_, Some("timeindex")) => FileKind::TimeIndex,
            (_, Some("txnindex")) => FileKind::TxnIndex,
            (_, Some("snapshot")) => FileKind::ProducerSnapshot,
            _ if path.is_dir() => FileKind::Directory,
            _ => FileKind::Other,
        }
    }
}

/// Decides whether a file operation fails. Called before the operation, with the kind of
/// file and its path.
pub trait FaultInjector: Send + Sync + Debug {
    /// `Some(error)` makes the operation fail with `error` without touching the file.
    fn before(&self, op: FileOp, kind: FileKind, path: &Path) -> Option<std::io::Error>;
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static INJECTORS: RwLock<Vec<Arc<dyn FaultInjector>>> = RwLock::new(Vec::new());

/// Keeps an injector installed; dropping it removes the injector.
#[derive(Debug)]
#[must_use = "the injector is removed when the guard is dropped"]
pub struct Installed {
    injector: Arc<dyn FaultInjector>,
}

/// Installs `injector` process-wide until the returned guard is dropped.
pub fn install(injector: Arc<dyn FaultInjector>) -> Installed {
    let mut all = INJECTORS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.push(Arc::clone(&injector));
    ENABLED.store(true, Ordering::Release);
    Installed { injector }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let mut all = INJECTORS
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|i| !Arc::ptr_eq(i, &self.injector));
        ENABLED.store(!all.is_empty(), Ordering::Release);
    }
}

/// Asks the installed injectors whether the operation `op` on the file `path` fails. Without
/// an injector (production), one atomic load.
#[inline]
pub(crate) fn check(op: FileOp, path: &Path) -> std::io::Result<()> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    check_slow(op, FileKind::of(path), path)
}

/// [`check`] for an operation on a directory (which may not exist yet).
#[inline]
pub(crate) fn check_dir(op: FileOp, path: &Path) -> std::io::Result<()> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Ok(());
    }
    check_slow(op, FileKind::Directory, path)
}

#[cold]
fn check_slow(op: FileOp, kind: FileKind, path: &Path) -> std::io::Result<()> {
    let all = INJECTORS
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for injector in all.iter() {
        if let Some(e) = injector.before(op, kind, path) {
            return Err(e);
        }
    }
    Ok(())
}

/// The error an injected fault reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultError {
    /// `ENOSPC`: no space left on device.
    NoSpace,
    /// `EIO`: input/output error.
    Io,
}

impl FaultError {
    /// The operating-system error.
    pub fn to_io(self) -> std::io::Error {
        let errno = match self {
            FaultError::NoSpace => rustix::io::Errno::NOSPC,
            FaultError::Io => rustix::io::Errno::IO,
        };
        std::io::Error::from_raw_os_error(errno.raw_os_error())
    }
}

/// Fails the `nth` (1-based) operation `op` on files of `kind` under `dir`, and with
/// [`FailNth::sticky`] every matching operation after it too, until [`FailNth::heal`] (a disk
/// that stays full until space is freed).
#[derive(Debug)]
pub struct FailNth {
    dir: PathBuf,
    kind: FileKind,
    op: FileOp,
    nth: u64,
    error: FaultError,
    sticky: bool,
    seen: AtomicU64,
    fired: AtomicU64,
    healed: AtomicBool,
}

impl FailNth {
    /// Fails only the `nth` matching operation.
    pub fn new(dir: &Path, kind: FileKind, op: FileOp, nth: u64, error: FaultError) -> FailNth {
        FailNth {
            dir: dir.to_path_buf(),
            kind,
            op,
            nth,
            error,
            sticky: false,
            seen: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            healed: AtomicBool::new(false),
        }
    }

    /// Also fails every matching operation after the `nth`, until healed.
    pub fn sticky(mut self) -> FailNth {
        self.sticky = true;
        self
    }

    /// Stops failing operations (space was freed, the disk came back).
    pub fn heal(&self) {
        self.healed.store(true, Ordering::Release);
    }

    /// How many operations were failed so far.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Acquire)
    }
}

impl FaultInjector for FailNth {
    fn before(&self, op: FileOp, kind: FileKind, path: &Path) -> Option<std::io::Error> {
        if op != self.op
            || kind != self.kind
            || self.healed.load(Ordering::Acquire)
            || !path.starts_with(&self.dir)
        {
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.nth || (self.sticky && n > self.nth) {
            self.fired.fetch_add(1, Ordering::AcqRel);
            Some(self.error.to_io())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_derived_from_names() {
        let k = |p: &str| FileKind::of(Path::new(p));
        assert_eq!(k("/d/00000000000000000000.log"), FileKind::Segment);
        assert_eq!(k("/d/00000000000000000000.index"), FileKind::OffsetIndex);
        assert_eq!(k("/d/00000000000000000000.timeindex"), FileKind::TimeIndex);
        assert_eq!(k("/d/00000000000000000000.txnindex"), FileKind::TxnIndex);
        assert_eq!(
            k("/d/00000000000000000007.snapshot.tmp"),
            FileKind::ProducerSnapshot
        );
        assert_eq!(k("/d/recovery-point.tmp"), FileKind::Checkpoint);
        assert_eq!(k("/d/log-start-offset"), FileKind::Checkpoint);
    }

    #[test]
    fn fail_nth_fires_once_or_until_healed() {
        let dir = Path::new("/nonexistent-fault-test");
        let seg = dir.join("00000000000000000000.log");
        let once = FailNth::new(
            dir,
            FileKind::Segment,
            FileOp::Write,
            2,
            FaultError::NoSpace,
        );
        assert!(
            once.before(FileOp::Write, FileKind::Segment, &seg)
                .is_none()
        );
        let e = once.before(FileOp::Write, FileKind::Segment, &seg);
        assert_eq!(
            e.and_then(|e| e.raw_os_error()),
            Some(rustix::io::Errno::NOSPC.raw_os_error())
        );
        assert!(
            once.before(FileOp::Write, FileKind::Segment, &seg)
                .is_none()
        );
        assert!(once.before(FileOp::Sync, FileKind::Segment, &seg).is_none());
        assert!(
            once.before(FileOp::Write, FileKind::Segment, Path::new("/other/0.log"))
                .is_none()
        );

        let sticky =
            FailNth::new(dir, FileKind::Segment, FileOp::Write, 1, FaultError::Io).sticky();
        assert!(
            sticky
                .before(FileOp::Write, FileKind::Segment, &seg)
                .is_some()
        );
        assert!(
            sticky
                .before(FileOp::Write, FileKind::Segment, &seg)
                .is_some()
        );
        sticky.heal();
        assert!(
            sticky
                .before(FileOp::Write, FileKind::Segment, &seg)
                .is_none()
        );
        assert_eq!(sticky.fired(), 2);
    }
}
