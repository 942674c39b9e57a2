//! A CA's life after creation: rotation, cross-signing and drain-first retirement.

use certmesh_proto::ca as pb;
use certmesh_store::{CaId, ca_certificates};
use tonic::Code;

use crate::{
    harness::{Harness, cert, child_params, each_backend, refusal, root_params, start_request},
    tools::{openssl_verify, pkilint, try_openssl_verify},
};

async fn certificates(h: &Harness, ca: CaId) -> Vec<ca_certificates::CaCertificate> {
    let tenant = h.tenant;
    h.store
        .in_tenant(tenant, async |tx| {
            ca_certificates::list(tx, tenant, ca).await
        })
        .await
        .expect("CA certificates")
}

#[tokio::test]
async fn rotation_makes_a_new_generation_and_old_chains_keep_verifying() {
    for h in each_backend().await {
        let t = h.tree().await;
        let params = pb::CaParams {
            ca_id: t.a.id.to_string(),
            key_spec: "ecdsa-p384".into(),
            validity_days: 1000,
            ..Default::default()
        };
        let id = h.approved("rotate", &params).await;
        let op =
            h.ca.rotate(&h.op(), &t.a.id.to_string(), &id, &params)
                .await
                .expect("rotated");
        h.assert_completed(&id, &op.ca).await;
        let a2 = op.ca;
        assert!(!op.validity_capped);
        assert_eq!(a2.id, t.a.id);
        assert_eq!(a2.generation, 2, "{}", h.backend);
        assert_eq!(a2.key_spec, "ecdsa-p384");
        assert_ne!(a2.key_ref, t.a.key_ref);
        assert_eq!(a2.subject, t.a.subject);
        assert_eq!(
            (a2.path_len, &a2.permitted_dns),
            (t.a.path_len, &t.a.permitted_dns)
        );
        let (old, new) = (cert(&t.a), cert(&a2));
        assert_ne!(new.spki_der(), old.spki_der(), "a new key");
        assert_eq!(new.subject_der(), old.subject_der(), "the same subject");
        assert_eq!(new.basic_constraints(), old.basic_constraints());
        assert_eq!(new.name_constraints(), old.name_constraints());
        assert_eq!(h.get(&t.a).await, a2);
        pkilint(&new, "rotated issuing A");

        let rows = certificates(&h, t.a.id).await;
        let generations: Vec<(u32, bool)> = rows
            .iter()
            .map(|r| (r.generation, r.superseded_at.is_some()))
            .collect();
        assert_eq!(generations, [(1, true), (2, false)], "{}", h.backend);

        // B was signed by A's first key: its chain goes through A's first certificate.
        let chain = h.chain(&t.b).await;
        assert_eq!(chain.len(), 4);
        assert_eq!(
            chain[1].der(),
            t.a.certificate_der.as_slice(),
            "{}",
            h.backend
        );
        openssl_verify(h.now(), &[&chain[3]], &[&chain[1], &chain[2]], &chain[0]);
        // A's new certificate would not do: B's signature is not by the new key.
        assert!(
            try_openssl_verify(h.now(), &[&chain[3]], &[&new, &chain[2]], &chain[0]).is_err(),
            "{}",
            h.backend
        );

        // A's own chain, and a child signed by the new key, go through the new certificate.
        let chain = h.chain(&a2).await;
        assert_eq!(chain[0].der(), a2.certificate_der.as_slice());
        openssl_verify(h.now(), &[&chain[2]], &[&chain[1]], &chain[0]);
        let c = h
            .intermediate(&child_params(
                "issuing-c",
                &a2,
                "Corp Issuing CA C",
                None,
                &["example.com"],
            ))
            .await
            .ca;
        let chain = h.chain(&c).await;
        assert_eq!(
            chain[1].der(),
            a2.certificate_der.as_slice(),
            "{}",
            h.backend
        );
        openssl_verify(h.now(), &[&chain[3]], &[&chain[1], &chain[2]], &chain[0]);

        // The old key's ceremony cannot be replayed for another rotation.
        let before = h.snapshot().await;
        assert_eq!(
            refusal(
                h.ca.rotate(&h.op(), &t.a.id.to_string(), &id, &params)
                    .await
            ),
            (Code::FailedPrecondition, "CEREMONY_ALREADY_USED".into())
        );
        assert_eq!(h.snapshot().await, before);
    }
}

