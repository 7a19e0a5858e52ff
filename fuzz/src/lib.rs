//! The checks behind each fuzz target, kept in a library so that ordinary tests can replay the
//! corpora without the fuzzer (`crates/strom-record/tests/fuzz_corpus.rs` includes
//! `record_batch.rs` directly).

pub mod kafka_request;
pub mod kinesis_body;
pub mod record_batch;
pub mod sasl;
pub mod sigv4_header;
pub mod x509_subject;
