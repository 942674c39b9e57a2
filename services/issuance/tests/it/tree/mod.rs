//! Issuance through a CA of the operator's tree: a profile naming `issuer_ca_id` signs with
//! that CA, sends its chain up to the root, and is refused when the CA cannot sign or a name
//! is outside the name constraints of the CAs above the leaf.
//!
//! The tree is root → "policy" intermediate (permitted `example.com`) → issuing intermediate
//! (no constraints of its own), so a refusal proves the constraints of the CAs above the
//! issuing CA are applied. Chains are checked with `openssl verify -x509_strict`.

mod support;

use std::sync::Arc;

use certmesh_crypto::cert::Certificate;
use certmesh_issuance::{BuiltinCa, Deps, Issuance, IssuanceError};
use certmesh_kit::metrics::Metrics;
use certmesh_store::{
    CaId,
    audit::{self, AuditFilter, Outcome},
    cas,
};
use tonic::Code;

use self::support::{
    certs, make_ca, make_ca_for, reason, rotate, template, tree, tree_spec, verify,
};
use crate::harness::{csr, each_backend, start, web_spec};

#[tokio::test]
async fn a_tree_profile_issues_from_its_ca_with_the_chain_up_to_the_root() {
    for h in each_backend().await {
        let b = h.store.backend();
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tree(&h).await;
        h.profile("tree", tree_spec(t.issuing.id)).await;
        let record = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "tree"))
            .await
            .expect("issued")
            .record;
        assert_eq!(record.issuer_ca_id, t.issuing.id, "{b:?}");
        let leaf = Certificate::from_der(record.certificate_der.clone()).expect("leaf");
        let issuing = Certificate::from_der(t.issuing.certificate_der.clone()).expect("issuing");
        assert_eq!(leaf.issuer(), issuing.subject(), "{b:?}");
        assert_eq!(leaf.authority_key_id(), issuing.subject_key_id(), "{b:?}");
        let chain: Vec<Vec<u8>> = certs(&record.chain_pem)
            .iter()
            .map(|c| c.der().to_vec())
            .collect();
        assert_eq!(
            chain,
            vec![
                t.issuing.certificate_der.clone(),
                t.policy.certificate_der.clone()
            ],
            "{b:?}: the issuing CA, then the CAs above it, not the root"
        );
        verify(
            dir.path(),
            &t.root,
            &record.chain_pem,
            &record.certificate_der,
        );
        // The built-in CA still signs a profile that names no CA.
        h.profile("web", web_spec()).await;
        let builtin = h
            .issuance
            .issue(&h.auth, h.command(csr(&["b.example.com"]), "web"))
            .await
            .expect("built-in")
            .record;
        assert_ne!(builtin.issuer_ca_id, t.issuing.id, "{b:?}");
    }
}

#[tokio::test]
async fn a_root_that_issues_sends_no_chain() {
    for h in each_backend().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = make_ca(
            &h,
            "root",
            None,
            template("Issuing Root", None, &["example.com"]),
            false,
        )
        .await;
        h.profile("rooted", tree_spec(root.id)).await;
        let record = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "rooted"))
            .await
            .expect("issued")
            .record;
        assert_eq!(record.issuer_ca_id, root.id);
        assert_eq!(record.chain_pem, "");
        verify(dir.path(), &root, "", &record.certificate_der);
        // The root's own constraints apply to what it signs.
        let err = h
            .issuance
            .issue(&h.auth, h.command(csr(&["evil.org"]), "rooted"))
            .await
            .expect_err("outside the root's constraints");
        assert!(
            matches!(&err, IssuanceError::NameConstraintExceeded { name, .. } if name == "evil.org"),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_name_outside_the_chain_constraints_is_refused_recorded_and_not_signed() {
    for h in each_backend().await {
        let b = h.store.backend();
        let t = tree(&h).await;
        h.profile("tree", tree_spec(t.issuing.id)).await;
        h.issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "tree"))
            .await
            .expect("inside the constraints");
        let before = h.certificate_count().await;
        let err = h
            .issuance
            .issue(
                &h.auth,
                h.command(csr(&["ok.example.com", "evil.org"]), "tree"),
            )
            .await
            .expect_err("outside the policy CA's constraints");
        match &err {
            IssuanceError::NameConstraintExceeded { ca_id, name } => {
                assert_eq!((*ca_id, name.as_str()), (t.issuing.id, "evil.org"), "{b:?}");
            }
            other => panic!("{b:?}: expected NAME_CONSTRAINT_EXCEEDED, got {other:?}"),
        }
        assert_eq!(
            reason(&err),
            (Code::FailedPrecondition, "NAME_CONSTRAINT_EXCEEDED")
        );
        assert!(err.to_string().contains("evil.org"), "{err}");
        // Nothing signed or stored; the refusal is kept like a profile denial.
        assert_eq!(h.certificate_count().await, before, "{b:?}");
        assert_eq!(h.events("ca.issue").await.len(), 1, "{b:?}");
        let evaluated = h.events("issuance.profile_evaluated").await;
        let last = evaluated.last().expect("evaluation event");
        assert_eq!(last["decision"], "deny", "{b:?}");
        assert_eq!(last["rule"], "issuer_ca_id", "{b:?}");
        let rows = h
            .store
            .in_tenant(h.auth.tenant_id, async |tx| {
                audit::query(tx, h.auth.tenant_id, &AuditFilter::default(), 0, 100).await
            })
            .await
            .expect("audit");
        let denied: Vec<_> = rows
            .iter()
            .filter(|r| r.action == "certs.issue" && r.outcome == Outcome::Denied)
            .collect();
        assert_eq!(denied.len(), 1, "{b:?}");
        assert_eq!(denied[0].resource, "profile:tree", "{b:?}");
        // Counted under the tree CA's name, for the allowed and the refused request alike.
        for outcome in ["issued", "denied"] {
            let labels = [("profile", "tree"), ("ca", "issuing"), ("outcome", outcome)];
            assert_eq!(
                h.issuance_total(&labels),
                1.0,
                "{b:?} {outcome}: {}",
                h.metrics.render()
            );
        }
    }
}

