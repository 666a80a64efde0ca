//! Benchmarks live in benches/benches/ and the load generator in benches/src/bin/.
