//! Commit notifications: wake readers when a partition's high watermark moves.
//!
//! Every commit transaction sends `pg_notify('strom_commits', '<partition>:<next offset>:<topic>')`
//! for each partition it extended; PostgreSQL delivers notifications only when (and if) the
//! transaction commits, to every broker that `LISTEN`s. A [`Notifier`] owns one such listening
//! connection and keeps a `watch` channel of the high watermark per subscribed partition. When the
//! connection breaks it reconnects (with backoff) and re-reads the watermark of every subscribed
//! partition, so a notification missed while disconnected only delays a wake-up, never loses it.
//! Topic names cannot contain `:` in Kafka, but the topic is last in the payload anyway, so any
//! name parses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use crate::db::{Db, PgConfig};
use crate::error::{DbOp, Error, Result};
use crate::metadata::{TopicPartition, partition_offsets};

/// The notification channel commits are announced on.
pub const CHANNEL: &str = "strom_commits";

/// The payload announcing that `tp`'s next offset is `next`.
pub(crate) fn payload(tp: &TopicPartition, next: i64) -> String {
    format!("{}:{}:{}", tp.partition, next, tp.topic)
}

fn parse(payload: &str) -> Option<(TopicPartition, i64)> {
    let mut parts = payload.splitn(3, ':');
    let partition = parts.next()?.parse().ok()?;
    let next = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    Some((TopicPartition::new(topic, partition), next))
}

type Watchers = Arc<Mutex<HashMap<TopicPartition, watch::Sender<i64>>>>;

fn lock(w: &Watchers) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, watch::Sender<i64>>> {
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn advance(sender: &watch::Sender<i64>, next: i64) {
    sender.send_if_modified(|hw| {
        if next > *hw {
            *hw = next;
            true
        } else {
            false
        }
    });
}

/// High-watermark subscriptions fed by `LISTEN strom_commits`.
#[derive(Debug)]
pub struct Notifier {
    db: Db,
    watchers: Watchers,
    task: JoinHandle<()>,
}

impl Notifier {
    /// Starts listening (in the background; it connects and reconnects by itself).
    pub fn start(config: PgConfig) -> Self {
        let watchers: Watchers = Arc::default();
        let task = tokio::spawn(listen(config.clone(), watchers.clone()));
        Notifier {
            db: Db::new(config),
            watchers,
            task,
        }
    }

    /// A receiver of `tp`'s high watermark (its next offset), starting from the current value.
    pub async fn subscribe(&self, tp: &TopicPartition) -> Result<watch::Receiver<i64>> {
        // Register first, read second: a commit notified in between is then either seen by the
        // read or delivered to the registered channel, never lost.
        let mut rx = lock(&self.watchers)
            .entry(tp.clone())
            .or_insert_with(|| watch::channel(-1).0)
            .subscribe();
        let next = match self.db.bounded(partition_offsets(&self.db, tp)).await {
            Ok(offsets) => offsets.next_offset,
            Err(error) => {
                drop(rx);
                let mut watchers = lock(&self.watchers);
                if watchers.get(tp).is_some_and(|s| s.receiver_count() == 0) {
                    watchers.remove(tp);
                }
                return Err(error);
            }
        };
        if let Some(sender) = lock(&self.watchers).get(tp) {
            advance(sender, next);
        }
        rx.borrow_and_update();
        Ok(rx)
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(config: PgConfig, watchers: Watchers) {
    let db = Db::new(config.clone());
    let mut backoff = Duration::from_millis(50);
    loop {
        match listen_once(&config, &db, &watchers).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(error) => tracing::debug!(%error, "commit listener disconnected"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection's life: LISTEN, catch up, then forward notifications until it breaks.
async fn listen_once(config: &PgConfig, db: &Db, watchers: &Watchers) -> Result<()> {
    let (client, mut connection) = config.connect(DbOp::Listen).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "listen connection failed");
                    break;
                }
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(Error::pg(DbOp::Listen))?;
        // Catch up on whatever committed while we were not listening.
        let subscribed: Vec<TopicPartition> = lock(watchers).keys().cloned().collect();
        for tp in subscribed {
            if let Ok(offsets) = db.bounded(partition_offsets(db, &tp)).await
                && let Some(sender) = lock(watchers).get(&tp)
            {
                advance(sender, offsets.next_offset);
            }
        }
        while let Some(payload) = rx.recv().await {
            let Some((tp, next)) = parse(&payload) else {
                tracing::warn!(payload, "malformed commit notification");
                continue;
            };
            let mut watchers = lock(watchers);
            if let Some(sender) = watchers.get(&tp) {
                if sender.receiver_count() == 0 {
                    watchers.remove(&tp);
                } else {
                    advance(sender, next);
                }
            }
        }
        Ok(())
    }
    .await;
    pump.abort();
    drop(client);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_any_topic_name() {
        for topic in ["t", "a.b-c_d", "with:colon"] {
            let tp = TopicPartition::new(topic, 7);
            assert_eq!(parse(&payload(&tp, 42)), Some((tp, 42)));
        }
        assert_eq!(parse("x:1:t"), None);
        assert_eq!(parse("1:x:t"), None);
        assert_eq!(parse("1:2"), None);
    }
}
