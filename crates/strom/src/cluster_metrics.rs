//! `/metrics` of a cluster broker's engine (issue 17/18 observability): the writer's counters
//! and the coordinator-shard leases this broker holds. Read on every scrape from in-memory
//! state ([`strom_cluster::ClusterObserver`]); nothing here touches PostgreSQL.
//!
//! - `strom_cluster_writer_commits_total`, `_failed_flushes_total`, `_objects_total`,
//!   `_bytes_total`, `_transactions_total` (PostgreSQL transactions), `_put_retries_total`;
//! - `strom_group_coordinator_lease_expiry_seconds{shard}`: per shard held, the time until
//!   this broker stops acting for it unless it renews the lease;
//! - `strom_group_coordinator_failovers_total`: shards taken from a holder that was gone
//!   (killed, or shut down), as opposed to hand-overs between live brokers.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use strom_cluster::ClusterObserver;
use strom_cluster::writer::WriterStats;

/// The collector (see the module docs).
#[derive(Debug)]
pub(crate) struct ClusterCollector {
    observer: ClusterObserver,
}

impl ClusterCollector {
    /// A collector over one broker's cluster engine.
    pub(crate) fn new(observer: ClusterObserver) -> ClusterCollector {
        ClusterCollector { observer }
    }
}

type WriterReading = fn(&WriterStats) -> u64;

/// The writer counters: name (without `_total`), help, reading.
const WRITER_COUNTERS: [(&str, &str, WriterReading); 6] = [
    (
        "strom_cluster_writer_commits",
        "Flushes the cluster writer committed",
        |s| s.commits,
    ),
    (
        "strom_cluster_writer_failed_flushes",
        "Flushes that failed (every producer waiting on them got a retriable error)",
        |s| s.failed_flushes,
    ),
    (
        "strom_cluster_writer_objects",
        "Objects the cluster writer uploaded (committed or not)",
        |s| s.objects,
    ),
    (
        "strom_cluster_writer_bytes",
        "Bytes the cluster writer uploaded",
        |s| s.bytes,
    ),
    (
        "strom_cluster_writer_transactions",
        "PostgreSQL transactions the cluster writer ran",
        |s| s.transactions,
    ),
    (
        "strom_cluster_writer_put_retries",
        "Object PUT attempts that failed and were tried again",
        |s| s.put_retries,
    ),
];

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.observer.writer_stats();
        for (name, help, read) in WRITER_COUNTERS {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(read(&stats)).encode(metric)?;
        }
        let mut metric = encoder.encode_descriptor(
            "strom_group_coordinator_lease_expiry_seconds",
            "Seconds until this broker stops coordinating the shard unless it renews the lease",
            None,
            MetricType::Gauge,
        )?;
        for held in self.observer.coordinator_shards() {
            let labels = [("shard", held.shard.0.to_string())];
            ConstGauge::new(held.expires_in_secs).encode(metric.encode_family(&labels)?)?;
        }
        let metric = encoder.encode_descriptor(
            "strom_group_coordinator_failovers",
            "Coordinator shards this broker took from a holder that was gone (failovers)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.observer.coordinator_failovers()).encode(metric)?;
        Ok(())
    }
}
