//! In-process ECDSA keys held by ring: the signer behind the sealed-file backend, and an
//! ephemeral key for tests and development.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair,
};
use zeroize::Zeroizing;

use super::{KeySpec, Signer};
use crate::error::{CryptoError, Result};

/// DER prefix of a P-256 SubjectPublicKeyInfo, up to the uncompressed point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// DER prefix of a P-384 SubjectPublicKeyInfo, up to the uncompressed point.
const P384_SPKI_PREFIX: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];

fn ring_alg(spec: KeySpec) -> &'static EcdsaSigningAlgorithm {
    match spec {
        KeySpec::EcdsaP256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        KeySpec::EcdsaP384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
    }
}

fn spki_prefix(spec: KeySpec) -> &'static [u8] {
    match spec {
        KeySpec::EcdsaP256 => P256_SPKI_PREFIX,
        KeySpec::EcdsaP384 => P384_SPKI_PREFIX,
    }
}

/// An ECDSA private key in process memory (ring keeps it out of reach of `Debug`).
pub struct SoftwareSigner {
    spec: KeySpec,
    key_pair: EcdsaKeyPair,
    spki: Vec<u8>,
    rng: SystemRandom,
}

impl SoftwareSigner {
    /// A fresh key that lives only in this process (tests, development).
    pub fn generate_ephemeral(spec: KeySpec) -> Result<SoftwareSigner> {
        let pkcs8 = generate_pkcs8(spec)?;
        SoftwareSigner::from_pkcs8(spec, &pkcs8)
    }

    /// Loads a PKCS#8 v1/v2 ECDSA private key of the given type.
    pub(crate) fn from_pkcs8(spec: KeySpec, pkcs8: &[u8]) -> Result<SoftwareSigner> {
        let rng = SystemRandom::new();
        let key_pair = EcdsaKeyPair::from_pkcs8(ring_alg(spec), pkcs8, &rng).map_err(|_| {
            CryptoError::UnsupportedKey {
                detail: format!("PKCS#8 private key is not a valid {spec} key"),
            }
        })?;
        let mut spki = spki_prefix(spec).to_vec();
        spki.extend_from_slice(key_pair.public_key().as_ref());
        Ok(SoftwareSigner {
            spec,
            key_pair,
            spki,
            rng,
        })
    }
}

/// Generates a PKCS#8 private key; the buffer is wiped when dropped.
pub(crate) fn generate_pkcs8(spec: KeySpec) -> Result<Zeroizing<Vec<u8>>> {
    let doc = EcdsaKeyPair::generate_pkcs8(ring_alg(spec), &SystemRandom::new()).map_err(|_| {
        CryptoError::Signing {
            detail: format!("generating a {spec} key failed"),
        }
    })?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

impl Signer for SoftwareSigner {
    fn spec(&self) -> KeySpec {
        self.spec
    }

    fn public_key_spki_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key_pair
            .sign(&self.rng, msg)
            .map_err(|_| CryptoError::Signing {
                detail: format!("{} signature failed", self.spec),
            })?;
        Ok(sig.as_ref().to_vec())
    }
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("spec", &self.spec)
            .field("public_key_sha256", &crate::digest::sha256_hex(&self.spki))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};

    use super::*;

    #[test]
    fn signatures_verify_with_the_spki_point() {
        for (spec, verify_alg, prefix) in [
            (
                KeySpec::EcdsaP256,
                &ECDSA_P256_SHA256_ASN1,
                P256_SPKI_PREFIX,
            ),
            (
                KeySpec::EcdsaP384,
                &ECDSA_P384_SHA384_ASN1,
                P384_SPKI_PREFIX,
            ),
        ] {
            let signer = SoftwareSigner::generate_ephemeral(spec).expect("generate");
            let sig = signer.sign(b"hello").expect("sign");
            let point = &signer.public_key_spki_der()[prefix.len()..];
            UnparsedPublicKey::new(verify_alg, point)
                .verify(b"hello", &sig)
                .expect("verifies");
            let spki_len = usize::from(signer.public_key_spki_der()[1]) + 2;
            assert_eq!(spki_len, signer.public_key_spki_der().len());
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let signer = SoftwareSigner::generate_ephemeral(KeySpec::EcdsaP256).expect("generate");
        let text = format!("{signer:?}");
        assert!(text.contains("EcdsaP256"));
        assert!(!text.contains("key_pair"));
    }
}
