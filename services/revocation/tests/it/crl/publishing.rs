//! When CRLs are made: what makes one due again, one publisher at a time (the lease), and the
//! publisher task.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use certmesh_crypto::revocation::RevocationReason;
use certmesh_revocation::crl::{LEASE, Published};
use certmesh_store::leases;
use chrono::Duration;

use super::{SHARDS, all_scopes, entries, expect, in_shard, parsed, publish, revoke, scopes};
use crate::support::{Fixture, LeafSpec, config, each_backend, each_backend_with};

#[tokio::test]
async fn crls_are_republished_when_they_are_due() {
    for f in each_backend_with(config(SHARDS)).await {
        let long = f.leaf_with(&f.issuing, &in_shard(0)).await;
        let short = f
            .leaf_with(
                &f.issuing,
                &LeafSpec {
                    validity: Duration::minutes(30),
                    ..in_shard(0)
                },
            )
            .await;
        let held = f.leaf_with(&f.issuing, &in_shard(2)).await;
        let escalated = f.leaf_with(&f.issuing, &in_shard(1)).await;
        let later = f.leaf_with(&f.issuing, &in_shard(3)).await;
        revoke(&f, &long, "keyCompromise").await;
        revoke(&f, &short, "keyCompromise").await;
        revoke(&f, &held, "certificateHold").await;
        let held_at = f.now();
        revoke(&f, &escalated, "certificateHold").await;
        f.clock.advance(Duration::seconds(6));
        let mut numbers: Vec<u64> = Vec::new();
        let mut track = |published: &[Published]| {
            numbers.extend(
                published
                    .iter()
                    .filter(|p| p.ca_id == f.issuing.id())
                    .map(|p| p.number),
            );
        };
        let first = publish(&f).await;
        assert_eq!(first.len(), 8, "{}", f.backend);
        track(&first);
        f.clock.advance(Duration::seconds(30));
        assert_eq!(publish(&f).await, Vec::new(), "{}", f.backend);

        // A revocation: only its shard's CRL is made again.
        revoke(&f, &later, "keyCompromise").await;
        f.clock.advance(Duration::seconds(6));
        let again = publish(&f).await;
        assert_eq!(
            scopes(&again),
            vec![(f.issuing.id(), 1, 3)],
            "{}",
            f.backend
        );
        track(&again);
        assert_eq!(
            entries(&parsed(&f, &f.issuing, 3).await),
            expect(&[(&later, Some(RevocationReason::KeyCompromise))])
        );
        assert_eq!(publish(&f).await, Vec::new(), "{}", f.backend);

        // A hold made permanent: its shard's CRL lists the new reason, dated by the hold.
        revoke(&f, &escalated, "keyCompromise").await;
        f.clock.advance(Duration::seconds(6));
        let permanent = publish(&f).await;
        assert_eq!(
            scopes(&permanent),
            vec![(f.issuing.id(), 1, 1)],
            "{}",
            f.backend
        );
        track(&permanent);
        let crl = parsed(&f, &f.issuing, 1).await;
        assert_eq!(
            entries(&crl),
            expect(&[(&escalated, Some(RevocationReason::KeyCompromise))])
        );
        assert_eq!(crl.entries[0].revoked_at, held_at, "{}", f.backend);

        // A CRL made less than 5 s after a change in its scope may have missed it: it is made
        // again on the next round.
        f.clock.advance(Duration::minutes(1));
        revoke(&f, &held, "removeFromCRL").await;
        let lifted = publish(&f).await;
        assert_eq!(
            scopes(&lifted),
            vec![(f.issuing.id(), 1, 2)],
            "{}",
            f.backend
        );
        track(&lifted);
        let within_margin = publish(&f).await;
        assert_eq!(
            scopes(&within_margin),
            vec![(f.issuing.id(), 1, 2)],
            "{}",
            f.backend
        );
        track(&within_margin);
        f.clock.advance(Duration::seconds(6));
        let settled = publish(&f).await;
        assert_eq!(
            scopes(&settled),
            vec![(f.issuing.id(), 1, 2)],
            "{}",
            f.backend
        );
        track(&settled);
        assert_eq!(publish(&f).await, Vec::new(), "{}", f.backend);
        // The lifted hold has left the CRL.
        assert_eq!(entries(&parsed(&f, &f.issuing, 2).await), BTreeMap::new());

        // Past crl_refresh every CRL is made again; the expired certificate's entry is gone.
        f.clock.advance(f.config.crl_refresh);
        let refreshed = publish(&f).await;
        assert_eq!(
            scopes(&refreshed),
            all_scopes(&[&f.root, &f.issuing], SHARDS),
            "{}",
            f.backend
        );
        track(&refreshed);
        assert_eq!(
            entries(&parsed(&f, &f.issuing, 0).await),
            expect(&[(&long, Some(RevocationReason::KeyCompromise))]),
            "{}: an expired certificate leaves the CRL",
            f.backend
        );
        assert_eq!(parsed(&f, &f.issuing, 0).await.this_update, f.now());

        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{}: every CRL of the CA has a higher number: {numbers:?}",
            f.backend
        );
        let events = f.events("ca.crl.published").await;
        assert_eq!(
            events.len(),
            first.len() + 1 + 1 + 3 + refreshed.len(),
            "{}",
            f.backend
        );
    }
}

