//! certmesh's internal mesh CA: the identities its roles present to each other.
//!
//! The mesh CA is derived from a mesh secret (32+ random bytes every role process is given):
//! HKDF-SHA256 turns it into an Ed25519 key, and the CA certificate built over that key is
//! deterministic (Ed25519 signatures are), so every process holding the secret has the same
//! trust anchor without a database or a bootstrap call. Each process then makes its own ECDSA
//! P-256 key in memory and issues itself a short-lived leaf naming the roles it runs as
//! `<role>.mesh.<trust-domain>`; the key never leaves the process.
//!
//! The trust model is that of the secret: whoever holds it can mint a mesh identity, so it
//! is mounted only into certmesh pods. A secret file may list several secrets, one per line;
//! the first signs, all are trusted, which lets an operator roll a new secret in without a
//! window where old and new processes refuse each other.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use ring::hkdf;
use zeroize::Zeroizing;

use crate::cert::{Certificate, asn1_time};
use crate::digest::sha1_key_id;
use crate::error::{CryptoError, Result};
use crate::serial::Serial;

/// The shortest mesh secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// HKDF salt: fixed, so the same secret derives the same CA everywhere.
const SALT: &[u8] = b"certmesh mesh CA";
/// HKDF info for the CA key seed and for the CA serial.
const INFO_KEY: &[u8] = b"certmesh mesh CA v1 ed25519 key";
const INFO_SERIAL: &[u8] = b"certmesh mesh CA v1 serial";

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410 §7), before the 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// How far a leaf's notBefore is set back, for clocks that disagree a little.
const BACKDATE_MINUTES: i64 = 5;

/// The DNS name a process running `role` presents in trust domain `trust_domain`.
pub fn role_dns_name(role: &str, trust_domain: &str) -> String {
    format!("{role}.mesh.{trust_domain}")
}

/// A mesh CA derived from one secret.
pub struct MeshCa {
    issuer: Issuer<'static, KeyPair>,
    cert: Certificate,
    trust_domain: String,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCa")
            .field("subject", &self.cert.subject())
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// A leaf a process issued itself: the certificate, its key (PKCS#8 PEM, zeroized on drop)
/// and when it expires.
pub struct MeshLeaf {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// SHA-256 fingerprint, hex.
    pub fingerprint: String,
}

impl std::fmt::Debug for MeshLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshLeaf")
            .field("fingerprint", &self.fingerprint)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl MeshCa {
    /// The CA derived from `secret` for `trust_domain`. A secret shorter than
    /// [`MIN_SECRET_LEN`] is refused.
    pub fn derive(secret: &[u8], trust_domain: &str) -> Result<MeshCa> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(invalid(format!(
                "the mesh secret must be at least {MIN_SECRET_LEN} bytes"
            )));
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        let mut pkcs8 = Zeroizing::new(ED25519_PKCS8_PREFIX.to_vec());
        pkcs8.extend_from_slice(&expand(&prk, INFO_KEY)?[..]);
        let key = KeyPair::try_from(&pkcs8[..]).map_err(signing)?;
        let mut serial = expand(&prk, INFO_SERIAL)?;
        serial[0] = (serial[0] & 0x7f) | 0x40;
        let params = ca_params(trust_domain, &serial[..16], &key)?;
        let cert = params.self_signed(&key).map_err(signing)?;
        let cert = Certificate::from_der(cert.der().to_vec())?;
        let issuer = Issuer::from_ca_cert_der(&cert.der().into(), key).map_err(signing)?;
        Ok(MeshCa {
            issuer,
            cert,
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The CA certificate (the trust anchor every mesh process adds).
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// Issues a leaf for a process running `roles`, valid from `now` (set back a few minutes)
    /// for `validity`, with a fresh P-256 key made here.
    pub fn issue(
        &self,
        roles: &[String],
        now: DateTime<Utc>,
        validity: Duration,
    ) -> Result<MeshLeaf> {
        if roles.is_empty() {
            return Err(invalid(
                "a mesh identity names at least one role".to_owned(),
            ));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(signing)?;
        let not_before = now - Duration::minutes(BACKDATE_MINUTES);
        let not_after = now + validity;
        let params = leaf_params(roles, &self.trust_domain, not_before, not_after, &key)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(signing)?;
        let cert = Certificate::from_der(cert.der().to_vec())?;
        Ok(MeshLeaf {
            cert_pem: cert.to_pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            fingerprint: cert.fingerprint_sha256(),
        })
    }
}

fn expand(prk: &hkdf::Prk, info: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    prk.expand(&[info], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out[..]))
        .map_err(|_| invalid("HKDF expansion failed".to_owned()))?;
    Ok(out)
}

/// RFC 5280 §4.2.1.9 (CA, pathLen 0: it signs only leaves), §4.2.1.3 (keyCertSign, cRLSign),
/// §4.2.1.10 (dNSName subtree `mesh.<trust-domain>`: a leaked secret cannot mint a name
/// outside the mesh), §4.1.2.5 (99991231235959Z: no well-defined expiry; the secret is what
/// gets rotated).
fn ca_params(trust_domain: &str, serial: &[u8], key: &KeyPair) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(
        Serial::from_bytes(serial)?.as_bytes(),
    ));
    set_validity(
        &mut params,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single(),
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single(),
    )?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain);
    params
        .distinguished_name
        .push(DnType::CommonName, "certmesh mesh CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::PreSpecified(sha1_key_id(key.public_key_raw()));
    let subtree = format!("mesh.{trust_domain}");
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(subtree)],
        excluded_subtrees: Vec::new(),
    });
    Ok(params)
}

