//! CRLs and the leaf's revocation pointers, checked by openssl (signature, contents, path
//! validation with `-crl_check`) and pkilint's `lint_crl`.

use std::fs;
use std::path::Path;

use certmesh_crypto::CryptoError;
use certmesh_crypto::cert::{Certificate, IssuingCa, LeafTemplate, pem_bundle};
use certmesh_crypto::crl::{CrlEntry, CrlTemplate, ParsedCrlEntry, parse_crl};
use certmesh_crypto::csr::{Csr, ExtendedKeyUsage};
use certmesh_crypto::revocation::RevocationReason;
use certmesh_crypto::serial::Serial;
use chrono::{DateTime, Duration, Utc};

use crate::support::{
    Hierarchy, KEY_TYPES, VERIFY_AT, at, hierarchy, openssl, openssl_csr, openssl_output, pkilint,
    pkilint_document,
};

const CRL_URL: &str = "http://crl.example.com/ca/shard-7.crl";
const OCSP_URL: &str = "http://ocsp.example.com/";

fn entry(reason: RevocationReason, day: u32) -> CrlEntry {
    CrlEntry {
        serial: Serial::random(),
        revoked_at: at(2029, 12, day) + Duration::seconds(37),
        reason,
    }
}

fn template<'a>(entries: &'a [CrlEntry], distribution_point: Option<&'a str>) -> CrlTemplate<'a> {
    CrlTemplate {
        number: 42,
        this_update: at(2029, 12, 31),
        next_update: at(2030, 1, 7),
        distribution_point,
        entries,
    }
}

/// `openssl crl -verify` against the CA chain, then `-text`; returns the text.
fn openssl_crl(dir: &Path, h: &Hierarchy, der: &[u8]) -> String {
    let chain = pem_bundle(&[h.intermediate.certificate().clone(), h.root.clone()]);
    fs::write(dir.join("chain.pem"), chain).expect("write");
    fs::write(dir.join("crl.der"), der).expect("write");
    let (ok, out) = openssl_output(
        dir,
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "crl.der",
            "-CAfile",
            "chain.pem",
            "-noout",
            "-verify",
        ],
    );
    assert!(ok && out.contains("verify OK"), "{out}");
    openssl(
        dir,
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    )
}

fn lint_crl(dir: &Path, der: &[u8], what: &str) {
    let notes = pkilint_document(
        dir,
        "lint_crl",
        &["--type", "CRL", "--profile", "PKIX"],
        der,
        "WARNING",
        what,
    );
    println!("lint_crl notes for {what}:\n{notes}");
}

#[test]
fn crl_with_reasons_and_distribution_point_verifies_and_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let entries = [
        entry(RevocationReason::Unspecified, 1),
        entry(RevocationReason::KeyCompromise, 2),
        entry(RevocationReason::CertificateHold, 3),
        entry(RevocationReason::CaCompromise, 4),
        entry(RevocationReason::Superseded, 5),
        entry(RevocationReason::CessationOfOperation, 6),
        entry(RevocationReason::AffiliationChanged, 7),
        entry(RevocationReason::PrivilegeWithdrawn, 8),
        entry(RevocationReason::AaCompromise, 9),
    ];
    let t = template(&entries, Some(CRL_URL));
    let der = h.intermediate.sign_crl(&t).expect("crl");

    let text = openssl_crl(dir.path(), &h, &der);
    assert!(text.contains("Version 2"), "{text}");
    assert!(text.contains("X509v3 CRL Number:"), "{text}");
    assert!(text.contains("42"), "{text}");
    for shown in [
        "Key Compromise",
        "Certificate Hold",
        "CA Compromise",
        "Superseded",
        "Cessation Of Operation",
        "Affiliation Changed",
        "Privilege Withdrawn",
        "AA Compromise",
        "X509v3 Issuing Distribution Point: critical",
        &format!("URI:{CRL_URL}"),
        "Only User Certificates",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }
    // RFC 5280 §5.3.1: no reasonCode for unspecified.
    assert_eq!(
        text.matches("Reason Code").count(),
        entries.len() - 1,
        "{text}"
    );
    assert!(!text.contains("Unspecified"), "{text}");
    lint_crl(dir.path(), &der, "a CRL with reasons and an IDP");

    let parsed = parse_crl(&der).expect("parses");
    let ca = h.intermediate.certificate();
    assert_eq!(parsed.number, Some(42));
    assert_eq!(parsed.this_update, t.this_update);
    assert_eq!(parsed.next_update, Some(t.next_update));
    assert_eq!(parsed.issuer_der, ca.subject_der());
    assert_eq!(parsed.authority_key_id.as_deref(), ca.subject_key_id());
    assert_eq!(parsed.distribution_point.as_deref(), Some(CRL_URL));
    let expected: Vec<ParsedCrlEntry> = entries
        .iter()
        .map(|e| ParsedCrlEntry {
            serial: e.serial.clone(),
            revoked_at: e.revoked_at,
            reason: (e.reason != RevocationReason::Unspecified).then_some(e.reason),
        })
        .collect();
    assert_eq!(parsed.entries, expected);
}

