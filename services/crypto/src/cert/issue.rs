//! Issuing certificates with rcgen, signing through the [`Signer`] trait.
//!
//! The CA's issuer state (name, key identifier, signing adapter) is built once in
//! [`IssuingCa::new`]; [`IssuingCa::sign_leaf`] only fills parameters and signs.
//!
//! Content follows RFC 5280: key identifiers by §4.2.1.2 method 1 (SHA-1 of the key bits),
//! authorityKeyIdentifier = issuer's subjectKeyIdentifier (§4.2.1.1), critical keyUsage
//! (§4.2.1.3), critical basicConstraints (§4.2.1.9), critical nameConstraints with dNSName
//! subtrees when a CA template has any (§4.2.1.10), SAN critical when the subject is empty
//! (§4.2.1.6, done by rcgen). A leaf can point at its revocation status: cRLDistributionPoints
//! (§4.2.1.13) and authorityInfoAccess with an OCSP responder (§4.2.2.1).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    NameConstraints, PublicKeyData, SanType, SerialNumber, SigningKey,
};
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use super::Certificate;
use crate::ca_checks::{CaCheckError, normalize_dns_subtree};
use crate::csr::{Csr, ExtendedKeyUsage, KeyAlgorithm};
use crate::der;
use crate::error::{CryptoError, Result};
use crate::keys::{KeySpec, Signer};
use crate::revocation::check_uri;
use crate::serial::Serial;
use crate::spki::SubjectKey;

/// RFC 5280 Appendix A: ub-common-name.
const MAX_CN_LEN: usize = 64;

/// RFC 5280 §4.2.2.1: id-pe-authorityInfoAccess.
const OID_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];

/// RFC 5280 §4.2.2.1: id-ad-ocsp (1.3.6.1.5.5.7.48.1), DER content octets.
const OID_AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

/// What varies per leaf certificate; names and key come from the CSR.
#[derive(Clone, Debug)]
pub struct LeafTemplate {
    /// Serial number (unique per CA).
    pub serial: Serial,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Extended key usages; the extension is omitted when empty.
    pub ekus: Vec<ExtendedKeyUsage>,
    /// The OCSP responder URL, written as authorityInfoAccess id-ad-ocsp (RFC 5280 §4.2.2.1);
    /// must be an absolute URI ([`CryptoError::InvalidUri`]).
    pub ocsp_url: Option<String>,
    /// The CRL URL, written as a cRLDistributionPoints fullName (RFC 5280 §4.2.1.13); the CRL
    /// there names the same URL in its issuingDistributionPoint.
    pub crl_url: Option<String>,
}

/// What varies per client identity certificate ([`IssuingCa::sign_client_identity`]).
#[derive(Clone, Debug)]
pub struct IdentityTemplate {
    /// Serial number (unique per CA).
    pub serial: Serial,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Subject commonName.
    pub common_name: String,
    /// The one subjectAltName, a uniformResourceIdentifier.
    pub uri: String,
}

/// What varies per CA certificate.
#[derive(Clone, Debug)]
pub struct CaTemplate {
    /// Subject commonName.
    pub common_name: String,
    /// Subject organizationName, if any.
    pub organization: Option<String>,
    /// Serial number.
    pub serial: Serial,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// basicConstraints pathLenConstraint; `None` is unconstrained.
    pub path_len: Option<u8>,
    /// Permitted dNSName subtrees (`example.com`: it and its subdomains; `.example.com`:
    /// subdomains only). Written lower-cased without a trailing dot; an invalid subtree fails
    /// with [`CaCheckError::InvalidDnsSubtree`].
    pub permitted_dns: Vec<String>,
    /// Excluded dNSName subtrees, same form. The critical nameConstraints extension is emitted
    /// only when this or `permitted_dns` is non-empty.
    pub excluded_dns: Vec<String>,
}

/// A CA ready to sign: its certificate plus its signer, built once and shared.
pub struct IssuingCa {
    pub(crate) cert: Certificate,
    pub(crate) issuer: Issuer<'static, SignerKey>,
}

