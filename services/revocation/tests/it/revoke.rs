//! Revoking one certificate: the record, its event and audit entry; idempotence; holds made
//! permanent or lifted; the refusals, which write nothing; tenant isolation; status reads.

use certmesh_crypto::revocation::RevocationReason;
use certmesh_revocation::{
    RevocationError,
    revoke::{MAX_REASON_TEXT, RevokeOutcome},
};
use certmesh_store::{
    CaId,
    audit::Outcome,
    revocations::{STATUS_LIFTED, STATUS_REVOKED},
};
use chrono::Duration;
use serde_json::json;

use crate::support::{LeafSpec, each_backend};

#[tokio::test]
async fn a_revocation_is_recorded_with_its_event_and_audit_entry() {
    for f in each_backend().await {
        let leaf = f.leaf(&f.issuing).await;
        let now = f.now();
        let outcome = f
            .revocations
            .revoke(&f.actor, leaf.serial(), "keyCompromise", "laptop stolen")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.backend));
        let RevokeOutcome::Revoked(record) = outcome else {
            panic!("{}: {outcome:?}", f.backend);
        };
        assert_eq!(record.serial, leaf.serial(), "{}", f.backend);
        assert_eq!(record.tenant_id, f.tenant);
        assert_eq!(record.issuer_ca_id, f.issuing.id());
        assert_eq!(record.ca_generation, 1);
        assert_eq!(record.crl_shard, leaf.shard());
        assert_eq!(record.reason, "keyCompromise");
        assert_eq!(record.reason_text, "laptop stolen");
        assert_eq!(record.status, STATUS_REVOKED);
        assert_eq!(record.revoked_at, now);
        assert_eq!(record.revoked_by, "alice");
        assert_eq!(record.cert_not_after, leaf.record.not_after);
        assert_eq!(f.revocation(leaf.serial()).await.as_ref(), Some(&record));

        let events = f.events("ca.certificate.revoked").await;
        assert_eq!(events.len(), 1, "{}: {events:?}", f.backend);
        let e = &events[0];
        assert_eq!(e["serial"], json!(leaf.serial()));
        assert_eq!(e["issuer_ca_id"], json!(f.issuing.id().to_string()));
        assert_eq!(e["ca_generation"], json!(1));
        assert_eq!(e["crl_shard"], json!(leaf.shard()));
        assert_eq!(e["reason"], json!("keyCompromise"));
        assert_eq!(e["reason_code"], json!(1));
        assert_eq!(e["revoked_by"], json!("alice"));
        assert_eq!(e["hold_made_permanent"], json!(false));
        assert!(
            !e.to_string().contains("laptop stolen"),
            "{}: operator notes are never published: {e}",
            f.backend
        );

        let audit = f.audit("certificates.revoke").await;
        assert_eq!(audit.len(), 1, "{}", f.backend);
        assert_eq!(audit[0].actor, "alice");
        assert_eq!(audit[0].request_id, "req-alice");
        assert_eq!(audit[0].resource, format!("certificate:{}", leaf.serial()));
        assert_eq!(audit[0].outcome, Outcome::Allowed);
        assert_eq!(audit[0].details["reason"], json!("keyCompromise"));

        // Serials are taken in any case with a 0x prefix; reasons in any case.
        let other = f.leaf(&f.issuing).await;
        let given = format!(" 0x{} ", other.serial().to_uppercase());
        let outcome = f
            .revocations
            .revoke(&f.actor, &given, "SUPERSEDED", "")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.backend));
        let RevokeOutcome::Revoked(record) = outcome else {
            panic!("{}: {outcome:?}", f.backend);
        };
        assert_eq!(record.serial, other.serial());
        assert_eq!(record.reason, "superseded");
    }
}

#[tokio::test]
async fn revoking_again_returns_the_first_record_unchanged() {
    for f in each_backend().await {
        let leaf = f.leaf(&f.issuing).await;
        let RevokeOutcome::Revoked(first) = f
            .revocations
            .revoke(&f.actor, leaf.serial(), "keyCompromise", "first")
            .await
            .expect("revoked")
        else {
            panic!("{}: not revoked", f.backend);
        };
        f.clock.advance(Duration::minutes(5));
        for reason in [
            "keyCompromise",
            "superseded",
            "certificateHold",
            "unspecified",
        ] {
            let again = f
                .revocations
                .revoke(&f.actor, leaf.serial(), reason, "second")
                .await
                .unwrap_or_else(|e| panic!("{}: {reason}: {e}", f.backend));
            assert_eq!(
                again,
                RevokeOutcome::AlreadyRevoked(first.clone()),
                "{}: {reason}",
                f.backend
            );
        }
        assert_eq!(f.revocation(leaf.serial()).await, Some(first));
        assert_eq!(
            f.events("ca.certificate.revoked").await.len(),
            1,
            "{}",
            f.backend
        );
        assert_eq!(
            f.audit("certificates.revoke").await.len(),
            1,
            "{}",
            f.backend
        );
    }
}

