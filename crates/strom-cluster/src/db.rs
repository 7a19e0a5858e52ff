//! PostgreSQL connections that reconnect by themselves.
//!
//! A [`Db`] owns a few connections (one by default), each opened lazily and reopened on the next
//! use after it broke (server restarted, network cut). Each component (writer, reader, registry,
//! collector) owns its own `Db`, so a long commit transaction never queues a reader behind it.
//! The writer keeps one connection (it does one flush at a time, and its commits must be in
//! order); a reader serving many fetches at once is given several
//! ([`Db::with_connections`]): a caller takes a free one, or waits for one in turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};

use crate::error::{DbOp, Error, Result};

/// Connect timeout used when the URL does not set one.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Lazily (re)opened PostgreSQL connections.
#[derive(Debug)]
pub struct Db {
    config: tokio_postgres::Config,
    slots: Vec<Mutex<Option<Client>>>,
    next: AtomicUsize,
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
    pub fn new(config: tokio_postgres::Config) -> Self {
        Self::with_connections(config, 1)
    }

    /// A handle with up to `connections` connections (at least one), each opened on first use.
    pub fn with_connections(mut config: tokio_postgres::Config, connections: usize) -> Self {
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
            config,
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
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
        let client = match guard.take() {
            Some(client) if !client.is_closed() => client,
            _ => connect(&self.config).await?,
        };
        let guard = MutexGuard::map(guard, |slot| slot.insert(client));
        Ok(DbConn { guard })
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
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// Opens one connection and drives it on a background task.
pub(crate) async fn connect(config: &tokio_postgres::Config) -> Result<Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(Error::pg(DbOp::Connect))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection ended");
        }
    });
    Ok(client)
}