#[tokio::test]
async fn a_retiring_or_offline_ca_issues_nothing() {
    for h in each_backend().await {
        let b = h.store.backend();
        let t = tree(&h).await;
        h.profile("tree", tree_spec(t.issuing.id)).await;
        h.store
            .in_tenant(h.auth.tenant_id, async |tx| {
                cas::set_status(
                    tx,
                    h.auth.tenant_id,
                    t.issuing.id,
                    cas::STATUS_ACTIVE,
                    cas::STATUS_RETIRING,
                )
                .await
            })
            .await
            .expect("retiring");
        let err = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "tree"))
            .await
            .expect_err("retiring");
        assert_eq!(
            reason(&err),
            (Code::FailedPrecondition, "CA_NOT_ACTIVE"),
            "{b:?}"
        );
        assert!(err.to_string().contains("retiring"), "{b:?}: {err}");

        let offline = make_ca(
            &h,
            "imported",
            None,
            template("Imported Root", None, &[]),
            true,
        )
        .await;
        h.profile("offline", tree_spec(offline.id)).await;
        let err = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "offline"))
            .await
            .expect_err("offline key");
        assert_eq!(
            reason(&err),
            (Code::FailedPrecondition, "CA_NOT_ACTIVE"),
            "{b:?}"
        );
        assert!(err.to_string().contains("offline"), "{b:?}: {err}");
        assert_eq!(h.certificate_count().await, 0, "{b:?}");
    }
}

