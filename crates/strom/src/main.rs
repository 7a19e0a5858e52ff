//! The `strom` binary (work in progress).
fn main() {}
