//! End-to-end tests with real Kafka clients.
