//! CSR parsing against requests made by openssl.

use std::net::IpAddr;

use certmesh_crypto::CryptoError;
use certmesh_crypto::csr::{Csr, ExtendedKeyUsage, KeyAlgorithm, KeyInfo};

use crate::support::{KEY_TYPES, openssl_csr};

const SANS: &str = "subjectAltName=DNS:a.example.com,IP:192.0.2.1";
const EKUS: &str = "extendedKeyUsage=serverAuth,clientAuth";

fn expected_key(name: &str) -> KeyInfo {
    let (algorithm, bits) = match name {
        "p256" => (KeyAlgorithm::Ecdsa, 256),
        "p384" => (KeyAlgorithm::Ecdsa, 384),
        "rsa2048" => (KeyAlgorithm::Rsa, 2048),
        "rsa1024" => (KeyAlgorithm::Rsa, 1024),
        "ed25519" => (KeyAlgorithm::Ed25519, 256),
        other => panic!("unknown key type {other}"),
    };
    KeyInfo { algorithm, bits }
}

#[test]
fn parses_every_key_type_with_names_and_ekus() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, newkey) in KEY_TYPES {
        let pem = openssl_csr(
            dir.path(),
            name,
            newkey,
            "/CN=a.example.com/O=Acme",
            &[SANS, EKUS],
        );
        let csr = Csr::from_pem(&pem).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(csr.key(), expected_key(name), "{name}");
        assert_eq!(csr.common_name(), Some("a.example.com"));
        assert!(
            csr.subject().contains("CN=a.example.com"),
            "{}",
            csr.subject()
        );
        assert_eq!(csr.dns_names(), ["a.example.com"]);
        assert_eq!(
            csr.ip_addresses(),
            ["192.0.2.1".parse::<IpAddr>().expect("ip")]
        );
        assert!(csr.other_names().is_empty());
        assert_eq!(
            csr.requested_ekus(),
            [ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth]
        );
        let again = Csr::from_der(csr.der()).expect("DER round trip");
        assert_eq!(again.key(), csr.key());
    }
}

#[test]
fn empty_subject_and_other_san_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, p256) = KEY_TYPES[0];
    let san = "subjectAltName=DNS:b.example.com,email:ops@example.com,URI:https://example.com/x,IP:2001:db8::1";
    let pem = openssl_csr(dir.path(), "other", p256, "/", &[san]);
    let csr = Csr::from_pem(&pem).expect("parses");
    assert_eq!(csr.subject(), "");
    assert_eq!(csr.common_name(), None);
    assert_eq!(csr.dns_names(), ["b.example.com"]);
    assert_eq!(
        csr.ip_addresses(),
        ["2001:db8::1".parse::<IpAddr>().expect("ip")]
    );
    assert_eq!(
        csr.other_names(),
        ["email:ops@example.com", "uri:https://example.com/x"]
    );
    assert!(csr.requested_ekus().is_empty());
}

#[test]
fn unknown_eku_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, p256) = KEY_TYPES[0];
    let pem = openssl_csr(
        dir.path(),
        "eku",
        p256,
        "/CN=x",
        &["extendedKeyUsage=serverAuth,1.3.6.1.4.1.99999.1"],
    );
    assert!(matches!(
        Csr::from_pem(&pem),
        Err(CryptoError::UnsupportedExtension { .. })
    ));
}

#[test]
fn p521_is_an_unsupported_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let newkey = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"];
    let pem = openssl_csr(dir.path(), "p521", newkey, "/CN=x", &[]);
    assert!(matches!(
        Csr::from_pem(&pem),
        Err(CryptoError::UnsupportedKey { .. })
    ));
}

#[test]
fn new_certificate_request_label_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, p256) = KEY_TYPES[0];
    let pem = openssl_csr(dir.path(), "label", p256, "/CN=x", &[]);
    let relabelled = pem.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    assert_eq!(
        Csr::from_pem(&relabelled).expect("parses").common_name(),
        Some("x")
    );
}

#[test]
fn garbage_is_rejected_by_layer() {
    assert!(matches!(
        Csr::from_pem("definitely not PEM"),
        Err(CryptoError::MalformedPem { .. })
    ));
    let wrong_label = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        Csr::from_pem(wrong_label),
        Err(CryptoError::MalformedPem { .. })
    ));
    let garbage = "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZSBieXRlcw==\n-----END CERTIFICATE REQUEST-----\n";
    assert!(matches!(
        Csr::from_pem(garbage),
        Err(CryptoError::MalformedCsr { .. })
    ));
}

#[test]
fn flipped_signature_bit_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, newkey) in KEY_TYPES {
        let pem = openssl_csr(dir.path(), name, newkey, "/CN=x", &[SANS]);
        let mut der = Csr::from_pem(&pem).expect("parses").der().to_vec();
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert!(
            matches!(Csr::from_der(&der), Err(CryptoError::CsrSignatureInvalid)),
            "{name}"
        );
    }
}

#[test]
fn tampered_request_info_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, p256) = KEY_TYPES[0];
    let pem = openssl_csr(dir.path(), "tamper", p256, "/CN=aaaa.example.com", &[]);
    let der = Csr::from_pem(&pem).expect("parses").der().to_vec();
    let pos = der
        .windows(4)
        .position(|w| w == b"aaaa")
        .expect("CN bytes present");
    let mut tampered = der.clone();
    tampered[pos] = b'b';
    assert!(matches!(
        Csr::from_der(&tampered),
        Err(CryptoError::CsrSignatureInvalid)
    ));
}
