//! Building the tree through 3-of-5 ceremonies, and the RFC 5280 checks that refuse a CA its
//! parent cannot vouch for.

use std::sync::Arc;

use certmesh_ca::tree::EXTERNAL_KEY_SPEC;
use certmesh_crypto::{
    cert::{CaTemplate, Certificate, self_signed_root},
    digest::sha256_hex,
    keys::{KeyRef, KeySpec},
    serial::Serial,
};
use certmesh_proto::ca as pb;
use chrono::Duration;
use tonic::Code;

use crate::{
    harness::{Harness, cert, child_params, each_backend, refusal, root_params, start},
    tools::{openssl_verify, pkilint},
};

#[tokio::test]
async fn a_four_level_tree_is_built_through_three_of_five_ceremonies() {
    for h in each_backend().await {
        let t = h.tree().await;
        let now = h.now();

        assert_eq!(t.root.kind, "root");
        assert_eq!(t.root.parent_id, None);
        assert_eq!(t.root.path_len, Some(3));
        assert_eq!(t.root.not_after, now + Duration::days(3650));
        assert_eq!(t.policy.kind, "intermediate");
        assert_eq!(t.policy.parent_id, Some(t.root.id));
        assert_eq!(
            t.policy.path_len,
            Some(2),
            "defaults to the parent's minus one"
        );
        assert_eq!(t.policy.permitted_dns, ["example.com"]);
        assert_eq!(t.a.parent_id, Some(t.policy.id));
        assert_eq!(t.a.path_len, Some(1), "defaults to the parent's minus one");
        assert_eq!(t.b.parent_id, Some(t.a.id));
        assert_eq!(t.b.path_len, Some(0));
        assert_eq!(t.b.permitted_dns, ["web.example.com"]);
        for ca in [&t.root, &t.policy, &t.a, &t.b] {
            assert_eq!(
                (ca.status.as_str(), ca.generation),
                ("active", 1),
                "{}",
                ca.name
            );
            assert!(!ca.key_offline);
            let c = cert(ca);
            assert_eq!(
                c.basic_constraints().map(|bc| (bc.ca, bc.path_len)),
                Some((true, ca.path_len))
            );
            assert_eq!(c.name_constraints().permitted_dns, ca.permitted_dns);
            pkilint(&c, &ca.name);
        }
        assert_eq!(
            cert(&t.a).subject_common_name().as_deref(),
            Some("Corp Issuing CA A")
        );
        assert_eq!(h.cas().await.len(), 4);
        assert_eq!(h.key_count(), 4, "{}: one sealed key per CA", h.backend);

        let chain = h.chain(&t.b).await;
        let ders: Vec<&[u8]> = chain.iter().map(Certificate::der).collect();
        let want: Vec<&[u8]> = [&t.b, &t.a, &t.policy, &t.root]
            .iter()
            .map(|ca| ca.certificate_der.as_slice())
            .collect();
        assert_eq!(ders, want, "{}: chain(B) is B, A, policy, root", h.backend);
        openssl_verify(now, &[&chain[3]], &[&chain[1], &chain[2]], &chain[0]);
    }
}

#[tokio::test]
async fn path_length_constraints_refuse_deeper_cas_and_create_nothing() {
    for h in each_backend().await {
        let t = h.tree().await;
        for params in [
            child_params("under-b", &t.b, "Under B", None, &["web.example.com"]),
            child_params("too-long", &t.root, "Too Long", Some(3), &[]),
        ] {
            let id = h.approved("create_intermediate", &params).await;
            let before = h.snapshot().await;
            assert_eq!(
                refusal(
                    h.ca.create_intermediate(&h.op(), &params.parent_ca_id, &id, &params)
                        .await
                ),
                (Code::FailedPrecondition, "PATH_LEN_EXCEEDED".into()),
                "{}: {}",
                h.backend,
                params.name
            );
            assert_eq!(h.snapshot().await, before, "{}: {}", h.backend, params.name);
            assert_eq!(h.ceremony(&id).await.record.status.as_str(), "open");
        }
    }
}

#[tokio::test]
async fn name_constraints_refuse_children_wider_than_their_parent() {
    for h in each_backend().await {
        let t = h.tree().await;
        for (name, permitted) in [("other-org", &["example.org"][..]), ("everything", &[][..])] {
            let params = child_params(name, &t.policy, "Too Wide", None, permitted);
            let id = h.approved("create_intermediate", &params).await;
            let before = h.snapshot().await;
            assert_eq!(
                refusal(
                    h.ca.create_intermediate(&h.op(), &params.parent_ca_id, &id, &params)
                        .await
                ),
                (Code::FailedPrecondition, "NAME_CONSTRAINT_EXCEEDED".into()),
                "{}: {name}",
                h.backend
            );
            assert_eq!(h.snapshot().await, before, "{}: {name}", h.backend);
        }
    }
}

#[tokio::test]
async fn validity_past_the_parents_not_after_is_capped() {
    for h in each_backend().await {
        let root = h
            .root(&root_params("short-root", "Short Root", None))
            .await
            .ca;
        let mut params = child_params("long-child", &root, "Long Child", None, &[]);
        params.validity_days = 5000;
        let op = h.intermediate(&params).await;
        assert!(op.validity_capped, "{}", h.backend);
        assert_eq!(op.ca.not_after, root.not_after, "{}", h.backend);
        assert_eq!(cert(&op.ca).not_after(), cert(&root).not_after());
        openssl_verify(h.now(), &[&cert(&root)], &[], &cert(&op.ca));

        let mut params = child_params("short-child", &root, "Short Child", None, &[]);
        params.validity_days = 30;
        let op = h.intermediate(&params).await;
        assert!(!op.validity_capped);
        assert_eq!(op.ca.not_after, start() + Duration::days(30));
    }
}

