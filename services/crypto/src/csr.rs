//! PKCS#10 certificate signing requests, parsed and verified once.
//!
//! A [`Csr`] exists only if its DER parsed, its key is of a supported type and its self-signature
//! verified. What it asks for (names, EKUs) is exposed as plain data so profile policy can judge
//! it; nothing here decides what is allowed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::error::X509Error;
use x509_parser::extensions::{
    ExtendedKeyUsage as ParsedEku, GeneralName, ParsedExtension, X509Extension,
};
use x509_parser::oid_registry::{
    OID_PKCS1_SHA1WITHRSA, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::error::{CryptoError, Result};
use crate::spki::SubjectKey;

/// Family of a subject public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAlgorithm {
    /// ECDSA on a NIST curve (P-256, P-384).
    Ecdsa,
    /// RSA (PKCS#1 `rsaEncryption` keys).
    Rsa,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    /// Stable name: `"ECDSA"`, `"RSA"` or `"Ed25519"`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ecdsa => "ECDSA",
            KeyAlgorithm::Rsa => "RSA",
            KeyAlgorithm::Ed25519 => "Ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = CryptoError;

    /// Case-insensitive inverse of [`KeyAlgorithm::as_str`].
    fn from_str(s: &str) -> Result<Self> {
        [
            KeyAlgorithm::Ecdsa,
            KeyAlgorithm::Rsa,
            KeyAlgorithm::Ed25519,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| CryptoError::UnsupportedKey {
            detail: format!("unknown key algorithm {s:?}"),
        })
    }
}

/// Algorithm and size of a public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key family.
    pub algorithm: KeyAlgorithm,
    /// Curve size for ECDSA (256, 384), modulus bits for RSA, 256 for Ed25519.
    pub bits: u32,
}

/// Extended key usages (RFC 5280 §4.2.1.12) this crate understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExtendedKeyUsage {
    /// TLS server authentication.
    ServerAuth,
    /// TLS client authentication.
    ClientAuth,
    /// Code signing.
    CodeSigning,
    /// E-mail protection (S/MIME).
    EmailProtection,
    /// Trusted time stamping.
    TimeStamping,
    /// OCSP response signing.
    OcspSigning,
}

impl ExtendedKeyUsage {
    /// Every variant, in declaration order.
    pub const ALL: [ExtendedKeyUsage; 6] = [
        ExtendedKeyUsage::ServerAuth,
        ExtendedKeyUsage::ClientAuth,
        ExtendedKeyUsage::CodeSigning,
        ExtendedKeyUsage::EmailProtection,
        ExtendedKeyUsage::TimeStamping,
        ExtendedKeyUsage::OcspSigning,
    ];

    /// The RFC 5280 short name, e.g. `"serverAuth"`, `"OCSPSigning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtendedKeyUsage::ServerAuth => "serverAuth",
            ExtendedKeyUsage::ClientAuth => "clientAuth",
            ExtendedKeyUsage::CodeSigning => "codeSigning",
            ExtendedKeyUsage::EmailProtection => "emailProtection",
            ExtendedKeyUsage::TimeStamping => "timeStamping",
            ExtendedKeyUsage::OcspSigning => "OCSPSigning",
        }
    }
}

impl fmt::Display for ExtendedKeyUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExtendedKeyUsage {
    type Err = CryptoError;

    /// Case-insensitive inverse of [`ExtendedKeyUsage::as_str`].
    fn from_str(s: &str) -> Result<Self> {
        ExtendedKeyUsage::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| CryptoError::UnsupportedExtension {
                detail: format!("unknown extended key usage {s:?}"),
            })
    }
}

/// A parsed, signature-verified PKCS#10 certificate signing request.
#[derive(Clone, Debug)]
pub struct Csr {
    der: Vec<u8>,
    key: SubjectKey,
    subject: String,
    common_name: Option<String>,
    names: RequestedNames,
    requested_ekus: Vec<ExtendedKeyUsage>,
}

/// Subject alternative names from the extensionRequest, split by type.
#[derive(Clone, Debug, Default)]
struct RequestedNames {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    other: Vec<String>,
}

