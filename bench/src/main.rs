//! Throughput harness.
fn main() {}
