//! Key-ceremony cryptography (RFC 0003): the digest of a ceremony's parameters, the message a
//! custodian signs, custodians' registered public keys, and checking their signatures.
//!
//! Custodians sign with their own keys, outside certmesh, typically with openssl:
//! `openssl pkeyutl -sign -rawin` (Ed25519, RFC 8032, a raw 64-byte signature) or
//! `openssl dgst -sha256 -sign` (ECDSA P-256 with SHA-256, a DER `ECDSA-Sig-Value`). The signed
//! message carries a fixed prefix so that a ceremony approval cannot be replayed as a signature
//! over anything else, and nothing else can be replayed as an approval.

use std::fmt;
use std::str::FromStr;

use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair,
    UnparsedPublicKey, VerificationAlgorithm,
};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::Zeroizing;

use crate::digest::sha256_hex;
use crate::error::{CryptoError, Result};

/// Prefix of every ceremony signing message; the version changes if the message format does.
const MESSAGE_PREFIX: &str = "certmesh-ceremony-v1:";

/// Length of an Ed25519 signature (RFC 8032 §5.1.6).
const ED25519_SIGNATURE_LEN: usize = 64;

/// DER of the PKCS#8 AlgorithmIdentifier for an EC key on P-256 (RFC 5480 §2.1.1):
/// id-ecPublicKey with the namedCurve prime256v1.
const P256_ALGORITHM_ID: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// The key types a custodian may register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApproverKeyAlgorithm {
    /// Ed25519 (RFC 8032), raw 64-byte signatures.
    Ed25519,
    /// ECDSA on P-256 with SHA-256, DER signatures.
    EcdsaP256,
}

impl ApproverKeyAlgorithm {
    /// Stable name, as stored: `"ed25519"` or `"ecdsa-p256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApproverKeyAlgorithm::Ed25519 => "ed25519",
            ApproverKeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            ApproverKeyAlgorithm::Ed25519 => &ED25519,
            ApproverKeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        }
    }
}

impl fmt::Display for ApproverKeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApproverKeyAlgorithm {
    type Err = CryptoError;

    /// Case-insensitive inverse of [`ApproverKeyAlgorithm::as_str`].
    fn from_str(s: &str) -> Result<Self> {
        [
            ApproverKeyAlgorithm::Ed25519,
            ApproverKeyAlgorithm::EcdsaP256,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| unsupported(format!("unknown approver key algorithm {s:?}")))
    }
}

/// A custodian's public key, parsed from a SubjectPublicKeyInfo and known to be of a type
/// ceremony signatures may use.
#[derive(Clone, PartialEq, Eq)]
pub struct ApproverKey {
    algorithm: ApproverKeyAlgorithm,
    spki_der: Vec<u8>,
    /// The subjectPublicKey bits: 32 bytes (Ed25519) or an uncompressed P-256 point.
    public_key: Vec<u8>,
}

impl ApproverKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl pkey -pubout` writes it.
    pub fn from_pem(pem: &str) -> Result<ApproverKey> {
        Self::from_spki_der(&crate::pem::decode(pem, &["PUBLIC KEY"])?)
    }

    /// Parses a DER SubjectPublicKeyInfo (no trailing data). Anything but an Ed25519 or an
    /// ECDSA P-256 key is [`CryptoError::UnsupportedKey`].
    pub fn from_spki_der(der: &[u8]) -> Result<ApproverKey> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| unsupported(format!("SubjectPublicKeyInfo does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(unsupported("trailing data after SubjectPublicKeyInfo"));
        }
        let algorithm = classify(&spki)?;
        let public_key = spki.subject_public_key.data.to_vec();
        check_key_bits(algorithm, &public_key)?;
        Ok(ApproverKey {
            algorithm,
            spki_der: der.to_vec(),
            public_key,
        })
    }

    /// The key type.
    pub fn algorithm(&self) -> ApproverKeyAlgorithm {
        self.algorithm
    }

    /// The DER SubjectPublicKeyInfo, as registered.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as a PEM `PUBLIC KEY`.
    pub fn to_pem(&self) -> String {
        crate::pem::encode("PUBLIC KEY", &self.spki_der)
    }

    /// Lower-case hex SHA-256 of the SubjectPublicKeyInfo DER (what `openssl pkey -pubin
    /// -outform DER | sha256sum` prints).
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.spki_der)
    }

    /// Verifies `signature` over `message`: a raw 64-byte signature for Ed25519, a DER
    /// `ECDSA-Sig-Value` over SHA-256 for P-256. Fails with
    /// [`CryptoError::CeremonySignatureInvalid`].
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        if self.algorithm == ApproverKeyAlgorithm::Ed25519
            && signature.len() != ED25519_SIGNATURE_LEN
        {
            return Err(CryptoError::CeremonySignatureInvalid);
        }
        UnparsedPublicKey::new(self.algorithm.verification(), &self.public_key)
            .verify(message, signature)
            .map_err(|_| CryptoError::CeremonySignatureInvalid)
    }
}

impl fmt::Debug for ApproverKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApproverKey")
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn unsupported(detail: impl Into<String>) -> CryptoError {
    CryptoError::UnsupportedKey {
        detail: detail.into(),
    }
}

