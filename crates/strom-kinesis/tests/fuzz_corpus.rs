//! Replays the `kinesis_body` fuzz corpus through the fuzz target's check, so `cargo test`
//! covers the seeds (and any crash inputs kept as regressions) without a fuzzer.

use std::path::PathBuf;

#[allow(unreachable_pub, dead_code)]
#[path = "../../../fuzz/src/kinesis_body.rs"]
mod kinesis_body;

#[test]
fn replay_kinesis_body_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/kinesis_body");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fuzz/corpus/kinesis_body exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
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
