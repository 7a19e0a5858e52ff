//! End-to-end tests of the Kinesis front end with the official AWS SDK (aws-sdk-kinesis), raw
//! HTTP (CBOR, malformed bodies) and librdkafka cross-checks, against a broker in-process.

/// The broker's allocator, as in the `strom` binary.
#[global_allocator]
static ALLOC: strom_alloc::GuardedAlloc = strom_alloc::GuardedAlloc;

/// One broker (`kinesis_cluster.rs` runs the same tests against a cluster).
const CLUSTER: bool = false;

/// The Kafka tests' rdkafka helpers, shared (not every helper is used here).
#[path = "kafka/client.rs"]
#[allow(dead_code)]
mod kafka_client;

mod kinesis {
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
