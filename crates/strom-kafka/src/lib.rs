//! # strom-kafka
//!
//! The Kafka wire-protocol front end (work in progress).
