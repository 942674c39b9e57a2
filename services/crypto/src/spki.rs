//! Subject public keys: classifying a SubjectPublicKeyInfo into a [`KeyInfo`] and handing it to
//! rcgen for certificate building.
//!
//! rcgen re-encodes a certificate's SubjectPublicKeyInfo from an algorithm descriptor plus the
//! raw key bits, so this module maps each supported key type to the matching descriptor.

use rcgen::SignatureAlgorithm;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::csr::{KeyAlgorithm, KeyInfo};
use crate::digest::sha1_key_id;
use crate::error::{CryptoError, Result};

/// A subject public key this crate can put into a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SubjectKey {
    spki_der: Vec<u8>,
    key_bits: Vec<u8>,
    alg: &'static SignatureAlgorithm,
    info: KeyInfo,
}

impl SubjectKey {
    /// Classifies a parsed SubjectPublicKeyInfo.
    pub(crate) fn from_parsed(spki: &SubjectPublicKeyInfo<'_>) -> Result<SubjectKey> {
        let (info, alg) = classify(spki)?;
        Ok(SubjectKey {
            spki_der: spki.raw.to_vec(),
            key_bits: spki.subject_public_key.data.to_vec(),
            alg,
            info,
        })
    }

    /// Parses and classifies a DER SubjectPublicKeyInfo (no trailing data).
    pub(crate) fn from_der(der: &[u8]) -> Result<SubjectKey> {
        let (rest, spki) =
            SubjectPublicKeyInfo::from_der(der).map_err(|e| CryptoError::UnsupportedKey {
                detail: format!("SubjectPublicKeyInfo does not parse: {e}"),
            })?;
        if !rest.is_empty() {
            return Err(CryptoError::UnsupportedKey {
                detail: "trailing data after SubjectPublicKeyInfo".to_owned(),
            });
        }
        Self::from_parsed(&spki)
    }

    /// The DER SubjectPublicKeyInfo.
    pub(crate) fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Algorithm and size.
    pub(crate) fn info(&self) -> KeyInfo {
        self.info
    }

    /// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value.
    pub(crate) fn key_id(&self) -> Vec<u8> {
        sha1_key_id(&self.key_bits)
    }
}

impl rcgen::PublicKeyData for SubjectKey {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki_der.clone()
    }

    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

fn unsupported(detail: impl Into<String>) -> CryptoError {
    CryptoError::UnsupportedKey {
        detail: detail.into(),
    }
}

fn classify(spki: &SubjectPublicKeyInfo<'_>) -> Result<(KeyInfo, &'static SignatureAlgorithm)> {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        classify_ec(spki)
    } else if *oid == OID_PKCS1_RSAENCRYPTION {
        let bits = rsa_modulus_bits(spki)?;
        Ok((key(KeyAlgorithm::Rsa, bits), &rcgen::PKCS_RSA_SHA256))
    } else if *oid == OID_SIG_ED25519 {
        Ok((key(KeyAlgorithm::Ed25519, 256), &rcgen::PKCS_ED25519))
    } else {
        Err(unsupported(format!("public key algorithm {oid}")))
    }
}

fn key(algorithm: KeyAlgorithm, bits: u32) -> KeyInfo {
    KeyInfo { algorithm, bits }
}

fn classify_ec(spki: &SubjectPublicKeyInfo<'_>) -> Result<(KeyInfo, &'static SignatureAlgorithm)> {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or_else(|| unsupported("EC key without a named curve"))?;
    if curve == OID_EC_P256 {
        Ok((
            key(KeyAlgorithm::Ecdsa, 256),
            &rcgen::PKCS_ECDSA_P256_SHA256,
        ))
    } else if curve == OID_NIST_EC_P384 {
        Ok((
            key(KeyAlgorithm::Ecdsa, 384),
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ))
    } else if curve == OID_NIST_EC_P521 {
        // ring can neither verify P-521 signatures nor rcgen (ring build) encode the key.
        Err(unsupported("ECDSA P-521 keys are not supported"))
    } else {
        Err(unsupported(format!("EC curve {curve}")))
    }
}

fn rsa_modulus_bits(spki: &SubjectPublicKeyInfo<'_>) -> Result<u32> {
    let Ok(ParsedKey::RSA(rsa)) = spki.parsed() else {
        return Err(unsupported("RSA public key does not parse"));
    };
    let first = rsa.modulus.iter().position(|b| *b != 0);
    let Some(first) = first else {
        return Err(unsupported("RSA modulus is zero"));
    };
    let magnitude = &rsa.modulus[first..];
    let len = u32::try_from(magnitude.len()).map_err(|_| unsupported("RSA modulus too large"))?;
    Ok(len * 8 - magnitude[0].leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPKI of a P-256 key (RFC 5280 style, uncompressed point of zeros is fine for parsing).
    fn p256_spki() -> Vec<u8> {
        let mut der =
            hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("hex");
        der.push(0x04);
        der.extend_from_slice(&[7u8; 64]);
        der
    }

    #[test]
    fn classifies_p256() {
        let key = SubjectKey::from_der(&p256_spki()).expect("parses");
        assert_eq!(key.info(), key_info(KeyAlgorithm::Ecdsa, 256));
        assert_eq!(key.key_id().len(), 20);
        assert_eq!(rcgen::PublicKeyData::der_bytes(&key).len(), 65);
    }

    #[test]
    fn rejects_trailing_and_garbage() {
        let mut der = p256_spki();
        der.push(0);
        assert!(matches!(
            SubjectKey::from_der(&der),
            Err(CryptoError::UnsupportedKey { .. })
        ));
        assert!(SubjectKey::from_der(b"nope").is_err());
    }

    fn key_info(algorithm: KeyAlgorithm, bits: u32) -> KeyInfo {
        KeyInfo { algorithm, bits }
    }
}
