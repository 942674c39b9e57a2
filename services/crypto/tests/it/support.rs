//! Shared helpers: running openssl, making CSRs, fixed test times and a CA hierarchy.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use certmesh_crypto::cert::{CaTemplate, Certificate, IssuingCa, self_signed_root};
use certmesh_crypto::keys::{KeySpec, Signer, SoftwareSigner};
use certmesh_crypto::serial::Serial;
use chrono::{DateTime, TimeZone, Utc};

/// Runs openssl in `dir`, panicking with its stderr if it fails; returns stdout.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// openssl `-newkey` arguments for each key type under test.
pub const KEY_TYPES: &[(&str, &[&str])] = &[
    (
        "p256",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ),
    (
        "p384",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    ),
    ("rsa2048", &["-newkey", "rsa:2048"]),
    ("rsa1024", &["-newkey", "rsa:1024"]),
    ("ed25519", &["-newkey", "ed25519"]),
];

/// Makes a CSR with openssl and returns its PEM.
pub fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], subj: &str, addext: &[&str]) -> String {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subj,
    ];
    args.extend_from_slice(newkey);
    for ext in addext {
        args.extend_from_slice(&["-addext", ext]);
    }
    openssl(dir, &args);
    std::fs::read_to_string(dir.join(csr)).expect("csr written")
}

/// A UTC instant from calendar fields.
pub fn at(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// The instant openssl verifies at (`-attime`), inside every test validity window.
pub const VERIFY_AT: &str = "1893456000"; // 2030-01-01T00:00:00Z

/// A root (P-384) and an intermediate (P-256) ready to sign.
pub struct Hierarchy {
    pub root: Certificate,
    pub intermediate: IssuingCa,
}

pub fn ca_template(cn: &str, path_len: Option<u8>) -> CaTemplate {
    CaTemplate {
        common_name: cn.to_owned(),
        organization: Some("certmesh tests".to_owned()),
        serial: Serial::random(),
        not_before: at(2024, 1, 1),
        not_after: at(2060, 1, 1),
        path_len,
    }
}

pub fn signer(spec: KeySpec) -> Arc<dyn Signer> {
    Arc::new(SoftwareSigner::generate_ephemeral(spec).expect("key"))
}

pub fn hierarchy() -> Hierarchy {
    let root_key = signer(KeySpec::EcdsaP384);
    let root =
        self_signed_root(Arc::clone(&root_key), &ca_template("Test Root", Some(1))).expect("root");
    let root_ca = IssuingCa::new(root.clone(), root_key).expect("root issuer");
    let inter_key = signer(KeySpec::EcdsaP256);
    let inter = root_ca
        .sign_intermediate(
            inter_key.public_key_spki_der(),
            &ca_template("Test Issuing CA", Some(0)),
        )
        .expect("intermediate");
    let intermediate = IssuingCa::new(inter, inter_key).expect("intermediate issuer");
    Hierarchy { root, intermediate }
}
