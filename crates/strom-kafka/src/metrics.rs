//! Kafka front-end metrics: requests and latency per API, connections, bytes in and out.
//!
//! Labels have bounded cardinality (API names only); per-partition state is exported by a
//! scrape-time collector in `strom-http`, so deleted partitions leave no stale series.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `api` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ApiLabel {
    /// The API's name, e.g. `Produce`.
    pub api: String,
}

impl From<ApiKey> for ApiLabel {
    fn from(key: ApiKey) -> Self {
        ApiLabel {
            api: format!("{key:?}"),
        }
    }
}

/// Counters and histograms of the Kafka listener. Cheap to clone (shared inside).
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    requests: Family<ApiLabel, Counter>,
    closed_by_error: Counter,
    latency: Family<ApiLabel, Histogram>,
    connections_open: Gauge,
    connections_total: Counter,
    connections_refused: Counter,
    produced_bytes: Counter,
    fetched_bytes: Counter,
    sasl_succeeded: Counter,
    sasl_failed: Counter,
    sasl_expired: Counter,
}

impl Default for KafkaMetrics {
    fn default() -> Self {
        KafkaMetrics {
            requests: Family::default(),
            closed_by_error: Counter::default(),
            latency: Family::new_with_constructor(|| {
                // 100 µs .. ~52 s.
                Histogram::new(exponential_buckets(0.0001, 2.0, 20))
            }),
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            produced_bytes: Counter::default(),
            fetched_bytes: Counter::default(),
            sasl_succeeded: Counter::default(),
            sasl_failed: Counter::default(),
            sasl_expired: Counter::default(),
        }
    }
}

impl KafkaMetrics {
    /// Counts a SASL authentication's outcome.
    pub fn sasl_authentication(&self, succeeded: bool) {
        if succeeded {
            self.sasl_succeeded.inc();
        } else {
            self.sasl_failed.inc();
        }
    }

    /// Counts a connection closed because its session expired.
    pub fn sasl_session_expired(&self) {
        self.sasl_expired.inc();
    }

    /// Registers every metric under the `strom_kafka` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strom_kafka");
        r.register(
            "requests",
            "Requests handled, by API",
            self.requests.clone(),
        );
        r.register(
            "sasl_authentications_succeeded",
            "SASL authentications and re-authentications that succeeded",
            self.sasl_succeeded.clone(),
        );
        r.register(
            "sasl_authentications_failed",
            "SASL authentications and re-authentications that failed",
            self.sasl_failed.clone(),
        );
        r.register(
            "sasl_sessions_expired",
            "Connections closed because their SASL session expired without re-authentication (KIP-368)",
            self.sasl_expired.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept because of max.connections or max.connections.per.ip",
            self.connections_refused.clone(),
        );
        r.register(
            "connections_closed_on_error",
            "Connections closed because of a malformed or unsupported request",
            self.closed_by_error.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time from a request's arrival to its response, by API",
            Unit::Seconds,
            self.latency.clone(),
        );
        r.register(
            "connections_open",
            "Open client connections",
            self.connections_open.clone(),
        );
        r.register(
            "connections",
            "Accepted client connections",
            self.connections_total.clone(),
        );
        r.register_with_unit(
            "produced",
            "Record-batch bytes received in Produce requests",
            Unit::Bytes,
            self.produced_bytes.clone(),
        );
        r.register_with_unit(
            "fetched",
            "Record-batch bytes sent in Fetch responses",
            Unit::Bytes,
            self.fetched_bytes.clone(),
        );
    }

    pub(crate) fn request(&self, api: ApiKey, took: Duration) {
        let label = ApiLabel::from(api);
        self.requests.get_or_create(&label).inc();
        self.latency
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    pub(crate) fn closed_on_error(&self) {
        self.closed_by_error.inc();
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Connections closed at accept because of a connection limit.
    pub fn refused_connections(&self) -> u64 {
        self.connections_refused.get()
    }

    pub(crate) fn connection_opened(&self) {
        self.connections_total.inc();
        self.connections_open.inc();
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn produced(&self, bytes: usize) {
        self.produced_bytes.inc_by(bytes as u64);
    }

    pub(crate) fn fetched(&self, bytes: usize) {
        self.fetched_bytes.inc_by(bytes as u64);
    }
}
