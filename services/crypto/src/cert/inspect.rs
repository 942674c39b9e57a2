//! Inspecting certificates certmesh did not issue, as a network scan or an agent's disk scan
//! finds them: [`Certificate::summary`] says what key and signature one uses, whether it is
//! self-signed and which [`Weakness`]es it has.
//!
//! The input is untrusted and nothing here fails: an algorithm this crate does not know is
//! reported by its dotted OID, a signature it cannot verify does not make a certificate
//! self-signed.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use super::Certificate;
use crate::der::{self, Reader};
use crate::error::{CryptoError, Result};

/// The public key algorithm of a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// RSA (rsaEncryption or RSASSA-PSS keys).
    Rsa,
    /// ECDSA on a named curve (id-ecPublicKey).
    Ecdsa,
    /// Ed25519 (RFC 8410).
    Ed25519,
    /// Ed448 (RFC 8410).
    Ed448,
    /// DSA (RFC 3279).
    Dsa,
    /// Anything else (GOST, X25519 …).
    Other,
}

impl KeyType {
    /// Every key type.
    pub const ALL: [KeyType; 6] = [
        KeyType::Rsa,
        KeyType::Ecdsa,
        KeyType::Ed25519,
        KeyType::Ed448,
        KeyType::Dsa,
        KeyType::Other,
    ];

    /// Stable lower-case name: `"rsa"`, `"ecdsa"`, `"ed25519"`, `"ed448"`, `"dsa"`, `"other"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Ed25519 => "ed25519",
            KeyType::Ed448 => "ed448",
            KeyType::Dsa => "dsa",
            KeyType::Other => "other",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = CryptoError;

    /// Case-insensitive inverse of [`KeyType::as_str`].
    fn from_str(s: &str) -> Result<Self> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CryptoError::UnsupportedKey {
                detail: format!("unknown key type {s:?}"),
            })
    }
}

/// Something about a certificate that should be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Weakness {
    /// An RSA modulus shorter than 2048 bits (NIST SP 800-131A disallows them).
    RsaUnder2048,
    /// Signed with SHA-1, for which chosen-prefix collisions are practical.
    Sha1Signature,
    /// Signed with MD5, broken for signatures since 2008.
    Md5Signature,
    /// A DSA key (withdrawn by FIPS 186-5).
    DsaKey,
}

impl Weakness {
    /// Every weakness.
    pub const ALL: [Weakness; 4] = [
        Weakness::RsaUnder2048,
        Weakness::Sha1Signature,
        Weakness::Md5Signature,
        Weakness::DsaKey,
    ];

    /// Stable lower-case name: `"rsa-under-2048"`, `"sha1-signature"`, `"md5-signature"`,
    /// `"dsa-key"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Weakness::RsaUnder2048 => "rsa-under-2048",
            Weakness::Sha1Signature => "sha1-signature",
            Weakness::Md5Signature => "md5-signature",
            Weakness::DsaKey => "dsa-key",
        }
    }
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Weakness {
    type Err = CryptoError;

    /// Case-insensitive inverse of [`Weakness::as_str`].
    fn from_str(s: &str) -> Result<Self> {
        Weakness::ALL
            .into_iter()
            .find(|w| w.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CryptoError::MalformedCertificate {
                detail: format!("unknown certificate weakness {s:?}"),
            })
    }
}

/// What an inventory records about a certificate found in the wild.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// Lower-case hex SHA-256 of the DER.
    pub fingerprint_sha256: String,
    /// The serial number, lower-case hex.
    pub serial: String,
    /// Subject, RFC 4514 style.
    pub subject: String,
    /// Issuer, RFC 4514 style.
    pub issuer: String,
    /// Subject alternative names as [`Certificate::sans`] displays them.
    pub sans: Vec<String>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// The public key algorithm.
    pub key_type: KeyType,
    /// RSA modulus bits, DSA prime bits, the EC curve's size (256, 384, 521), 255 for Ed25519
    /// and 448 for Ed448; 0 when unknown.
    pub key_bits: u32,
    /// The named curve of an ECDSA key (`"P-256"`, `"P-384"`, `"P-521"`, `"secp256k1"`,
    /// `"brainpoolP256r1"` … or its dotted OID); `None` for other key types.
    pub key_curve: Option<String>,
    /// OpenSSL's name of the signature algorithm (`"sha256WithRSAEncryption"`,
    /// `"ecdsa-with-SHA256"`, `"ED25519"` …), else its dotted OID.
    pub signature_algorithm: String,
    /// Subject and issuer are the same name and the signature verifies with the certificate's
    /// own key. A signature this crate cannot verify (MD5, Ed448, DSA, P-521) never counts.
    pub self_signed: bool,
    /// basicConstraints says `CA:TRUE`.
    pub is_ca: bool,
    /// What should be replaced, in [`Weakness`] order.
    pub weaknesses: Vec<Weakness>,
}

