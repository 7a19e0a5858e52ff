//! Broker registration: which brokers are live and where they listen.
//!
//! A broker registers under its configured id with a fresh incarnation (a uuid per process
//! start) and a lease of `ttl`, then heartbeats well within it; [`live_brokers`] lists only
//! brokers whose lease has not expired (by the database clock), so a broker killed with `kill -9`
//! drops out of Metadata after at most one TTL. A clean shutdown deregisters at once. Two
//! processes cannot hold one id: registering over a live lease of another incarnation fails with
//! [`Error::BrokerIdInUse`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use uuid::Uuid;

use crate::db::Db;
use crate::error::{DbOp, Error, Result};

/// A broker's numeric id (Kafka's `node.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerId(pub i32);

/// Listener name → `host:port` a client should connect to (`kafka`, `kinesis`, `http`).
pub type BrokerAddresses = BTreeMap<String, String>;

/// A live broker as listed by [`live_brokers`].
#[derive(Debug, Clone, PartialEq)]
pub struct LiveBroker {
    /// Its id.
    pub broker_id: BrokerId,
    /// Its advertised listeners.
    pub addresses: BrokerAddresses,
    /// Seconds until its lease expires by the database clock.
    pub expires_in_secs: f64,
}

/// This process's registration; [`Registration::heartbeat`] keeps it alive.
#[derive(Debug)]
pub struct Registration {
    broker_id: BrokerId,
    incarnation: Uuid,
    ttl: Duration,
    /// When the last successful registration or heartbeat was sent: the lease runs until at
    /// least this plus `ttl`.
    renewed: std::sync::Mutex<std::time::Instant>,
}

impl Registration {
    /// Registers `broker_id` with `addresses` for `ttl`.
    pub async fn register(
        db: &Db,
        broker_id: BrokerId,
        addresses: &BrokerAddresses,
        ttl: Duration,
    ) -> Result<Self> {
        let incarnation = Uuid::now_v7();
        let sent = std::time::Instant::now();
        let addresses = serde_json::Value::Object(
            addresses
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        );
        let conn = db.conn().await?;
        let row = conn
            .query_opt(
                "INSERT INTO strom_brokers AS b (broker_id, addresses, incarnation, lease_expires_at)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                 ON CONFLICT (broker_id) DO UPDATE SET
                     addresses = EXCLUDED.addresses,
                     incarnation = EXCLUDED.incarnation,
                     registered_at = now(),
                     lease_expires_at = EXCLUDED.lease_expires_at
                 WHERE b.lease_expires_at <= now()
                 RETURNING broker_id",
                &[&broker_id.0, &addresses, &incarnation, &ttl.as_secs_f64()],
            )
            .await
            .map_err(Error::pg(DbOp::Registry))?;
        if row.is_none() {
            return Err(Error::BrokerIdInUse {
                broker_id: broker_id.0,
            });
        }
        Ok(Registration {
            broker_id,
            incarnation,
            ttl,
            renewed: std::sync::Mutex::new(sent),
        })
    }

    /// This broker's id.
    pub fn broker_id(&self) -> BrokerId {
        self.broker_id
    }

    /// Whether the lease is certainly still held: a registration or heartbeat sent less than
    /// one TTL ago succeeded (by this process's monotonic clock). False once heartbeats have
    /// failed for a TTL (PostgreSQL unreachable) or the registration was lost.
    pub fn is_current(&self) -> bool {
        self.renewed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
            < self.ttl
    }

    /// Extends the lease by `ttl` from now. Fails with [`Error::LeaseLost`] when the lease
    /// expired and another process registered the id since, or when it was deregistered.
    pub async fn heartbeat(&self, db: &Db) -> Result<()> {
        let sent = std::time::Instant::now();
        let conn = db.conn().await?;
        let n = conn
            .execute(
                "UPDATE strom_brokers SET lease_expires_at = now() + make_interval(secs => $3)
                 WHERE broker_id = $1 AND incarnation = $2",
                &[
                    &self.broker_id.0,
                    &self.incarnation,
                    &self.ttl.as_secs_f64(),
                ],
            )
            .await
            .map_err(Error::pg(DbOp::Registry))?;
        if n == 1 {
            *self
                .renewed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = sent;
            Ok(())
        } else {
            Err(Error::LeaseLost {
                name: format!("broker/{}", self.broker_id.0),
                holder: self.incarnation.to_string(),
                epoch: 0,
            })
        }
    }

    /// Heartbeats every `interval` (use a third of the TTL) on a background task until the
    /// registration is lost to another process or deregistered; the task then ends with that
    /// error. Database errors are retried at the next tick (the lease may lapse meanwhile, and
    /// the next successful heartbeat revives it if nobody took the id).
    pub fn keep_alive(self: &Arc<Self>, db: Db, interval: Duration) -> JoinHandle<Error> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match this.heartbeat(&db).await {
                    Ok(()) => {}
                    Err(error @ Error::LeaseLost { .. }) => return error,
                    Err(error) => tracing::warn!(%error, "broker heartbeat failed"),
                }
            }
        })
    }

    /// Replaces the advertised addresses (a broker registers before its listeners are bound,
    /// to have its id, then advertises where it listens).
    pub async fn set_addresses(&self, db: &Db, addresses: &BrokerAddresses) -> Result<()> {
        let addresses = serde_json::Value::Object(
            addresses
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        );
        let conn = db.conn().await?;
        conn.execute(
            "UPDATE strom_brokers SET addresses = $3 WHERE broker_id = $1 AND incarnation = $2",
            &[&self.broker_id.0, &self.incarnation, &addresses],
        )
        .await
        .map_err(Error::pg(DbOp::Registry))?;
        Ok(())
    }

    /// Removes the registration (clean shutdown).
    pub async fn deregister(&self, db: &Db) -> Result<()> {
        let conn = db.conn().await?;
        conn.execute(
            "DELETE FROM strom_brokers WHERE broker_id = $1 AND incarnation = $2",
            &[&self.broker_id.0, &self.incarnation],
        )
        .await
        .map_err(Error::pg(DbOp::Registry))?;
        Ok(())
    }
}

/// Brokers whose lease has not expired, by id.
pub async fn live_brokers(db: &Db) -> Result<Vec<LiveBroker>> {
    let conn = db.conn().await?;
    let rows = conn
        .query(
            "SELECT broker_id, addresses,
                    EXTRACT(EPOCH FROM (lease_expires_at - now()))::float8
             FROM strom_brokers WHERE lease_expires_at > now() ORDER BY broker_id",
            &[],
        )
        .await
        .map_err(Error::pg(DbOp::Registry))?;
    rows.iter()
        .map(|r| {
            let addresses: serde_json::Value = r.try_get(1)?;
            let addresses = match addresses {
                serde_json::Value::Object(map) => map
                    .into_iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
                    .collect(),
                _ => BrokerAddresses::new(),
            };
            Ok(LiveBroker {
                broker_id: BrokerId(r.try_get(0)?),
                addresses,
                expires_in_secs: r.try_get(2)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(Error::pg(DbOp::Registry))
}
