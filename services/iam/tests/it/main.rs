//! IAM integration tests: principals, tokens and the audit API through the gRPC handlers, on
//! SQLite and PostgreSQL.

mod iam;
