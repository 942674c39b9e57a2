//! Name constraints in CA certificates: what we write, what openssl enforces from it, and what
//! [`Certificate`] reads back (also from openssl-made certificates).

use std::sync::Arc;

use certmesh_crypto::CryptoError;
use certmesh_crypto::ca_checks::{CaCheckError, check_leaf_names};
use certmesh_crypto::cert::{
    BasicConstraintsInfo, Certificate, IssuingCa, NameConstraints, self_signed_root,
};
use certmesh_crypto::keys::KeySpec;
use x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::{ca_template, hierarchy, leaf_for, openssl, openssl_verify, pkilint, signer};

struct Constrained {
    root: Certificate,
    inter: IssuingCa,
}

/// Root (unconstrained) → intermediate permitted `example.com`, excluding `secret.example.com`.
fn constrained_hierarchy() -> Constrained {
    let root_key = signer(KeySpec::EcdsaP384);
    let root =
        self_signed_root(Arc::clone(&root_key), &ca_template("NC Root", Some(1))).expect("root");
    let root_ca = IssuingCa::new(root.clone(), root_key).expect("root issuer");
    let inter_key = signer(KeySpec::EcdsaP256);
    let mut t = ca_template("NC Issuing CA", Some(0));
    t.permitted_dns = vec!["example.com".into()];
    t.excluded_dns = vec!["secret.example.com".into()];
    let inter = root_ca
        .sign_intermediate(inter_key.public_key_spki_der(), &t)
        .expect("intermediate");
    Constrained {
        root,
        inter: IssuingCa::new(inter, inter_key).expect("intermediate issuer"),
    }
}

fn dns_constraints(permitted: &[&str], excluded: &[&str]) -> NameConstraints {
    NameConstraints {
        permitted_dns: permitted.iter().map(|s| (*s).to_owned()).collect(),
        excluded_dns: excluded.iter().map(|s| (*s).to_owned()).collect(),
        other_forms: false,
    }
}

#[test]
fn name_constraints_are_written_critical_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = constrained_hierarchy();
    let inter = h.inter.certificate();
    assert_eq!(
        inter.name_constraints(),
        &dns_constraints(&["example.com"], &["secret.example.com"])
    );
    assert_eq!(
        inter.basic_constraints(),
        Some(BasicConstraintsInfo {
            ca: true,
            path_len: Some(0)
        })
    );
    let (_, x509) = X509Certificate::from_der(inter.der()).expect("parses");
    let ext = x509
        .get_extension_unique(&OID_X509_EXT_NAME_CONSTRAINTS)
        .expect("unique")
        .expect("present");
    assert!(ext.critical, "RFC 5280 §4.2.1.10: MUST be critical");
    pkilint(dir.path(), &h.root, "root of a constrained hierarchy");
    pkilint(dir.path(), inter, "name-constrained intermediate");
}

#[test]
fn openssl_enforces_the_written_constraints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = constrained_hierarchy();
    let inter = h.inter.certificate();
    let chain = [
        h.root.name_constraints().clone(),
        inter.name_constraints().clone(),
    ];
    for ok in ["a.example.com", "example.com", "b.a.example.com"] {
        let leaf = leaf_for(dir.path(), &h.inter, ok);
        openssl_verify(dir.path(), &[&h.root], &[inter], &leaf)
            .unwrap_or_else(|out| panic!("{ok} should verify:\n{out}"));
        assert_eq!(check_leaf_names(&chain, leaf.dns_names()), Ok(()), "{ok}");
        pkilint(dir.path(), &leaf, ok);
    }
    for (bad, why) in [
        ("evil.org", "permitted subtree violation"),
        ("badexample.com", "permitted subtree violation"),
        ("x.secret.example.com", "excluded subtree violation"),
    ] {
        // Signed directly: certmesh's issuance refuses these names before signing.
        let leaf = leaf_for(dir.path(), &h.inter, bad);
        let out = openssl_verify(dir.path(), &[&h.root], &[inter], &leaf)
            .expect_err("openssl must refuse a name outside the constraints");
        assert!(out.contains(why), "{bad}: {out}");
        assert_eq!(
            check_leaf_names(&chain, leaf.dns_names()),
            Err(CaCheckError::LeafNameNotPermitted { name: bad.into() })
        );
    }
}

#[test]
fn template_subtrees_are_normalized_or_refused() {
    let key = signer(KeySpec::EcdsaP256);
    let mut t = ca_template("Normalized", None);
    t.permitted_dns = vec!["Example.COM.".into(), ".Corp.Example".into()];
    let root = self_signed_root(Arc::clone(&key), &t).expect("root");
    assert_eq!(
        root.name_constraints(),
        &dns_constraints(&["example.com", ".corp.example"], &[])
    );
    t.permitted_dns = vec!["*.example.com".into()];
    let err = self_signed_root(key, &t).expect_err("wildcard subtree");
    assert!(
        matches!(
            &err,
            CryptoError::CaCheck(CaCheckError::InvalidDnsSubtree { subtree, .. })
                if subtree == "*.example.com"
        ),
        "{err}"
    );
}

#[test]
fn without_subtrees_there_is_no_extension() {
    let h = hierarchy();
    for cert in [&h.root, h.intermediate.certificate()] {
        let (_, x509) = X509Certificate::from_der(cert.der()).expect("parses");
        assert!(x509.name_constraints().expect("ok").is_none());
        assert_eq!(cert.name_constraints(), &NameConstraints::default());
        assert!(cert.name_constraints().is_empty());
    }
    assert_eq!(
        h.root.basic_constraints(),
        Some(BasicConstraintsInfo {
            ca: true,
            path_len: Some(1)
        })
    );
}

#[test]
fn leaf_accessors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let leaf = leaf_for(dir.path(), &h.intermediate, "a.example.com");
    assert_eq!(leaf.dns_names(), ["a.example.com"]);
    assert!(leaf.ip_addresses().is_empty());
    assert_eq!(
        leaf.issuer_der(),
        h.intermediate.certificate().subject_der()
    );
    assert_ne!(leaf.subject_der(), leaf.issuer_der());
    assert_eq!(h.root.subject_der(), h.root.issuer_der());
    assert_eq!(
        leaf.basic_constraints(),
        Some(BasicConstraintsInfo {
            ca: false,
            path_len: None
        })
    );
    assert!(!leaf.is_ca());
}

#[test]
fn foreign_constraints_with_other_forms_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Foreign CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:300",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "nameConstraints=critical,permitted;DNS:example.com,permitted;IP:10.0.0.0/255.0.0.0,excluded;DNS:.bad.example.com,excluded;email:.example.com",
        ],
    );
    let pem = std::fs::read_to_string(dir.path().join("ca.pem")).expect("read");
    let ca = Certificate::from_pem(&pem).expect("parses");
    let nc = ca.name_constraints();
    assert_eq!(nc.permitted_dns, ["example.com"]);
    assert_eq!(nc.excluded_dns, [".bad.example.com"]);
    assert!(nc.other_forms && !nc.is_empty());
    // pathLenConstraint 300 does not fit a u8; it reads as the (stricter) maximum.
    assert_eq!(
        ca.basic_constraints(),
        Some(BasicConstraintsInfo {
            ca: true,
            path_len: Some(255)
        })
    );
}
