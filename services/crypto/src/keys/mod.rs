//! Keys that sign: the [`Signer`] and [`KeyBackend`] traits, key references, and the built-in
//! backends.
//!
//! A CA key is named by a [`KeyRef`] (`"<backend>:<id>"`) that is safe to store and log; the key
//! material itself stays inside its backend (a sealed file today, an HSM or KMS later) and is
//! used only through [`Signer::sign`].
//!
//! The same KEK also seals small secrets kept in the database (notification channel
//! credentials): [`sealing`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{CryptoError, Result};

mod kek;
mod sealed;
pub mod sealing;
mod software;

pub use kek::Kek;
pub use sealed::SealedFileBackend;
pub use sealing::{open, seal};
pub use software::SoftwareSigner;
pub(crate) use software::generate_pkcs8;

/// Key types a CA key may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// ECDSA on P-256, signing with SHA-256.
    EcdsaP256,
    /// ECDSA on P-384, signing with SHA-384.
    EcdsaP384,
}

impl KeySpec {
    /// Stable name: `"ecdsa-p256"` or `"ecdsa-p384"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySpec::EcdsaP256 => "ecdsa-p256",
            KeySpec::EcdsaP384 => "ecdsa-p384",
        }
    }

    pub(crate) fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeySpec::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeySpec::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeySpec {
    type Err = CryptoError;

    /// Case-insensitive inverse of [`KeySpec::as_str`].
    fn from_str(s: &str) -> Result<Self> {
        [KeySpec::EcdsaP256, KeySpec::EcdsaP384]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CryptoError::UnsupportedKey {
                detail: format!("unknown CA key spec {s:?}"),
            })
    }
}

/// A private key that can sign, wherever it lives.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The key type.
    fn spec(&self) -> KeySpec;

    /// The full DER SubjectPublicKeyInfo of the key.
    fn public_key_spki_der(&self) -> &[u8];

    /// Signs `msg`, returning a DER ECDSA-Sig-Value over SHA-256 (P-256) or SHA-384 (P-384).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>>;
}

/// Maximum length of a key id, so that it stays a sane file or object name.
const MAX_ID_LEN: usize = 128;

/// A reference to a key in a backend, `"<backend>:<id>"`, e.g. `"sealed:01931c..."`.
///
/// The backend is `[a-z0-9-]+`, the id `[A-Za-z0-9._-]+` not starting with a dot, so a
/// reference can never escape a directory or name a hidden file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef(String);

impl KeyRef {
    /// Builds a reference from its parts, validating both.
    pub fn new(backend: &str, id: &str) -> Result<KeyRef> {
        validate_backend(backend)?;
        validate_id(id)?;
        Ok(KeyRef(format!("{backend}:{id}")))
    }

    /// The whole reference.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The backend part (before the first `:`).
    pub fn backend(&self) -> &str {
        self.0.split_once(':').map_or("", |(b, _)| b)
    }

    /// The backend-specific id (after the first `:`).
    pub fn id(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, id)| id)
    }
}

fn invalid_ref(detail: impl Into<String>) -> CryptoError {
    CryptoError::InvalidKeyRef {
        detail: detail.into(),
    }
}

fn validate_backend(backend: &str) -> Result<()> {
    let ok = !backend.is_empty()
        && backend.len() <= 32
        && backend
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid_ref(format!(
            "backend {backend:?} is not [a-z0-9-]+"
        )))
    }
}

fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid_ref(format!(
            "id {id:?} is not [A-Za-z0-9._-]+ (1 to {MAX_ID_LEN}, no leading dot)"
        )))
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyRef {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<KeyRef> {
        let (backend, id) = s
            .split_once(':')
            .ok_or_else(|| invalid_ref(format!("{s:?} is not <backend>:<id>")))?;
        KeyRef::new(backend, id)
    }
}

/// A place CA keys are generated and kept: sealed files, an HSM, a KMS.
#[async_trait::async_trait]
pub trait KeyBackend: Send + Sync + fmt::Debug {
    /// The backend name used as the [`KeyRef`] prefix, e.g. `"sealed"`.
    fn name(&self) -> &'static str;

    /// Generates a new key inside the backend.
    async fn generate(&self, spec: KeySpec) -> Result<KeyRef>;

    /// A signer for an existing key: [`CryptoError::KeyNotFound`] if it does not exist,
    /// [`CryptoError::Unseal`] if it cannot be opened.
    async fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>>;

    /// Destroys a key; [`CryptoError::KeyNotFound`] if it does not exist.
    async fn destroy(&self, key: &KeyRef) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ref_parses_and_displays() {
        let r: KeyRef = "sealed:01931c-ab.CD_ef".parse().expect("valid");
        assert_eq!(r.backend(), "sealed");
        assert_eq!(r.id(), "01931c-ab.CD_ef");
        assert_eq!(r.to_string(), "sealed:01931c-ab.CD_ef");
        assert_eq!(r, KeyRef::new("sealed", "01931c-ab.CD_ef").expect("valid"));
    }

    #[test]
    fn key_ref_rejects_traversal_and_junk() {
        for bad in [
            "sealed:../x",
            "sealed:a/b",
            "sealed:..",
            "sealed:.hidden",
            "sealed:",
            ":abc",
            "Sealed:abc",
            "sealed",
            "sealed:a:b",
            "sealed:a b",
        ] {
            assert!(
                matches!(
                    bad.parse::<KeyRef>(),
                    Err(CryptoError::InvalidKeyRef { .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(KeyRef::new("sealed", &"a".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn key_spec_names() {
        assert_eq!(
            "ECDSA-P384".parse::<KeySpec>().expect("ok"),
            KeySpec::EcdsaP384
        );
        assert_eq!(KeySpec::EcdsaP256.to_string(), "ecdsa-p256");
        assert!("rsa".parse::<KeySpec>().is_err());
    }
}
