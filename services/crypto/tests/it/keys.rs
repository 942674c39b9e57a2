//! Key backends: the conformance suite every [`KeyBackend`] must pass, and sealed-file specifics.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use certmesh_crypto::CryptoError;
use certmesh_crypto::cert::{IssuingCa, self_signed_root};
use certmesh_crypto::keys::{Kek, KeyBackend, KeyRef, KeySpec, SealedFileBackend, Signer};
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::support::ca_template;

/// Verifies `sig` over `msg` with the signer's own SubjectPublicKeyInfo.
fn assert_signature_verifies(signer: &dyn Signer, msg: &[u8], sig: &[u8]) {
    let (_, spki) =
        SubjectPublicKeyInfo::from_der(signer.public_key_spki_der()).expect("SPKI parses");
    let alg = match signer.spec() {
        KeySpec::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        KeySpec::EcdsaP384 => &ECDSA_P384_SHA384_ASN1,
    };
    UnparsedPublicKey::new(alg, &spki.subject_public_key.data)
        .verify(msg, sig)
        .expect("signature verifies with the SPKI");
}

/// The behaviour every key backend (sealed file, PKCS#11, KMS) must have.
pub async fn conformance(backend: &dyn KeyBackend) {
    for spec in [KeySpec::EcdsaP256, KeySpec::EcdsaP384] {
        let key = backend.generate(spec).await.expect("generate");
        assert_eq!(key.backend(), backend.name(), "refs carry the backend name");
        let signer = backend.signer(&key).await.expect("signer");
        assert_eq!(signer.spec(), spec);
        let sig = signer.sign(b"conformance message").expect("sign");
        assert_signature_verifies(signer.as_ref(), b"conformance message", &sig);

        let again = backend.signer(&key).await.expect("signer again");
        assert_eq!(again.public_key_spki_der(), signer.public_key_spki_der());

        let root = self_signed_root(Arc::clone(&signer), &ca_template("Conformance", None))
            .expect("a backend key can sign a certificate");
        IssuingCa::new(root, Arc::clone(&signer)).expect("the certificate matches the key");

        backend.destroy(&key).await.expect("destroy");
        assert!(matches!(
            backend.signer(&key).await,
            Err(CryptoError::KeyNotFound { .. })
        ));
        assert!(matches!(
            backend.destroy(&key).await,
            Err(CryptoError::KeyNotFound { .. })
        ));
    }
    let missing = KeyRef::new(backend.name(), "does-not-exist").expect("valid ref");
    assert!(matches!(
        backend.signer(&missing).await,
        Err(CryptoError::KeyNotFound { .. })
    ));
    let a = backend
        .generate(KeySpec::EcdsaP256)
        .await
        .expect("generate");
    let b = backend
        .generate(KeySpec::EcdsaP256)
        .await
        .expect("generate");
    assert_ne!(a, b, "generated refs are unique");
    let (sa, sb) = (backend.signer(&a).await, backend.signer(&b).await);
    assert_ne!(
        sa.expect("a").public_key_spki_der(),
        sb.expect("b").public_key_spki_der()
    );
}

fn kek(byte: u8) -> Kek {
    use base64::Engine;
    Kek::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32])).expect("kek")
}

fn sealed(dir: &Path, byte: u8) -> SealedFileBackend {
    SealedFileBackend::new(dir.to_path_buf(), kek(byte)).expect("backend")
}

fn sealed_file(dir: &Path, key: &KeyRef) -> std::path::PathBuf {
    dir.join(format!("{}.sealed", key.id()))
}

#[tokio::test]
async fn sealed_backend_passes_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = sealed(&dir.path().join("keys"), 1);
    assert_eq!(backend.name(), "sealed");
    conformance(&backend).await;
}

#[tokio::test]
async fn sealed_keys_reopen_with_the_same_kek_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = sealed(dir.path(), 1);
    let key = first.generate(KeySpec::EcdsaP384).await.expect("generate");
    let spki = first
        .signer(&key)
        .await
        .expect("signer")
        .public_key_spki_der()
        .to_vec();

    let reopened = sealed(dir.path(), 1).signer(&key).await.expect("reopen");
    assert_eq!(reopened.public_key_spki_der(), spki);
    assert_eq!(reopened.spec(), KeySpec::EcdsaP384);
    let sig = reopened.sign(b"m").expect("sign");
    assert_signature_verifies(reopened.as_ref(), b"m", &sig);

    assert!(matches!(
        sealed(dir.path(), 2).signer(&key).await,
        Err(CryptoError::Unseal)
    ));
}

#[tokio::test]
async fn tampered_or_renamed_files_do_not_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = sealed(dir.path(), 1);
    let key = backend
        .generate(KeySpec::EcdsaP256)
        .await
        .expect("generate");
    let path = sealed_file(dir.path(), &key);

    let original = fs::read(&path).expect("read");
    let mut tampered = original.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x80;
    fs::write(&path, &tampered).expect("write");
    assert!(matches!(
        sealed(dir.path(), 1).signer(&key).await,
        Err(CryptoError::Unseal)
    ));

    fs::write(&path, &original[..original.len() - 1]).expect("truncate");
    assert!(matches!(
        sealed(dir.path(), 1).signer(&key).await,
        Err(CryptoError::Unseal)
    ));

    fs::write(&path, &original).expect("restore");
    let other = KeyRef::new("sealed", "someoneelse").expect("ref");
    fs::rename(&path, sealed_file(dir.path(), &other)).expect("rename");
    assert!(matches!(
        sealed(dir.path(), 1).signer(&other).await,
        Err(CryptoError::Unseal)
    ));
}

#[tokio::test]
async fn sealed_files_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("a/b/keys");
    let backend = sealed(&keys, 1);
    let key = backend
        .generate(KeySpec::EcdsaP256)
        .await
        .expect("generate");
    let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&sealed_file(&keys, &key)), 0o600);
    assert_eq!(mode(&keys), 0o700);
    let names: Vec<_> = fs::read_dir(&keys)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary files left: {names:?}");
}

#[tokio::test]
async fn foreign_refs_are_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = sealed(dir.path(), 1);
    let key: KeyRef = "pkcs11:abc".parse().expect("ref");
    assert!(matches!(
        backend.signer(&key).await,
        Err(CryptoError::KeyNotFound { .. })
    ));
    assert!("sealed:../x".parse::<KeyRef>().is_err());
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let planted = [0x5au8; 32];
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(planted);
    let kek = Kek::from_base64(&b64).expect("kek");
    let text = format!("{kek:?}");
    assert_eq!(text, "Kek(REDACTED)");
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = SealedFileBackend::new(dir.path().to_path_buf(), kek).expect("backend");
    let text = format!("{backend:?}");
    assert!(!text.contains(&b64) && !text.contains("5a5a") && !text.contains("90, 90"));
}
