//! Bulk revocation: the filter must name a CA or a profile; each match goes through the one
//! revocation path; the totals count what happened; a dry run counts what would.

use certmesh_revocation::{
    RevocationError,
    revoke::{BulkFilter, BulkTotals, RevokeOutcome},
};
use certmesh_store::CaId;
use chrono::Duration;
use serde_json::json;

use crate::support::{Fixture, Leaf, LeafSpec, each_backend};

fn by_ca(f: &Fixture) -> BulkFilter {
    BulkFilter {
        issuer_ca_id: Some(f.issuing.id().to_string()),
        ..BulkFilter::default()
    }
}

#[tokio::test]
async fn bulk_filters_and_reasons_are_checked() {
    for f in each_backend().await {
        f.leaf(&f.issuing).await;
        let run = async |filter: &BulkFilter, reason: &str| {
            f.revocations
                .bulk_revoke(&f.actor, filter, reason, "", false)
                .await
        };
        for empty in [
            BulkFilter::default(),
            BulkFilter {
                issuer_ca_id: Some(String::new()),
                profile: Some(String::new()),
                issued_after: Some(f.now() - Duration::days(1)),
                issued_before: None,
            },
        ] {
            assert!(
                matches!(
                    run(&empty, "keyCompromise").await,
                    Err(RevocationError::BulkFilterEmpty)
                ),
                "{}: {empty:?}",
                f.backend
            );
        }
        let unknown = BulkFilter {
            issuer_ca_id: Some(uuid::Uuid::new_v4().to_string()),
            ..BulkFilter::default()
        };
        assert!(
            matches!(
                run(&unknown, "keyCompromise").await,
                Err(RevocationError::CaNotFound { .. })
            ),
            "{}",
            f.backend
        );
        let malformed = BulkFilter {
            issuer_ca_id: Some("issuing".into()),
            ..BulkFilter::default()
        };
        assert!(
            matches!(
                run(&malformed, "keyCompromise").await,
                Err(RevocationError::InvalidField {
                    field: "issuer_ca_id",
                    ..
                })
            ),
            "{}",
            f.backend
        );
        let backwards = BulkFilter {
            issued_after: Some(f.now()),
            issued_before: Some(f.now() - Duration::hours(1)),
            ..by_ca(&f)
        };
        assert!(
            matches!(
                run(&backwards, "keyCompromise").await,
                Err(RevocationError::InvalidField { .. })
            ),
            "{}",
            f.backend
        );
        assert!(
            matches!(
                run(&by_ca(&f), "removeFromCRL").await,
                Err(RevocationError::InvalidField {
                    field: "reason",
                    ..
                })
            ),
            "{}",
            f.backend
        );
        assert!(
            matches!(
                run(&by_ca(&f), "nope").await,
                Err(RevocationError::ReasonInvalid { .. })
            ),
            "{}",
            f.backend
        );
        // Another tenant's CA is not found.
        let mallory = f.other_tenant().await;
        assert!(
            matches!(
                f.revocations
                    .bulk_revoke(&mallory, &by_ca(&f), "keyCompromise", "", false)
                    .await,
                Err(RevocationError::CaNotFound { .. })
            ),
            "{}",
            f.backend
        );
        assert_eq!(f.event_count().await, 0, "{}", f.backend);
        assert!(f.audit("certificates.bulk_revoke").await.is_empty());
    }
}

struct Population {
    /// Issuing CA, `web`, at t0.
    a: Leaf,
    /// Issuing CA, `web`, at t0 + 1 h.
    b: Leaf,
    /// Issuing CA, `api`, at t0 + 2 h.
    c: Leaf,
    /// Root, `web`, at t0 + 1 h.
    d: Leaf,
    /// `web`, recorded with an issuer that is not a CA of the tenant, at t0 + 2 h.
    e: Leaf,
}

async fn population(f: &Fixture) -> Population {
    let api = LeafSpec {
        profile: "api",
        ..LeafSpec::default()
    };
    let a = f.leaf(&f.issuing).await;
    f.clock.advance(Duration::hours(1));
    let b = f.leaf(&f.issuing).await;
    let d = f.leaf(&f.root).await;
    f.clock.advance(Duration::hours(1));
    let c = f.leaf_with(&f.issuing, &api).await;
    let mut e = f.sign_leaf(&f.issuing, &f.issuing, &LeafSpec::default());
    e.record.issuer_ca_id = CaId(uuid::Uuid::new_v4());
    f.store_leaf(&e.record).await;
    f.clock.advance(Duration::hours(1));
    Population { a, b, c, d, e }
}

