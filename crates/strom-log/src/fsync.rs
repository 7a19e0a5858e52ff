//! Group commit: many appenders, one `fdatasync`.
//!
//! An appender that needs its data durable calls [`GroupCommit::sync_through`] with the offset
//! just past its batch. If the durable end already covers it, it returns at once. If another
//! thread is syncing, it waits for that sync to finish and checks again. Otherwise it becomes the
//! syncer: it captures the current log end (everything written so far, including batches other
//! appenders wrote while it waited), syncs once, publishes the new durable end and wakes every
//! waiter. Under load, each sync therefore covers every batch that arrived during the previous
//! one.
//!
//! A failed sync poisons the log: after `fdatasync` reports an error the kernel may have dropped
//! the dirty pages, so nothing written since the last good sync can be trusted (the "fsyncgate"
//! lesson). Every waiter and every later append gets [`Error::Poisoned`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use crate::locks::lock;
use crate::{Error, Result};

#[derive(Debug)]
struct State {
    /// Every offset below this is on stable storage.
    durable_end: i64,
    /// A thread is inside `fdatasync` right now.
    syncing: bool,
    /// Clock reading of the last successful sync.
    last_sync_ms: i64,
}

/// The shared state of the group commit. See the module docs.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
    poisoned: AtomicBool,
    syncs: AtomicU64,
}

impl GroupCommit {
    pub(crate) fn new(durable_end: i64, now_ms: i64) -> Self {
        GroupCommit {
            state: Mutex::new(State {
                durable_end,
                syncing: false,
                last_sync_ms: now_ms,
            }),
            done: Condvar::new(),
            poisoned: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
        self.done.notify_all();
    }

    /// Counts a sync made for this log elsewhere (by the broker-wide `SyncGroup`).
    pub(crate) fn count_sync(&self) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Number of successful group-commit syncs so far.
    pub(crate) fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    pub(crate) fn last_sync_ms(&self) -> i64 {
        lock(&self.state).last_sync_ms
    }

    /// Lowers the durable end after a truncation, or raises it after a roll synced a segment.
    pub(crate) fn reset_durable_end(&self, end: i64) {
        lock(&self.state).durable_end = end;
    }

    /// Raises the durable end (a segment roll synced everything before `end`).
    pub(crate) fn advance_durable_end(&self, end: i64, now_ms: i64) {
        let mut st = lock(&self.state);
        if end > st.durable_end {
            st.durable_end = end;
            st.last_sync_ms = now_ms;
        }
    }

    /// Returns once every offset below `target` is durable. `capture_and_sync` is called by the
    /// thread that becomes the syncer: it must capture the current log end, sync everything
    /// written up to it, and return that end. `on_durable` runs (still as the syncer, before
    /// waiters wake) with the new durable end, to publish it.
    pub(crate) fn sync_through(
        &self,
        target: i64,
        now_ms: i64,
        capture_and_sync: impl FnOnce() -> Result<i64>,
        on_durable: impl FnOnce(i64),
    ) -> Result<()> {
        let mut st = lock(&self.state);
        loop {
            if self.is_poisoned() {
                return Err(Error::Poisoned);
            }
            if st.durable_end >= target {
                return Ok(());
            }
            if !st.syncing {
                break;
            }
            st = self
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        st.syncing = true;
        drop(st);

        let result = capture_and_sync();

        let mut st = lock(&self.state);
        st.syncing = false;
        let outcome = match result {
            Ok(end) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                if end > st.durable_end {
                    st.durable_end = end;
                }
                st.last_sync_ms = now_ms;
                on_durable(st.durable_end);
                if st.durable_end >= target {
                    Ok(())
                } else {
                    // Cannot happen when `end` is captured after the caller's write; treat as
                    // a logic error that must not acknowledge.
                    Err(Error::InvalidOffset {
                        offset: target,
                        reason: "sync did not cover the appended batch",
                    })
                }
            }
            Err(e) => {
                self.poisoned.store(true, Ordering::Release);
                Err(e)
            }
        };
        drop(st);
        self.done.notify_all();
        outcome
    }
}