impl Certificate {
    /// Summarizes the certificate for an inventory. The key and signature details are read
    /// from the DER on each call (they parsed when the certificate was made, so this cannot
    /// fail) and the self-signature is verified, so callers should keep the result.
    pub fn summary(&self) -> CertSummary {
        let details = X509Certificate::from_der(&self.der)
            .map(|(_, x509)| Details::of(&x509))
            .unwrap_or_else(|_| Details::unknown());
        CertSummary {
            fingerprint_sha256: self.fingerprint.clone(),
            serial: self.serial.to_hex(),
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            sans: self.sans.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            weaknesses: details.weaknesses(),
            key_type: details.key.kind,
            key_bits: details.key.bits,
            key_curve: details.key.curve,
            signature_algorithm: details.signature.name,
            self_signed: details.self_signed,
            is_ca: self.is_ca(),
        }
    }
}

/// The parts of the summary read from the parsed certificate.
struct Details {
    key: KeyDetails,
    signature: SignatureDetails,
    self_signed: bool,
}

impl Details {
    fn of(x509: &X509Certificate<'_>) -> Details {
        Details {
            key: KeyDetails::of(x509.public_key()),
            signature: SignatureDetails::of(&x509.signature_algorithm),
            self_signed: self_signed(x509),
        }
    }

    fn unknown() -> Details {
        Details {
            key: KeyDetails {
                kind: KeyType::Other,
                bits: 0,
                curve: None,
            },
            signature: SignatureDetails {
                name: String::new(),
                digest: None,
            },
            self_signed: false,
        }
    }

    fn weaknesses(&self) -> Vec<Weakness> {
        let mut found = Vec::new();
        if self.key.kind == KeyType::Rsa && self.key.bits < 2048 {
            found.push(Weakness::RsaUnder2048);
        }
        match self.signature.digest {
            Some(WeakDigest::Sha1) => found.push(Weakness::Sha1Signature),
            Some(WeakDigest::Md5) => found.push(Weakness::Md5Signature),
            None => {}
        }
        if self.key.kind == KeyType::Dsa {
            found.push(Weakness::DsaKey);
        }
        found
    }
}

struct KeyDetails {
    kind: KeyType,
    bits: u32,
    curve: Option<String>,
}

impl KeyDetails {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> KeyDetails {
        let key = |kind, bits| KeyDetails {
            kind,
            bits,
            curve: None,
        };
        match spki.algorithm.algorithm.to_id_string().as_str() {
            // rsaEncryption (RFC 3279 §2.3.1), id-RSASSA-PSS (RFC 4055 §1.2)
            "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => key(KeyType::Rsa, rsa_bits(spki)),
            // id-ecPublicKey (RFC 5480 §2.1.1)
            "1.2.840.10045.2.1" => ec_key(spki),
            "1.3.101.112" => key(KeyType::Ed25519, 255),
            "1.3.101.113" => key(KeyType::Ed448, 448),
            // id-dsa (RFC 3279 §2.3.2)
            "1.2.840.10040.4.1" => key(KeyType::Dsa, dsa_bits(spki.raw)),
            _ => key(KeyType::Other, 0),
        }
    }
}

/// Bits of the modulus magnitude.
fn rsa_bits(spki: &SubjectPublicKeyInfo<'_>) -> u32 {
    let Ok((_, rsa)) = RSAPublicKey::from_der(&spki.subject_public_key.data) else {
        return 0;
    };
    integer_bits(rsa.modulus)
}

/// Bits of an unsigned big-endian integer, ignoring leading zero octets.
fn integer_bits(magnitude: &[u8]) -> u32 {
    let Some(first) = magnitude.iter().position(|b| *b != 0) else {
        return 0;
    };
    let len = u32::try_from(magnitude.len() - first).unwrap_or(u32::MAX / 8);
    len * 8 - magnitude[first].leading_zeros()
}

