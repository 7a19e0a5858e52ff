//! # strom-http
//!
//! Admin HTTP endpoints, served with axum on their own listener (127.0.0.1:9644 by default):
//!
//! - `GET /metrics`: every registered metric in the OpenMetrics text format, plus per-partition
//!   gauges read from the broker at scrape time ([`PartitionCollector`]): deleted partitions
//!   simply stop appearing; and per consumer group ([`GroupCollector`]) the committed offset
//!   and the lag (high watermark minus committed offset, at least 0) of every partition with a
//!   commit; and the log cleaner's state per compacted partition ([`CleanerCollector`]).
//! - `GET /health`: `ok` while the process serves.
//!
//! No business logic lives here: it only reads the broker's public API.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::future::Future;
use std::sync::{Arc, Weak};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use strom_broker::Broker;
use strom_broker::cleaner::{CleanerStatus, PartitionCleanerState};
use tokio::net::TcpListener;

/// OpenMetrics text content type.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Per-partition gauges, computed from the broker on every scrape: high watermark, log start
/// offset, log end offset and size on disk, labelled by topic and partition.
#[derive(Debug)]
pub struct PartitionCollector {
    broker: Weak<Broker>,
}

impl PartitionCollector {
    /// A collector over `broker` (held weakly: it never keeps the broker alive).
    pub fn new(broker: &Arc<Broker>) -> PartitionCollector {
        PartitionCollector {
            broker: Arc::downgrade(broker),
        }
    }
}

type Reading = fn(&strom_broker::Partition) -> i64;

const PARTITION_GAUGES: &[(&str, &str, Reading)] = &[
    (
        "strom_partition_high_watermark",
        "Offset below which records are visible to consumers",
        |p| p.high_watermark(),
    ),
    (
        "strom_partition_log_start_offset",
        "First offset still stored",
        |p| p.log_start_offset(),
    ),
    (
        "strom_partition_log_end_offset",
        "Offset the next record will get",
        |p| p.log_end_offset(),
    ),
    (
        "strom_partition_size_bytes",
        "Bytes of all segments on disk",
        |p| i64::try_from(p.size_bytes()).unwrap_or(i64::MAX),
    ),
    (
        "strom_partition_damaged_ranges",
        "Ranges of offsets taken out of service because they are damaged on disk (reads in them get CORRUPT_MESSAGE)",
        |p| i64::try_from(p.damaged_ranges().len()).unwrap_or(i64::MAX),
    ),
    (
        "strom_partition_log_recoveries",
        "Times the partition's log was reopened after an I/O failure poisoned it (no restart)",
        |p| i64::try_from(p.recoveries()).unwrap_or(i64::MAX),
    ),
];

