//! Issuance integration tests: the real issuance path over the real store, on SQLite and on
//! PostgreSQL, with the built-in CA on the sealed-file key backend (where the CA trees the
//! tests build keep their keys too).

mod approvals;
mod harness;
mod idempotency;
mod issue;
mod profiles;
mod rbac;
mod tree;