#[tokio::test]
async fn bulk_revokes_by_ca_profile_and_window() {
    for f in each_backend().await {
        let p = population(&f).await;
        let t0 = p.a.record.created_at;
        let bulk = async |filter: &BulkFilter, dry_run: bool| {
            f.revocations
                .bulk_revoke(
                    &f.actor,
                    filter,
                    "cessationOfOperation",
                    "decommissioned",
                    dry_run,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {filter:?}: {e}", f.backend))
        };

        // A dry run counts and changes nothing.
        let dry = bulk(&by_ca(&f), true).await;
        assert_eq!(
            dry,
            BulkTotals {
                matched: 3,
                revoked: 3,
                already_revoked: 0,
                skipped_external: 0
            },
            "{}",
            f.backend
        );
        for leaf in [&p.a, &p.b, &p.c] {
            assert_eq!(f.revocation(leaf.serial()).await, None, "{}", f.backend);
        }
        assert_eq!(f.event_count().await, 0, "{}", f.backend);
        assert!(f.audit("certificates.bulk_revoke").await.is_empty());

        // `web` issued in [t0 + 30 min, t0 + 90 min): b and d, across CAs.
        let window = BulkFilter {
            profile: Some("web".into()),
            issued_after: Some(t0 + Duration::minutes(30)),
            issued_before: Some(t0 + Duration::minutes(90)),
            ..BulkFilter::default()
        };
        assert_eq!(
            bulk(&window, false).await,
            BulkTotals {
                matched: 2,
                revoked: 2,
                already_revoked: 0,
                skipped_external: 0
            },
            "{}",
            f.backend
        );
        for leaf in [&p.b, &p.d] {
            let r = f.revocation(leaf.serial()).await.expect("revoked");
            assert_eq!(r.reason, "cessationOfOperation", "{}", f.backend);
            assert_eq!(r.reason_text, "decommissioned");
            assert_eq!(r.issuer_ca_id, leaf.record.issuer_ca_id);
            assert_eq!(r.ca_generation, 1);
        }
        for leaf in [&p.a, &p.c] {
            assert_eq!(f.revocation(leaf.serial()).await, None, "{}", f.backend);
        }
        // The window bounds are inclusive below and exclusive above.
        let exact = BulkFilter {
            issued_after: Some(p.c.record.created_at),
            issued_before: Some(p.c.record.created_at + Duration::microseconds(1)),
            ..by_ca(&f)
        };
        assert_eq!(bulk(&exact, true).await.matched, 1, "{}", f.backend);

        // The issuing CA's: a and c now, b already.
        assert_eq!(
            bulk(&by_ca(&f), false).await,
            BulkTotals {
                matched: 3,
                revoked: 2,
                already_revoked: 1,
                skipped_external: 0
            },
            "{}",
            f.backend
        );
        // Again: nothing new.
        assert_eq!(
            bulk(&by_ca(&f), false).await,
            BulkTotals {
                matched: 3,
                revoked: 0,
                already_revoked: 3,
                skipped_external: 0
            },
            "{}",
            f.backend
        );
        // Every `web` certificate: one of them is not ours.
        let web = BulkFilter {
            profile: Some("web".into()),
            ..BulkFilter::default()
        };
        assert_eq!(
            bulk(&web, false).await,
            BulkTotals {
                matched: 4,
                revoked: 0,
                already_revoked: 3,
                skipped_external: 1
            },
            "{}",
            f.backend
        );
        assert_eq!(f.revocation(p.e.serial()).await, None);

        assert_eq!(
            f.events("ca.certificate.revoked").await.len(),
            4,
            "{}: one event per certificate revoked",
            f.backend
        );
        let audit = f.audit("certificates.bulk_revoke").await;
        assert_eq!(audit.len(), 4, "{}: one entry per real run", f.backend);
        assert_eq!(audit[0].details["matched"], json!(2));
        assert_eq!(audit[0].details["revoked"], json!(2));
        assert_eq!(audit[0].details["profile"], json!("web"));
        assert_eq!(audit[3].details["skipped_external"], json!(1));
        assert_eq!(f.audit("certificates.revoke").await.len(), 4);
    }
}

/// A dry run answers what the real run then does, for every kind of certificate it meets:
/// good, revoked, on hold (with the bulk reason certificateHold, which leaves a hold as it
/// is), lifted, and recorded under a CA whose keys did not sign it.
#[tokio::test]
async fn a_dry_run_predicts_the_real_run() {
    for f in each_backend().await {
        f.leaf(&f.issuing).await;
        let revoked = f.leaf(&f.issuing).await;
        let held = f.leaf(&f.issuing).await;
        let lifted = f.leaf(&f.issuing).await;
        let misfiled = f.sign_leaf(&f.root, &f.issuing, &LeafSpec::default());
        f.store_leaf(&misfiled.record).await;
        for (leaf, reason) in [
            (&revoked, "keyCompromise"),
            (&held, "certificateHold"),
            (&lifted, "certificateHold"),
            (&lifted, "removeFromCRL"),
        ] {
            f.revocations
                .revoke(&f.actor, leaf.serial(), reason, "")
                .await
                .expect("set up");
        }
        f.clock.advance(Duration::minutes(1));
        let dry = f
            .revocations
            .bulk_revoke(&f.actor, &by_ca(&f), "certificateHold", "", true)
            .await
            .expect("dry run");
        let real = f
            .revocations
            .bulk_revoke(&f.actor, &by_ca(&f), "certificateHold", "", false)
            .await
            .expect("real run");
        assert_eq!(
            real,
            BulkTotals {
                matched: 5,
                revoked: 2,
                already_revoked: 2,
                skipped_external: 1
            },
            "{}",
            f.backend
        );
        assert_eq!(dry, real, "{}: the dry run mispredicted", f.backend);
    }
}

#[tokio::test]
async fn bulk_escalates_holds_like_a_single_revocation() {
    for f in each_backend().await {
        let held = f.leaf(&f.issuing).await;
        let held_at = f.now();
        f.revocations
            .revoke(&f.actor, held.serial(), "certificateHold", "")
            .await
            .expect("held");
        f.clock.advance(Duration::hours(1));
        let totals = f
            .revocations
            .bulk_revoke(&f.actor, &by_ca(&f), "caCompromise", "", false)
            .await
            .expect("bulk");
        assert_eq!(totals.revoked, 1, "{}: {totals:?}", f.backend);
        let r = f.revocation(held.serial()).await.expect("row");
        assert_eq!(r.reason, "cACompromise", "{}", f.backend);
        assert_eq!(r.revoked_at, held_at);
        assert_eq!(
            f.revocations
                .revoke(&f.actor, held.serial(), "keyCompromise", "")
                .await
                .expect("answered"),
            RevokeOutcome::AlreadyRevoked(r)
        );
    }
}