#[tokio::test]
async fn a_profile_naming_a_ca_the_tenant_lacks_is_refused_at_creation() {
    for h in each_backend().await {
        let b = h.store.backend();
        let unknown = CaId(uuid::Uuid::new_v4());
        let err = h
            .issuance
            .create_profile(&h.auth, "tree", Some(tree_spec(unknown)))
            .await
            .expect_err("unknown CA");
        assert!(
            matches!(err, IssuanceError::CaNotFound { id } if id == unknown),
            "{b:?}: {err:?}"
        );
        assert_eq!(reason(&err), (Code::NotFound, "CA_NOT_FOUND"), "{b:?}");

        // Another tenant's CA is not this tenant's.
        let globex = certmesh_store::tenants::ensure(h.store.conn(), "globex", start())
            .await
            .expect("tenant");
        let theirs = make_ca_for(
            &h,
            globex,
            "root",
            None,
            template("Globex Root", None, &[]),
            false,
        )
        .await;
        let err = h
            .issuance
            .create_profile(&h.auth, "tree", Some(tree_spec(theirs.id)))
            .await
            .expect_err("another tenant's CA");
        assert!(
            matches!(err, IssuanceError::CaNotFound { .. }),
            "{b:?}: {err:?}"
        );

        let mut malformed = web_spec();
        malformed.issuer_ca_id = "issuing-ca".into();
        let err = h
            .issuance
            .create_profile(&h.auth, "tree", Some(malformed))
            .await
            .expect_err("not a UUID");
        assert!(
            matches!(
                err,
                IssuanceError::ProfileInvalid {
                    field: "issuer_ca_id",
                    ..
                }
            ),
            "{b:?}: {err:?}"
        );
        assert_eq!(reason(&err).0, Code::InvalidArgument, "{b:?}");
        assert!(
            h.issuance
                .list_profiles(&h.auth)
                .await
                .expect("list")
                .is_empty(),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn a_rotation_moves_issuance_to_the_new_key_and_old_leaves_keep_verifying() {
    for h in each_backend().await {
        let b = h.store.backend();
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tree(&h).await;
        h.profile("tree", tree_spec(t.issuing.id)).await;
        let issue = async |name: &str| {
            h.issuance
                .issue(&h.auth, h.command(csr(&[name]), "tree"))
                .await
                .expect("issued")
                .record
        };
        let aki = |der: &[u8]| {
            Certificate::from_der(der.to_vec())
                .expect("cert")
                .authority_key_id()
                .map(<[u8]>::to_vec)
        };
        let old = issue("a.example.com").await;
        // The issuing CA opened for generation 1 is cached by now.
        let rotated = rotate(
            &h,
            &t.issuing,
            &t.policy,
            template("Tree Issuing CA", Some(0), &[]),
        )
        .await;
        assert_eq!(rotated.generation, 2);
        let new = issue("b.example.com").await;
        let new_cert = Certificate::from_der(rotated.certificate_der.clone()).expect("new");
        assert_eq!(new.issuer_ca_id, t.issuing.id, "{b:?}: the CA keeps its id");
        assert_ne!(
            aki(&new.certificate_der),
            aki(&old.certificate_der),
            "{b:?}"
        );
        assert_eq!(
            aki(&new.certificate_der).as_deref(),
            new_cert.subject_key_id(),
            "{b:?}: signed by the new key"
        );
        let chain: Vec<Vec<u8>> = certs(&new.chain_pem)
            .iter()
            .map(|c| c.der().to_vec())
            .collect();
        assert_eq!(
            chain,
            vec![
                rotated.certificate_der.clone(),
                t.policy.certificate_der.clone()
            ],
            "{b:?}: the chain follows the new certificate"
        );
        verify(dir.path(), &t.root, &new.chain_pem, &new.certificate_der);
        // The old leaf keeps its stored chain, which still verifies.
        verify(dir.path(), &t.root, &old.chain_pem, &old.certificate_der);

        // The policy CA rotates too. The issuing CA's certificate was signed by the policy
        // CA's first key, so its chain keeps that generation's certificate, also when built
        // afresh (another replica, or a restart: nothing cached).
        let policy2 = rotate(
            &h,
            &t.policy,
            &t.root,
            template("Tree Policy CA", Some(1), &["example.com"]),
        )
        .await;
        assert_eq!(policy2.generation, 2);
        let replica = Issuance::new(Deps {
            store: h.store.clone(),
            clock: Arc::new(h.clock.clone()),
            builtin: Arc::new(BuiltinCa::new(h.store.clone(), h.keys.clone())),
            metrics: Metrics::new(),
        });
        let after = replica
            .issue(&h.auth, h.command(csr(&["c.example.com"]), "tree"))
            .await
            .expect("issued by another replica")
            .record;
        assert_eq!(aki(&after.certificate_der), aki(&new.certificate_der));
        assert_eq!(after.chain_pem, new.chain_pem, "{b:?}");
        verify(
            dir.path(),
            &t.root,
            &after.chain_pem,
            &after.certificate_der,
        );
    }
}

#[tokio::test]
async fn the_idempotency_key_path_signs_with_the_tree_ca_too() {
    for h in each_backend().await {
        let b = h.store.backend();
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tree(&h).await;
        h.profile("tree", tree_spec(t.issuing.id)).await;
        let mut cmd = h.command(csr(&["a.example.com"]), "tree");
        cmd.idempotency_key = Some("order-1".into());
        let first = h.issuance.issue(&h.auth, cmd.clone()).await.expect("first");
        assert!(!first.replayed);
        assert_eq!(first.record.issuer_ca_id, t.issuing.id, "{b:?}");
        verify(
            dir.path(),
            &t.root,
            &first.record.chain_pem,
            &first.record.certificate_der,
        );
        let again = h.issuance.issue(&h.auth, cmd).await.expect("replay");
        assert!(again.replayed);
        assert_eq!(again.record.certificate_der, first.record.certificate_der);

        // A refused name holds no key: nothing is claimed, signed or stored.
        let mut evil = h.command(csr(&["evil.org"]), "tree");
        evil.idempotency_key = Some("order-2".into());
        let err = h.issuance.issue(&h.auth, evil).await.expect_err("refused");
        assert!(
            matches!(err, IssuanceError::NameConstraintExceeded { .. }),
            "{b:?}: {err:?}"
        );
        assert_eq!(h.certificate_count().await, 1, "{b:?}");
    }
}
