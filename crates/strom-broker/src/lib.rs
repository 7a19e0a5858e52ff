//! # strom-broker
//!
//! The protocol-agnostic broker core (work in progress).
