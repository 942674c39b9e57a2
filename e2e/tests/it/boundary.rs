//! The crypto boundary (ARCHITECTURE.md): X.509 builders and parsers, ring and the RustCrypto
//! key and ASN.1 crates are direct dependencies of `certmesh-crypto` only. `deny.toml` states the
//! same for cargo-deny; this test enforces it in every `make test` without installing anything.

use std::process::Command;

use serde_json::Value;

const CRYPTO_ONLY: &[&str] = &[
    "rcgen",
    "x509-parser",
    "x509-cert",
    "x509-ocsp",
    "der",
    "der-parser",
    "asn1-rs",
    "ring",
    "p256",
    "p384",
    "rsa",
    "ed25519-dalek",
    "ecdsa",
    "pkcs8",
    "spki",
    "cryptoki",
    "aws-sdk-kms",
];

#[test]
fn only_certmesh_crypto_depends_on_x509_and_key_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    assert!(packages.len() >= 8, "the workspace members are listed");
    let mut violations = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        if name == "certmesh-crypto" {
            continue;
        }
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if CRYPTO_ONLY.contains(&dep_name) {
                violations.push(format!("{name} depends on {dep_name}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "crypto boundary broken: {violations:?}"
    );
}
