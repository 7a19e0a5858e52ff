//! [`Membership`]: this broker's registration, its keep-alive, and the view of every live
//! broker that Metadata answers from (`strom_broker::storage::ClusterMembers`).
//!
//! A broker joins before its listeners are bound: it registers with no address under its
//! configured node id, or under the smallest id no live broker holds (retrying if another
//! broker takes that id first), then [`Membership::advertise`]s its listeners. A task
//! heartbeats every third of the lease TTL; another re-reads the live brokers every second, so
//! a broker killed with `kill -9` leaves every broker's Metadata at most one TTL plus a second
//! after its last heartbeat. A clean shutdown deregisters at once ([`Membership::leave`]).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use strom_broker::storage::{BrokerEndpoint, ClusterMembers};
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::db::Db;
use crate::error::{DbOp, Error, Result};
use crate::registry::{BrokerAddresses, BrokerId, LiveBroker, Registration, live_brokers};

/// How often the live-broker view is refreshed.
const REFRESH: Duration = Duration::from_secs(1);
/// Attempts at taking a free node id when several brokers start at once.
const ID_ATTEMPTS: usize = 20;

/// This broker's place in the cluster (see the module docs).
#[derive(Debug)]
pub struct Membership {
    db: Db,
    registration: Arc<Registration>,
    live: Arc<RwLock<Vec<LiveBroker>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Membership {
    /// Registers this broker (allocating its id when `node_id` is `None`) and starts the
    /// heartbeat and the refresh of the live view on the current runtime.
    pub async fn join(config: &ClusterConfig, node_id: Option<i32>) -> Result<Membership> {
        let pg = config.postgres_config()?;
        let db = Db::new(pg.clone());
        let ttl = config.lease_ttl;
        let none = BrokerAddresses::new();
        let registration = match node_id {
            Some(id) => Registration::register(&db, BrokerId(id), &none, ttl).await?,
            None => {
                let mut attempt = 0;
                loop {
                    let id = free_node_id(&db).await?;
                    match Registration::register(&db, BrokerId(id), &none, ttl).await {
                        Ok(r) => break r,
                        Err(Error::BrokerIdInUse { .. }) if attempt < ID_ATTEMPTS => attempt += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let registration = Arc::new(registration);
        tracing::info!(
            node_id = registration.broker_id().0,
            "registered in the cluster"
        );
        let heartbeat = registration.keep_alive(Db::new(pg.clone()), ttl / 3);
        let heartbeat = tokio::spawn(async move {
            if let Ok(error) = heartbeat.await {
                tracing::error!(%error, "this broker's registration was lost; it no longer appears in Metadata");
            }
        });
        let live: Arc<RwLock<Vec<LiveBroker>>> = Arc::default();
        if let Ok(brokers) = live_brokers(&db).await {
            *live.write().unwrap_or_else(PoisonError::into_inner) = brokers;
        }
        let refresh = {
            let live = Arc::clone(&live);
            let db = Db::new(pg);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(REFRESH);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match live_brokers(&db).await {
                        Ok(brokers) => {
                            *live.write().unwrap_or_else(PoisonError::into_inner) = brokers;
                        }
                        Err(error) => tracing::debug!(%error, "reading live brokers failed"),
                    }
                }
            })
        };
        Ok(Membership {
            db,
            registration,
            live,
            tasks: vec![heartbeat, refresh],
        })
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.registration.broker_id().0
    }

    /// Publishes this broker's listeners: [`KAFKA_ADDRESS`] is the Kafka address a client
    /// of an unnamed listener is given, [`kafka_listener_key`] names each Kafka listener's.
    pub async fn advertise(&self, addresses: &BrokerAddresses) -> Result<()> {
        self.registration.set_addresses(&self.db, addresses).await
    }

    /// Stops heartbeating and deregisters.
    pub async fn leave(&self) -> Result<()> {
        for task in &self.tasks {
            task.abort();
        }
        self.registration.deregister(&self.db).await
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ClusterMembers for Membership {
    fn self_registered(&self) -> bool {
        self.registration.is_current()
    }

    fn live_brokers(&self) -> Vec<BrokerEndpoint> {
        endpoints(
            &self.live.read().unwrap_or_else(PoisonError::into_inner),
            None,
        )
    }

    fn live_brokers_on(&self, listener: &str) -> Vec<BrokerEndpoint> {
        endpoints(
            &self.live.read().unwrap_or_else(PoisonError::into_inner),
            Some(listener),
        )
    }
}

/// The registry key of a broker's default Kafka address (its first listener's).
pub const KAFKA_ADDRESS: &str = "kafka";

/// The registry key of the address of a broker's Kafka listener named `listener`.
pub fn kafka_listener_key(listener: &str) -> String {
    format!("kafka.{listener}")
}

/// The smallest id no live broker holds.
async fn free_node_id(db: &Db) -> Result<i32> {
    let conn = db.conn().await?;
    let row = conn
        .query_one(
            "SELECT min(g)::int4 FROM generate_series(0, (SELECT count(*) FROM strom_brokers)::int4) AS g
             WHERE NOT EXISTS (SELECT 1 FROM strom_brokers
                               WHERE broker_id = g AND lease_expires_at > now())",
            &[],
        )
        .await
        .map_err(Error::pg(DbOp::Registry))?;
    let id: Option<i32> = row.try_get(0).map_err(Error::pg(DbOp::Registry))?;
    Ok(id.unwrap_or(0))
}

/// Brokers that advertise a Kafka listener, as Metadata lists them: with the address of
/// their listener named `listener` when they registered one, else their default address.
fn endpoints(brokers: &[LiveBroker], listener: Option<&str>) -> Vec<BrokerEndpoint> {
    let key = listener.map(kafka_listener_key);
    let mut out: Vec<BrokerEndpoint> = brokers
        .iter()
        .filter_map(|b| {
            let address = key
                .as_ref()
                .and_then(|k| b.addresses.get(k))
                .or_else(|| b.addresses.get(KAFKA_ADDRESS))?;
            let (host, port) = address.rsplit_once(':')?;
            Some(BrokerEndpoint {
                node_id: b.broker_id.0,
                host: host.to_owned(),
                port: port.parse().ok()?,
            })
        })
        .collect();
    out.sort_by_key(|b| b.node_id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_skip_brokers_without_a_kafka_listener() {
        let broker = |id: i32, kafka: Option<&str>| LiveBroker {
            broker_id: BrokerId(id),
            addresses: kafka
                .map(|k| BrokerAddresses::from([("kafka".to_owned(), k.to_owned())]))
                .unwrap_or_default(),
            expires_in_secs: 5.0,
        };
        let got = endpoints(
            &[
                broker(2, Some("127.0.0.1:9093")),
                broker(0, Some("localhost:9092")),
                broker(1, None),
                broker(3, Some("bad")),
            ],
            None,
        );
        assert_eq!(
            got,
            vec![
                BrokerEndpoint {
                    node_id: 0,
                    host: "localhost".into(),
                    port: 9092
                },
                BrokerEndpoint {
                    node_id: 2,
                    host: "127.0.0.1".into(),
                    port: 9093
                },
            ]
        );
    }

    #[test]
    fn endpoints_on_a_listener_use_its_address_else_the_default() {
        let with = |id: i32, pairs: &[(&str, &str)]| LiveBroker {
            broker_id: BrokerId(id),
            addresses: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            expires_in_secs: 5.0,
        };
        let brokers = [
            with(
                0,
                &[
                    ("kafka", "in0:9092"),
                    ("kafka.INTERNAL", "in0:9092"),
                    ("kafka.EXTERNAL", "ex0.example.com:9093"),
                ],
            ),
            // Registered before listener names were: its one address for every listener.
            with(1, &[("kafka", "old1:9092")]),
            with(2, &[("kafka.EXTERNAL", "ex2:9093")]),
        ];
        let hosts = |listener| {
            endpoints(&brokers, listener)
                .into_iter()
                .map(|b| format!("{}:{}:{}", b.node_id, b.host, b.port))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            hosts(Some("EXTERNAL")),
            vec!["0:ex0.example.com:9093", "1:old1:9092", "2:ex2:9093"]
        );
        assert_eq!(hosts(Some("INTERNAL")), vec!["0:in0:9092", "1:old1:9092"]);
        assert_eq!(hosts(None), vec!["0:in0:9092", "1:old1:9092"]);
    }
}