/// RFC 3279 §2.3.2: the size of a DSA key is that of the prime `p` in
/// `AlgorithmIdentifier.parameters` (`Dss-Parms ::= SEQUENCE { p, q, g INTEGER }`).
fn dsa_bits(spki_der: &[u8]) -> u32 {
    let p = || -> der::DerResult<u32> {
        let mut spki = Reader::new(Reader::new(spki_der).read(der::SEQUENCE)?);
        let mut algorithm = Reader::new(spki.read(der::SEQUENCE)?);
        algorithm.read(der::OID)?;
        let mut params = Reader::new(algorithm.read(der::SEQUENCE)?);
        Ok(integer_bits(params.read(der::INTEGER)?))
    };
    p().unwrap_or(0)
}

fn ec_key(spki: &SubjectPublicKeyInfo<'_>) -> KeyDetails {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let named = curve.as_deref().and_then(named_curve);
    let point_bits = || {
        spki.parsed()
            .map(|k| u32::try_from(k.key_size()).unwrap_or(0))
            .unwrap_or(0)
    };
    KeyDetails {
        kind: KeyType::Ecdsa,
        bits: named.map_or_else(point_bits, |(_, bits)| bits),
        curve: named.map(|(name, _)| name.to_owned()).or(curve),
    }
}

