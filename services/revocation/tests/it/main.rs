//! Integration tests of certmesh-revocation, on SQLite and PostgreSQL.
//!
//! Every test that touches the store runs on both backends ([`support::each_backend`]);
//! `CERTMESH_TEST_DATABASE_URL` must name a PostgreSQL server. Tests of signatures and of the
//! HTTP listener run once, on SQLite, and check what relying parties see with `openssl`.
//!
//! - [`revoke`]: one certificate revoked, held, made permanent, lifted; refusals; tenants;
//!   status reads.
//! - [`bulk`]: bulk revocation filters, totals and dry runs.
//! - [`crl`]: CRLs per CA key and shard, when they are made again, the publisher lease.
//! - [`ocsp`]: OCSP answers and their cache across revocations and replicas.
//! - [`pki`]: the PKI listener over HTTP.

mod bulk;
mod crl;
mod der;
mod ocsp;
mod pki;
mod revoke;
mod support;