/// A TLS client-and-server leaf (RFC 5280 §4.2.1.12) naming each role as a dNSName, with the
/// first as the subject commonName.
fn leaf_params(
    roles: &[String],
    trust_domain: &str,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    key: &KeyPair,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(Serial::random().as_bytes()));
    set_validity(&mut params, Some(not_before), Some(not_after))?;
    let names: Vec<String> = roles
        .iter()
        .map(|role| role_dns_name(role, trust_domain))
        .collect();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    for name in &names {
        let ia5 = name
            .as_str()
            .try_into()
            .map_err(|_| invalid(format!("{name:?} is not an IA5 DNS name")))?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_identifier_method = KeyIdMethod::PreSpecified(sha1_key_id(key.public_key_raw()));
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn set_validity(
    params: &mut CertificateParams,
    not_before: Option<DateTime<Utc>>,
    not_after: Option<DateTime<Utc>>,
) -> Result<()> {
    let out_of_range = || invalid("validity time out of range".to_owned());
    params.not_before = asn1_time(not_before.ok_or_else(out_of_range)?)?.to_datetime();
    params.not_after = asn1_time(not_after.ok_or_else(out_of_range)?)?.to_datetime();
    Ok(())
}

fn invalid(detail: String) -> CryptoError {
    CryptoError::Signing { detail }
}

fn signing(e: rcgen::Error) -> CryptoError {
    CryptoError::Signing {
        detail: e.to_string(),
    }
}

/// A new random mesh secret: 32 bytes from the OS RNG, base64, one line of a secret file.
pub fn new_secret() -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = Zeroizing::new([0u8; MIN_SECRET_LEN]);
    // The OS RNG failing is not recoverable; ring itself treats it as fatal.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes[..])
        .expect("the OS random number generator failed");
    base64::engine::general_purpose::STANDARD.encode(&bytes[..])
}

/// The secrets in a mesh secret file: one base64 secret per line (blank lines and `#`
/// comments skipped), the first the one that signs. Each must decode to at least
/// [`MIN_SECRET_LEN`] bytes; the error names the line, never its content.
pub fn parse_secrets(text: &str) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    use base64::Engine as _;
    let mut secrets = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(line)
            .map_err(|_| invalid(format!("mesh secret line {} is not base64", index + 1)))?;
        if decoded.len() < MIN_SECRET_LEN {
            return Err(invalid(format!(
                "mesh secret line {} decodes to {} bytes; at least {MIN_SECRET_LEN} are needed",
                index + 1,
                decoded.len()
            )));
        }
        secrets.push(Zeroizing::new(decoded));
    }
    if secrets.is_empty() {
        return Err(invalid("the mesh secret file holds no secret".to_owned()));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = "certmesh.local";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn the_same_secret_derives_the_same_ca_everywhere() {
        let a = MeshCa::derive(&[7u8; 32], DOMAIN).expect("derive");
        let b = MeshCa::derive(&[7u8; 32], DOMAIN).expect("derive");
        assert_eq!(a.certificate().der(), b.certificate().der());
        let other = MeshCa::derive(&[8u8; 32], DOMAIN).expect("derive");
        assert_ne!(a.certificate().spki_der(), other.certificate().spki_der());
        let ca = a.certificate();
        assert!(ca.is_ca());
        assert_eq!(ca.basic_constraints().and_then(|b| b.path_len), Some(0));
        assert_eq!(
            ca.name_constraints().permitted_dns,
            vec!["mesh.certmesh.local".to_string()]
        );
        assert_eq!(ca.subject(), ca.issuer());
    }

    #[test]
    fn short_secrets_are_refused() {
        let err = MeshCa::derive(&[7u8; 31], DOMAIN).expect_err("short");
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
    }

    #[test]
    fn a_leaf_names_its_roles_and_expires_as_asked() {
        let ca = MeshCa::derive(&[7u8; 32], DOMAIN).expect("derive");
        let roles = ["issuance".to_string(), "iam".to_string()];
        let leaf = ca.issue(&roles, now(), Duration::hours(24)).expect("issue");
        let cert = Certificate::from_pem(&leaf.cert_pem).expect("parse");
        assert_eq!(
            cert.dns_names(),
            ["issuance.mesh.certmesh.local", "iam.mesh.certmesh.local"]
        );
        assert_eq!(cert.issuer(), ca.certificate().subject());
        assert_eq!(cert.authority_key_id(), ca.certificate().subject_key_id());
        assert!(!cert.is_ca());
        assert_eq!(leaf.not_after, now() + Duration::hours(24));
        assert_eq!(leaf.not_before, now() - Duration::minutes(5));
        assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{leaf:?}").contains("PRIVATE KEY"));
        let again = ca.issue(&roles, now(), Duration::hours(24)).expect("issue");
        assert_ne!(
            again.fingerprint, leaf.fingerprint,
            "a fresh key and serial each time"
        );
        assert!(ca.issue(&[], now(), Duration::hours(1)).is_err());
    }

    #[test]
    fn secret_files_list_secrets_first_signing() {
        use base64::Engine as _;
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        let text = format!("# current\n{}\n\n{}\n", b64(1), b64(2));
        let secrets = parse_secrets(&text).expect("parse");
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[0][..], [1u8; 32]);
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let err = parse_secrets(&format!("{}\n{short}\n", b64(1))).expect_err("short");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(!err.to_string().contains(&short));
        assert!(parse_secrets("# nothing\n").is_err());
        assert!(parse_secrets("not base64!\n").is_err());
        let fresh = new_secret();
        assert_ne!(fresh, new_secret());
        assert_eq!(parse_secrets(&fresh).expect("fresh")[0].len(), 32);
    }
}
