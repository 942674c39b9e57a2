//! Keys and CSRs for certmesh's own TLS endpoints (the gateway's serving certificate), made
//! here so that no other crate touches key material types.

use std::net::IpAddr;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use zeroize::Zeroizing;

use crate::{CryptoError, Result, csr::Csr};

/// A fresh ECDSA P-256 key (PKCS#8 PEM, zeroized on drop) and a CSR for `dns_names` and `ips`,
/// with the first DNS name (else the first IP) as the subject common name.
pub fn server_identity(dns_names: &[String], ips: &[IpAddr]) -> Result<(Zeroizing<String>, Csr)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(signing)?;
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
    let cn = dns_names
        .first()
        .cloned()
        .or_else(|| ips.first().map(IpAddr::to_string));
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let request = params.serialize_request(&key).map_err(signing)?;
    let csr = Csr::from_der(request.der())?;
    Ok((Zeroizing::new(key.serialize_pem()), csr))
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
    fn no_names_gives_an_empty_subject() {
        let (_, csr) = server_identity(&[], &[]).expect("identity");
        assert_eq!(csr.common_name(), None);
        assert!(csr.dns_names().is_empty());
    }
}
