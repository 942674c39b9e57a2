//! Shared helpers: running openssl and pkilint, making CSRs, fixed test times and a CA
//! hierarchy.
//!
//! pkilint is required, as in e2e: `CERTMESH_PKILINT` (the Makefile sets it after `make tools`)
//! or `lint_pkix_cert` on `PATH`; a missing linter fails the test rather than skipping it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::{env, fs};

use certmesh_crypto::cert::{CaTemplate, Certificate, IssuingCa, LeafTemplate, self_signed_root};
use certmesh_crypto::csr::{Csr, ExtendedKeyUsage};
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

/// pkilint's `lint_pkix_cert`.
fn pkilint_bin() -> PathBuf {
    if let Some(path) = env::var_os("CERTMESH_PKILINT") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CERTMESH_PKILINT={} does not exist: run `make tools`",
            path.display()
        );
        return path;
    }
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("lint_pkix_cert"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "pkilint is required: run `make tools` and set \
                 CERTMESH_PKILINT=<venv>/bin/lint_pkix_cert (the Makefile does)"
            )
        })
}

/// Lints `cert` with pkilint's RFC 5280 profile; panics on any WARNING, ERROR or FATAL finding.
pub fn pkilint(dir: &Path, cert: &Certificate, what: &str) {
    let path = dir.join(format!("{}.lint.pem", cert.fingerprint_sha256()));
    fs::write(&path, cert.to_pem()).expect("write");
    let out = Command::new(pkilint_bin())
        .args(["lint", "--severity", "WARNING", "--document-format", "PEM"])
        .arg(&path)
        .output()
        .expect("pkilint runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim().is_empty(),
        "pkilint findings for {what} (status {}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs openssl in `dir`; returns its exit success and stdout followed by stderr (some
/// subcommands report verification on stderr).
pub fn openssl_output(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Lints a DER document with a sibling of `lint_pkix_cert` in pkilint's venv (`lint_crl`,
/// `lint_ocsp_response`), passing `args` before the file; panics on any finding at `severity`
/// or above and returns the findings below it (reported with `--severity INFO`).
pub fn pkilint_document(
    dir: &Path,
    tool: &str,
    args: &[&str],
    der: &[u8],
    severity: &str,
    what: &str,
) -> String {
    let bin = pkilint_bin().with_file_name(tool);
    assert!(bin.is_file(), "{} missing: run `make tools`", bin.display());
    let path = dir.join(format!(
        "{}.lint.der",
        certmesh_crypto::digest::sha256_hex(der)
    ));
    fs::write(&path, der).expect("write");
    let run = |severity: &str| {
        let out = Command::new(&bin)
            .arg("lint")
            .args(args)
            .args(["--severity", severity, "--document-format", "DER"])
            .arg(&path)
            .output()
            .expect("pkilint runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (ok, stdout, stderr) = run(severity);
    assert!(
        ok && stdout.trim().is_empty(),
        "{tool} findings for {what} at {severity} or above:\n{stdout}{stderr}"
    );
    run("INFO").1
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
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
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

/// `openssl verify -x509_strict` of `leaf` at [`VERIFY_AT`], trusting only `anchors` and
/// building through `untrusted`; `Ok(output)` if it verifies, `Err(output)` if not.
pub fn openssl_verify(
    dir: &Path,
    anchors: &[&Certificate],
    untrusted: &[&Certificate],
    leaf: &Certificate,
) -> std::result::Result<String, String> {
    let bundle = |certs: &[&Certificate]| certs.iter().map(|c| c.to_pem()).collect::<String>();
    fs::write(dir.join("anchors.pem"), bundle(anchors)).expect("write");
    fs::write(dir.join("untrusted.pem"), bundle(untrusted)).expect("write");
    fs::write(dir.join("subject.pem"), leaf.to_pem()).expect("write");
    let mut args = vec![
        "verify",
        "-x509_strict",
        "-check_ss_sig",
        "-attime",
        VERIFY_AT,
        "-CAfile",
        "anchors.pem",
    ];
    if !untrusted.is_empty() {
        args.extend(["-untrusted", "untrusted.pem"]);
    }
    args.push("subject.pem");
    let out = Command::new("/usr/bin/openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains("subject.pem: OK") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// A leaf for `dns` (P-256 key made by openssl), signed by `ca` without any policy check.
pub fn leaf_for(dir: &Path, ca: &IssuingCa, dns: &str) -> Certificate {
    let (_, p256) = KEY_TYPES[0];
    let san = format!("subjectAltName=DNS:{dns}");
    let pem = openssl_csr(dir, dns, p256, &format!("/CN={dns}"), &[&san]);
    let t = LeafTemplate {
        serial: Serial::random(),
        not_before: at(2026, 1, 1),
        not_after: at(2031, 1, 1),
        ekus: vec![ExtendedKeyUsage::ServerAuth],
        ocsp_url: None,
        crl_url: None,
    };
    ca.sign_leaf(&Csr::from_pem(&pem).expect("csr"), &t)
        .expect("leaf")
}
