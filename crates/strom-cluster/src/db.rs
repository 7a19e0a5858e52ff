//! PostgreSQL connections that reconnect by themselves.
//!
//! A [`Db`] owns one connection, opened lazily and reopened on the next use after it broke
//! (server restarted, network cut). Each component (writer, reader, registry, collector) owns its
//! own `Db`, so a long commit transaction never queues a reader behind it. There is no pool:
//! a component does one thing at a time on its connection, and serialising them is the point for
//! the writer (flushes commit in order).

use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, NoTls};

use crate::error::{DbOp, Error, Result};

/// Connect timeout used when the URL does not set one.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazily (re)opened PostgreSQL connection.
#[derive(Debug)]
pub struct Db {
    config: tokio_postgres::Config,
    client: Mutex<Option<Client>>,
}

/// Exclusive use of a [`Db`]'s open connection; derefs to the `tokio_postgres::Client`.
#[derive(Debug)]
pub struct DbConn<'a> {
    guard: MutexGuard<'a, Option<Client>>,
}

impl std::ops::Deref for DbConn<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        // `Db::conn` only hands out a guard holding `Some`.
        match self.guard.as_ref() {
            Some(client) => client,
            None => unreachable!("DbConn always holds a client"),
        }
    }
}

impl std::ops::DerefMut for DbConn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        match self.guard.as_mut() {
            Some(client) => client,
            None => unreachable!("DbConn always holds a client"),
        }
    }
}

impl Db {
    /// A handle that connects on first use.
    pub fn new(mut config: tokio_postgres::Config) -> Self {
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
            client: Mutex::new(None),
        }
    }

    /// The open connection, reconnecting first when it is closed or was never opened.
    pub async fn conn(&self) -> Result<DbConn<'_>> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(connect(&self.config).await?);
        }
        Ok(DbConn { guard })
    }

    /// Closes the connection (if open); the next [`Db::conn`] opens a new one. Used after a
    /// timeout left the connection in an unknown state (a statement or transaction in flight).
    pub async fn reset(&self) {
        *self.client.lock().await = None;
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
