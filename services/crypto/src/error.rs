//! The one error type of the crypto boundary.
//!
//! Variants name what went wrong in domain terms and carry enough context to act on, but never
//! secret material (key bytes, KEKs, plaintext).

use std::io;

use crate::ca_checks::CaCheckError;
use crate::revocation::RevocationReason;

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CryptoError>;

/// Everything that can go wrong at the crypto boundary.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The input is not PEM, or not PEM with the expected label.
    #[error("malformed PEM: {detail}")]
    MalformedPem {
        /// What was wrong.
        detail: String,
    },
    /// The CSR is not a well-formed PKCS#10 request (or names nothing a certificate could carry).
    #[error("malformed CSR: {detail}")]
    MalformedCsr {
        /// What was wrong.
        detail: String,
    },
    /// The CSR's self-signature does not verify with its own public key.
    #[error("CSR signature does not verify")]
    CsrSignatureInvalid,
    /// The public key (or its signature algorithm) is of a type this crate cannot handle.
    #[error("unsupported key: {detail}")]
    UnsupportedKey {
        /// Which key type or algorithm.
        detail: String,
    },
    /// The CSR requests an extension (or extension value) this crate refuses to interpret.
    #[error("unsupported extension: {detail}")]
    UnsupportedExtension {
        /// Which extension or value.
        detail: String,
    },
    /// A certificate could not be parsed.
    #[error("malformed certificate: {detail}")]
    MalformedCertificate {
        /// What was wrong.
        detail: String,
    },
    /// The certificate's SubjectPublicKeyInfo is not the signer's public key.
    #[error("certificate public key does not match the signer key")]
    KeyMismatch,
    /// Building or signing a certificate failed.
    #[error("signing failed: {detail}")]
    Signing {
        /// What failed.
        detail: String,
    },
    /// The key reference names no key in its backend.
    #[error("key not found: {key_ref}")]
    KeyNotFound {
        /// The key reference that was looked up.
        key_ref: String,
    },
    /// A sealed key could not be opened: wrong key-encryption key, or the file was tampered
    /// with, truncated or moved to another key id.
    #[error("sealed key could not be opened (wrong key-encryption key or tampered file)")]
    Unseal,
    /// The key-encryption key could not be loaded.
    #[error("key-encryption key unusable: {detail}")]
    Kek {
        /// Why (never the key itself).
        detail: String,
    },
    /// A key reference is not of the form `<backend>:<id>` with safe characters.
    #[error("invalid key reference: {detail}")]
    InvalidKeyRef {
        /// What was wrong.
        detail: String,
    },
    /// A certificate serial number is not 1 to 20 bytes of positive hex.
    #[error("invalid serial number: {detail}")]
    InvalidSerial {
        /// What was wrong.
        detail: String,
    },
    /// A CA certificate could not be built as asked because an RFC 5280 rule refuses it (e.g.
    /// an invalid dNSName subtree in a template).
    #[error(transparent)]
    CaCheck(#[from] CaCheckError),
    /// A CRL could not be parsed.
    #[error("malformed CRL: {detail}")]
    MalformedCrl {
        /// What was wrong.
        detail: String,
    },
    /// A revocation reason that cannot be used here: `removeFromCRL` belongs only in delta CRLs
    /// (RFC 5280 §5.3.1), which certmesh does not issue, and is no status in OCSP.
    #[error("revocation reason {reason} is not allowed here")]
    RevocationReasonRefused {
        /// The refused reason.
        reason: RevocationReason,
    },
    /// A URI to be written into a certificate or CRL (CRL distribution point, OCSP responder)
    /// is not an absolute ASCII URI (RFC 5280 §4.2.1.6).
    #[error("invalid URI {uri:?}: {detail}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What was wrong.
        detail: String,
    },
    /// A ceremony approval signature does not verify with the approver's key.
    #[error("ceremony signature does not verify")]
    CeremonySignatureInvalid,
    /// A file-system operation failed.
    #[error("I/O error: {context}")]
    Io {
        /// What was being done, and on which path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl CryptoError {
    /// Builds an [`CryptoError::Io`] with a context sentence.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        CryptoError::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_keeps_source() {
        let err = CryptoError::io("reading x", io::Error::other("boom"));
        assert_eq!(err.to_string(), "I/O error: reading x");
        assert!(std::error::Error::source(&err).is_some());
    }
}
