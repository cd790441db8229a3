//! Cache throughput (placeholder).
fn main() {}