/// The import parameters and the ceremony approving them; its id.
async fn import_ceremony(
    h: &Harness,
    name: &str,
    pem: &str,
    key_ref: &str,
) -> (String, pb::CaParams) {
    let c = Certificate::from_pem(pem).expect("certificate");
    let params = pb::CaParams {
        name: name.into(),
        certificate_sha256: sha256_hex(c.der()),
        key_ref: key_ref.into(),
        ..Default::default()
    };
    (h.approved("import_root", &params).await, params)
}

fn imported(pem: &str) -> pb::ImportedRoot {
    pb::ImportedRoot {
        certificate_pem: pem.into(),
    }
}

/// A self-signed root made outside certmesh's tree on a key of the backend; its key reference
/// and PEM.
async fn external_root(h: &Harness, cn: &str) -> (KeyRef, String) {
    let key_ref = h.keys.generate(KeySpec::EcdsaP256).await.expect("key");
    let signer = h.keys.signer(&key_ref).await.expect("signer");
    let template = CaTemplate {
        common_name: cn.into(),
        organization: Some("Elsewhere".into()),
        serial: Serial::random(),
        not_before: start() - Duration::days(1),
        not_after: start() + Duration::days(3650),
        path_len: Some(1),
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
    };
    let root = self_signed_root(Arc::clone(&signer), &template).expect("root");
    (key_ref, root.to_pem())
}

#[tokio::test]
async fn imported_roots_must_be_self_signed_and_match_a_reachable_key() {
    for h in each_backend().await {
        let t = h.tree().await;

        // An intermediate's certificate is no root.
        let pem = cert(&t.a).to_pem();
        let (id, params) = import_ceremony(&h, "fake-root", &pem, &t.a.key_ref).await;
        let before = h.snapshot().await;
        assert_eq!(
            refusal(
                h.ca.create_root(&h.op(), &id, &params, Some(&imported(&pem)))
                    .await
            ),
            (Code::InvalidArgument, "CA_NOT_SELF_SIGNED".into()),
            "{}",
            h.backend
        );
        assert_eq!(h.snapshot().await, before);

        // A root whose key reference names another key of the backend.
        let (key_ref, pem) = external_root(&h, "Elsewhere Root").await;
        let (other_ref, other_pem) = external_root(&h, "Other Root").await;

        // A certificate other than the one approved.
        let (id, params) = import_ceremony(&h, "swapped", &pem, key_ref.as_str()).await;
        let before = h.snapshot().await;
        assert_eq!(
            refusal(
                h.ca.create_root(&h.op(), &id, &params, Some(&imported(&other_pem)))
                    .await
            ),
            (Code::FailedPrecondition, "CEREMONY_PARAMS_MISMATCH".into()),
            "{}",
            h.backend
        );
        assert_eq!(h.snapshot().await, before);

        let (id, params) = import_ceremony(&h, "wrong-key", &pem, other_ref.as_str()).await;
        let before = h.snapshot().await;
        assert_eq!(
            refusal(
                h.ca.create_root(&h.op(), &id, &params, Some(&imported(&pem)))
                    .await
            ),
            (Code::InvalidArgument, "CA_KEY_MISMATCH".into()),
            "{}",
            h.backend
        );
        assert_eq!(h.snapshot().await, before);

        // The key out of reach: imported offline, and it cannot sign children.
        let (_, offline_pem) = external_root(&h, "Offline Root").await;
        let (id, params) =
            import_ceremony(&h, "offline-root", &offline_pem, "sealed:does-not-exist").await;
        let offline =
            h.ca.create_root(&h.op(), &id, &params, Some(&imported(&offline_pem)))
                .await
                .expect("imported offline")
                .ca;
        h.assert_completed(&id, &offline).await;
        assert!(offline.key_offline, "{}", h.backend);
        assert_eq!(offline.key_spec, EXTERNAL_KEY_SPEC);
        assert_eq!(offline.kind, "root");
        assert_eq!(offline.path_len, Some(1), "taken from the certificate");
        assert_eq!(
            offline.certificate_der,
            Certificate::from_pem(&offline_pem).expect("pem").der()
        );
        let params = child_params("under-offline", &offline, "Under Offline", None, &[]);
        let id = h.approved("create_intermediate", &params).await;
        let before = h.snapshot().await;
        assert_eq!(
            refusal(
                h.ca.create_intermediate(&h.op(), &params.parent_ca_id, &id, &params)
                    .await
            ),
            (Code::FailedPrecondition, "CA_NOT_ACTIVE".into()),
            "{}",
            h.backend
        );
        assert_eq!(h.snapshot().await, before);

        // The right key: online, and it signs children.
        let (id, params) = import_ceremony(&h, "online-root", &pem, key_ref.as_str()).await;
        let online =
            h.ca.create_root(&h.op(), &id, &params, Some(&imported(&pem)))
                .await
                .expect("imported")
                .ca;
        assert!(!online.key_offline, "{}", h.backend);
        assert_eq!(online.key_spec, "ecdsa-p256");
        let child = h
            .intermediate(&child_params(
                "under-online",
                &online,
                "Under Online",
                None,
                &[],
            ))
            .await
            .ca;
        assert_eq!(child.path_len, Some(0));
        openssl_verify(h.now(), &[&cert(&online)], &[], &cert(&child));
    }
}
