//! `ca_checks` on real certificates: self-signed roots made by openssl with every accepted
//! signature algorithm, and certificates that only look self-signed.

use std::fs;
use std::path::Path;

use certmesh_crypto::ca_checks::{CaCheckError, check_key_match, check_self_signed};
use certmesh_crypto::cert::Certificate;
use certmesh_crypto::keys::KeySpec;

use crate::support::{hierarchy, openssl, signer};

/// A self-signed CA made by `openssl req -x509` with the given key and signing options.
fn openssl_root(dir: &Path, name: &str, subj: &str, key_and_sig: &[&str]) -> Certificate {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-new",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &pem,
        "-days",
        "30",
        "-subj",
        subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    args.extend_from_slice(key_and_sig);
    openssl(dir, &args);
    Certificate::from_pem(&fs::read_to_string(dir.join(pem)).expect("read")).expect("parses")
}

fn detail(err: CaCheckError) -> String {
    match err {
        CaCheckError::NotSelfSigned { detail } => detail,
        other => panic!("expected NotSelfSigned, got {other:?}"),
    }
}

#[test]
fn self_signed_roots_of_every_accepted_algorithm_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &[&str])] = &[
        (
            "p256",
            &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-sha256",
            ],
        ),
        (
            "p384",
            &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-sha384",
            ],
        ),
        ("rsa-sha256", &["-newkey", "rsa:2048", "-sha256"]),
        ("rsa-sha384", &["-newkey", "rsa:2048", "-sha384"]),
        ("rsa-sha512", &["-newkey", "rsa:3072", "-sha512"]),
        (
            "rsa-pss-sha256",
            &[
                "-newkey",
                "rsa:2048",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ],
        ),
        (
            "rsa-pss-sha512",
            &[
                "-newkey",
                "rsa:2048",
                "-sha512",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:64",
            ],
        ),
        ("ed25519", &["-newkey", "ed25519"]),
    ];
    for (name, args) in cases {
        let root = openssl_root(dir.path(), name, &format!("/CN=Root {name}"), args);
        check_self_signed(&root).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    check_self_signed(&hierarchy().root).expect("our own root");
}

#[test]
fn sha1_signatures_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = openssl_root(
        dir.path(),
        "sha1",
        "/CN=Old",
        &["-newkey", "rsa:2048", "-sha1"],
    );
    assert!(detail(check_self_signed(&root).expect_err("sha1")).contains("SHA-1"));
}

#[test]
fn an_intermediate_is_not_self_signed() {
    let h = hierarchy();
    let err = check_self_signed(h.intermediate.certificate()).expect_err("issued by the root");
    assert!(detail(err.clone()).contains("is not the subject"), "{err}");
    assert!(
        err.to_string()
            .starts_with("the certificate is not self-signed: ")
    );
}

#[test]
fn a_broken_signature_is_refused() {
    let root = hierarchy().root;
    let mut der = root.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = Certificate::from_der(der).expect("still parses");
    assert!(detail(check_self_signed(&tampered).expect_err("bad sig")).contains("does not verify"));
}

#[test]
fn self_issued_but_signed_by_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    openssl_root(p, "ca", "/CN=Same Name", &ec);
    let mut req = vec![
        "req",
        "-new",
        "-nodes",
        "-keyout",
        "other.key",
        "-out",
        "other.csr",
    ];
    req.extend_from_slice(&ec);
    req.extend_from_slice(&["-subj", "/CN=Same Name"]);
    openssl(p, &req);
    openssl(
        p,
        &[
            "x509",
            "-req",
            "-in",
            "other.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-out",
            "other.pem",
            "-days",
            "30",
            "-set_serial",
            "7",
        ],
    );
    let other = Certificate::from_pem(&fs::read_to_string(p.join("other.pem")).expect("read"))
        .expect("parses");
    assert_eq!(other.subject_der(), other.issuer_der());
    let err = check_self_signed(&other).expect_err("signed by the other key");
    assert!(detail(err).contains("own key"));
}

#[test]
fn key_match() {
    let h = hierarchy();
    let inter = h.intermediate.certificate();
    assert_eq!(check_key_match(inter, inter.spki_der()), Ok(()));
    let other = signer(KeySpec::EcdsaP256);
    assert_eq!(
        check_key_match(inter, other.public_key_spki_der()),
        Err(CaCheckError::KeyMismatch)
    );
}
