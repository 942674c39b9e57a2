//! Cross-certificates: paths through a cross-signed CA verify from the other root with openssl,
//! and the cross-certificate repeats the name, key and constraints of the original exactly.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use certmesh_crypto::CryptoError;
use certmesh_crypto::ca_checks::check_self_signed;
use certmesh_crypto::cert::{Certificate, IssuingCa, self_signed_root};
use certmesh_crypto::keys::KeySpec;
use certmesh_crypto::serial::Serial;

use crate::support::{at, ca_template, leaf_for, openssl, openssl_verify, pkilint, signer};

/// R1 → X (permitted `example.com`), and an unrelated root R2.
struct Roots {
    r1: Certificate,
    x: IssuingCa,
    r2: IssuingCa,
}

fn roots() -> Roots {
    let r1_key = signer(KeySpec::EcdsaP384);
    let r1 = self_signed_root(Arc::clone(&r1_key), &ca_template("Root One", Some(1))).expect("r1");
    let r1_ca = IssuingCa::new(r1.clone(), r1_key).expect("r1 issuer");
    let x_key = signer(KeySpec::EcdsaP256);
    let mut t = ca_template("Issuing X", Some(0));
    t.permitted_dns = vec!["example.com".into()];
    let x = r1_ca
        .sign_intermediate(x_key.public_key_spki_der(), &t)
        .expect("x");
    let r2_key = signer(KeySpec::EcdsaP256);
    let r2 = self_signed_root(Arc::clone(&r2_key), &ca_template("Root Two", None)).expect("r2");
    Roots {
        r1,
        x: IssuingCa::new(x, x_key).expect("x issuer"),
        r2: IssuingCa::new(r2, r2_key).expect("r2 issuer"),
    }
}

fn cross(issuer: &IssuingCa, existing: &Certificate) -> Result<Certificate, CryptoError> {
    issuer.cross_sign(existing, Serial::random(), at(2025, 1, 1), at(2040, 1, 1))
}

fn assert_same_ca(cross: &Certificate, existing: &Certificate, issuer: &Certificate) {
    assert_eq!(cross.subject_der(), existing.subject_der());
    assert_eq!(cross.spki_der(), existing.spki_der());
    assert_eq!(cross.subject_key_id(), existing.subject_key_id());
    assert_eq!(cross.basic_constraints(), existing.basic_constraints());
    assert_eq!(cross.name_constraints(), existing.name_constraints());
    assert_eq!(cross.issuer_der(), issuer.subject_der());
    assert_eq!(cross.authority_key_id(), issuer.subject_key_id());
    assert_eq!(
        (cross.not_before(), cross.not_after()),
        (at(2025, 1, 1), at(2040, 1, 1))
    );
}

#[test]
fn leaf_under_a_cross_signed_intermediate_verifies_from_the_other_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = roots();
    let x = r.x.certificate();
    let leaf = leaf_for(dir.path(), &r.x, "a.example.com");
    openssl_verify(dir.path(), &[&r.r1], &[x], &leaf).expect("original path");

    let x2 = cross(&r.r2, x).expect("cross-signed");
    assert_same_ca(&x2, x, r.r2.certificate());
    pkilint(dir.path(), &x2, "cross-signed intermediate");
    pkilint(dir.path(), r.r2.certificate(), "second root");

    openssl_verify(dir.path(), &[r.r2.certificate()], &[&x2], &leaf)
        .unwrap_or_else(|out| panic!("path through the cross-certificate:\n{out}"));
    // The original X is signed by R1, so R2 alone does not reach it.
    openssl_verify(dir.path(), &[r.r2.certificate()], &[x], &leaf)
        .expect_err("X is not signed by R2");
    // The copied name constraints still bind on the new path.
    let evil = leaf_for(dir.path(), &r.x, "evil.org");
    let out = openssl_verify(dir.path(), &[r.r2.certificate()], &[&x2], &evil)
        .expect_err("outside the copied constraints");
    assert!(out.contains("permitted subtree violation"), "{out}");
}

#[test]
fn a_root_cross_signed_by_another_root_extends_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = roots();
    let leaf = leaf_for(dir.path(), &r.x, "b.example.com");
    let r1x = cross(&r.r2, &r.r1).expect("cross-signed root");
    assert_same_ca(&r1x, &r.r1, r.r2.certificate());
    assert!(
        check_self_signed(&r1x).is_err(),
        "a cross-certificate is not self-signed"
    );
    pkilint(dir.path(), &r1x, "cross-signed root");
    openssl_verify(
        dir.path(),
        &[r.r2.certificate()],
        &[r.x.certificate(), &r1x],
        &leaf,
    )
    .unwrap_or_else(|out| panic!("leaf → X → R1(by R2) → R2:\n{out}"));
}

#[test]
fn only_ca_certificates_are_cross_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = roots();
    let leaf = leaf_for(dir.path(), &r.x, "c.example.com");
    let err = cross(&r.r2, &leaf).expect_err("a leaf");
    assert!(
        matches!(err, CryptoError::MalformedCertificate { .. }),
        "{err}"
    );
}

/// An openssl-made CA: PrintableString and UTF8String attributes, extra constraint forms.
fn foreign_ca(dir: &Path, name: &str, subj: &str, name_constraints: &str) -> Certificate {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let nc = format!("nameConstraints=critical,{name_constraints}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "30",
            "-subj",
            subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:2",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            &nc,
        ],
    );
    Certificate::from_pem(&fs::read_to_string(dir.join(pem)).expect("read")).expect("parses")
}

#[test]
fn a_foreign_ca_keeps_its_exact_name_and_constraints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = roots();
    let foreign = foreign_ca(
        dir.path(),
        "foreign",
        "/C=DE/ST=Berlin/O=Foreign GmbH/OU=PKI/CN=Foreign Root CA",
        "permitted;DNS:foreign.test,permitted;IP:10.0.0.0/255.0.0.0,excluded;DNS:bad.foreign.test,excluded;email:.foreign.test",
    );
    let crossed = cross(&r.r2, &foreign).expect("cross-signed");
    assert_same_ca(&crossed, &foreign, r.r2.certificate());
    assert!(crossed.name_constraints().other_forms);
    pkilint(dir.path(), &crossed, "cross-signed foreign CA");
}

#[test]
fn what_cannot_be_reproduced_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = roots();
    let repeated = foreign_ca(
        dir.path(),
        "repeated",
        "/O=Foreign/OU=One/OU=Two/CN=Repeated",
        "permitted;DNS:foreign.test",
    );
    let err = cross(&r.r2, &repeated).expect_err("repeated OU");
    assert!(matches!(err, CryptoError::Signing { .. }), "{err}");
    let uri = foreign_ca(
        dir.path(),
        "uri",
        "/CN=URI constrained",
        "permitted;URI:.foreign.test",
    );
    let err = cross(&r.r2, &uri).expect_err("URI constraint");
    assert!(err.to_string().contains("URI"), "{err}");
}
