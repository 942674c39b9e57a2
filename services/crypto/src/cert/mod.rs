//! X.509 certificates: parsing into a summary ([`Certificate`]), issuing ([`IssuingCa`],
//! [`self_signed_root`]) and inspecting the ones found in the wild ([`certificates_in`],
//! [`Certificate::summary`]).
//!
//! A [`Certificate`] owns its DER and the few fields the rest of certmesh reads (serial,
//! validity, names, fingerprint, CA constraints), extracted once at construction.

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

mod constraints;
mod cross;
mod extract;
mod inspect;
mod issue;

pub use constraints::{BasicConstraintsInfo, NameConstraints};
pub use extract::certificates_in;
pub use inspect::{CertSummary, KeyType, Weakness};
pub use issue::{CaTemplate, IdentityTemplate, IssuingCa, LeafTemplate, self_signed_root};
pub(crate) use issue::{asn1_time, base_params, check_cn, sign, sign_with, signing};

/// A parsed X.509 certificate: its DER plus a summary of what certmesh reads from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    serial: Serial,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    subject: String,
    issuer: String,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    sans: Vec<String>,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    fingerprint: String,
    spki: Vec<u8>,
    basic_constraints: Option<BasicConstraintsInfo>,
    name_constraints: NameConstraints,
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
        let names = san_entries(&x509)?;
        let summary = Summary {
            serial: Serial::from_der_content(x509.tbs_certificate.raw_serial()),
            not_before: to_chrono(&x509.validity().not_before)?,
            not_after: to_chrono(&x509.validity().not_after)?,
            subject: x509.subject().to_string(),
            issuer: x509.issuer().to_string(),
            subject_der: x509.subject().as_raw().to_vec(),
            issuer_der: x509.issuer().as_raw().to_vec(),
            sans: names.iter().map(SanEntry::render).collect(),
            dns_names: names.iter().filter_map(SanEntry::dns).collect(),
            ip_addresses: names.iter().filter_map(SanEntry::ip).collect(),
            spki: x509.public_key().raw.to_vec(),
            basic_constraints: constraints::basic_constraints(&x509)?,
            name_constraints: constraints::name_constraints(&x509)?,
        };
        Ok(Certificate {
            fingerprint: sha256_hex(&der),
            der,
            serial: summary.serial,
            not_before: summary.not_before,
            not_after: summary.not_after,
            subject: summary.subject,
            issuer: summary.issuer,
            subject_der: summary.subject_der,
            issuer_der: summary.issuer_der,
            sans: summary.sans,
            dns_names: summary.dns_names,
            ip_addresses: summary.ip_addresses,
            spki: summary.spki,
            basic_constraints: summary.basic_constraints,
            name_constraints: summary.name_constraints,
            subject_key_id,
            authority_key_id,
        })
    }

    /// Parses the first PEM `CERTIFICATE` block.
    pub fn from_pem(pem: &str) -> Result<Certificate> {
        Self::from_der(crate::pem::decode(pem, &["CERTIFICATE"])?)
    }

    /// The uniformResourceIdentifier subjectAltNames (e.g. SPIFFE ids).
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.sans.iter().filter_map(|s| s.strip_prefix("uri:"))
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

    /// The DER encoding of the subject Name, as in the certificate (for exact comparison:
    /// RFC 5280 §7.1 name chaining is done on these bytes by most verifiers).
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// The DER encoding of the issuer Name, as in the certificate.
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }

    /// Subject alternative names as displayed: `"example.com"`, `"192.0.2.1"`; other types
    /// prefixed (`"email:..."`, `"uri:..."`).
    pub fn sans(&self) -> &[String] {
        &self.sans
    }

    /// The dNSName entries of the subjectAltName, in order.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// The iPAddress entries of the subjectAltName, in order.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
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
        self.basic_constraints.is_some_and(|bc| bc.ca)
    }

    /// The basicConstraints extension, if present.
    pub fn basic_constraints(&self) -> Option<BasicConstraintsInfo> {
        self.basic_constraints
    }

    /// The nameConstraints extension's dNSName subtrees (empty when absent).
    pub fn name_constraints(&self) -> &NameConstraints {
        &self.name_constraints
    }

    /// The subject's first commonName, if any (read from the DER on each call).
    pub fn subject_common_name(&self) -> Option<String> {
        let (_, x509) = X509Certificate::from_der(&self.der).ok()?;
        let cn = x509.subject().iter_common_name().next()?;
        cn.as_str().ok().map(str::to_owned)
    }

    /// The subject's first organizationName, if any (read from the DER on each call).
    pub fn subject_organization(&self) -> Option<String> {
        let (_, x509) = X509Certificate::from_der(&self.der).ok()?;
        let o = x509.subject().iter_organization().next()?;
        o.as_str().ok().map(str::to_owned)
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
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    sans: Vec<String>,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    spki: Vec<u8>,
    basic_constraints: Option<BasicConstraintsInfo>,
    name_constraints: NameConstraints,
}