#[tokio::test]
async fn refusals_write_nothing() {
    for f in each_backend().await {
        let leaf = f.leaf(&f.issuing).await;
        let before = f.event_count().await;

        for bad in ["", "revoked", "key compromise", "7"] {
            match f.revocations.revoke(&f.actor, leaf.serial(), bad, "").await {
                Err(e @ RevocationError::ReasonInvalid { .. }) => {
                    let RevocationError::ReasonInvalid { valid, .. } = &e else {
                        unreachable!()
                    };
                    let message = e.to_string();
                    for reason in RevocationReason::ALL {
                        assert!(
                            valid.split(", ").any(|v| v == reason.as_str()),
                            "{}: {reason} missing from {valid:?}",
                            f.backend
                        );
                        assert!(message.contains(reason.as_str()), "{message}");
                    }
                    assert_eq!(valid.split(", ").count(), 10, "{valid}");
                }
                other => panic!("{}: reason {bad:?}: {other:?}", f.backend),
            }
        }
        for bad in ["", "xyz", "00", "0x", &"7f".repeat(21), "-01"] {
            assert!(
                matches!(
                    f.revocations
                        .revoke(&f.actor, bad, "keyCompromise", "")
                        .await,
                    Err(RevocationError::SerialInvalid(_))
                ),
                "{}: serial {bad:?}",
                f.backend
            );
            assert!(
                matches!(
                    f.revocations.status(&f.actor, bad).await,
                    Err(RevocationError::SerialInvalid(_))
                ),
                "{}: status of {bad:?}",
                f.backend
            );
        }
        let never = certmesh_crypto::serial::Serial::random().to_hex();
        assert!(
            matches!(
                f.revocations.revoke(&f.actor, &never, "keyCompromise", "").await,
                Err(RevocationError::CertificateNotFound { serial }) if serial == never
            ),
            "{}",
            f.backend
        );
        let long = "x".repeat(MAX_REASON_TEXT + 1);
        assert!(
            matches!(
                f.revocations
                    .revoke(&f.actor, leaf.serial(), "keyCompromise", &long)
                    .await,
                Err(RevocationError::InvalidField {
                    field: "reason_text",
                    ..
                })
            ),
            "{}",
            f.backend
        );
        assert_eq!(f.revocation(leaf.serial()).await, None, "{}", f.backend);
        assert_eq!(f.event_count().await, before, "{}", f.backend);
        assert!(f.audit("certificates.revoke").await.is_empty());

        // The limit itself is fine.
        let longest = "x".repeat(MAX_REASON_TEXT);
        f.revocations
            .revoke(&f.actor, leaf.serial(), "keyCompromise", &longest)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.backend));
    }
}

#[tokio::test]
async fn certificates_of_other_cas_are_external() {
    for f in each_backend().await {
        // Recorded with an issuer that is no CA of the tenant.
        let mut foreign = f
            .sign_leaf(&f.issuing, &f.issuing, &LeafSpec::default())
            .record;
        foreign.issuer_ca_id = CaId(uuid::Uuid::new_v4());
        f.store_leaf(&foreign).await;
        // Recorded as the issuing CA's, but signed by the root's key.
        let misfiled = f.sign_leaf(&f.root, &f.issuing, &LeafSpec::default());
        f.store_leaf(&misfiled.record).await;
        let before = f.event_count().await;
        for serial in [foreign.serial.as_str(), misfiled.serial()] {
            match f
                .revocations
                .revoke(&f.actor, serial, "keyCompromise", "")
                .await
            {
                Err(RevocationError::ExternalCa { serial: s, .. }) => assert_eq!(s, serial),
                other => panic!("{}: {serial}: {other:?}", f.backend),
            }
            assert_eq!(f.revocation(serial).await, None, "{}", f.backend);
        }
        assert_eq!(f.event_count().await, before, "{}", f.backend);
    }
}

#[tokio::test]
async fn another_tenant_cannot_revoke_or_see_a_certificate() {
    for f in each_backend().await {
        let leaf = f.leaf(&f.issuing).await;
        let mallory = f.other_tenant().await;
        assert!(
            matches!(
                f.revocations
                    .revoke(&mallory, leaf.serial(), "keyCompromise", "")
                    .await,
                Err(RevocationError::CertificateNotFound { .. })
            ),
            "{}",
            f.backend
        );
        assert!(
            matches!(
                f.revocations.status(&mallory, leaf.serial()).await,
                Err(RevocationError::CertificateNotFound { .. })
            ),
            "{}",
            f.backend
        );
        assert_eq!(f.revocation(leaf.serial()).await, None);

        f.revocations
            .revoke(&f.actor, leaf.serial(), "keyCompromise", "")
            .await
            .expect("revoked by its owner");
        assert!(
            matches!(
                f.revocations.status(&mallory, leaf.serial()).await,
                Err(RevocationError::CertificateNotFound { .. })
            ),
            "{}",
            f.backend
        );
        assert!(
            matches!(
                f.revocations
                    .revoke(&mallory, leaf.serial(), "removeFromCRL", "")
                    .await,
                Err(RevocationError::CertificateNotFound { .. })
            ),
            "{}",
            f.backend
        );
    }
}