impl IssuingCa {
    /// Pairs a CA certificate with its signer: [`CryptoError::KeyMismatch`] if the certificate's
    /// public key is not the signer's; [`CryptoError::MalformedCertificate`] if it is not a CA
    /// certificate with a subjectKeyIdentifier.
    pub fn new(cert: Certificate, signer: Arc<dyn Signer>) -> Result<IssuingCa> {
        if cert.spki_der() != signer.public_key_spki_der() {
            return Err(CryptoError::KeyMismatch);
        }
        if !cert.is_ca() {
            return Err(CryptoError::MalformedCertificate {
                detail: "not a CA certificate (basicConstraints CA:TRUE missing)".to_owned(),
            });
        }
        if cert.subject_key_id().is_none() {
            return Err(CryptoError::MalformedCertificate {
                detail: "CA certificate has no subjectKeyIdentifier".to_owned(),
            });
        }
        check_single_valued_rdns(cert.der())?;
        let key = SignerKey::new(signer)?;
        // Reads the subject name (kept in its original string types, so issuer names match
        // byte for byte) and takes the subjectKeyIdentifier as the AKI of what it signs.
        let issuer = Issuer::from_ca_cert_der(&cert.der().into(), key).map_err(|e| {
            CryptoError::MalformedCertificate {
                detail: format!("CA certificate unusable as issuer: {e}"),
            }
        })?;
        Ok(IssuingCa { cert, issuer })
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// Issues an end-entity certificate for the CSR's key and names.
    pub fn sign_leaf(&self, csr: &Csr, t: &LeafTemplate) -> Result<Certificate> {
        let subject_key = csr.subject_key();
        let mut params = base_params(&t.serial, t.not_before, t.not_after)?;
        params.distinguished_name = leaf_subject(csr)?;
        params.subject_alt_names = leaf_sans(csr)?;
        if params.distinguished_name.iter().next().is_none() && params.subject_alt_names.is_empty()
        {
            return Err(CryptoError::MalformedCsr {
                detail: "the request names no commonName and no DNS or IP subjectAltName"
                    .to_owned(),
            });
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = leaf_key_usages(subject_key);
        params.extended_key_usages = t.ekus.iter().map(|e| rcgen_eku(*e)).collect();
        params.key_identifier_method = KeyIdMethod::PreSpecified(subject_key.key_id());
        if let Some(url) = &t.crl_url {
            check_uri(url)?;
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        if let Some(url) = &t.ocsp_url {
            check_uri(url)?;
            params.custom_extensions.push(ocsp_access(url));
        }
        sign(|| params.signed_by(subject_key, &self.issuer))
    }

    /// Issues a client identity certificate (RFC 5280 §4.2.1.12 id-kp-clientAuth) for the
    /// CSR's key. Names come from the template, never from the CSR: the subject is
    /// `CN=<common_name>` and the only subjectAltName the URI (for example a SPIFFE id).
    pub fn sign_client_identity(&self, csr: &Csr, t: &IdentityTemplate) -> Result<Certificate> {
        let subject_key = csr.subject_key();
        let mut params = base_params(&t.serial, t.not_before, t.not_after)?;
        check_cn(&t.common_name)?;
        params
            .distinguished_name
            .push(DnType::CommonName, t.common_name.as_str());
        check_uri(&t.uri)?;
        let uri = t
            .uri
            .as_str()
            .try_into()
            .map_err(|_| CryptoError::InvalidUri {
                uri: t.uri.clone(),
                detail: "not IA5".to_owned(),
            })?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = leaf_key_usages(subject_key);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_identifier_method = KeyIdMethod::PreSpecified(subject_key.key_id());
        sign(|| params.signed_by(subject_key, &self.issuer))
    }

    /// Issues a subordinate CA certificate for the given public key.
    pub fn sign_intermediate(
        &self,
        child_public_key_spki_der: &[u8],
        t: &CaTemplate,
    ) -> Result<Certificate> {
        let child = SubjectKey::from_der(child_public_key_spki_der)?;
        let params = ca_params(t, &child)?;
        sign(|| params.signed_by(&child, &self.issuer))
    }
}

impl fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuingCa")
            .field("cert", &self.cert)
            .field("signer", self.issuer.key())
            .finish()
    }
}

/// RFC 5280 §4.2.2.1: authorityInfoAccess with one AccessDescription, id-ad-ocsp →
/// uniformResourceIdentifier (non-critical, as the RFC requires).
fn ocsp_access(url: &str) -> CustomExtension {
    let mut value = Vec::with_capacity(url.len() + 16);
    der::nested(&mut value, der::SEQUENCE, |out| {
        der::nested(out, der::SEQUENCE, |out| {
            der::tlv(out, der::OID, OID_AD_OCSP);
            der::tlv(out, der::context_primitive(6), url.as_bytes());
        });
    });
    CustomExtension::from_oid_content(OID_AUTHORITY_INFO_ACCESS, value)
}

/// Creates a self-signed root CA certificate for the signer's key.
pub fn self_signed_root(signer: Arc<dyn Signer>, t: &CaTemplate) -> Result<Certificate> {
    let key = SignerKey::new(signer)?;
    let params = ca_params(t, &key.public)?;
    // Issuer::from_params uses params.key_identifier_method, so AKI = SKI.
    sign(|| params.self_signed(&key))
}

fn ca_params(t: &CaTemplate, key: &SubjectKey) -> Result<CertificateParams> {
    let mut params = base_params(&t.serial, t.not_before, t.not_after)?;
    check_cn(&t.common_name)?;
    params
        .distinguished_name
        .push(DnType::CommonName, t.common_name.as_str());
    if let Some(org) = &t.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
    }
    params.is_ca = ca_basic_constraints(t.path_len);
    params.key_usages = CA_KEY_USAGES.to_vec();
    params.key_identifier_method = KeyIdMethod::PreSpecified(key.key_id());
    params.name_constraints = dns_name_constraints(&t.permitted_dns, &t.excluded_dns)?;
    Ok(params)
}