#[test]
fn empty_crl_without_distribution_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let der = h
        .intermediate
        .sign_crl(&CrlTemplate {
            number: 0,
            ..template(&[], None)
        })
        .expect("crl");
    let text = openssl_crl(dir.path(), &h, &der);
    assert!(text.contains("No Revoked Certificates."), "{text}");
    assert!(!text.contains("Issuing Distribution Point"), "{text}");
    lint_crl(dir.path(), &der, "an empty CRL");
    let parsed = parse_crl(&der).expect("parses");
    assert_eq!(parsed.number, Some(0));
    assert!(parsed.entries.is_empty());
    assert_eq!(parsed.distribution_point, None);
}

#[test]
fn crl_templates_that_cannot_be_signed() {
    let h = hierarchy();
    let hold = [entry(RevocationReason::RemoveFromCrl, 1)];
    assert!(matches!(
        h.intermediate.sign_crl(&template(&hold, None)),
        Err(CryptoError::RevocationReasonRefused {
            reason: RevocationReason::RemoveFromCrl
        })
    ));
    let mut inverted = template(&[], None);
    inverted.next_update = inverted.this_update;
    assert!(matches!(
        h.intermediate.sign_crl(&inverted),
        Err(CryptoError::Signing { .. })
    ));
    for bad in ["", "crl.example.com/a.crl", "http://a b/"] {
        assert!(matches!(
            h.intermediate.sign_crl(&template(&[], Some(bad))),
            Err(CryptoError::InvalidUri { .. })
        ));
    }
    assert!(parse_crl(b"not a crl").is_err());
    let mut trailing = h.intermediate.sign_crl(&template(&[], None)).expect("crl");
    trailing.push(0);
    assert!(matches!(
        parse_crl(&trailing),
        Err(CryptoError::MalformedCrl { .. })
    ));
}

fn leaf_with_pointers(dir: &Path, ca: &IssuingCa, dns: &str) -> Certificate {
    let (_, p256) = KEY_TYPES[0];
    let san = format!("subjectAltName=DNS:{dns}");
    let pem = openssl_csr(dir, dns, p256, &format!("/CN={dns}"), &[&san]);
    let t = LeafTemplate {
        serial: Serial::random(),
        not_before: at(2026, 1, 1),
        not_after: at(2031, 1, 1),
        ekus: vec![ExtendedKeyUsage::ServerAuth],
        ocsp_url: Some(OCSP_URL.to_owned()),
        crl_url: Some(CRL_URL.to_owned()),
    };
    ca.sign_leaf(&Csr::from_pem(&pem).expect("csr"), &t)
        .expect("leaf")
}