#[tokio::test]
async fn one_replica_publishes_at_a_time() {
    for f in each_backend().await {
        let b = f.replica("replica-b").await;
        let holder = async || {
            leases::holder(f.store.conn(), LEASE, f.now())
                .await
                .expect("lease read")
        };
        assert_eq!(publish(&f).await.len(), 2, "{}", f.backend);
        assert_eq!(holder().await.as_deref(), Some("replica-a"));

        let first = f.leaf(&f.issuing).await;
        revoke(&f, &first, "keyCompromise").await;
        f.clock.advance(Duration::seconds(6));
        assert_eq!(
            b.publisher.publish_due().await.expect("round"),
            Vec::new(),
            "{}: replica B does nothing while A holds the lease",
            f.backend
        );
        assert_eq!(
            scopes(&publish(&f).await),
            vec![(f.issuing.id(), 1, 0)],
            "{}",
            f.backend
        );

        // A stops (its lease is not renewed); B takes over once it expires.
        let second = f.leaf(&f.issuing).await;
        revoke(&f, &second, "keyCompromise").await;
        f.clock.advance(Duration::seconds(6));
        assert_eq!(b.publisher.publish_due().await.expect("round"), Vec::new());
        f.clock.advance(Duration::minutes(2));
        let taken = b.publisher.publish_due().await.expect("round");
        assert_eq!(
            scopes(&taken),
            vec![(f.issuing.id(), 1, 0)],
            "{}: replica B took over",
            f.backend
        );
        assert_eq!(
            holder().await.as_deref(),
            Some("replica-b"),
            "{}",
            f.backend
        );
        assert_eq!(
            entries(&parsed(&f, &f.issuing, 0).await),
            expect(&[
                (&first, Some(RevocationReason::KeyCompromise)),
                (&second, Some(RevocationReason::KeyCompromise)),
            ])
        );
        // Now A waits while B holds the lease.
        let third = f.leaf(&f.issuing).await;
        revoke(&f, &third, "keyCompromise").await;
        f.clock.advance(Duration::seconds(6));
        assert_eq!(publish(&f).await, Vec::new(), "{}: A waits", f.backend);
        assert_eq!(
            scopes(&b.publisher.publish_due().await.expect("round")),
            vec![(f.issuing.id(), 1, 0)],
            "{}",
            f.backend
        );
    }
}

