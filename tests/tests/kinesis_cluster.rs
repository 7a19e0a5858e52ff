//! The Kinesis end-to-end tests of `kinesis.rs`, the same test bodies, against three brokers
//! of a cluster over real PostgreSQL and moto (issue 18: "the single-node Kinesis end-to-end
//! tests run unchanged against the cluster"). The harness (`kinesis/harness.rs`) starts the
//! cluster when `CLUSTER` is set, and every SDK client sends each request to the next broker.

/// The broker's allocator, as in the `strom` binary.
#[global_allocator]
static ALLOC: strom_alloc::GuardedAlloc = strom_alloc::GuardedAlloc;

/// The harness starts three brokers of a cluster.
const CLUSTER: bool = true;

/// The Kafka tests' rdkafka helpers, shared (not every helper is used here).
#[path = "kafka/client.rs"]
#[allow(dead_code)]
mod kafka_client;

mod kinesis {
    /// Cluster only: resharding through one broker while others put and subscribe.
    mod across_brokers;
    mod admin;
    mod auth;
    mod bounded;
    mod compaction;
    mod cross;
    mod data;
    mod harness;
    mod http2;
    mod limits;
    mod raw;
    mod reshard;
    mod shard_times;
    mod subscribe;
    mod tls;
    mod transactions;
}
