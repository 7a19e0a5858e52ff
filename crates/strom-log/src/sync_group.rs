//! Broker-wide commit windows: one durable sync round covers every partition written in it.
//!
//! With [`FsyncPolicy::Always`](crate::FsyncPolicy::Always) each [`PartitionLog`] used to run
//! its own group commit, so a produce request touching six partitions issued six `fdatasync`
//! calls whenever each partition's append happened to finish: staggered, they each force a
//! separate file-system journal commit and the device serialises them. A [`SyncGroup`] shared
//! by all partition logs of a broker replaces that with one window:
//!
//! - an appender that needs its write durable registers the segment file it wrote to in the
//!   *open* window (deduplicated: a file appears once however many appenders wrote to it) and
//!   waits;
//! - when no window is running, the first waiter closes the open window and starts it; the next
//!   window fills while this one syncs (group commit across partitions);
//! - every waiter of the running window claims unsynced files and `fdatasync`s them, so all of
//!   a window's files are synced at the same time, by as many threads as wrote them, rather
//!   than one after another (which collapses with the number of files: see
//!   `benches/src/bin/sync_bench.rs` and BENCHMARKS.md "Durable sync across partitions:
//!   candidates");
//! - an appender returns once the `fdatasync` of its file, started after its write, succeeded.
//!   The caller publishes its high watermark only then, so nothing is visible or acknowledged
//!   before it is on stable storage.
//!
//! No new file format: segments stay the only copy of the data and recovery is unchanged. A
//! failed `fdatasync` is reported to every appender of that file (the log then poisons itself,
//! as with its own group commit); other files of the window are unaffected.
//!
//! [`PartitionLog`]: crate::PartitionLog

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::locks::lock;

/// Something that can be forced to stable storage: a segment file.
pub(crate) trait SyncData: Send + Sync {
    /// `fdatasync`: the data written so far, and the metadata needed to read it, are durable.
    fn sync_data(&self) -> io::Result<()>;

    /// Identifies the underlying file: two handles with the same identity share one entry of
    /// a window. By default the handle's own address.
    fn identity(&self) -> usize {
        std::ptr::from_ref(self).cast::<()>() as usize
    }
}

impl SyncData for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// A segment file as the group syncs it: through the fault-injection seam
/// ([`crate::fault`]), like every other file operation of the log, so an injected `fdatasync`
/// failure reaches exactly the partition whose file it is.
pub(crate) struct SegmentSync {
    /// The segment's open file.
    pub(crate) file: Arc<File>,
    /// Its path (what fault injectors match on).
    pub(crate) path: std::path::PathBuf,
}

impl SyncData for SegmentSync {
    fn sync_data(&self) -> io::Result<()> {
        crate::fault::check(crate::fault::FileOp::Sync, &self.path)
            .and_then(|()| self.file.sync_data())
    }

    fn identity(&self) -> usize {
        Arc::as_ptr(&self.file).cast::<()>() as usize
    }
}

/// How a file's sync in a window ended; `io::Error` is not `Clone`, so the error is kept as
/// its OS code or kind and rebuilt for each appender.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Synced,
    Failed {
        os_code: Option<i32>,
        kind: io::ErrorKind,
    },
}

impl Outcome {
    fn of(result: &io::Result<()>) -> Outcome {
        match result {
            Ok(()) => Outcome::Synced,
            Err(e) => Outcome::Failed {
                os_code: e.raw_os_error(),
                kind: e.kind(),
            },
        }
    }

    fn into_result(self) -> io::Result<()> {
        match self {
            Outcome::Synced => Ok(()),
            Outcome::Failed {
                os_code: Some(code),
                ..
            } => Err(io::Error::from_raw_os_error(code)),
            Outcome::Failed { kind, .. } => Err(io::Error::from(kind)),
        }
    }
}

/// One file in one window.
struct Entry {
    file: Arc<dyn SyncData>,
    /// Set once, by the thread that synced the file in this window.
    outcome: OnceLock<Outcome>,
    /// Set by the first caller to see the outcome, so the owner counts each sync once.
    reported: std::sync::atomic::AtomicBool,
}

