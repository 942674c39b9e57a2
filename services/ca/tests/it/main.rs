//! CA role integration tests: the tree built through m-of-n key ceremonies, the RFC 5280
//! checks, rotation, cross-signing, retirement, events, audit and RBAC, on SQLite and
//! PostgreSQL, with openssl and pkilint checking what comes out.

mod ceremonies;
mod events;
mod harness;
mod lifecycle;
mod rbac;
mod tools;
mod tree;
