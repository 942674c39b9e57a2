//! Root → intermediate → leaf, checked by reparsing and by `openssl verify -x509_strict`.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use certmesh_crypto::cert::{Certificate, IssuingCa, LeafTemplate, pem_bundle, self_signed_root};
use certmesh_crypto::csr::{Csr, ExtendedKeyUsage};
use certmesh_crypto::keys::{KeySpec, Signer};
use certmesh_crypto::serial::Serial;
use certmesh_crypto::{CryptoError, Result};
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::{
    KEY_TYPES, VERIFY_AT, at, ca_template, hierarchy, openssl, openssl_csr, signer,
};

const SANS: &str = "subjectAltName=DNS:a.example.com,IP:192.0.2.1";

fn leaf_template(ekus: Vec<ExtendedKeyUsage>) -> LeafTemplate {
    LeafTemplate {
        serial: Serial::random(),
        not_before: at(2026, 1, 1),
        not_after: at(2031, 1, 1),
        ekus,
        ocsp_url: None,
        crl_url: None,
    }
}

fn verify_chain(dir: &Path, root: &Certificate, inter: &Certificate, leaf: &Certificate) {
    fs::write(dir.join("root.pem"), root.to_pem()).expect("write");
    fs::write(dir.join("inter.pem"), inter.to_pem()).expect("write");
    fs::write(dir.join("leaf.pem"), leaf.to_pem()).expect("write");
    let out = openssl(
        dir,
        &[
            "verify",
            "-x509_strict",
            "-check_ss_sig",
            "-attime",
            VERIFY_AT,
            "-CAfile",
            "root.pem",
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
}

fn parse(cert: &Certificate) -> X509Certificate<'_> {
    X509Certificate::from_der(cert.der()).expect("reparses").1
}

#[test]
fn chain_of_every_leaf_key_type_verifies_with_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let inter = h.intermediate.certificate();
    for (name, newkey) in KEY_TYPES {
        let pem = openssl_csr(dir.path(), name, newkey, "/CN=a.example.com", &[SANS]);
        let csr = Csr::from_pem(&pem).expect("csr");
        let leaf = h
            .intermediate
            .sign_leaf(&csr, &leaf_template(vec![ExtendedKeyUsage::ServerAuth]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        verify_chain(dir.path(), &h.root, inter, &leaf);
        let x509 = parse(&leaf);
        let key_usage = x509.key_usage().expect("ok").expect("present").value;
        assert!(key_usage.digital_signature());
        assert_eq!(
            key_usage.key_encipherment(),
            name.starts_with("rsa"),
            "{name}"
        );
    }
}

#[test]
fn leaf_fields_survive_reparsing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let (_, p256) = KEY_TYPES[0];
    let pem = openssl_csr(
        dir.path(),
        "leaf",
        p256,
        "/CN=a.example.com/O=Ignored",
        &[SANS],
    );
    let csr = Csr::from_pem(&pem).expect("csr");
    let t = leaf_template(vec![
        ExtendedKeyUsage::ServerAuth,
        ExtendedKeyUsage::ClientAuth,
    ]);
    let leaf = h.intermediate.sign_leaf(&csr, &t).expect("leaf");

    assert_eq!(leaf.serial(), t.serial);
    assert_eq!(leaf.not_before(), t.not_before);
    assert_eq!(leaf.not_after(), t.not_after);
    assert_eq!(leaf.subject(), "CN=a.example.com");
    assert_eq!(leaf.issuer(), h.intermediate.certificate().subject());
    assert_eq!(leaf.sans(), ["a.example.com", "192.0.2.1"]);
    assert!(!leaf.is_ca());
    assert_eq!(
        leaf.fingerprint_sha256(),
        certmesh_crypto::digest::sha256_hex(leaf.der())
    );
    assert_eq!(
        leaf.authority_key_id(),
        h.intermediate.certificate().subject_key_id()
    );
    assert_eq!(Certificate::from_pem(&leaf.to_pem()).expect("pem"), leaf);

    let x509 = parse(&leaf);
    assert_eq!(x509.version().0, 2, "v3");
    assert_eq!(
        x509.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA256
    );
    let spki_bits = &x509.public_key().subject_public_key.data;
    let method1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, spki_bits);
    assert_eq!(leaf.subject_key_id(), Some(method1.as_ref()));
    let bc = x509.basic_constraints().expect("ok").expect("present");
    assert!(bc.critical && !bc.value.ca);
    assert!(x509.key_usage().expect("ok").expect("present").critical);
    let eku = x509
        .extended_key_usage()
        .expect("ok")
        .expect("present")
        .value;
    assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
}

#[test]
fn ca_certificates_have_the_rfc_5280_extensions() {
    let h = hierarchy();
    let root = parse(&h.root);
    let inter = parse(h.intermediate.certificate());
    assert_eq!(
        root.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA384
    );
    assert_eq!(
        inter.signature_algorithm.algorithm,
        OID_SIG_ECDSA_WITH_SHA384
    );
    for (cert, path_len) in [(&root, 1), (&inter, 0)] {
        let bc = cert.basic_constraints().expect("ok").expect("present");
        assert!(bc.critical && bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(path_len));
        let ku = cert.key_usage().expect("ok").expect("present");
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    }
    assert!(h.root.is_ca() && h.intermediate.certificate().is_ca());
    assert_eq!(h.root.subject(), "CN=Test Root, O=certmesh tests");
    assert_eq!(h.root.authority_key_id(), h.root.subject_key_id());
    assert_eq!(
        h.intermediate.certificate().authority_key_id(),
        h.root.subject_key_id()
    );
    let bundle = pem_bundle(&[h.intermediate.certificate().clone(), h.root.clone()]);
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(bundle.starts_with(&h.intermediate.certificate().to_pem()));
}

