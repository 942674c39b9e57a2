//! X.509 certificates: parsing into a summary ([`Certificate`]) and issuing ([`IssuingCa`],
//! [`self_signed_root`]).
//!
//! A [`Certificate`] owns its DER and the few fields the rest of certmesh reads (serial,
//! validity, names, fingerprint), extracted once at construction.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use crate::digest::sha256_hex;
use crate::error::{CryptoError, Result};
use crate::serial::Serial;

mod issue;

pub use issue::{CaTemplate, IssuingCa, LeafTemplate, self_signed_root};

/// A parsed X.509 certificate: its DER plus a summary of what certmesh reads from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    serial: Serial,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    subject: String,
    issuer: String,
    sans: Vec<String>,
    fingerprint: String,
    spki: Vec<u8>,
    is_ca: bool,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
}

fn malformed(detail: impl fmt::Display) -> CryptoError {
    CryptoError::MalformedCertificate {
        detail: detail.to_string(),
    }
}

impl Certificate {
    /// Parses a DER certificate (no trailing data).
    pub fn from_der(der: Vec<u8>) -> Result<Certificate> {
        let (rest, x509) = X509Certificate::from_der(&der).map_err(malformed)?;
        if !rest.is_empty() {
            return Err(malformed("trailing data after the certificate"));
        }
        let (subject_key_id, authority_key_id) = key_ids(&x509);
        let summary = Summary {
            serial: Serial::from_der_content(x509.tbs_certificate.raw_serial()),
            not_before: to_chrono(&x509.validity().not_before)?,
            not_after: to_chrono(&x509.validity().not_after)?,
            subject: x509.subject().to_string(),
            issuer: x509.issuer().to_string(),
            sans: sans(&x509)?,
            spki: x509.public_key().raw.to_vec(),
            is_ca: is_ca(&x509)?,
        };
        Ok(Certificate {
            fingerprint: sha256_hex(&der),
            der,
            serial: summary.serial,
            not_before: summary.not_before,
            not_after: summary.not_after,
            subject: summary.subject,
            issuer: summary.issuer,
            sans: summary.sans,
            spki: summary.spki,
            is_ca: summary.is_ca,
            subject_key_id,
            authority_key_id,
        })
    }

    /// Parses the first PEM `CERTIFICATE` block.
    pub fn from_pem(pem: &str) -> Result<Certificate> {
        Self::from_der(crate::pem::decode(pem, &["CERTIFICATE"])?)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM encoding (`CERTIFICATE`, trailing newline).
    pub fn to_pem(&self) -> String {
        crate::pem::encode("CERTIFICATE", &self.der)
    }

    /// The serial number.
    pub fn serial(&self) -> Serial {
        self.serial.clone()
    }

    /// Start of validity.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Subject as an RFC 4514-style string (`""` if empty).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Issuer as an RFC 4514-style string.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Subject alternative names as displayed: `"example.com"`, `"192.0.2.1"`; other types
    /// prefixed (`"email:..."`, `"uri:..."`).
    pub fn sans(&self) -> &[String] {
        &self.sans
    }

    /// Lower-case hex SHA-256 of the DER.
    pub fn fingerprint_sha256(&self) -> String {
        self.fingerprint.clone()
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Whether basicConstraints says `CA:TRUE`.
    pub fn is_ca(&self) -> bool {
        self.is_ca
    }

    /// The subjectKeyIdentifier, if present.
    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.subject_key_id.as_deref()
    }

    /// The keyIdentifier of the authorityKeyIdentifier, if present.
    pub fn authority_key_id(&self) -> Option<&[u8]> {
        self.authority_key_id.as_deref()
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("serial", &self.serial.to_hex())
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("not_after", &self.not_after)
            .field("fingerprint_sha256", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// PEM of a certificate's DER, without parsing it (for DER read back from the store).
pub fn pem_from_der(der: &[u8]) -> String {
    crate::pem::encode("CERTIFICATE", der)
}

/// Concatenated PEM of `certs`, in order (leaf first for a chain).
pub fn pem_bundle(certs: &[Certificate]) -> String {
    certs.iter().map(Certificate::to_pem).collect()
}

struct Summary {
    serial: Serial,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    subject: String,
    issuer: String,
    sans: Vec<String>,
    spki: Vec<u8>,
    is_ca: bool,
}

fn to_chrono(t: &ASN1Time) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0).ok_or_else(|| malformed("validity out of range"))
}

fn is_ca(x509: &X509Certificate<'_>) -> Result<bool> {
    let bc = x509.basic_constraints().map_err(malformed)?;
    Ok(bc.is_some_and(|bc| bc.value.ca))
}

fn sans(x509: &X509Certificate<'_>) -> Result<Vec<String>> {
    let Some(san) = x509.subject_alternative_name().map_err(malformed)? else {
        return Ok(Vec::new());
    };
    san.value.general_names.iter().map(render_name).collect()
}

fn render_name(name: &GeneralName<'_>) -> Result<String> {
    Ok(match name {
        GeneralName::DNSName(dns) => (*dns).to_owned(),
        GeneralName::IPAddress(bytes) => render_ip(bytes)?,
        GeneralName::RFC822Name(email) => format!("email:{email}"),
        GeneralName::URI(uri) => format!("uri:{uri}"),
        GeneralName::OtherName(oid, _) => format!("othername:{oid}"),
        GeneralName::DirectoryName(dn) => format!("dirname:{dn}"),
        GeneralName::RegisteredID(oid) => format!("rid:{oid}"),
        GeneralName::X400Address(_) => "x400address".to_owned(),
        GeneralName::EDIPartyName(_) => "edipartyname".to_owned(),
        GeneralName::Invalid(tag, _) => return Err(malformed(format!("invalid SAN entry {tag}"))),
    })
}

fn render_ip(bytes: &[u8]) -> Result<String> {
    let ip = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).map(IpAddr::from).ok(),
        16 => <[u8; 16]>::try_from(bytes).map(IpAddr::from).ok(),
        _ => None,
    };
    ip.map(|ip| ip.to_string())
        .ok_or_else(|| malformed(format!("SAN IP address of {} bytes", bytes.len())))
}

fn key_ids(x509: &X509Certificate<'_>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut ski = None;
    let mut aki = None;
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    (ski, aki)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            Certificate::from_der(vec![0x30, 0x00]),
            Err(CryptoError::MalformedCertificate { .. })
        ));
        assert!(matches!(
            Certificate::from_pem("nothing here"),
            Err(CryptoError::MalformedPem { .. })
        ));
    }

    #[test]
    fn ip_rendering() {
        assert_eq!(render_ip(&[192, 0, 2, 1]).expect("v4"), "192.0.2.1");
        assert_eq!(
            render_ip(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).expect("v6"),
            "2001:db8::1"
        );
        assert!(render_ip(&[1]).is_err());
    }
}
