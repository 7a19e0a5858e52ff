//! End-to-end tests with real Kafka clients (librdkafka via the `rdkafka` crate) and raw TCP.

/// The broker's allocator, as in the `strom` binary: see `strom-alloc` (a hostile array length
/// must not abort the process).
#[global_allocator]
static ALLOC: strom_alloc::GuardedAlloc = strom_alloc::GuardedAlloc;

mod kafka {
    mod acl_matrix;
    mod acls;
    mod admin;
    mod bad_input;
    mod bounded;
    mod client;
    mod compaction;
    mod configs;
    mod conformance;
    mod consumer_protocol;
    mod disk_faults;
    mod fetch;
    mod group_errors;
    mod groups;
    mod idempotence;
    mod limits;
    mod protocol;
    mod quotas;
    mod raw;
    mod read_committed;
    mod retention;
    mod roundtrip;
    mod sasl;
    mod tls;
    mod transactions;
}
