//! PostgreSQL connections that reconnect by themselves.
//!
//! A [`Db`] owns a few connections (one by default), each opened lazily and reopened on the next
//! use after it broke (server restarted, network cut). Each component (writer, reader, registry,
//! collector) owns its own `Db`, so a long commit transaction never queues a reader behind it.
//! The writer keeps one connection (it does one flush at a time, and its commits must be in
//! order); a reader serving many fetches at once is given several
//! ([`Db::with_connections`]): a caller takes a free one, or waits for one in turn.
//!
//! Every session runs with the server-side timeouts of its [`PgConfig`] (`statement_timeout`,
//! `lock_timeout`, `idle_in_transaction_session_timeout`), and speaks TLS as its `sslmode` asks
//! ([`crate::tls`]). A server that stops answering without closing the connection (frozen,
//! partitioned) is bounded on the client side: opening a connection by [`PgConfig`]'s connect
//! bound, and a call wrapped in [`Db::bounded`] by its query bound, after which every connection
//! of that `Db` is reopened on its next use.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::Client;

use crate::error::{DbOp, Error, Result};
pub use crate::tls::{PgConfig, PgTimeouts, TlsMode};

/// Connect timeout used when the URL does not set one.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Lazily (re)opened PostgreSQL connections.
#[derive(Debug)]
pub struct Db {
    config: PgConfig,
    /// Each open connection with the generation it was opened in.
    slots: Vec<Mutex<Option<(u64, Client)>>>,
    next: AtomicUsize,
    /// Bumped when a bounded call timed out: connections of older generations are dropped
    /// (and reopened) on their next use, since a statement may still be in flight on them.
    generation: AtomicU64,
}

/// Exclusive use of one of a [`Db`]'s open connections; derefs to the `tokio_postgres::Client`.
#[derive(Debug)]
pub struct DbConn<'a> {
    guard: MappedMutexGuard<'a, Client>,
}

impl std::ops::Deref for DbConn<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.guard
    }
}

impl std::ops::DerefMut for DbConn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.guard
    }
}

impl Db {
    /// A handle with one connection, opened on first use.
    pub fn new(config: PgConfig) -> Self {
        Self::with_connections(config, 1)
    }

    /// A handle with up to `connections` connections (at least one), each opened on first use.
    pub fn with_connections(mut pg: PgConfig, connections: usize) -> Self {
        let config = &mut pg.driver;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        // The driver's default keepalive idle is two hours: a silently dead peer would hold a
        // connection that long. Detect it within about half a minute unless the URL says more.
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(Duration::from_secs(15));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(5));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
        Db {
            config: pg,
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// An open connection for exclusive use: a free one if any, else the next in turn once it
    /// is released. Reconnects first when it is closed or was never opened.
    pub async fn conn(&self) -> Result<DbConn<'_>> {
        let free = self.slots.iter().find_map(|slot| slot.try_lock().ok());
        let mut guard = match free {
            Some(guard) => guard,
            None => {
                // `slots` is never empty (`with_connections` makes at least one).
                let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
                self.slots[turn].lock().await
            }
        };
        let generation = self.generation.load(Ordering::Acquire);
        let client = match guard.take() {
            Some((opened, client)) if opened == generation && !client.is_closed() => client,
            _ => connect(&self.config).await?,
        };
        let guard = MutexGuard::map(guard, |slot| &mut slot.insert((generation, client)).1);
        Ok(DbConn { guard })
    }

    /// Runs `call` (which uses this `Db`) within the query bound of its [`PgConfig`]; past
    /// it, fails with a retriable [`Error::Timeout`] and makes every connection of this `Db`
    /// reopen on its next use.
    pub async fn bounded<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let limit = self.config.query_timeout();
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => {
                self.generation.fetch_add(1, Ordering::AcqRel);
                Err(Error::Timeout { waited: limit })
            }
        }
    }

    /// Closes every connection (waiting for those in use); the next [`Db::conn`] opens a new
    /// one. Used after a timeout left a connection in an unknown state (a statement or
    /// transaction in flight).
    pub async fn reset(&self) {
        for slot in &self.slots {
            *slot.lock().await = None;
        }
    }

    /// The connection settings.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }
}

/// Opens one connection and drives it on a background task.
pub(crate) async fn connect(config: &PgConfig) -> Result<Client> {
    let (client, connection) = config.connect(DbOp::Connect).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}
