//! Replays the `kafka_request` fuzz corpus (seeds and inputs the fuzzer found) through the same
//! checks as the fuzz target, so `cargo test` covers them without a fuzzer.

use std::path::PathBuf;

// As in the broker: hostile array lengths in the corpus must not abort the test process.
#[global_allocator]
static ALLOC: strom_alloc::GuardedAlloc = strom_alloc::GuardedAlloc;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/kafka_request.rs"]
mod kafka_request;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/sasl.rs"]
mod sasl;

#[test]
fn replay_kafka_request_corpus() {
    replay("kafka_request", kafka_request::check);
}

#[test]
fn replay_sasl_corpus() {
    replay("sasl", sasl::check);
}

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the corpus directory exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the corpus has seeds");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{} fails the {target} checks",
            file.display()
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The `sasl` fuzz target's checks on random inputs, for machines without cargo-fuzz.
    #[test]
    fn sasl_checks_hold_on_random_inputs(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        sasl::check(&data);
    }
}