fn classify(spki: &SubjectPublicKeyInfo<'_>) -> Result<ApproverKeyAlgorithm> {
    const ACCEPTED: &str = "approver keys must be Ed25519 or ECDSA P-256";
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_SIG_ED25519 {
        // RFC 8410 §3: the parameters are absent.
        if spki.algorithm.parameters.is_some() {
            return Err(unsupported("Ed25519 key with algorithm parameters"));
        }
        return Ok(ApproverKeyAlgorithm::Ed25519);
    }
    if *oid == OID_PKCS1_RSAENCRYPTION {
        return Err(unsupported(format!("{ACCEPTED}, not RSA")));
    }
    if *oid != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(unsupported(format!("{ACCEPTED}, not algorithm {oid}")));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or_else(|| unsupported("EC key without a named curve"))?;
    if curve == OID_EC_P256 {
        Ok(ApproverKeyAlgorithm::EcdsaP256)
    } else if curve == OID_NIST_EC_P384 {
        Err(unsupported(format!("{ACCEPTED}, not ECDSA P-384")))
    } else if curve == OID_NIST_EC_P521 {
        Err(unsupported(format!("{ACCEPTED}, not ECDSA P-521")))
    } else {
        Err(unsupported(format!("{ACCEPTED}, not EC curve {curve}")))
    }
}

/// The key bits must be usable by the verifier: ring takes only uncompressed P-256 points.
fn check_key_bits(algorithm: ApproverKeyAlgorithm, bits: &[u8]) -> Result<()> {
    let ok = match algorithm {
        ApproverKeyAlgorithm::Ed25519 => bits.len() == 32,
        ApproverKeyAlgorithm::EcdsaP256 => bits.len() == 65 && bits[0] == 0x04,
    };
    if ok {
        Ok(())
    } else {
        Err(unsupported(format!(
            "{algorithm} public key of {} bytes (P-256 points must be uncompressed)",
            bits.len()
        )))
    }
}

/// The digest a ceremony is approved by: lower-case hex SHA-256 of its canonical JSON.
pub fn ceremony_digest(canonical_json: &[u8]) -> String {
    sha256_hex(canonical_json)
}

/// The bytes a custodian signs to approve the ceremony with `digest_hex` (as returned by
/// [`ceremony_digest`]): ASCII `certmesh-ceremony-v1:<digest_hex>`, no trailing newline.
pub fn signing_message(digest_hex: &str) -> Vec<u8> {
    format!("{MESSAGE_PREFIX}{digest_hex}").into_bytes()
}

/// Signs `message` with a custodian's private key, for the CLI: a PEM `PRIVATE KEY` (PKCS#8,
/// Ed25519 or ECDSA P-256, unencrypted) or `EC PRIVATE KEY` (SEC1, P-256, as `openssl ecparam
/// -genkey` writes it). Returns a signature [`ApproverKey::verify`] accepts. The decoded key is
/// wiped from memory when done.
pub fn sign_with_private_key_pem(pem: &str, message: &[u8]) -> Result<Vec<u8>> {
    let (label, der) = crate::pem::decode_secret(pem, &["PRIVATE KEY", "EC PRIVATE KEY"])?;
    let pkcs8 = if label == "EC PRIVATE KEY" {
        pkcs8_from_sec1_p256(&der)
    } else {
        der
    };
    if let Ok(key) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8) {
        return Ok(key.sign(message).as_ref().to_vec());
    }
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
        .map_err(|_| unsupported("the private key is not an Ed25519 or ECDSA P-256 key"))?;
    let signature = key.sign(&rng, message).map_err(|_| CryptoError::Signing {
        detail: "ECDSA P-256 signing failed".to_owned(),
    })?;
    Ok(signature.as_ref().to_vec())
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4): the 32 key bytes follow.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410 §7): the 32-byte seed follows.
const ED25519_PKCS8_V1_PREFIX: &[u8] = &[
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// Where the seed sits in the PKCS#8 v2 document ring generates.
const ED25519_V2_SEED: std::ops::Range<usize> = 16..48;

/// A new Ed25519 custodian key: its private key as a PEM `PRIVATE KEY` (PKCS#8, wiped from
/// memory when dropped) and its public key, ready to register. For the development server's
/// own custodian; real custodians make their keys on their own machines.
pub fn generate_ed25519() -> Result<(Zeroizing<String>, ApproverKey)> {
    use ring::signature::KeyPair;
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CryptoError::Signing {
        detail: "Ed25519 key generation failed".to_owned(),
    })?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| CryptoError::Signing {
        detail: "a generated Ed25519 key does not parse".to_owned(),
    })?;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    // ring writes PKCS#8 v2 (with the public key), which OpenSSL 3.0 does not read; write the
    // RFC 8410 v1 form, the seed alone, which every tool reads.
    let seed = pkcs8
        .as_ref()
        .get(ED25519_V2_SEED)
        .ok_or_else(|| CryptoError::Signing {
            detail: "unexpected Ed25519 PKCS#8 layout".to_owned(),
        })?;
    let mut v1 = Zeroizing::new(ED25519_PKCS8_V1_PREFIX.to_vec());
    v1.extend_from_slice(seed);
    let pem = Zeroizing::new(crate::pem::encode("PRIVATE KEY", &v1));
    Ok((pem, ApproverKey::from_spki_der(&spki)?))
}

