//! Integration tests of certmesh-crypto, with openssl as an independent producer and verifier.

mod chain;
mod csr;
mod keys;
mod support;