/// The window being synced.
struct Running {
    entries: Vec<Arc<Entry>>,
    /// Index of the next entry no thread has claimed yet.
    next: usize,
    /// Entries claimed or unclaimed whose sync has not finished.
    outstanding: usize,
}

#[derive(Default)]
struct State {
    /// Files registered for the next window.
    open: Vec<Arc<Entry>>,
    running: Option<Running>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    windows: AtomicU64,
    syncs: AtomicU64,
}

/// A file entered in a window by [`SyncGroup::enter`], to wait on with [`SyncGroup::wait`].
#[derive(Clone)]
pub(crate) struct Ticket(Arc<Entry>);

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("synced", &self.0.outcome.get().is_some())
            .finish()
    }
}

/// A broker-wide commit window shared by partition logs (see the module docs). Cloning gives
/// another handle to the same group.
#[derive(Clone)]
pub struct SyncGroup {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SyncGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncGroup")
            .field("windows", &self.window_count())
            .field("syncs", &self.sync_count())
            .finish()
    }
}

impl Default for SyncGroup {
    fn default() -> Self {
        SyncGroup::new()
    }
}

impl SyncGroup {
    /// A group with no windows yet.
    pub fn new() -> SyncGroup {
        SyncGroup {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                windows: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
            }),
        }
    }

    /// Number of commit windows completed so far (each one sync round over all its files).
    pub fn window_count(&self) -> u64 {
        self.inner.windows.load(Ordering::Relaxed)
    }

    /// Number of `fdatasync` calls made by the group so far.
    pub fn sync_count(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// Returns once an `fdatasync` of `file` that started after this call has finished, with
    /// its result: `Ok(true)` for the first of the callers sharing that sync (to count it once),
    /// `Ok(false)` for the others. Blocks; concurrent callers share windows (see the module docs).
    pub(crate) fn sync(&self, file: Arc<dyn SyncData>) -> io::Result<bool> {
        let ticket = self.enter(file);
        self.wait(&ticket)
    }

    /// Registers `file` in the open window without waiting: the window that syncs it starts
    /// after this call. [`SyncGroup::wait`] on the ticket then returns once that sync is done.
    /// A writer enters right after its write, so that the files of several writes made before
    /// anyone waits (the shards of one Kinesis PutRecords) are all in one window: the first
    /// waiter starts the window with every file entered so far, instead of alone.
    pub(crate) fn enter(&self, file: Arc<dyn SyncData>) -> Ticket {
        let mut st = lock(&self.inner.state);
        let entry = match st
            .open
            .iter()
            .find(|e| e.file.identity() == file.identity())
        {
            Some(e) => Arc::clone(e),
            None => {
                let e = Arc::new(Entry {
                    file,
                    outcome: OnceLock::new(),
                    reported: std::sync::atomic::AtomicBool::new(false),
                });
                st.open.push(Arc::clone(&e));
                e
            }
        };
        Ticket(entry)
    }

    /// Returns once the sync of the ticket's file in its window has finished, with its result:
    /// `Ok(true)` for the first of the callers sharing that sync, `Ok(false)` for the others.
    /// Blocks; starts the window if none is running and helps sync the running one's files.
    pub(crate) fn wait(&self, ticket: &Ticket) -> io::Result<bool> {
        let inner = &*self.inner;
        let entry = &ticket.0;
        let mut st = lock(&inner.state);
        loop {
            if let Some(outcome) = entry.outcome.get() {
                outcome.into_result()?;
                return Ok(!entry.reported.swap(true, Ordering::Relaxed));
            }
            if st.running.is_none() && !st.open.is_empty() {
                let entries = std::mem::take(&mut st.open);
                let outstanding = entries.len();
                st.running = Some(Running {
                    entries,
                    next: 0,
                    outstanding,
                });
                // Other waiters help sync this window's files.
                inner.changed.notify_all();
            }
            let claimed = st.running.as_mut().and_then(|r| {
                let e = r.entries.get(r.next).map(Arc::clone);
                if e.is_some() {
                    r.next += 1;
                }
                e
            });
            match claimed {
                Some(claimed) => {
                    drop(st);
                    let result = claimed.file.sync_data();
                    inner.syncs.fetch_add(1, Ordering::Relaxed);
                    // Set before `outstanding` drops, so no waiter sees the window done while
                    // its entry has no outcome.
                    let _ = claimed.outcome.set(Outcome::of(&result));
                    st = lock(&inner.state);
                    let done = match st.running.as_mut() {
                        Some(r) => {
                            r.outstanding = r.outstanding.saturating_sub(1);
                            r.outstanding == 0
                        }
                        None => false,
                    };
                    if done {
                        st.running = None;
                        inner.windows.fetch_add(1, Ordering::Relaxed);
                    }
                    // Wakes the callers of this file (done early) and, at the window's end,
                    // the callers waiting to start the next window.
                    inner.changed.notify_all();
                }
                None => {
                    st = inner
                        .changed
                        .wait(st)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A fake file that counts syncs, can fail, and is slow enough for windows to overlap.
    struct Counting {
        syncs: AtomicUsize,
        fail: bool,
    }

    impl SyncData for Counting {
        fn sync_data(&self) -> io::Result<()> {
            std::thread::sleep(Duration::from_millis(2));
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                Err(io::Error::from_raw_os_error(5))
            } else {
                Ok(())
            }
        }
    }

    fn counting(fail: bool) -> Arc<Counting> {
        Arc::new(Counting {
            syncs: AtomicUsize::new(0),
            fail,
        })
    }

    #[test]
    fn a_lone_caller_syncs_its_file_once() {
        let group = SyncGroup::new();
        let f = counting(false);
        assert!(
            group.sync(f.clone()).unwrap(),
            "the only caller reports the sync"
        );
        assert_eq!(f.syncs.load(Ordering::SeqCst), 1);
        assert_eq!((group.window_count(), group.sync_count()), (1, 1));
    }

    #[test]
    fn every_caller_returns_after_a_sync_that_started_after_its_call() {
        // Each caller bumps a "written" counter before calling; the fake records, at the start
        // of each sync, the counter value; a caller must see a sync whose start value covers
        // its own write.
        struct Recording {
            written: AtomicUsize,
            synced_upto: AtomicUsize,
        }
        impl SyncData for Recording {
            fn sync_data(&self) -> io::Result<()> {
                let at_start = self.written.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
                self.synced_upto.fetch_max(at_start, Ordering::SeqCst);
                Ok(())
            }
        }
        let group = SyncGroup::new();
        let files: Vec<Arc<Recording>> = (0..6)
            .map(|_| {
                Arc::new(Recording {
                    written: AtomicUsize::new(0),
                    synced_upto: AtomicUsize::new(0),
                })
            })
            .collect();
        std::thread::scope(|s| {
            for t in 0..12 {
                let group = group.clone();
                let files = &files;
                s.spawn(move || {
                    for i in 0..50 {
                        let f = &files[(t + i) % files.len()];
                        let mine = f.written.fetch_add(1, Ordering::SeqCst) + 1;
                        group.sync(f.clone()).unwrap();
                        assert!(f.synced_upto.load(Ordering::SeqCst) >= mine);
                    }
                });
            }
        });
        // Windows were shared: far fewer syncs than the 600 calls.
        assert!(group.sync_count() < 600, "{}", group.sync_count());
    }

    #[test]
    fn a_failed_sync_fails_only_the_callers_of_that_file() {
        let group = SyncGroup::new();
        let good = counting(false);
        let bad = counting(true);
        std::thread::scope(|s| {
            for i in 0..8 {
                let group = group.clone();
                let (good, bad) = (good.clone(), bad.clone());
                s.spawn(move || {
                    if i % 2 == 0 {
                        assert!(group.sync(good).is_ok());
                    } else {
                        let e = group.sync(bad).unwrap_err();
                        assert_eq!(e.raw_os_error(), Some(5));
                    }
                });
            }
        });
        assert!(good.syncs.load(Ordering::SeqCst) >= 1);
    }
}
