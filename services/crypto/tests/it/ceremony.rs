//! Ceremony approval signatures made by openssl verify with `ApproverKey`, and signatures made
//! by `sign_with_private_key_pem` verify with openssl.

use std::fs;
use std::path::Path;

use certmesh_crypto::CryptoError;
use certmesh_crypto::ceremony::{
    ApproverKey, ApproverKeyAlgorithm, ceremony_digest, sign_with_private_key_pem, signing_message,
};
use certmesh_crypto::digest::sha256_hex;

use crate::support::openssl;

/// Key kinds custodians use, with the openssl commands that make them (PKCS#8 PEM output).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Ed25519,
    P256Pkcs8,
    /// `openssl ecparam -genkey`: an `EC PARAMETERS` block, then SEC1 `EC PRIVATE KEY`.
    P256Sec1,
}

const KINDS: [Kind; 3] = [Kind::Ed25519, Kind::P256Pkcs8, Kind::P256Sec1];

struct Custodian {
    key_file: String,
    pub_file: String,
    kind: Kind,
}

impl Custodian {
    fn new(dir: &Path, name: &str, kind: Kind) -> Custodian {
        let key_file = format!("{name}.key");
        let pub_file = format!("{name}.pub");
        match kind {
            Kind::Ed25519 => {
                openssl(
                    dir,
                    &["genpkey", "-algorithm", "ed25519", "-out", &key_file],
                );
            }
            Kind::P256Pkcs8 => {
                let sec1 = format!("{name}.sec1");
                openssl(
                    dir,
                    &[
                        "ecparam",
                        "-genkey",
                        "-name",
                        "prime256v1",
                        "-noout",
                        "-out",
                        &sec1,
                    ],
                );
                openssl(
                    dir,
                    &[
                        "pkcs8", "-topk8", "-nocrypt", "-in", &sec1, "-out", &key_file,
                    ],
                );
            }
            Kind::P256Sec1 => {
                openssl(
                    dir,
                    &[
                        "ecparam",
                        "-genkey",
                        "-name",
                        "prime256v1",
                        "-out",
                        &key_file,
                    ],
                );
            }
        }
        openssl(
            dir,
            &["pkey", "-in", &key_file, "-pubout", "-out", &pub_file],
        );
        Custodian {
            key_file,
            pub_file,
            kind,
        }
    }

    fn approver_key(&self, dir: &Path) -> ApproverKey {
        ApproverKey::from_pem(&read(dir, &self.pub_file)).expect("approver key")
    }

    fn private_pem(&self, dir: &Path) -> String {
        read(dir, &self.key_file)
    }

    /// Signs `msg_file` with openssl the way RFC 0003 tells custodians to.
    fn openssl_sign(&self, dir: &Path, msg_file: &str, sig_file: &str) -> Vec<u8> {
        match self.kind {
            Kind::Ed25519 => openssl(
                dir,
                &[
                    "pkeyutl",
                    "-sign",
                    "-rawin",
                    "-inkey",
                    &self.key_file,
                    "-in",
                    msg_file,
                    "-out",
                    sig_file,
                ],
            ),
            Kind::P256Pkcs8 | Kind::P256Sec1 => openssl(
                dir,
                &[
                    "dgst",
                    "-sha256",
                    "-sign",
                    &self.key_file,
                    "-out",
                    sig_file,
                    msg_file,
                ],
            ),
        };
        fs::read(dir.join(sig_file)).expect("signature")
    }

    /// Verifies with openssl; true if it accepts.
    fn openssl_verifies(&self, dir: &Path, msg_file: &str, sig_file: &str) -> bool {
        let args: Vec<&str> = match self.kind {
            Kind::Ed25519 => vec![
                "pkeyutl",
                "-verify",
                "-rawin",
                "-pubin",
                "-inkey",
                &self.pub_file,
                "-in",
                msg_file,
                "-sigfile",
                sig_file,
            ],
            Kind::P256Pkcs8 | Kind::P256Sec1 => vec![
                "dgst",
                "-sha256",
                "-verify",
                &self.pub_file,
                "-signature",
                sig_file,
                msg_file,
            ],
        };
        std::process::Command::new("/usr/bin/openssl")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("openssl runs")
            .status
            .success()
    }
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).expect("read")
}

fn message(dir: &Path, canonical_json: &[u8]) -> (Vec<u8>, String) {
    let msg = signing_message(&ceremony_digest(canonical_json));
    let file = format!("{}.msg", sha256_hex(&msg));
    fs::write(dir.join(&file), &msg).expect("write");
    (msg, file)
}

