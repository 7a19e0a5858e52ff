//! End-to-end tests with real Kafka clients (librdkafka via the `rdkafka` crate) and raw TCP.

mod kafka {
    mod admin;
    mod bad_input;
    mod client;
    mod fetch;
    mod limits;
    mod protocol;
    mod raw;
    mod roundtrip;
}
