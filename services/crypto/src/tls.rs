//! Keys and CSRs made on this host: certmesh's own TLS endpoints (the gateway's serving
//! certificate) and the agent's identity and deployment keys, made here so that no other crate
//! touches key material types.

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData, SanType};
use zeroize::Zeroizing;

use crate::{CryptoError, Result, csr::Csr, keys::KeySpec};

/// A fresh ECDSA P-256 key (PKCS#8 PEM, zeroized on drop) and a CSR for `dns_names` and `ips`,
/// with the first DNS name (else the first IP) as the subject common name.
pub fn server_identity(dns_names: &[String], ips: &[IpAddr]) -> Result<(Zeroizing<String>, Csr)> {
    host_key_and_csr(KeySpec::EcdsaP256, None, dns_names, ips)
}

/// A fresh ECDSA key of `spec` made on this host (PKCS#8 PEM, zeroized on drop) and a CSR for
/// it; see [`csr_for_key`] for the names.
pub fn host_key_and_csr(
    spec: KeySpec,
    common_name: Option<&str>,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<(Zeroizing<String>, Csr)> {
    let key = KeyPair::generate_for(spec.signature_algorithm()).map_err(signing)?;
    let csr = request(&key, common_name, dns_names, ips)?;
    Ok((Zeroizing::new(key.serialize_pem()), csr))
}

/// A CSR signed by the ECDSA key in `key_pem` (PKCS#8 PEM), for `dns_names` and `ips`. The
/// subject common name is `common_name`, else the first DNS name, else the first IP; none at
/// all leaves the subject empty. A key that does not parse is [`CryptoError::UnsupportedKey`],
/// whose message never shows the key.
pub fn csr_for_key(
    key_pem: &str,
    common_name: Option<&str>,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<Csr> {
    request(&parse_key(key_pem)?, common_name, dns_names, ips)
}

/// The DER SubjectPublicKeyInfo of the private key in `key_pem` (PKCS#8 PEM), to check that a
/// certificate belongs to it ([`crate::ca_checks::check_key_match`]).
pub fn public_key_of(key_pem: &str) -> Result<Vec<u8>> {
    Ok(parse_key(key_pem)?.subject_public_key_info())
}

fn parse_key(key_pem: &str) -> Result<KeyPair> {
    KeyPair::from_pem(key_pem).map_err(|_| CryptoError::UnsupportedKey {
        detail: "the private key PEM does not parse as a PKCS#8 ECDSA key".to_owned(),
    })
}

fn request(
    key: &KeyPair,
    common_name: Option<&str>,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<Csr> {
    let mut params = CertificateParams::default();
    // rcgen's default subject is a placeholder common name; start from an empty one.
    params.distinguished_name = DistinguishedName::new();
    for name in dns_names {
        let name = name
            .clone()
            .try_into()
            .map_err(|_| CryptoError::MalformedCsr {
                detail: format!("{name:?} is not an IA5 DNS name"),
            })?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let cn = common_name
        .map(str::to_owned)
        .or_else(|| dns_names.first().cloned())
        .or_else(|| ips.first().map(IpAddr::to_string));
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let request = params.serialize_request(key).map_err(signing)?;
    Csr::from_der(request.der())
}

fn signing(e: rcgen::Error) -> CryptoError {
    CryptoError::Signing {
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_csr_carries_the_names_and_a_p256_key() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let (key, csr) = server_identity(&["localhost".into()], &[ip]).expect("identity");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(csr.dns_names(), ["localhost".to_string()]);
        assert_eq!(csr.ip_addresses(), [ip]);
        assert_eq!(csr.common_name(), Some("localhost"));
        assert_eq!(csr.key().bits, 256);
    }

    #[test]
    fn a_kept_key_signs_a_new_csr_for_the_same_public_key() {
        let names = ["www.example.com".to_string()];
        let (key, first) =
            host_key_and_csr(KeySpec::EcdsaP384, Some("web"), &names, &[]).expect("p384");
        assert_eq!(first.key().bits, 384);
        assert_eq!(first.common_name(), Some("web"));
        let again = csr_for_key(&key, None, &names, &[]).expect("same key");
        assert_eq!(again.common_name(), Some("www.example.com"));
        assert_eq!(first.public_key_spki_der(), again.public_key_spki_der());
        assert_eq!(
            public_key_of(&key).expect("spki"),
            first.public_key_spki_der()
        );
        let err = csr_for_key("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n", None, &names, &[])
            .expect_err("garbage");
        assert!(!err.to_string().contains("c2VjcmV0"));
    }

    #[test]
    fn no_names_gives_an_empty_subject() {
        let (_, csr) = server_identity(&[], &[]).expect("identity");
        assert_eq!(csr.common_name(), None);
        assert!(csr.dns_names().is_empty());
    }
}
