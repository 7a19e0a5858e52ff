//! Replays the `kinesis_body` and `sigv4_header` fuzz corpora through the fuzz targets'
//! checks, so `cargo test` covers the seeds (and any crash inputs kept as regressions) without
//! a fuzzer.

use std::path::PathBuf;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/kinesis_body.rs"]
mod kinesis_body;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/sigv4_header.rs"]
mod sigv4_header;

fn corpus(name: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz/corpus/{name} exists: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn replay_kinesis_body_corpus() {
    let files = corpus("kinesis_body");
    assert!(files.len() >= 6, "the corpus has seeds");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| kinesis_body::check(&data));
        assert!(
            outcome.is_ok(),
            "{} fails the kinesis_body check",
            file.display()
        );
    }
}

#[test]
fn replay_sigv4_header_corpus() {
    let files = corpus("sigv4_header");
    assert!(files.len() >= 5, "the corpus has seeds");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| sigv4_header::check(&data));
        assert!(
            outcome.is_ok(),
            "{} fails the sigv4_header check",
            file.display()
        );
    }
}
