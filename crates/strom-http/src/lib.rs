//! # strom-http
//!
//! Admin HTTP endpoints, served with axum on their own listener (127.0.0.1:9644 by default):
//!
//! - `GET /metrics`: every registered metric in the OpenMetrics text format, plus per-partition
//!   gauges read from the broker at scrape time ([`PartitionCollector`]): deleted partitions
//!   simply stop appearing; and per consumer group ([`GroupCollector`]) the committed offset
//!   and the lag (high watermark minus committed offset, at least 0) of every partition with a
//!   commit.
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
/// partition. Partitions of deleted topics are left out.
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