#[test]
fn san_only_leaf_has_empty_subject_and_critical_san() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let (_, p256) = KEY_TYPES[0];
    let pem = openssl_csr(dir.path(), "nocn", p256, "/", &[SANS]);
    let leaf = h
        .intermediate
        .sign_leaf(&Csr::from_pem(&pem).expect("csr"), &leaf_template(vec![]))
        .expect("leaf");
    assert_eq!(leaf.subject(), "");
    let x509 = parse(&leaf);
    let san = x509
        .extensions()
        .iter()
        .find(|e| e.oid == OID_X509_EXT_SUBJECT_ALT_NAME)
        .expect("SAN present");
    assert!(san.critical);
    assert!(x509.extended_key_usage().expect("ok").is_none());
    assert!(
        !x509
            .extensions()
            .iter()
            .any(|e| matches!(e.parsed_extension(), ParsedExtension::ExtendedKeyUsage(_)))
    );
    verify_chain(dir.path(), &h.root, h.intermediate.certificate(), &leaf);
}

#[test]
fn csr_naming_nothing_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let (_, p256) = KEY_TYPES[0];
    let pem = openssl_csr(
        dir.path(),
        "empty",
        p256,
        "/",
        &["subjectAltName=email:a@example.com"],
    );
    let err = h
        .intermediate
        .sign_leaf(&Csr::from_pem(&pem).expect("csr"), &leaf_template(vec![]))
        .expect_err("nothing to certify");
    assert!(matches!(err, CryptoError::MalformedCsr { .. }), "{err}");
}

#[test]
fn inverted_validity_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let (_, p256) = KEY_TYPES[0];
    let csr = Csr::from_pem(&openssl_csr(dir.path(), "v", p256, "/CN=x", &[])).expect("csr");
    let mut t = leaf_template(vec![]);
    std::mem::swap(&mut t.not_before, &mut t.not_after);
    assert!(matches!(
        h.intermediate.sign_leaf(&csr, &t),
        Err(CryptoError::Signing { .. })
    ));
}

#[test]
fn issuing_ca_rejects_a_key_that_is_not_the_certificates() {
    let h = hierarchy();
    let other = signer(KeySpec::EcdsaP256);
    assert!(matches!(
        IssuingCa::new(h.intermediate.certificate().clone(), other),
        Err(CryptoError::KeyMismatch)
    ));
}

/// A signer whose key is real but whose signing always fails, like an unreachable HSM.
#[derive(Debug)]
struct FailingSigner(Arc<dyn Signer>);

impl Signer for FailingSigner {
    fn spec(&self) -> KeySpec {
        self.0.spec()
    }
    fn public_key_spki_der(&self) -> &[u8] {
        self.0.public_key_spki_der()
    }
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>> {
        Err(CryptoError::KeyNotFound {
            key_ref: "pkcs11:gone".to_owned(),
        })
    }
}

#[test]
fn signer_errors_reach_the_caller_unchanged() {
    let failing = Arc::new(FailingSigner(signer(KeySpec::EcdsaP256)));
    let err = self_signed_root(failing, &ca_template("Broken", None)).expect_err("fails");
    assert!(
        matches!(&err, CryptoError::KeyNotFound { key_ref } if key_ref == "pkcs11:gone"),
        "{err}"
    );
}

#[test]
fn issuing_ca_debug_shows_no_key() {
    let h = hierarchy();
    let text = format!("{:?}", h.intermediate);
    assert!(text.contains("IssuingCa") && text.contains("SoftwareSigner"));
}

/// Issuance throughput on one thread; run with
/// `cargo test --release -p certmesh-crypto --test it -- --ignored --nocapture throughput`.
#[test]
#[ignore = "benchmark"]
fn sign_leaf_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let (_, p256) = KEY_TYPES[0];
    let pem = openssl_csr(dir.path(), "bench", p256, "/CN=a.example.com", &[SANS]);
    let t = leaf_template(vec![ExtendedKeyUsage::ServerAuth]);
    let n = 5_000;
    let rate = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        f64::from(n) / start.elapsed().as_secs_f64()
    };
    let parse = rate(&|| {
        Csr::from_pem(&pem).expect("csr");
    });
    let csr = Csr::from_pem(&pem).expect("csr");
    let sign = rate(&|| {
        h.intermediate.sign_leaf(&csr, &t).expect("leaf");
    });
    println!("one thread: Csr::from_pem {parse:.0}/s, sign_leaf {sign:.0}/s");
    let leaf = h
        .intermediate
        .sign_leaf(&Csr::from_pem(&pem).expect("csr"), &t)
        .expect("leaf");
    println!("{}", leaf.to_pem());
}
