//! Building a CA tree in the test tenant as the CA service would, and checking chains with
//! `openssl verify`.

use std::{path::Path, process::Command};

use certmesh_crypto::{
    cert::{CaTemplate, Certificate, IssuingCa, pem_from_der, self_signed_root},
    keys::KeySpec,
    serial::Serial,
};
use certmesh_issuance::IssuanceError;
use certmesh_proto::issuance as pb;
use certmesh_store::{
    CaId, TenantId,
    cas::{self, CaRecord},
};
use chrono::Duration;
use tonic::Code;

use crate::harness::{Harness, start, web_spec};

/// root → policy (permitted `example.com`) → issuing.
pub struct Tree {
    pub root: CaRecord,
    pub policy: CaRecord,
    pub issuing: CaRecord,
}

pub fn template(cn: &str, path_len: Option<u8>, permitted: &[&str]) -> CaTemplate {
    CaTemplate {
        common_name: cn.to_owned(),
        organization: Some("certmesh tests".to_owned()),
        serial: Serial::random(),
        not_before: start() - Duration::days(1),
        not_after: start() + Duration::days(3650),
        path_len,
        permitted_dns: permitted.iter().map(|s| s.to_string()).collect(),
        excluded_dns: Vec::new(),
    }
}

/// The CA as a signer, from its current row.
async fn signer_of(h: &Harness, ca: &CaRecord) -> IssuingCa {
    let key = h
        .keys
        .signer(&ca.key_ref.parse().expect("key ref"))
        .await
        .expect("signer");
    let cert = Certificate::from_der(ca.certificate_der.clone()).expect("cert");
    IssuingCa::new(cert, key).expect("issuing ca")
}

/// Make a CA of the harness tenant under `parent` (a root when `None`) and record it as the
/// CA service would.
pub async fn make_ca(
    h: &Harness,
    name: &str,
    parent: Option<&CaRecord>,
    t: CaTemplate,
    key_offline: bool,
) -> CaRecord {
    make_ca_for(h, h.auth.tenant_id, name, parent, t, key_offline).await
}

pub async fn make_ca_for(
    h: &Harness,
    tenant: TenantId,
    name: &str,
    parent: Option<&CaRecord>,
    t: CaTemplate,
    key_offline: bool,
) -> CaRecord {
    let key_ref = h.keys.generate(KeySpec::EcdsaP256).await.expect("key");
    let signer = h.keys.signer(&key_ref).await.expect("signer");
    let cert = match parent {
        None => self_signed_root(signer, &t),
        Some(p) => signer_of(h, p)
            .await
            .sign_intermediate(signer.public_key_spki_der(), &t),
    }
    .expect("CA certificate");
    let new = cas::NewCa {
        tenant_id: tenant,
        name: name.to_owned(),
        parent_id: parent.map(|p| p.id),
        kind: match parent {
            None => cas::KIND_ROOT,
            Some(_) => cas::KIND_INTERMEDIATE,
        }
        .to_owned(),
        path_len: t.path_len,
        key_spec: "ecdsa-p256".to_owned(),
        permitted_dns: t.permitted_dns.clone(),
        excluded_dns: Vec::new(),
        key_offline,
        key_ref: key_ref.to_string(),
        certificate_der: cert.der().to_vec(),
        subject: cert.subject().to_owned(),
        not_before: cert.not_before(),
        not_after: cert.not_after(),
    };
    h.store
        .in_tenant(tenant, async |tx| cas::insert(tx, new, start()).await)
        .await
        .expect("insert CA")
}

/// Rotate `ca` to a new key certified by `parent`'s current key, as the CA service would.
pub async fn rotate(h: &Harness, ca: &CaRecord, parent: &CaRecord, t: CaTemplate) -> CaRecord {
    let key_ref = h.keys.generate(KeySpec::EcdsaP256).await.expect("key");
    let signer = h.keys.signer(&key_ref).await.expect("signer");
    let cert = signer_of(h, parent)
        .await
        .sign_intermediate(signer.public_key_spki_der(), &t)
        .expect("rotated certificate");
    let next = cas::Rotation {
        from_generation: ca.generation,
        key_ref: key_ref.to_string(),
        certificate_der: cert.der().to_vec(),
        subject: cert.subject().to_owned(),
        key_spec: "ecdsa-p256".to_owned(),
        not_before: cert.not_before(),
        not_after: cert.not_after(),
    };
    h.store
        .in_tenant(h.auth.tenant_id, async |tx| {
            cas::rotate(tx, h.auth.tenant_id, ca.id, next, start()).await
        })
        .await
        .expect("rotate")
}

pub async fn tree(h: &Harness) -> Tree {
    let root = make_ca(h, "root", None, template("Tree Root", Some(2), &[]), false).await;
    let policy = make_ca(
        h,
        "policy",
        Some(&root),
        template("Tree Policy CA", Some(1), &["example.com"]),
        false,
    )
    .await;
    let issuing = make_ca(
        h,
        "issuing",
        Some(&policy),
        template("Tree Issuing CA", Some(0), &[]),
        false,
    )
    .await;
    Tree {
        root,
        policy,
        issuing,
    }
}

/// A profile signed by `ca`, allowing names the CA's constraints refuse, so the constraints
/// (not the profile) are what refuses them.
pub fn tree_spec(ca: CaId) -> pb::ProfileSpec {
    pb::ProfileSpec {
        permitted_dns_suffixes: vec!["example.com".into(), "evil.org".into()],
        issuer_ca_id: ca.to_string(),
        ..web_spec()
    }
}

pub fn certs(pem: &str) -> Vec<Certificate> {
    pem.split("-----BEGIN CERTIFICATE-----")
        .filter(|part| !part.trim().is_empty())
        .map(|part| Certificate::from_pem(&format!("-----BEGIN CERTIFICATE-----{part}")))
        .collect::<Result<_, _>>()
        .expect("chain PEM")
}

/// `openssl verify -x509_strict` of the leaf over its chain to `root`, at the test clock's
/// time; panics with openssl's output if it fails.
pub fn verify(dir: &Path, root: &CaRecord, chain_pem: &str, leaf_der: &[u8]) {
    std::fs::write(dir.join("root.pem"), pem_from_der(&root.certificate_der)).expect("root");
    std::fs::write(dir.join("chain.pem"), chain_pem).expect("chain");
    std::fs::write(dir.join("leaf.pem"), pem_from_der(leaf_der)).expect("leaf");
    let at = (start() + Duration::hours(1)).timestamp().to_string();
    let mut args = vec![
        "verify",
        "-x509_strict",
        "-attime",
        &at,
        "-CAfile",
        "root.pem",
    ];
    if !chain_pem.is_empty() {
        args.extend(["-untrusted", "chain.pem"]);
    }
    args.push("leaf.pem");
    let out = Command::new("/usr/bin/openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn reason(err: &IssuanceError) -> (Code, &'static str) {
    let (code, reason) = err.code_and_reason();
    (code, reason.as_str())
}