#[tokio::test]
async fn a_second_root_cross_signs_a_ca_so_paths_build_to_either_root() {
    for h in each_backend().await {
        let t = h.tree().await;
        let r2 = h
            .root(&root_params("second-root", "Second Root", None))
            .await
            .ca;
        assert_eq!(r2.path_len, None);
        let params = pb::CaParams {
            ca_id: t.policy.id.to_string(),
            issuer_ca_id: r2.id.to_string(),
            validity_days: 1000,
            ..Default::default()
        };
        let id = h.approved("cross_sign", &params).await;
        let op =
            h.ca.cross_sign(&h.op(), &t.policy.id.to_string(), &id, &params)
                .await
                .expect("cross-signed");
        h.assert_completed(&id, &t.policy).await;
        assert_eq!(op.ca, t.policy, "the CA itself is unchanged");
        let cross = op.cross.expect("a cross-certificate");
        let (policy, r2_cert) = (cert(&t.policy), cert(&r2));
        assert_eq!(cross.subject_der(), policy.subject_der());
        assert_eq!(cross.spki_der(), policy.spki_der());
        assert_eq!(cross.issuer_der(), r2_cert.subject_der());
        assert_eq!(cross.authority_key_id(), r2_cert.subject_key_id());
        assert_eq!(cross.basic_constraints(), policy.basic_constraints());
        assert_eq!(cross.name_constraints(), policy.name_constraints());
        pkilint(&cross, "cross-certificate");
        openssl_verify(h.now(), &[&r2_cert], &[], &cross);
        // B → A → policy (via the cross-certificate) → R2, and still → policy → R1.
        let (a, b) = (cert(&t.a), cert(&t.b));
        openssl_verify(h.now(), &[&r2_cert], &[&a, &cross], &b);
        assert!(
            try_openssl_verify(h.now(), &[&r2_cert], &[&a, &policy], &b).is_err(),
            "without the cross-certificate there is no path to R2"
        );
        openssl_verify(h.now(), &[&cert(&t.root)], &[&a, &policy], &b);

        let rows = certificates(&h, t.policy.id).await;
        let crosses: Vec<_> = rows.iter().filter(|r| r.relation == "cross").collect();
        assert_eq!(crosses.len(), 1, "{}", h.backend);
        assert_eq!(crosses[0].issuer_ca_id, Some(r2.id));
        assert_eq!(crosses[0].certificate_der, cross.der());

        // Refusals: a CA cross-signing itself, and a root cross-signed by a CA below it.
        for (what, subject, issuer) in [("itself", &t.policy, &t.policy), ("a loop", &t.root, &t.a)]
        {
            let params = pb::CaParams {
                ca_id: subject.id.to_string(),
                issuer_ca_id: issuer.id.to_string(),
                validity_days: 1000,
                ..Default::default()
            };
            let id = h.approved("cross_sign", &params).await;
            let before = h.snapshot().await;
            assert_eq!(
                refusal(
                    h.ca.cross_sign(&h.op(), &subject.id.to_string(), &id, &params)
                        .await
                ),
                (Code::InvalidArgument, "REQUEST_INVALID".into()),
                "{}: {what}",
                h.backend
            );
            assert_eq!(h.snapshot().await, before, "{}: {what}", h.backend);
            assert_eq!(h.ceremony(&id).await.record.status.as_str(), "open");
        }
        assert!(
            certificates(&h, t.root.id)
                .await
                .iter()
                .all(|r| r.relation == "primary")
        );
    }
}

#[tokio::test]
async fn retirement_drains_first_and_waits_for_the_children() {
    for h in each_backend().await {
        let t = h.tree().await;
        let retire = async |ca: &certmesh_store::cas::CaRecord, confirm: bool| {
            h.ca.retire(&h.op(), &ca.id.to_string(), confirm).await
        };

        // Approved while the policy CA was active, run after it started draining.
        let params = child_params(
            "late-child",
            &t.policy,
            "Late Child",
            None,
            &["example.com"],
        );
        let id = h.approved("create_intermediate", &params).await;

        let policy = retire(&t.policy, false).await.expect("drains");
        assert_eq!(policy.status, "retiring", "{}", h.backend);
        assert_eq!(h.get(&t.policy).await.status, "retiring");

        let before = h.snapshot().await;
        let request = start_request("create_intermediate", 3, h.custodian_names(), &params);
        assert_eq!(
            refusal(h.ca.start_ceremony(&h.op(), &request).await),
            (Code::FailedPrecondition, "CA_NOT_ACTIVE".into()),
            "{}: no ceremony is opened under a retiring CA",
            h.backend
        );
        assert_eq!(
            refusal(
                h.ca.create_intermediate(&h.op(), &params.parent_ca_id, &id, &params)
                    .await
            ),
            (Code::FailedPrecondition, "CA_NOT_ACTIVE".into()),
            "{}: a retiring CA signs no children",
            h.backend
        );
        assert_eq!(
            refusal(retire(&t.policy, true).await),
            (Code::Aborted, "CA_HAS_ACTIVE_CHILDREN".into()),
            "{}: A is active",
            h.backend
        );
        assert_eq!(
            refusal(retire(&t.root, true).await),
            (Code::FailedPrecondition, "CA_NOT_RETIRING".into()),
            "{}: the root did not drain first",
            h.backend
        );
        assert_eq!(h.snapshot().await, before, "{}", h.backend);

        for ca in [&t.b, &t.a] {
            assert_eq!(retire(ca, false).await.expect("drains").status, "retiring");
            let events = h.event_count().await;
            assert_eq!(retire(ca, false).await.expect("again").status, "retiring");
            assert_eq!(h.event_count().await, events, "draining twice is a no-op");
            assert_eq!(retire(ca, true).await.expect("retires").status, "retired");
        }
        let policy = retire(&t.policy, true).await.expect("retires");
        assert_eq!(policy.status, "retired", "{}", h.backend);

        let before = h.snapshot().await;
        assert_eq!(
            retire(&t.policy, true).await.expect("no-op").status,
            "retired"
        );
        assert_eq!(
            h.snapshot().await,
            before,
            "{}: repeating changes nothing",
            h.backend
        );
        assert_eq!(
            retire(&t.policy, false).await.expect("no-op").status,
            "retired",
            "{}: draining a retired CA changes nothing",
            h.backend
        );
        assert_eq!(h.snapshot().await, before, "{}", h.backend);
        assert_eq!(h.get(&t.root).await.status, "active");
        assert_eq!(h.events("ca.retiring").await.len(), 3);
        assert_eq!(h.events("ca.retired").await.len(), 3);
        // Retired CAs keep their chains, for what they signed before.
        assert_eq!(h.chain(&t.b).await.len(), 4);
    }
}