/// The publisher task: publishes at once, again soon after a revocation wakes it, and gives
/// up its lease when it stops.
#[tokio::test]
async fn the_publisher_task_wakes_on_revocations_and_releases_its_lease() {
    let f = Fixture::on_test_db(certmesh_store::testing::sqlite().await, config(1)).await;
    let leaf = f.leaf(&f.issuing).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(f.publisher.clone().run(stopped));
    let number = async || f.crl(&f.issuing, 0).await.map(|c| c.number);
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while number().await.is_none() || f.crl(&f.root, 0).await.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no first CRLs");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    // Let the round end (it renews the lease last): on SQLite a revocation racing the
    // publisher's writes fails (see revoke::a_revocation_waits_for_a_concurrent_writer).
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    let first = number().await;
    assert_eq!(
        leases::holder(f.store.conn(), LEASE, f.now())
            .await
            .expect("lease")
            .as_deref(),
        Some("replica-a")
    );
    revoke(&f, &leaf, "keyCompromise").await;
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    while number().await == first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no CRL after the revocation"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert_eq!(
        entries(&parsed(&f, &f.issuing, 0).await),
        expect(&[(&leaf, Some(RevocationReason::KeyCompromise))])
    );
    stop.send(true).expect("stop");
    tokio::time::timeout(StdDuration::from_secs(10), task)
        .await
        .expect("the task stops")
        .expect("the task did not panic");
    assert_eq!(
        leases::holder(f.store.conn(), LEASE, f.now())
            .await
            .expect("lease"),
        None,
        "the lease is released"
    );
}

/// A short `crl_refresh` shortens the lease with the tick: a replica that stopped renewing is
/// replaced after 10 s, not two minutes, and the CRLs that came due meanwhile are published by
/// the replica that took over.
#[tokio::test]
async fn a_short_refresh_means_a_short_lease() {
    let mut short = config(1);
    short.crl_refresh = Duration::seconds(4);
    for f in each_backend_with(short.clone()).await {
        let b = f.replica("replica-b").await;
        assert_eq!(b.publisher.lease_ttl(), Duration::seconds(10));
        assert_eq!(publish(&f).await.len(), 2, "{}", f.backend);
        // A stops here. Its CRLs come due after 4 s; its lease lasts 10 s.
        f.clock.advance(Duration::seconds(9));
        assert_eq!(
            b.publisher.publish_due().await.expect("round"),
            Vec::new(),
            "{}: A's lease still holds",
            f.backend
        );
        f.clock.advance(Duration::seconds(1));
        let taken = b.publisher.publish_due().await.expect("round");
        assert_eq!(
            scopes(&taken),
            all_scopes(&[&f.root, &f.issuing], 1),
            "{}: B took over and published what came due",
            f.backend
        );
        assert_eq!(
            leases::holder(f.store.conn(), LEASE, f.now())
                .await
                .expect("lease")
                .as_deref(),
            Some("replica-b"),
            "{}",
            f.backend
        );
    }
}

/// The publisher task honours a `crl_refresh` shorter than its longest tick: it republishes
/// within a refresh period of a CRL coming due, with nothing waking it.
#[tokio::test]
async fn the_publisher_task_republishes_each_refresh_period() {
    let mut short = config(1);
    short.crl_refresh = Duration::seconds(2);
    for f in each_backend_with(short.clone()).await {
        assert_eq!(f.publisher.tick(), StdDuration::from_secs(1));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(f.publisher.clone().run(stopped));
        let number = async || f.crl(&f.issuing, 0).await.map(|c| c.number);
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
        while number().await.is_none() || f.crl(&f.root, 0).await.is_none() {
            assert!(tokio::time::Instant::now() < deadline, "no first CRLs");
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        let first = number().await;
        f.clock.advance(Duration::seconds(2));
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(5);
        while number().await == first {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no new CRL a refresh period later",
                f.backend
            );
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        stop.send(true).expect("stop");
        tokio::time::timeout(StdDuration::from_secs(10), task)
            .await
            .expect("the task stops")
            .expect("the task did not panic");
    }
}
