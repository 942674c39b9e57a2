//! The certmesh crypto boundary.
//!
//! Everything that touches X.509, CSRs, signatures or key material lives here, so that no other
//! certmesh crate imports rcgen, x509-parser, ring or key types. Callers get parsed, verified
//! domain types ([`csr::Csr`], [`cert::Certificate`], [`serial::Serial`]) and sign through the
//! [`keys::Signer`] / [`keys::KeyBackend`] traits, behind which software, HSM and KMS keys plug in.
//! The RFC 5280 rules of a CA hierarchy are in [`ca_checks`]; ceremony approver keys and their
//! signatures in [`ceremony`]. Revocation is published through CRLs ([`crl`]) and OCSP
//! ([`ocsp`]), both sharing the reasons of [`revocation`].
//!
//! Time is never read here: every validity period comes in from the caller.

pub mod ca_checks;
pub mod ceremony;
pub mod cert;
pub mod crl;
pub mod csr;
pub mod digest;
pub mod error;
pub mod keys;
pub mod mesh;
pub mod ocsp;
pub mod revocation;
pub mod serial;
pub mod tls;

mod der;
mod pem;
mod spki;

pub use cert::certificates_in;
pub use error::{CryptoError, Result};
pub use keys::{Kek, open, seal};
