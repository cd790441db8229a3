//! Config store benchmarks (in progress).
fn main() {}
