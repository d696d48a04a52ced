//! Criterion benchmarks for Stampede; see `benches/README.md`.
