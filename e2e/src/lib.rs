//! certmesh end-to-end tests live in tests/; benchmarks in benches/.