/// RFC 5208 §5 PrivateKeyInfo around a SEC1 (RFC 5915) ECPrivateKey, assuming P-256; ring
/// checks the curve named inside the SEC1 structure against it.
fn pkcs8_from_sec1_p256(sec1: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(Vec::with_capacity(sec1.len() + 32));
    body.extend_from_slice(&[0x02, 0x01, 0x00]); // version 0
    body.extend_from_slice(P256_ALGORITHM_ID);
    body.push(0x04); // OCTET STRING
    push_der_len(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut out = Zeroizing::new(Vec::with_capacity(body.len() + 4));
    out.push(0x30); // SEQUENCE
    push_der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// X.690 §8.1.3 definite length; key structures stay far below 64 KiB.
fn push_der_len(out: &mut Vec<u8>, len: usize) {
    let bytes = len.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    match bytes.get(first..) {
        Some([]) | None => out.push(0),
        Some([b]) if *b < 0x80 => out.push(*b),
        Some(rest) => {
            // `rest` holds at most size_of::<usize>() bytes, so the count fits the low 7 bits.
            out.push(0x80 | rest.len() as u8);
            out.extend_from_slice(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::KeyPair;

    use super::*;

    #[test]
    fn generated_ed25519_keys_sign_what_their_public_key_verifies() {
        let (pem, public) = generate_ed25519().expect("generate");
        assert_eq!(public.algorithm(), ApproverKeyAlgorithm::Ed25519);
        let message = signing_message("ab");
        let signature = sign_with_private_key_pem(&pem, &message).expect("sign");
        public.verify(&message, &signature).expect("verifies");
        assert!(public.verify(b"other", &signature).is_err());
        let again = ApproverKey::from_pem(&public.to_pem()).expect("round trip");
        assert_eq!(again.fingerprint(), public.fingerprint());
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in [
            ApproverKeyAlgorithm::Ed25519,
            ApproverKeyAlgorithm::EcdsaP256,
        ] {
            assert_eq!(alg.as_str().parse::<ApproverKeyAlgorithm>().ok(), Some(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        assert_eq!(ApproverKeyAlgorithm::Ed25519.as_str(), "ed25519");
        assert_eq!(ApproverKeyAlgorithm::EcdsaP256.as_str(), "ecdsa-p256");
        assert!("ECDSA-P256".parse::<ApproverKeyAlgorithm>().is_ok());
        assert!("ecdsa-p384".parse::<ApproverKeyAlgorithm>().is_err());
    }

    #[test]
    fn message_and_digest() {
        assert_eq!(
            signing_message("ab12"),
            b"certmesh-ceremony-v1:ab12".to_vec()
        );
        assert_eq!(
            ceremony_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn der_lengths() {
        let enc = |len| {
            let mut out = Vec::new();
            push_der_len(&mut out, len);
            out
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(0x7f), [0x7f]);
        assert_eq!(enc(0x80), [0x81, 0x80]);
        assert_eq!(enc(0x93), [0x81, 0x93]);
        assert_eq!(enc(0x0100), [0x82, 0x01, 0x00]);
    }

    /// A ring-made Ed25519 key in PKCS#8 v2 signs, and its SPKI verifies.
    #[test]
    fn ed25519_sign_and_verify_round_trip() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parses");
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        let key = ApproverKey::from_spki_der(&spki).expect("spki");
        assert_eq!(key.algorithm(), ApproverKeyAlgorithm::Ed25519);
        let pem = crate::pem::encode("PRIVATE KEY", pkcs8.as_ref());
        let message = signing_message(&ceremony_digest(b"{}"));
        let sig = sign_with_private_key_pem(&pem, &message).expect("signs");
        assert_eq!(sig.len(), 64);
        key.verify(&message, &sig).expect("verifies");
        assert!(matches!(
            key.verify(b"other", &sig),
            Err(CryptoError::CeremonySignatureInvalid)
        ));
        assert!(key.verify(&message, &sig[..63]).is_err());
        assert_eq!(ApproverKey::from_pem(&key.to_pem()).expect("pem"), key);
        assert!(format!("{key:?}").contains(&key.fingerprint()));
    }

    #[test]
    fn garbage_keys_are_unsupported() {
        for der in [&b""[..], b"\x30\x00", b"not a key"] {
            assert!(matches!(
                ApproverKey::from_spki_der(der),
                Err(CryptoError::UnsupportedKey { .. })
            ));
        }
        assert!(matches!(
            sign_with_private_key_pem("nothing", b"m"),
            Err(CryptoError::MalformedPem { .. })
        ));
        let junk = crate::pem::encode("PRIVATE KEY", b"junk");
        assert!(matches!(
            sign_with_private_key_pem(&junk, b"m"),
            Err(CryptoError::UnsupportedKey { .. })
        ));
    }
}
