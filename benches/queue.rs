//! Placeholder replaced by the contention sweep.
fn main() {}