/// `openssl verify -crl_check` of `leaf` with the CRL: the leaf's CDP and the CRL's IDP must
/// match for openssl to use the CRL at all.
fn verify_with_crl(dir: &Path, h: &Hierarchy, crl_der: &[u8], leaf: &Certificate) -> String {
    fs::write(dir.join("root.pem"), h.root.to_pem()).expect("write");
    fs::write(dir.join("inter.pem"), h.intermediate.certificate().to_pem()).expect("write");
    fs::write(dir.join("leaf.pem"), leaf.to_pem()).expect("write");
    fs::write(dir.join("crl.der"), crl_der).expect("write");
    openssl(
        dir,
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    );
    openssl_output(
        dir,
        &[
            "verify",
            "-x509_strict",
            "-attime",
            VERIFY_AT,
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "inter.pem",
            "leaf.pem",
        ],
    )
    .1
}

#[test]
fn leaf_revocation_pointers_and_crl_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let revoked = leaf_with_pointers(dir.path(), &h.intermediate, "revoked.example.com");
    let good = leaf_with_pointers(dir.path(), &h.intermediate, "good.example.com");

    fs::write(dir.path().join("leaf.pem"), revoked.to_pem()).expect("write");
    let text = openssl(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    for shown in [
        "X509v3 CRL Distribution Points",
        &format!("URI:{CRL_URL}"),
        "Authority Information Access",
        &format!("OCSP - URI:{OCSP_URL}"),
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }
    pkilint(dir.path(), &revoked, "a leaf with CDP and AIA");

    let entries = [CrlEntry {
        serial: revoked.serial(),
        revoked_at: at(2029, 12, 30),
        reason: RevocationReason::KeyCompromise,
    }];
    let crl = h
        .intermediate
        .sign_crl(&template(&entries, Some(CRL_URL)))
        .expect("crl");
    let out = verify_with_crl(dir.path(), &h, &crl, &revoked);
    assert!(out.contains("certificate revoked"), "{out}");
    let out = verify_with_crl(dir.path(), &h, &crl, &good);
    assert!(out.contains("leaf.pem: OK"), "{out}");

    let mut bad = LeafTemplate {
        serial: Serial::random(),
        not_before: at(2026, 1, 1),
        not_after: at(2031, 1, 1),
        ekus: vec![],
        ocsp_url: Some("ocsp.example.com".to_owned()),
        crl_url: None,
    };
    let (_, p256) = KEY_TYPES[0];
    let csr = Csr::from_pem(&openssl_csr(dir.path(), "bad", p256, "/CN=bad", &[])).expect("csr");
    assert!(matches!(
        h.intermediate.sign_leaf(&csr, &bad),
        Err(CryptoError::InvalidUri { .. })
    ));
    bad.ocsp_url = None;
    bad.crl_url = Some("http://crl.example.com/\u{e9}".to_owned());
    assert!(matches!(
        h.intermediate.sign_leaf(&csr, &bad),
        Err(CryptoError::InvalidUri { .. })
    ));
}

/// Build and sign time of a 1,000,000-entry CRL; run with
/// `cargo test --release -p certmesh-crypto --test it -- --ignored --nocapture million`.
#[test]
#[ignore = "benchmark"]
fn million_entry_crl() {
    let h = hierarchy();
    let base = at(2029, 1, 1);
    let entries: Vec<CrlEntry> = (0..1_000_000u32)
        .map(|i| CrlEntry {
            serial: Serial::random(),
            revoked_at: base + Duration::seconds(i64::from(i)),
            reason: RevocationReason::ALL[(i % 7) as usize],
        })
        .collect();
    let t = template(&entries, Some(CRL_URL));
    let start = std::time::Instant::now();
    let der = h.intermediate.sign_crl(&t).expect("crl");
    let signed = start.elapsed();
    println!(
        "1,000,000-entry CRL: {} bytes, built and signed in {signed:?}",
        der.len()
    );
    let start = std::time::Instant::now();
    let parsed = parse_crl(&der).expect("parses");
    println!("parse_crl in {:?}", start.elapsed());
    assert_eq!(parsed.entries.len(), entries.len());
    let last: DateTime<Utc> = parsed.entries[999_999].revoked_at;
    assert_eq!(last, entries[999_999].revoked_at);
}
