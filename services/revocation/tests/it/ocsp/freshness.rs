//! How answers stay current: other replicas' revocations by polling, re-signing at half the
//! validity, and responder certificates renewed at half their own lifetime.

use certmesh_crypto::{cert::Certificate, serial::Serial};
use certmesh_store::revocations::{self, NewRevocation};
use chrono::Duration;

use super::{SHA1, ask, ask_der, revoke, status};
use crate::der::{Status, request};
use crate::support::{LeafSpec, each_backend};

#[tokio::test]
async fn other_replicas_answer_revoked_after_polling() {
    for f in each_backend().await {
        let ca = f.issuing.certificate().clone();
        let b = f.replica("replica-b").await;
        let leaf = f.leaf(&f.issuing).await;
        let held = f.leaf(&f.issuing).await;
        for l in [&leaf, &held] {
            assert_eq!(status(&f, &ca, l).await, Status::Good);
            assert_eq!(
                ask(&b.responders, &ca, &l.serial_bytes(), SHA1).await.1,
                Status::Good
            );
        }
        assert_eq!(b.responders.poll_changes().await.expect("poll"), 0);

        f.clock.advance(Duration::seconds(10));
        let revoked_at = f.now();
        revoke(&f, &leaf, "keyCompromise").await;
        assert_eq!(
            b.responders.poll_changes().await.expect("poll"),
            1,
            "{}",
            f.backend
        );
        assert_eq!(
            ask(&b.responders, &ca, &leaf.serial_bytes(), SHA1).await.1,
            Status::Revoked(revoked_at, Some(1)),
            "{}: replica B sees A's revocation",
            f.backend
        );
        assert_eq!(b.responders.poll_changes().await.expect("poll"), 0);

        // And the other way round, a hold and its lift through replica B.
        f.clock.advance(Duration::seconds(10));
        let held_at = f.now();
        b.revocations
            .revoke(&f.actor, held.serial(), "certificateHold", "")
            .await
            .expect("held");
        assert_eq!(
            f.responders.poll_changes().await.expect("poll"),
            1,
            "{}",
            f.backend
        );
        assert_eq!(
            status(&f, &ca, &held).await,
            Status::Revoked(held_at, Some(6)),
            "{}",
            f.backend
        );
        f.clock.advance(Duration::seconds(10));
        b.revocations
            .revoke(&f.actor, held.serial(), "removeFromCRL", "")
            .await
            .expect("lifted");
        assert_eq!(
            f.responders.poll_changes().await.expect("poll"),
            1,
            "{}",
            f.backend
        );
        assert_eq!(status(&f, &ca, &held).await, Status::Good, "{}", f.backend);
    }
}

#[tokio::test]
async fn answers_are_re_signed_at_half_their_validity() {
    for f in each_backend().await {
        let ca = f.issuing.certificate().clone();
        let good = f.leaf(&f.issuing).await;
        let revoked = f.leaf(&f.issuing).await;
        revoke(&f, &revoked, "superseded").await;
        let revoked_at = f.now();
        let signed_at = f.now();
        let (first, _) = ask(&f.responders, &ca, &good.serial_bytes(), SHA1).await;
        ask(&f.responders, &ca, &revoked.serial_bytes(), SHA1).await;

        f.clock.advance(Duration::hours(1));
        assert_eq!(f.responders.refresh_due().await, 0, "{}", f.backend);
        let (same, _) = ask(&f.responders, &ca, &good.serial_bytes(), SHA1).await;
        assert_eq!(same.body(), first.body());

        f.clock
            .advance(f.config.ocsp_validity / 2 - Duration::hours(1) + Duration::seconds(1));
        let refreshed_at = f.now();
        assert_eq!(f.responders.refresh_due().await, 2, "{}", f.backend);
        f.clock.advance(Duration::seconds(1));
        let (fresh, reply) = ask_der(
            &f.responders,
            &request(&ca, &good.serial_bytes(), SHA1, None),
        )
        .await;
        assert_ne!(fresh.body(), first.body());
        assert_eq!(
            reply.single().this_update,
            refreshed_at,
            "{}: the answer re-signed by refresh_due is served",
            f.backend
        );
        assert!(reply.single().this_update > signed_at);
        assert_eq!(
            reply.single().next_update,
            Some(refreshed_at + f.config.ocsp_validity)
        );
        let (_, reply) = ask_der(
            &f.responders,
            &request(&ca, &revoked.serial_bytes(), SHA1, None),
        )
        .await;
        assert_eq!(reply.single().status, Status::Revoked(revoked_at, Some(4)));
        assert_eq!(reply.single().this_update, refreshed_at);
        assert_eq!(f.responders.refresh_due().await, 0);
    }
}