/// RFC 5280 §4.2.1.3: a CA key signs certificates and CRLs (and OCSP responses directly).
pub(super) const CA_KEY_USAGES: [KeyUsagePurpose; 3] = [
    KeyUsagePurpose::DigitalSignature,
    KeyUsagePurpose::KeyCertSign,
    KeyUsagePurpose::CrlSign,
];

pub(super) fn ca_basic_constraints(path_len: Option<u8>) -> IsCa {
    IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    })
}

/// RFC 5280 §4.2.1.10; `None` (no extension) when both lists are empty, as an empty
/// nameConstraints is not allowed.
fn dns_name_constraints(
    permitted: &[String],
    excluded: &[String],
) -> Result<Option<NameConstraints>> {
    if permitted.is_empty() && excluded.is_empty() {
        return Ok(None);
    }
    let subtrees = |list: &[String]| {
        list.iter()
            .map(|s| normalize_dns_subtree(s).map(GeneralSubtree::DnsName))
            .collect::<std::result::Result<Vec<_>, CaCheckError>>()
    };
    Ok(Some(NameConstraints {
        permitted_subtrees: subtrees(permitted)?,
        excluded_subtrees: subtrees(excluded)?,
    }))
}

pub(crate) fn base_params(
    serial: &Serial,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams> {
    if not_after <= not_before {
        return Err(signing("validity ends before it starts"));
    }
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
    // rcgen takes `time::OffsetDateTime`; x509-parser converts without a direct dependency.
    params.not_before = asn1_time(not_before)?.to_datetime();
    params.not_after = asn1_time(not_after)?.to_datetime();
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

pub(crate) fn asn1_time(t: DateTime<Utc>) -> Result<ASN1Time> {
    ASN1Time::from_timestamp(t.timestamp()).map_err(|_| signing("validity time out of range"))
}

fn leaf_subject(csr: &Csr) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    if let Some(cn) = csr.common_name() {
        check_cn(cn)?;
        dn.push(DnType::CommonName, cn);
    }
    Ok(dn)
}

pub(crate) fn check_cn(cn: &str) -> Result<()> {
    if cn.is_empty() || cn.chars().count() > MAX_CN_LEN {
        return Err(CryptoError::MalformedCsr {
            detail: format!("commonName must be 1 to {MAX_CN_LEN} characters"),
        });
    }
    Ok(())
}

fn leaf_sans(csr: &Csr) -> Result<Vec<SanType>> {
    let mut sans = Vec::with_capacity(csr.dns_names().len() + csr.ip_addresses().len());
    for dns in csr.dns_names() {
        let name = dns
            .as_str()
            .try_into()
            .map_err(|_| CryptoError::MalformedCsr {
                detail: format!("DNS name {dns:?} is not IA5 (use the A-label form)"),
            })?;
        sans.push(SanType::DnsName(name));
    }
    sans.extend(csr.ip_addresses().iter().copied().map(SanType::IpAddress));
    Ok(sans)
}

/// RFC 5280 §4.2.1.3; keyEncipherment only where the key can encipher (RSA key transport).
fn leaf_key_usages(key: &SubjectKey) -> Vec<KeyUsagePurpose> {
    match key.info().algorithm {
        KeyAlgorithm::Rsa => vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ],
        KeyAlgorithm::Ecdsa | KeyAlgorithm::Ed25519 => vec![KeyUsagePurpose::DigitalSignature],
    }
}

