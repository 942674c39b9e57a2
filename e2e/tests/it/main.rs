//! certmesh end to end: the real `certmesh` binary driven by real clients — curl for REST, the
//! certmesh CLI for gRPC, openssl and pkilint as independent verifiers — on SQLite (dev mode)
//! and PostgreSQL (split roles). Build the binary first: `make test` does, or
//! `cargo build -p certmesh`.

mod audit;
mod bad_input;
mod boundary;
mod ca_tree;
mod dev_mode;
mod fleet;
mod listener;
mod mesh;
mod rbac;
mod replicas;
mod revocation;
mod split_postgres;
mod support;
mod tenancy;
mod tracing;
mod watch;