/// A bulk revocation changes more certificates within a few seconds than one poll reads: the
/// other replicas still catch up with every change, and with the ones made after it.
#[tokio::test]
async fn other_replicas_catch_up_after_a_large_bulk_revocation() {
    for f in each_backend().await {
        let ca = f.issuing.certificate().clone();
        let b = f.replica("replica-b").await;
        let leaf = f.leaf(&f.issuing).await;
        assert_eq!(
            ask(&b.responders, &ca, &leaf.serial_bytes(), SHA1).await.1,
            Status::Good
        );
        // What a bulk revocation of a thousand certificates leaves behind.
        f.clock.advance(Duration::seconds(10));
        let bulk: Vec<NewRevocation> = (0..1000)
            .map(|_| NewRevocation {
                tenant_id: f.tenant,
                serial: Serial::random().to_hex(),
                issuer_ca_id: f.issuing.id(),
                ca_generation: 1,
                crl_shard: 0,
                reason: "cACompromise".into(),
                reason_text: String::new(),
                revoked_at: f.now(),
                revoked_by: "alice".into(),
                cert_not_after: f.now() + Duration::days(30),
            })
            .collect();
        let tenant = f.tenant;
        f.store
            .in_tenant(tenant, async |tx| revocations::insert_many(tx, &bulk).await)
            .await
            .expect("bulk rows");
        f.clock.advance(Duration::seconds(1));
        revoke(&f, &leaf, "keyCompromise").await;
        for _ in 0..5 {
            b.responders.poll_changes().await.expect("poll");
        }
        assert_eq!(
            ask(&b.responders, &ca, &leaf.serial_bytes(), SHA1).await.1,
            Status::Revoked(f.now(), Some(1)),
            "{}: replica B never saw the revocation made after the bulk",
            f.backend
        );
    }
}

/// A CA with less than half a responder lifetime left gets a responder certificate that ends
/// with it; that responder is used until half of its own lifetime, not made again per request.
#[tokio::test]
async fn a_ca_near_its_end_keeps_its_responder() {
    for f in each_backend().await {
        let ending = f
            .intermediate_until(&f.root, "ending", f.now() + Duration::days(1))
            .await;
        let leaf = f
            .leaf_with(
                &ending,
                &LeafSpec {
                    validity: Duration::hours(12),
                    ..LeafSpec::default()
                },
            )
            .await;
        let mut responders = Vec::new();
        for nonce in [&b"one"[..], b"two"] {
            let (_, reply) = ask_der(
                &f.responders,
                &request(
                    ending.certificate(),
                    &leaf.serial_bytes(),
                    SHA1,
                    Some(nonce),
                ),
            )
            .await;
            assert_eq!(reply.single().status, Status::Good, "{}", f.backend);
            let responder = Certificate::from_der(reply.certs[0].clone()).expect("responder");
            responders.push(responder);
            f.clock.advance(Duration::hours(1));
        }
        assert_eq!(responders[0].not_after(), ending.certificate().not_after());
        assert_eq!(
            responders[0].serial(),
            responders[1].serial(),
            "{}: a new responder certificate for every request",
            f.backend
        );
        assert_eq!(f.events("ca.ocsp_responder.issued").await.len(), 1);
    }
}