/// Name and size of the curves seen in practice (RFC 5480 §2.1.1.1, RFC 5639 §4.1).
fn named_curve(oid: &str) -> Option<(&'static str, u32)> {
    Some(match oid {
        "1.2.840.10045.3.1.1" => ("P-192", 192),
        "1.3.132.0.33" => ("P-224", 224),
        "1.2.840.10045.3.1.7" => ("P-256", 256),
        "1.3.132.0.34" => ("P-384", 384),
        "1.3.132.0.35" => ("P-521", 521),
        "1.3.132.0.10" => ("secp256k1", 256),
        "1.3.36.3.3.2.8.1.1.7" => ("brainpoolP256r1", 256),
        "1.3.36.3.3.2.8.1.1.11" => ("brainpoolP384r1", 384),
        "1.3.36.3.3.2.8.1.1.13" => ("brainpoolP512r1", 512),
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WeakDigest {
    Sha1,
    Md5,
}

struct SignatureDetails {
    name: String,
    digest: Option<WeakDigest>,
}

impl SignatureDetails {
    fn of(algorithm: &AlgorithmIdentifier<'_>) -> SignatureDetails {
        use WeakDigest::{Md5, Sha1};
        let oid = algorithm.algorithm.to_id_string();
        let (name, digest) = match oid.as_str() {
            "1.2.840.113549.1.1.4" => ("md5WithRSAEncryption", Some(Md5)),
            "1.3.14.3.2.25" => ("md5WithRSA", Some(Md5)),
            "1.2.840.113549.1.1.5" => ("sha1WithRSAEncryption", Some(Sha1)),
            "1.3.14.3.2.29" => ("sha1WithRSA", Some(Sha1)),
            "1.2.840.113549.1.1.14" => ("sha224WithRSAEncryption", None),
            "1.2.840.113549.1.1.11" => ("sha256WithRSAEncryption", None),
            "1.2.840.113549.1.1.12" => ("sha384WithRSAEncryption", None),
            "1.2.840.113549.1.1.13" => ("sha512WithRSAEncryption", None),
            "1.2.840.113549.1.1.10" => ("rsassaPss", pss_digest(algorithm)),
            "1.2.840.10045.4.1" => ("ecdsa-with-SHA1", Some(Sha1)),
            "1.2.840.10045.4.3.1" => ("ecdsa-with-SHA224", None),
            "1.2.840.10045.4.3.2" => ("ecdsa-with-SHA256", None),
            "1.2.840.10045.4.3.3" => ("ecdsa-with-SHA384", None),
            "1.2.840.10045.4.3.4" => ("ecdsa-with-SHA512", None),
            "1.3.101.112" => ("ED25519", None),
            "1.3.101.113" => ("ED448", None),
            "1.2.840.10040.4.3" => ("dsaWithSHA1", Some(Sha1)),
            "2.16.840.1.101.3.4.3.1" => ("dsa_with_SHA224", None),
            "2.16.840.1.101.3.4.3.2" => ("dsa_with_SHA256", None),
            _ => {
                return SignatureDetails {
                    name: oid,
                    digest: None,
                };
            }
        };
        SignatureDetails {
            name: name.to_owned(),
            digest,
        }
    }
}

/// RFC 4055 §3.1: RSASSA-PSS names its hash in the parameters, SHA-1 when absent.
fn pss_digest(algorithm: &AlgorithmIdentifier<'_>) -> Option<WeakDigest> {
    let params = RsaSsaPssParams::try_from(algorithm.parameters.as_ref()?).ok()?;
    let hash = params.hash_algorithm_oid().to_id_string();
    match hash.as_str() {
        "1.3.14.3.2.26" => Some(WeakDigest::Sha1),
        "1.2.840.113549.2.5" => Some(WeakDigest::Md5),
        _ => None,
    }
}

/// Subject and issuer are the same Name (compared as DER, as RFC 5280 §7.1 name chaining is
/// done by most verifiers) and the signature verifies with the certificate's own key.
fn self_signed(x509: &X509Certificate<'_>) -> bool {
    if x509.subject().as_raw() != x509.issuer().as_raw() {
        return false;
    }
    // RFC 5280 §4.1.1.2: the outer algorithm must be the one inside the signed part.
    if x509.signature_algorithm != x509.tbs_certificate.signature {
        return false;
    }
    let spki = x509.public_key();
    match legacy_rsa_verifier(spki, &x509.signature_algorithm) {
        Some(alg) => UnparsedPublicKey::new(alg, &spki.subject_public_key.data)
            .verify(x509.tbs_certificate.as_ref(), &x509.signature_value.data)
            .is_ok(),
        None => x509.verify_signature(None).is_ok(),
    }
}

/// x509-parser's RSA PKCS#1 verifiers start at 2048 bits, but the weak certificates an
/// inventory exists to find are often 1024-bit: use ring's legacy verifiers for those.
fn legacy_rsa_verifier(
    spki: &SubjectPublicKeyInfo<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
) -> Option<&'static dyn VerificationAlgorithm> {
    if spki.algorithm.algorithm.to_id_string() != "1.2.840.113549.1.1.1" {
        return None;
    }
    Some(match algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => {
            &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
        }
        "1.2.840.113549.1.1.11" => &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        "1.2.840.113549.1.1.13" => &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::cert::certificates_in;

    /// Runs openssl in `dir` with the whitespace-separated `args`, panicking if it fails.
    fn openssl(dir: &Path, args: &str) {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl is required by these tests");
        assert!(
            out.status.success(),
            "openssl {args} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Summary of a certificate `openssl req` makes in `dir` as `<name>.pem` (its key in
    /// `<name>.key`), self-signed unless `args` name a `-CA`.
    fn made(dir: &Path, name: &str, args: &str) -> CertSummary {
        openssl(
            dir,
            &format!("req -x509 -nodes -days 30 -keyout {name}.key -out {name}.pem {args}"),
        );
        let mut certs =
            certificates_in(&std::fs::read(dir.join(format!("{name}.pem"))).expect("pem"));
        assert_eq!(certs.len(), 1, "one certificate");
        certs.remove(0).summary()
    }

    const P256: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256";

    #[test]
    fn a_weak_rsa_1024_sha1_root_is_flagged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = made(dir.path(), "weak", "-newkey rsa:1024 -sha1 -subj /CN=weak");
        assert_eq!(
            (s.key_type, s.key_bits, s.key_curve),
            (KeyType::Rsa, 1024, None)
        );
        assert_eq!(s.signature_algorithm, "sha1WithRSAEncryption");
        assert!(s.self_signed, "1024-bit RSA self-signatures still verify");
        assert_eq!(
            s.weaknesses,
            [Weakness::RsaUnder2048, Weakness::Sha1Signature]
        );
        assert_eq!(s.subject, "CN=weak");
        assert_eq!(s.fingerprint_sha256.len(), 64);

        let s = made(dir.path(), "md5", "-newkey rsa:2048 -md5 -subj /CN=md5");
        assert_eq!(s.signature_algorithm, "md5WithRSAEncryption");
        assert_eq!(s.weaknesses, [Weakness::Md5Signature]);
        // ring verifies no MD5 signature, so it is not claimed to be self-signed.
        assert!(!s.self_signed);
    }

    #[test]
    fn strong_rsa_pkcs1_and_pss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = made(dir.path(), "rsa", "-newkey rsa:2048 -sha256 -subj /CN=rsa");
        assert_eq!((s.key_type, s.key_bits), (KeyType::Rsa, 2048));
        assert_eq!(s.signature_algorithm, "sha256WithRSAEncryption");
        assert!(s.self_signed && s.is_ca && s.weaknesses.is_empty(), "{s:?}");

        // ring verifies PSS only with a salt as long as the digest.
        let pss = "-newkey rsa:2048 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest";
        let s = made(dir.path(), "pss", &format!("{pss} -sha256 -subj /CN=pss"));
        assert_eq!(s.signature_algorithm, "rsassaPss");
        assert!(s.self_signed && s.weaknesses.is_empty(), "{s:?}");
        let s = made(dir.path(), "pss1", &format!("{pss} -sha1 -subj /CN=pss1"));
        assert_eq!(s.weaknesses, [Weakness::Sha1Signature]);
    }

    #[test]
    fn ecdsa_p384_ed25519_and_ed448() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p384 = "-newkey ec -pkeyopt ec_paramgen_curve:P-384 -sha384 -subj /CN=p384";
        let s = made(dir.path(), "p384", p384);
        assert_eq!(
            (s.key_type, s.key_bits, s.key_curve.as_deref()),
            (KeyType::Ecdsa, 384, Some("P-384"))
        );
        assert_eq!(s.signature_algorithm, "ecdsa-with-SHA384");
        assert!(s.self_signed && s.weaknesses.is_empty(), "{s:?}");

        let s = made(dir.path(), "ed", "-newkey ed25519 -subj /CN=ed");
        assert_eq!((s.key_type, s.key_bits), (KeyType::Ed25519, 255));
        assert_eq!(s.signature_algorithm, "ED25519");
        assert!(s.self_signed);

        let s = made(dir.path(), "ed448", "-newkey ed448 -subj /CN=ed448");
        assert_eq!((s.key_type, s.key_bits), (KeyType::Ed448, 448));
        assert_eq!(s.signature_algorithm, "ED448");
        // ring cannot verify Ed448.
        assert!(!s.self_signed);
    }

    #[test]
    fn a_dsa_key_is_flagged() {
        let dir = tempfile::tempdir().expect("tempdir");
        openssl(
            dir.path(),
            "genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:1024 -out dsa.params",
        );
        let s = made(
            dir.path(),
            "dsa",
            "-newkey dsa:dsa.params -sha256 -subj /CN=dsa",
        );
        assert_eq!((s.key_type, s.key_bits), (KeyType::Dsa, 1024));
        assert_eq!(s.signature_algorithm, "dsa_with_SHA256");
        assert_eq!(s.weaknesses, [Weakness::DsaKey]);
    }

    #[test]
    fn a_leaf_signed_by_another_ca_is_not_self_signed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ca = made(d, "ca", &format!("{P256} -subj /CN=ca"));
        assert!(ca.self_signed && ca.is_ca);
        let leaf_of = |name: &str, subject: &str| {
            let args = format!(
                "{P256} -subj {subject} -CA ca.pem -CAkey ca.key -addext basicConstraints=CA:FALSE"
            );
            made(d, name, &args)
        };
        let leaf = leaf_of("leaf", "/CN=leaf");
        assert_eq!(leaf.issuer, "CN=ca");
        assert!(!leaf.self_signed && !leaf.is_ca, "{leaf:?}");
        assert_eq!(leaf.key_curve.as_deref(), Some("P-256"));
        // Named like its issuer, but signed with the issuer's key: still not self-signed.
        let namesake = leaf_of("namesake", "/CN=ca");
        assert_eq!(namesake.subject, namesake.issuer);
        assert!(!namesake.self_signed);
    }

    #[test]
    fn names_round_trip() {
        for k in KeyType::ALL {
            assert_eq!(k.to_string().parse::<KeyType>().expect("parses"), k);
        }
        for w in Weakness::ALL {
            assert_eq!(w.to_string().parse::<Weakness>().expect("parses"), w);
        }
        assert_eq!(Weakness::RsaUnder2048.to_string(), "rsa-under-2048");
        assert_eq!(Weakness::Sha1Signature.to_string(), "sha1-signature");
        assert_eq!("ECDSA".parse::<KeyType>().expect("parses"), KeyType::Ecdsa);
        assert!("rsa-4096".parse::<KeyType>().is_err());
        assert!("weak".parse::<Weakness>().is_err());
    }

    #[test]
    fn integer_bits_ignores_leading_zeros() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(integer_bits(&[0x01]), 1);
        assert_eq!(integer_bits(&[0x00]), 0);
    }
}
