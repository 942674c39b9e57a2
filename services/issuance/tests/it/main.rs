//! Issuance integration tests: the real issuance path over the real store, on SQLite and on
//! PostgreSQL, with the built-in CA on the sealed-file key backend.

mod approvals;
mod harness;
mod idempotency;
mod issue;
mod profiles;
mod rbac;