#[tokio::test]
async fn a_hold_is_made_permanent_keeping_its_date() {
    for f in each_backend().await {
        let leaf = f.leaf(&f.issuing).await;
        let held_at = f.now();
        let RevokeOutcome::Revoked(hold) = f
            .revocations
            .revoke(&f.actor, leaf.serial(), "certificateHold", "investigating")
            .await
            .expect("held")
        else {
            panic!("{}: not held", f.backend);
        };
        assert_eq!(hold.reason, "certificateHold");
        assert_eq!(hold.revoked_at, held_at);

        // Holding again changes nothing.
        f.clock.advance(Duration::minutes(10));
        assert_eq!(
            f.revocations
                .revoke(&f.actor, leaf.serial(), "certificateHold", "")
                .await
                .expect("held"),
            RevokeOutcome::AlreadyRevoked(hold.clone()),
            "{}",
            f.backend
        );

        f.clock.advance(Duration::hours(1));
        let bob = certmesh_revocation::revoke::Actor {
            principal: "bob".into(),
            ..f.actor.clone()
        };
        let outcome = f
            .revocations
            .revoke(&bob, leaf.serial(), "keyCompromise", "confirmed")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.backend));
        let RevokeOutcome::Revoked(permanent) = outcome else {
            panic!("{}: {outcome:?}", f.backend);
        };
        assert_eq!(permanent.reason, "keyCompromise", "{}", f.backend);
        assert_eq!(permanent.reason_text, "confirmed");
        assert_eq!(permanent.status, STATUS_REVOKED);
        assert_eq!(
            permanent.revoked_at, held_at,
            "{}: the hold's date stays",
            f.backend
        );
        assert_eq!(permanent.revoked_by, "bob");
        assert_eq!(permanent.updated_at, f.now());

        let events = f.events("ca.certificate.revoked").await;
        assert_eq!(events.len(), 2, "{}", f.backend);
        assert_eq!(events[0]["reason"], json!("certificateHold"));
        assert_eq!(events[0]["hold_made_permanent"], json!(false));
        assert_eq!(events[1]["reason"], json!("keyCompromise"));
        assert_eq!(events[1]["hold_made_permanent"], json!(true));
        assert_eq!(events[1]["revoked_by"], json!("bob"));

        // Permanent now: neither another reason nor removeFromCRL changes it.
        assert_eq!(
            f.revocations
                .revoke(&f.actor, leaf.serial(), "superseded", "")
                .await
                .expect("answered"),
            RevokeOutcome::AlreadyRevoked(permanent.clone())
        );
        match f
            .revocations
            .revoke(&f.actor, leaf.serial(), "removeFromCRL", "")
            .await
        {
            Err(RevocationError::NotOnHold { state, .. }) => {
                assert_eq!(state, "revoked: keyCompromise", "{}", f.backend);
            }
            other => panic!("{}: {other:?}", f.backend),
        }
        assert_eq!(f.events("ca.certificate.revoked").await.len(), 2);
    }
}

