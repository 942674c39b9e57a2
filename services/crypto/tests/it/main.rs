//! Integration tests of certmesh-crypto, with openssl as an independent producer and verifier
//! and pkilint as the RFC 5280 linter.

mod ca_checks;
mod ceremony;
mod chain;
mod constraints;
mod crl;
mod cross;
mod csr;
mod keys;
mod ocsp;
mod support;