impl Csr {
    /// Parses a PEM `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`) and verifies it.
    pub fn from_pem(pem: &str) -> Result<Csr> {
        let der = crate::pem::decode(pem, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])?;
        Self::parse(der)
    }

    /// Parses a DER CSR and verifies it.
    pub fn from_der(der: &[u8]) -> Result<Csr> {
        Self::parse(der.to_vec())
    }

    fn parse(der: Vec<u8>) -> Result<Csr> {
        let (rest, req) = X509CertificationRequest::from_der(&der).map_err(|e| malformed(&e))?;
        if !rest.is_empty() {
            return Err(malformed("trailing data after the request"));
        }
        let info = &req.certification_request_info;
        let key = SubjectKey::from_parsed(&info.subject_pki)?;
        verify_signature(&req, &key)?;
        let mut names = RequestedNames::default();
        let mut requested_ekus = Vec::new();
        for ext in requested_extensions(&req) {
            read_extension(ext, &mut names, &mut requested_ekus)?;
        }
        let subject = info.subject.to_string();
        let common_name = common_name(&info.subject)?;
        Ok(Csr {
            key,
            subject,
            common_name,
            names,
            requested_ekus,
            der,
        })
    }

    /// The DER encoding as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The DER as a PEM `CERTIFICATE REQUEST`, for storing a request to sign later.
    pub fn to_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE REQUEST", &self.der)
    }

    /// Algorithm and size of the requested key.
    pub fn key(&self) -> KeyInfo {
        self.key.info()
    }

    /// The subject as an RFC 4514-style string, `""` if empty.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The first commonName of the subject, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// DNS names requested in the subjectAltName extension.
    pub fn dns_names(&self) -> &[String] {
        &self.names.dns
    }

    /// IP addresses requested in the subjectAltName extension.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.names.ips
    }

    /// Requested SAN entries of any other type, rendered `"email:x"`, `"uri:y"`, ... so policy
    /// can refuse them; they are never copied into a certificate.
    pub fn other_names(&self) -> &[String] {
        &self.names.other
    }

    /// Extended key usages requested in the extensionRequest, sorted and deduplicated.
    pub fn requested_ekus(&self) -> &[ExtendedKeyUsage] {
        &self.requested_ekus
    }

    /// The requested key's DER SubjectPublicKeyInfo.
    pub fn public_key_spki_der(&self) -> &[u8] {
        self.subject_key().spki_der()
    }

    pub(crate) fn subject_key(&self) -> &SubjectKey {
        &self.key
    }
}

fn malformed(detail: &(impl fmt::Display + ?Sized)) -> CryptoError {
    CryptoError::MalformedCsr {
        detail: detail.to_string(),
    }
}

/// RFC 2986 §4.2: the request is signed with the requested key. ring's RSA verifiers that
/// x509-parser picks start at 2048 bits; smaller keys must still parse so policy can refuse them
/// by size, so RSA PKCS#1 signatures use the 1024-bit-capable verifiers.
fn verify_signature(req: &X509CertificationRequest<'_>, key: &SubjectKey) -> Result<()> {
    let info = &req.certification_request_info;
    let sig_oid = &req.signature_algorithm.algorithm;
    let legacy_rsa: Option<&'static dyn VerificationAlgorithm> =
        if key.info().algorithm != KeyAlgorithm::Rsa {
            None
        } else if *sig_oid == OID_PKCS1_SHA256WITHRSA {
            Some(&signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY)
        } else if *sig_oid == OID_PKCS1_SHA512WITHRSA {
            Some(&signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY)
        } else if *sig_oid == OID_PKCS1_SHA1WITHRSA {
            Some(&signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY)
        } else if *sig_oid == OID_PKCS1_SHA384WITHRSA {
            Some(&signature::RSA_PKCS1_2048_8192_SHA384)
        } else {
            None
        };
    if let Some(alg) = legacy_rsa {
        let public_key = UnparsedPublicKey::new(alg, &info.subject_pki.subject_public_key.data);
        return public_key
            .verify(info.raw, &req.signature_value.data)
            .map_err(|_| CryptoError::CsrSignatureInvalid);
    }
    req.verify_signature().map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => CryptoError::UnsupportedKey {
            detail: format!(
                "CSR signature algorithm {sig_oid} for a {:?} key",
                key.info()
            ),
        },
        _ => CryptoError::CsrSignatureInvalid,
    })
}

fn requested_extensions<'a>(
    req: &'a X509CertificationRequest<'a>,
) -> impl Iterator<Item = &'a X509Extension<'a>> {
    req.certification_request_info
        .iter_attributes()
        .filter_map(|attr| match attr.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(r) => Some(r.extensions.iter()),
            _ => None,
        })
        .flatten()
}

/// Reads the extensions policy needs; others (keyUsage, basicConstraints, ...) are ignored
/// because the CA, not the requester, decides them.
fn read_extension(
    ext: &X509Extension<'_>,
    names: &mut RequestedNames,
    ekus: &mut Vec<ExtendedKeyUsage>,
) -> Result<()> {
    match ext.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => {
            for name in &san.general_names {
                read_general_name(name, names)?;
            }
            Ok(())
        }
        ParsedExtension::ExtendedKeyUsage(eku) => read_ekus(eku, ekus),
        ParsedExtension::ParseError { error } => Err(malformed(&format!(
            "requested extension {} does not parse: {error}",
            ext.oid
        ))),
        _ => Ok(()),
    }
}