impl Collector for PartitionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(broker) = self.broker.upgrade() else {
            return Ok(());
        };
        let topics = broker.topics();
        {
            let metric = encoder.encode_descriptor(
                "strom_topics",
                "Number of topics",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(topics.len()).unwrap_or(i64::MAX)).encode(metric)?;
        }
        {
            let metric = encoder.encode_descriptor(
                "strom_internal_topic_damaged_batches",
                "Damaged batches or unreadable ranges of __consumer_offsets/__transaction_state skipped by replays since the process started",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(strom_broker::internal_topic_damaged_batches()).encode(metric)?;
        }
        {
            let mut metric = encoder.encode_descriptor(
                "strom_partition_syncs",
                "fdatasync calls made for the partition since it was opened",
                None,
                MetricType::Counter,
            )?;
            for topic in &topics {
                for p in topic.partitions() {
                    let labels = [
                        ("topic", topic.name().to_owned()),
                        ("partition", p.index().to_string()),
                    ];
                    ConstCounter::new(p.sync_count()).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, read) in PARTITION_GAUGES {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for topic in &topics {
                for p in topic.partitions() {
                    let labels = [
                        ("topic", topic.name().to_owned()),
                        ("partition", p.index().to_string()),
                    ];
                    ConstGauge::new(read(p)).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// Consumer-group gauges, computed from the group coordinator on every scrape:
/// `strom_consumer_group_committed_offset` and `strom_consumer_group_lag` (the partition's
/// high watermark minus the committed offset, at least 0), labelled by group, topic and
/// partition. Partitions of deleted topics are left out. In cluster mode a broker lists the
/// groups it coordinates, and adds `strom_group_coordinator_shard_epoch` (the lease epoch of
/// each coordinator shard it took over, labelled by shard) and
/// `strom_group_coordinator_takeovers_total` (shards taken over since start: failovers and
/// hand-overs), `strom_group_coordinator_takeover_rebalances_total` (rebalances of the
/// groups taken over, starting within a minute of the takeover: what failovers cost), and the
/// same epoch and takeover metrics for transaction-coordinator shards
/// (`strom_txn_coordinator_shard_epoch`, `strom_txn_coordinator_takeovers_total`).
#[derive(Debug)]
pub struct GroupCollector {
    broker: Weak<Broker>,
}

impl GroupCollector {
    /// A collector over `broker`'s group coordinator (held weakly).
    pub fn new(broker: &Arc<Broker>) -> GroupCollector {
        GroupCollector {
            broker: Arc::downgrade(broker),
        }
    }
}

type LagReading = fn(&LagRow) -> i64;

/// One committed partition of one group, as scraped.
struct LagRow {
    group: String,
    topic: String,
    partition: i32,
    committed: i64,
    lag: i64,
}

impl Collector for GroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(broker) = self.broker.upgrade() else {
            return Ok(());
        };
        let mut rows: Vec<LagRow> = Vec::new();
        for listing in broker.groups().list() {
            for ((topic, partition), committed) in
                broker.groups().fetch_offsets(&listing.group_id, None)
            {
                let Some(committed) = committed else { continue };
                let Ok(p) = broker.partition(&topic, partition) else {
                    continue;
                };
                let lag = (p.high_watermark() - committed.offset).max(0);
                rows.push(LagRow {
                    group: listing.group_id.clone(),
                    topic,
                    partition,
                    committed: committed.offset,
                    lag,
                });
            }
        }
        let gauges: [(&str, &str, LagReading); 2] = [
            (
                "strom_consumer_group_committed_offset",
                "The group's committed offset (the next offset it will consume)",
                |r| r.committed,
            ),
            (
                "strom_consumer_group_lag",
                "Records between the group's committed offset and the high watermark",
                |r| r.lag,
            ),
        ];
        if broker.groups().is_leased() {
            let mut metric = encoder.encode_descriptor(
                "strom_group_coordinator_shard_epoch",
                "Lease epoch of each consumer-group coordinator shard this broker took over",
                None,
                MetricType::Gauge,
            )?;
            for lease in broker.groups().owned_shards() {
                let labels = [("shard", lease.shard.0.to_string())];
                ConstGauge::new(lease.epoch).encode(metric.encode_family(&labels)?)?;
            }
            let metric = encoder.encode_descriptor(
                "strom_group_coordinator_takeovers",
                "Coordinator shards this broker took over since it started (failovers, hand-overs)",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(broker.groups().takeovers()).encode(metric)?;
            let metric = encoder.encode_descriptor(
                "strom_group_coordinator_takeover_rebalances",
                "Rebalances of groups this broker took over, within a minute of the takeover",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(broker.groups().takeover_rebalances()).encode(metric)?;
        }
        if broker.txns().is_leased() {
            let mut metric = encoder.encode_descriptor(
                "strom_txn_coordinator_shard_epoch",
                "Lease epoch of each transaction-coordinator shard this broker took over",
                None,
                MetricType::Gauge,
            )?;
            for lease in broker.txns().owned_shards() {
                let labels = [("shard", lease.shard.0.to_string())];
                ConstGauge::new(lease.epoch).encode(metric.encode_family(&labels)?)?;
            }
            let metric = encoder.encode_descriptor(
                "strom_txn_coordinator_takeovers",
                "Transaction-coordinator shards this broker took over since it started (failovers, hand-overs)",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(broker.txns().takeovers()).encode(metric)?;
        }
        for (name, help, read) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for row in &rows {
                let labels = [
                    ("group", row.group.clone()),
                    ("topic", row.topic.clone()),
                    ("partition", row.partition.to_string()),
                ];
                ConstGauge::new(read(row)).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Log cleaner metrics, read from the broker on every scrape, labelled by topic and partition
/// for every compacted partition the cleaner has looked at (none while it is disabled):
///
/// - `strom_log_cleaner_dirty_ratio`, `strom_log_cleaner_dirty_bytes`: the share and bytes of
///   the cleanable log not cleaned yet, at the cleaner's last look (every pass, at most
///   `log.cleaner.backoff.ms` apart);
/// - `strom_log_cleaner_lag_seconds`: now minus the timestamp of the oldest dirty record;
/// - counters since start: `strom_log_cleaner_bytes_cleaned_total` (log bytes read by cleans),
///   `strom_log_cleaner_bytes_written_total`, `strom_log_cleaner_records_removed_total`,
///   `strom_log_cleaner_cleans_total`, `strom_log_cleaner_errors_total`;
/// - `strom_log_cleaner_last_clean_timestamp_seconds` (partitions cleaned at least once);
/// - unlabelled: `strom_log_cleaner_max_lag_seconds` and `strom_log_cleaner_max_dirty_ratio`,
///   the worst partition's.
#[derive(Debug)]
pub struct CleanerCollector {
    broker: Weak<Broker>,
}

impl CleanerCollector {
    /// A collector over `broker`'s log cleaner (held weakly).
    pub fn new(broker: &Arc<Broker>) -> CleanerCollector {
        CleanerCollector {
            broker: Arc::downgrade(broker),
        }
    }
}

type CleanerReading = fn(&PartitionCleanerState, i64) -> f64;
type CleanerCount = fn(&PartitionCleanerState) -> u64;

impl Collector for CleanerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(broker) = self.broker.upgrade() else {
            return Ok(());
        };
        let now_ms = broker.clock().now_ms();
        let rows = broker.cleaner_status();
        let labels = |row: &CleanerStatus| {
            [
                ("topic", row.topic.clone()),
                ("partition", row.partition.to_string()),
            ]
        };
        let gauges: [(&str, &str, CleanerReading); 3] = [
            (
                "strom_log_cleaner_dirty_ratio",
                "Dirty bytes over cleanable bytes at the cleaner's last look",
                |s, _| s.dirty_ratio,
            ),
            (
                "strom_log_cleaner_dirty_bytes",
                "Bytes below the first uncleanable offset not cleaned yet",
                |s, _| s.dirty_bytes as f64,
            ),
            (
                "strom_log_cleaner_lag_seconds",
                "Age of the oldest dirty record",
                |s, now| s.lag_ms(now) as f64 / 1000.0,
            ),
        ];
        for (name, help, read) in gauges {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for row in &rows {
                ConstGauge::new(read(&row.state, now_ms))
                    .encode(metric.encode_family(&labels(row))?)?;
            }
        }
        let counters: [(&str, &str, CleanerCount); 5] = [
            (
                "strom_log_cleaner_bytes_cleaned",
                "Log bytes read by completed cleans",
                |s| s.bytes_read_total,
            ),
            (
                "strom_log_cleaner_bytes_written",
                "Bytes of cleaned segments written",
                |s| s.bytes_written_total,
            ),
            (
                "strom_log_cleaner_records_removed",
                "Records removed by cleaning",
                |s| s.records_removed_total,
            ),
            ("strom_log_cleaner_cleans", "Completed cleans", |s| {
                s.cleans_total
            }),
            ("strom_log_cleaner_errors", "Cleans that failed", |s| {
                s.errors_total
            }),
        ];
        for (name, help, read) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for row in &rows {
                ConstCounter::new(read(&row.state)).encode(metric.encode_family(&labels(row))?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "strom_log_cleaner_last_clean_timestamp_seconds",
                "When the partition's last clean completed (Unix time)",
                None,
                MetricType::Gauge,
            )?;
            for row in &rows {
                if let Some(ms) = row.state.last_clean_ms {
                    ConstGauge::new(ms as f64 / 1000.0)
                        .encode(metric.encode_family(&labels(row))?)?;
                }
            }
        }
        let max_lag = rows
            .iter()
            .map(|r| r.state.lag_ms(now_ms))
            .max()
            .unwrap_or(0);
        let max_ratio = rows
            .iter()
            .map(|r| r.state.dirty_ratio)
            .fold(0.0_f64, f64::max);
        let maxima: [(&str, &str, f64); 2] = [
            (
                "strom_log_cleaner_max_lag_seconds",
                "The largest cleaner lag of any compacted partition",
                max_lag as f64 / 1000.0,
            ),
            (
                "strom_log_cleaner_max_dirty_ratio",
                "The largest dirty ratio of any compacted partition",
                max_ratio,
            ),
        ];
        for (name, help, value) in maxima {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct AppState {
    registry: Arc<Registry>,
}

/// The router with `/metrics` and `/health`.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(AppState { registry })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`] over HTTPS with `tls`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<strom_tls::TlsServer>,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(strom_tls::TlsListener::new(listener, tls), router(registry))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use strom_broker::{BrokerConfig, CreateTopic};

    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, registry).unwrap();
        body
    }

    #[test]
    fn cleaner_metrics_cover_compacted_partitions_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.cleaner.enable = false;
        let broker = Arc::new(Broker::open(config).unwrap());
        let compact: BTreeMap<String, String> =
            [("cleanup.policy".to_owned(), "compact".to_owned())].into();
        for (name, configs) in [("table", compact), ("stream", BTreeMap::new())] {
            broker
                .create_topic_blocking(CreateTopic {
                    name: name.to_owned(),
                    partitions: Some(2),
                    configs,
                    ..CreateTopic::default()
                })
                .unwrap();
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(CleanerCollector::new(&broker)));
        let before = scrape(&registry);
        assert!(!before.contains("topic=\"table\""), "{before}");
        assert!(
            before.contains("strom_log_cleaner_max_lag_seconds 0.0"),
            "{before}"
        );

        // One pass looks at every compacted partition (nothing is dirty: nothing is cleaned).
        assert!(!broker.clean_once_blocking());
        let after = scrape(&registry);
        for p in 0..2 {
            for family in [
                "strom_log_cleaner_dirty_ratio",
                "strom_log_cleaner_lag_seconds",
                "strom_log_cleaner_bytes_cleaned_total",
                "strom_log_cleaner_cleans_total",
            ] {
                let line = format!("{family}{{topic=\"table\",partition=\"{p}\"}} ");
                assert!(after.contains(&line), "{line} missing in {after}");
            }
        }
        assert!(!after.contains("topic=\"stream\""), "{after}");
        assert!(
            !after.contains("strom_log_cleaner_last_clean_timestamp_seconds{"),
            "{after}"
        );
        broker.shutdown_blocking().unwrap();
    }
}