fn to_chrono(t: &ASN1Time) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0).ok_or_else(|| malformed("validity out of range"))
}

/// One subjectAltName entry: the two kinds certmesh issues, or another rendered for display.
enum SanEntry {
    Dns(String),
    Ip(IpAddr),
    Other(String),
}

impl SanEntry {
    /// As displayed: `"example.com"`, `"192.0.2.1"`, other types prefixed (`"email:..."`).
    fn render(&self) -> String {
        match self {
            SanEntry::Dns(dns) => dns.clone(),
            SanEntry::Ip(ip) => ip.to_string(),
            SanEntry::Other(other) => other.clone(),
        }
    }

    fn dns(&self) -> Option<String> {
        match self {
            SanEntry::Dns(dns) => Some(dns.clone()),
            SanEntry::Ip(_) | SanEntry::Other(_) => None,
        }
    }

    fn ip(&self) -> Option<IpAddr> {
        match self {
            SanEntry::Ip(ip) => Some(*ip),
            SanEntry::Dns(_) | SanEntry::Other(_) => None,
        }
    }
}

fn san_entries(x509: &X509Certificate<'_>) -> Result<Vec<SanEntry>> {
    let Some(san) = x509.subject_alternative_name().map_err(malformed)? else {
        return Ok(Vec::new());
    };
    san.value.general_names.iter().map(san_entry).collect()
}

fn san_entry(name: &GeneralName<'_>) -> Result<SanEntry> {
    Ok(match name {
        GeneralName::DNSName(dns) => SanEntry::Dns((*dns).to_owned()),
        GeneralName::IPAddress(bytes) => SanEntry::Ip(parse_ip(bytes)?),
        GeneralName::RFC822Name(email) => SanEntry::Other(format!("email:{email}")),
        GeneralName::URI(uri) => SanEntry::Other(format!("uri:{uri}")),
        GeneralName::OtherName(oid, _) => SanEntry::Other(format!("othername:{oid}")),
        GeneralName::DirectoryName(dn) => SanEntry::Other(format!("dirname:{dn}")),
        GeneralName::RegisteredID(oid) => SanEntry::Other(format!("rid:{oid}")),
        GeneralName::X400Address(_) => SanEntry::Other("x400address".to_owned()),
        GeneralName::EDIPartyName(_) => SanEntry::Other("edipartyname".to_owned()),
        GeneralName::Invalid(tag, _) => return Err(malformed(format!("invalid SAN entry {tag}"))),
    })
}

fn parse_ip(bytes: &[u8]) -> Result<IpAddr> {
    let ip = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).map(IpAddr::from).ok(),
        16 => <[u8; 16]>::try_from(bytes).map(IpAddr::from).ok(),
        _ => None,
    };
    ip.ok_or_else(|| malformed(format!("SAN IP address of {} bytes", bytes.len())))
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
    fn ip_parsing() {
        let v4 = parse_ip(&[192, 0, 2, 1]).expect("v4");
        assert_eq!(SanEntry::Ip(v4).render(), "192.0.2.1");
        let v6 = parse_ip(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(v6.expect("v6").to_string(), "2001:db8::1");
        assert!(parse_ip(&[1]).is_err());
    }
}