#[test]
fn openssl_signatures_verify_and_tampering_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let (msg, msg_file) = message(p, br#"{"ceremony_id":"c1","threshold":2}"#);
    let (other_msg, _) = message(p, br#"{"ceremony_id":"c2","threshold":2}"#);
    for kind in KINDS {
        let custodian = Custodian::new(p, &format!("{kind:?}"), kind);
        let stranger = Custodian::new(p, &format!("{kind:?}-stranger"), kind);
        let key = custodian.approver_key(p);
        let sig = custodian.openssl_sign(p, &msg_file, &format!("{kind:?}.sig"));
        key.verify(&msg, &sig)
            .unwrap_or_else(|e| panic!("{kind:?}: openssl signature refused: {e}"));

        let refused = |m: &[u8], s: &[u8], what: &str| {
            assert!(
                matches!(key.verify(m, s), Err(CryptoError::CeremonySignatureInvalid)),
                "{kind:?}: {what} accepted"
            );
        };
        for i in [0, sig.len() / 2, sig.len() - 1] {
            let mut flipped = sig.clone();
            flipped[i] ^= 0x01;
            refused(&msg, &flipped, "flipped byte");
        }
        refused(&other_msg, &sig, "wrong message");
        refused(&msg[..msg.len() - 1], &sig, "truncated message");
        let theirs = stranger.openssl_sign(p, &msg_file, &format!("{kind:?}-stranger.sig"));
        refused(&msg, &theirs, "another key's signature");
        refused(&msg, &[], "empty signature");
    }
}

#[test]
fn our_signatures_verify_with_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let (msg, msg_file) = message(p, b"{}");
    for kind in KINDS {
        let custodian = Custodian::new(p, &format!("ours-{kind:?}"), kind);
        let sig = sign_with_private_key_pem(&custodian.private_pem(p), &msg)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let sig_file = format!("ours-{kind:?}.sig");
        fs::write(p.join(&sig_file), &sig).expect("write");
        assert!(
            custodian.openssl_verifies(p, &msg_file, &sig_file),
            "{kind:?}: openssl refuses our signature"
        );
        custodian
            .approver_key(p)
            .verify(&msg, &sig)
            .expect("and we accept it");
    }
}

#[test]
fn approver_keys_report_algorithm_and_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    for (kind, alg) in [
        (Kind::Ed25519, ApproverKeyAlgorithm::Ed25519),
        (Kind::P256Pkcs8, ApproverKeyAlgorithm::EcdsaP256),
    ] {
        let custodian = Custodian::new(p, &format!("fp-{kind:?}"), kind);
        let key = custodian.approver_key(p);
        assert_eq!(key.algorithm(), alg);
        let der_file = format!("fp-{kind:?}.der");
        openssl(
            p,
            &[
                "pkey",
                "-pubin",
                "-in",
                &custodian.pub_file,
                "-outform",
                "DER",
                "-out",
                &der_file,
            ],
        );
        let der = fs::read(p.join(&der_file)).expect("der");
        assert_eq!(key.spki_der(), der.as_slice());
        assert_eq!(key.fingerprint(), sha256_hex(&der));
        assert_eq!(ApproverKey::from_spki_der(&der).expect("der"), key);
    }
}

#[test]
fn other_key_types_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    for (name, genpkey, what) in [
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            "P-384",
        ),
        (
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            "RSA",
        ),
        ("ed448", &["-algorithm", "ed448"][..], "1.3.101.113"),
    ] {
        let (key_file, pub_file) = (format!("{name}.key"), format!("{name}.pub"));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(genpkey);
        args.extend_from_slice(&["-out", &key_file]);
        openssl(p, &args);
        openssl(p, &["pkey", "-in", &key_file, "-pubout", "-out", &pub_file]);
        let err = ApproverKey::from_pem(&read(p, &pub_file)).expect_err(name);
        let CryptoError::UnsupportedKey { detail } = &err else {
            panic!("{name}: {err}");
        };
        assert!(
            detail.contains("Ed25519 or ECDSA P-256") && detail.contains(what),
            "{name}: {detail}"
        );
        let err = sign_with_private_key_pem(&read(p, &key_file), b"m").expect_err(name);
        assert!(
            matches!(err, CryptoError::UnsupportedKey { .. }),
            "{name}: {err}"
        );
    }
    let not_a_key = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        ApproverKey::from_pem(not_a_key),
        Err(CryptoError::MalformedPem { .. })
    ));
}

#[test]
fn encrypted_private_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    openssl(
        p,
        &["genpkey", "-algorithm", "ed25519", "-out", "plain.key"],
    );
    openssl(
        p,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "plain.key",
            "-out",
            "enc.key",
            "-passout",
            "pass:secret",
        ],
    );
    let err = sign_with_private_key_pem(&read(p, "enc.key"), b"m").expect_err("encrypted");
    assert!(matches!(err, CryptoError::MalformedPem { .. }), "{err}");
}