fn read_general_name(name: &GeneralName<'_>, names: &mut RequestedNames) -> Result<()> {
    match name {
        GeneralName::DNSName(dns) => names.dns.push((*dns).to_owned()),
        GeneralName::IPAddress(bytes) => names.ips.push(ip_from_bytes(bytes)?),
        GeneralName::RFC822Name(email) => names.other.push(format!("email:{email}")),
        GeneralName::URI(uri) => names.other.push(format!("uri:{uri}")),
        GeneralName::OtherName(oid, _) => names.other.push(format!("othername:{oid}")),
        GeneralName::DirectoryName(dn) => names.other.push(format!("dirname:{dn}")),
        GeneralName::RegisteredID(oid) => names.other.push(format!("rid:{oid}")),
        GeneralName::X400Address(_) => names.other.push("x400address".to_owned()),
        GeneralName::EDIPartyName(_) => names.other.push("edipartyname".to_owned()),
        GeneralName::Invalid(tag, _) => {
            return Err(malformed(&format!("invalid subjectAltName entry {tag}")));
        }
    }
    Ok(())
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(IpAddr::from(v4));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return Ok(IpAddr::from(v6));
    }
    Err(malformed(&format!(
        "subjectAltName IP address of {} bytes",
        bytes.len()
    )))
}

/// RFC 5280 §4.2.1.12: only the named purposes are understood; anything else is refused rather
/// than silently dropped, so a requester learns its request was not honoured.
fn read_ekus(eku: &ParsedEku<'_>, out: &mut Vec<ExtendedKeyUsage>) -> Result<()> {
    if eku.any {
        return Err(CryptoError::UnsupportedExtension {
            detail: "anyExtendedKeyUsage".to_owned(),
        });
    }
    if let Some(oid) = eku.other.first() {
        return Err(CryptoError::UnsupportedExtension {
            detail: format!("extended key usage {oid}"),
        });
    }
    let flags = [
        (eku.server_auth, ExtendedKeyUsage::ServerAuth),
        (eku.client_auth, ExtendedKeyUsage::ClientAuth),
        (eku.code_signing, ExtendedKeyUsage::CodeSigning),
        (eku.email_protection, ExtendedKeyUsage::EmailProtection),
        (eku.time_stamping, ExtendedKeyUsage::TimeStamping),
        (eku.ocsp_signing, ExtendedKeyUsage::OcspSigning),
    ];
    out.extend(flags.into_iter().filter(|(set, _)| *set).map(|(_, e)| e));
    out.sort_unstable();
    out.dedup();
    Ok(())
}

fn common_name(subject: &X509Name<'_>) -> Result<Option<String>> {
    let Some(attr) = subject.iter_common_name().next() else {
        return Ok(None);
    };
    let cn = attr
        .as_str()
        .map_err(|_| malformed("commonName is not a string"))?;
    Ok(Some(cn.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eku_names_round_trip_case_insensitively() {
        for eku in ExtendedKeyUsage::ALL {
            assert_eq!(
                eku.as_str().parse::<ExtendedKeyUsage>().expect("parses"),
                eku
            );
            let upper = eku.as_str().to_uppercase();
            assert_eq!(upper.parse::<ExtendedKeyUsage>().expect("parses"), eku);
        }
        assert!("anyExtendedKeyUsage".parse::<ExtendedKeyUsage>().is_err());
    }

    #[test]
    fn key_algorithm_names() {
        assert_eq!(
            "ecdsa".parse::<KeyAlgorithm>().expect("ok"),
            KeyAlgorithm::Ecdsa
        );
        assert_eq!(
            "ED25519".parse::<KeyAlgorithm>().expect("ok"),
            KeyAlgorithm::Ed25519
        );
        assert_eq!(KeyAlgorithm::Rsa.to_string(), "RSA");
        assert!("dsa".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn ip_lengths() {
        assert_eq!(
            ip_from_bytes(&[192, 0, 2, 1]).expect("v4").to_string(),
            "192.0.2.1"
        );
        assert!(ip_from_bytes(&[1; 16]).expect("v6").is_ipv6());
        assert!(ip_from_bytes(&[1, 2, 3]).is_err());
    }

    #[test]
    fn garbage_der_is_malformed() {
        assert!(matches!(
            Csr::from_der(b"\x30\x03\x02\x01\x00"),
            Err(CryptoError::MalformedCsr { .. })
        ));
    }
}