fn rcgen_eku(eku: ExtendedKeyUsage) -> ExtendedKeyUsagePurpose {
    match eku {
        ExtendedKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
        ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        ExtendedKeyUsage::TimeStamping => ExtendedKeyUsagePurpose::TimeStamping,
        ExtendedKeyUsage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
    }
}

/// rcgen panics on an RDN without attributes and refuses multi-valued RDNs; check first.
pub(super) fn check_single_valued_rdns(der: &[u8]) -> Result<()> {
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(der).map_err(|e| {
        CryptoError::MalformedCertificate {
            detail: e.to_string(),
        }
    })?;
    if x509.subject().iter().all(|rdn| rdn.iter().count() == 1) {
        Ok(())
    } else {
        Err(CryptoError::MalformedCertificate {
            detail: "CA subject has an empty or multi-valued RDN".to_owned(),
        })
    }
}

pub(crate) fn signing(detail: &str) -> CryptoError {
    CryptoError::Signing {
        detail: detail.to_owned(),
    }
}

thread_local! {
    /// The error a [`Signer`] returned inside rcgen, which only sees `RemoteKeyError`; rcgen
    /// signs synchronously on the calling thread, so a thread-local carries it back.
    static SIGNER_ERROR: RefCell<Option<CryptoError>> = const { RefCell::new(None) };
}

/// Runs an rcgen build-and-sign and parses the result into a [`Certificate`].
pub(crate) fn sign(
    build: impl FnOnce() -> std::result::Result<rcgen::Certificate, rcgen::Error>,
) -> Result<Certificate> {
    let cert = sign_with(build, "certificate")?;
    Certificate::from_der(cert.der().to_vec())
}

/// Runs an rcgen build-and-sign of a `what`; a [`Signer`] error comes back unchanged.
pub(crate) fn sign_with<T>(
    build: impl FnOnce() -> std::result::Result<T, rcgen::Error>,
    what: &str,
) -> Result<T> {
    SIGNER_ERROR.with(|slot| slot.borrow_mut().take());
    build().map_err(|e| {
        SIGNER_ERROR
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| signing(&format!("building the {what} failed: {e}")))
    })
}

/// Adapts a [`Signer`] to rcgen's signing traits.
pub(crate) struct SignerKey {
    signer: Arc<dyn Signer>,
    public: SubjectKey,
}

impl SignerKey {
    fn new(signer: Arc<dyn Signer>) -> Result<SignerKey> {
        let public = SubjectKey::from_der(signer.public_key_spki_der())?;
        let expected = match signer.spec() {
            KeySpec::EcdsaP256 => 256,
            KeySpec::EcdsaP384 => 384,
        };
        let info = public.info();
        if info.algorithm != KeyAlgorithm::Ecdsa || info.bits != expected {
            return Err(CryptoError::UnsupportedKey {
                detail: format!(
                    "signer claims {} but its public key is {info:?}",
                    signer.spec()
                ),
            });
        }
        Ok(SignerKey { signer, public })
    }
}

impl PublicKeyData for SignerKey {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.signer.public_key_spki_der().to_vec()
    }

    fn der_bytes(&self) -> &[u8] {
        self.public.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.signer.spec().signature_algorithm()
    }
}

impl SigningKey for SignerKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.signer.sign(msg).map_err(|e| {
            SIGNER_ERROR.with(|slot| *slot.borrow_mut() = Some(e));
            rcgen::Error::RemoteKeyError
        })
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.signer, f)
    }
}