#[tokio::test]
async fn remove_from_crl_lifts_a_hold() {
    for f in each_backend().await {
        let leaf = f.leaf(&f.issuing).await;
        // Not on hold: never revoked.
        match f
            .revocations
            .revoke(&f.actor, leaf.serial(), "removeFromCRL", "")
            .await
        {
            Err(RevocationError::NotOnHold { state, .. }) => assert_eq!(state, "not revoked"),
            other => panic!("{}: {other:?}", f.backend),
        }

        let held_at = f.now();
        f.revocations
            .revoke(&f.actor, leaf.serial(), "certificateHold", "")
            .await
            .expect("held");
        f.clock.advance(Duration::minutes(30));
        let lifted_at = f.now();
        let outcome = f
            .revocations
            .revoke(&f.actor, leaf.serial(), "removeFromCRL", "false alarm")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.backend));
        assert_eq!(outcome, RevokeOutcome::HoldLifted, "{}", f.backend);
        let row = f.revocation(leaf.serial()).await.expect("row kept");
        assert_eq!(row.status, STATUS_LIFTED, "{}", f.backend);
        assert_eq!(row.updated_at, lifted_at);
        assert_eq!(row.revoked_at, held_at);

        let lifted = f.events("ca.certificate.hold_lifted").await;
        assert_eq!(lifted.len(), 1, "{}", f.backend);
        assert_eq!(lifted[0]["serial"], json!(leaf.serial()));
        assert_eq!(lifted[0]["issuer_ca_id"], json!(f.issuing.id().to_string()));
        assert_eq!(f.audit("certificates.lift_hold").await.len(), 1);

        let status = f
            .revocations
            .status(&f.actor, leaf.serial())
            .await
            .expect("status");
        assert_eq!(status.revocation, None, "{}: good again", f.backend);

        // Lifting again: not on hold.
        match f
            .revocations
            .revoke(&f.actor, leaf.serial(), "removeFromCRL", "")
            .await
        {
            Err(RevocationError::NotOnHold { state, .. }) => assert_eq!(state, "not revoked"),
            other => panic!("{}: {other:?}", f.backend),
        }
        assert_eq!(f.events("ca.certificate.hold_lifted").await.len(), 1);

        // Revoking after the lift starts a new record.
        f.clock.advance(Duration::minutes(30));
        let outcome = f
            .revocations
            .revoke(&f.actor, leaf.serial(), "KeyCompromise", "for real")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.backend));
        let RevokeOutcome::Revoked(again) = outcome else {
            panic!("{}: {outcome:?}", f.backend);
        };
        assert_eq!(again.status, STATUS_REVOKED);
        assert_eq!(again.reason, "keyCompromise");
        assert_eq!(again.reason_text, "for real");
        assert_eq!(again.revoked_at, f.now(), "{}", f.backend);
        assert_eq!(f.events("ca.certificate.revoked").await.len(), 2);
        let status = f
            .revocations
            .status(&f.actor, leaf.serial())
            .await
            .expect("status");
        assert_eq!(status.revocation, Some(again));
    }
}

#[tokio::test]
async fn status_reports_good_revoked_and_expired() {
    for f in each_backend().await {
        let good = f.leaf(&f.issuing).await;
        let revoked = f.leaf(&f.issuing).await;
        let short = f
            .leaf_with(
                &f.issuing,
                &LeafSpec {
                    validity: Duration::hours(1),
                    ..LeafSpec::default()
                },
            )
            .await;
        f.revocations
            .revoke(&f.actor, revoked.serial(), "affiliationChanged", "")
            .await
            .expect("revoked");

        let s = f
            .revocations
            .status(&f.actor, good.serial())
            .await
            .expect("status");
        assert_eq!(s.certificate, good.record, "{}", f.backend);
        assert_eq!(s.revocation, None);
        assert!(!s.expired);

        let s = f
            .revocations
            .status(&f.actor, &revoked.serial().to_uppercase())
            .await
            .expect("status");
        let r = s.revocation.expect("revoked");
        assert_eq!(r.reason, "affiliationChanged", "{}", f.backend);
        assert!(!s.expired);

        let s = f
            .revocations
            .status(&f.actor, short.serial())
            .await
            .expect("status");
        assert!(!s.expired, "{}", f.backend);
        f.clock.advance(Duration::hours(2));
        let s = f
            .revocations
            .status(&f.actor, short.serial())
            .await
            .expect("status");
        assert!(s.expired, "{}", f.backend);
        assert_eq!(s.revocation, None);
        let s = f
            .revocations
            .status(&f.actor, good.serial())
            .await
            .expect("status");
        assert!(!s.expired);

        let never = certmesh_crypto::serial::Serial::random().to_hex();
        assert!(matches!(
            f.revocations.status(&f.actor, &never).await,
            Err(RevocationError::CertificateNotFound { .. })
        ));
    }
}

/// A revocation while another writer holds the database (a second revocation, the CRL
/// publisher, an issuance) waits for it and then succeeds.
#[tokio::test]
async fn a_revocation_waits_for_a_concurrent_writer() {
    for f in each_backend().await {
        let leaf = f.leaf(&f.issuing).await;
        // Another writer's transaction, open: on SQLite it holds the database write lock.
        let other = f.store.begin().await.expect("transaction");
        certmesh_store::tenants::ensure(&other, "writer", f.now())
            .await
            .expect("write");
        let revocations = f.revocations.clone();
        let actor = f.actor.clone();
        let serial = leaf.serial().to_owned();
        let revoking = tokio::spawn(async move {
            revocations
                .revoke(&actor, &serial, "keyCompromise", "")
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        other.commit().await.expect("commit");
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), revoking)
            .await
            .expect("the revocation finishes")
            .expect("no panic");
        assert!(
            matches!(outcome, Ok(RevokeOutcome::Revoked(_))),
            "{}: {outcome:?}",
            f.backend
        );
    }
}
