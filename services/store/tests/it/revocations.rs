//! Revocations: insert once, the compare-and-set changes of a hold, CRL entries, freshness and
//! the change feed, tenant scoping; and a timed million-entry CRL read (ignored by default).

use std::time::Instant;

use certmesh_store::revocations::{
    self, CrlRow, NewRevocation, REASON_CERTIFICATE_HOLD, RevocationRecord, STATUS_LIFTED,
    STATUS_REVOKED,
};
use certmesh_store::testing::{TestDb, each_backend};
use certmesh_store::{CaId, StoreError, TenantId, truncate_ts};
use sea_orm::ConnectionTrait;

use crate::{at, tenant, tx};

const CA: CaId = CaId(uuid::Uuid::from_u128(0xca));

fn new(tenant_id: TenantId, serial: &str, reason: &str, secs: i64) -> NewRevocation {
    NewRevocation {
        tenant_id,
        serial: serial.to_owned(),
        issuer_ca_id: CA,
        ca_generation: 1,
        crl_shard: 0,
        reason: reason.to_owned(),
        reason_text: format!("{reason} of {serial}"),
        revoked_at: at(secs),
        revoked_by: "alice".to_owned(),
        cert_not_after: at(86_400),
    }
}

/// The record `insert(new)` stores.
fn stored(new: &NewRevocation) -> RevocationRecord {
    RevocationRecord {
        tenant_id: new.tenant_id,
        serial: new.serial.clone(),
        issuer_ca_id: new.issuer_ca_id,
        ca_generation: new.ca_generation,
        crl_shard: new.crl_shard,
        reason: new.reason.clone(),
        reason_text: new.reason_text.clone(),
        status: STATUS_REVOKED.to_owned(),
        revoked_at: truncate_ts(new.revoked_at),
        revoked_by: new.revoked_by.clone(),
        cert_not_after: truncate_ts(new.cert_not_after),
        updated_at: truncate_ts(new.revoked_at),
    }
}

#[tokio::test]
async fn insert_once_get_and_tenant_scoping() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let t = tx(&db, acme).await;
        let first = new(acme, "0a", "keyCompromise", 1);
        assert!(
            revocations::insert(&t, &first).await.expect("insert"),
            "{b:?}"
        );
        let mut again = new(acme, "0a", "superseded", 2);
        again.revoked_by = "bob".to_owned();
        assert!(
            !revocations::insert(&t, &again).await.expect("insert twice"),
            "{b:?}: a serial is revoked once"
        );
        // The conflict left the transaction usable and the first record as it was.
        assert_eq!(
            revocations::get(&t, acme, "0a").await.expect("get"),
            Some(stored(&first)),
            "{b:?}: exact round-trip, first record kept"
        );
        assert_eq!(revocations::get(&t, acme, "0b").await.expect("get"), None);
        t.commit().await.expect("commit");

        let t = tx(&db, globex).await;
        assert_eq!(
            revocations::get(&t, globex, "0a").await.expect("get"),
            None,
            "{b:?}: another tenant does not see it"
        );
        assert!(
            revocations::for_crl(&t, globex, CA, 1, 0, at(0))
                .await
                .expect("for_crl")
                .is_empty()
        );
        assert_eq!(
            revocations::last_change(&t, globex, CA, 1, 0)
                .await
                .expect("last_change"),
            None
        );
        assert!(
            revocations::changed_since(&t, globex, at(-10), 10)
                .await
                .expect("changed_since")
                .is_empty()
        );
        // Not even the compare-and-set calls reach acme's row.
        assert!(
            !revocations::lift_hold(&t, globex, "0a", at(5))
                .await
                .expect("lift")
        );
        assert!(
            revocations::insert(&t, &new(globex, "0a", "keyCompromise", 3))
                .await
                .expect("same serial, other tenant"),
            "{b:?}"
        );
        t.commit().await.expect("commit");
        let owner = db.owner();
        assert_eq!(
            revocations::get(owner, acme, "0a")
                .await
                .expect("get")
                .expect("acme's")
                .reason,
            "keyCompromise",
            "{b:?}: untouched by globex"
        );

        let t = tx(&db, acme).await;
        let many: Vec<_> = (0..2500)
            .map(|i| new(acme, &format!("b{i:04}"), "unspecified", i))
            .collect();
        revocations::insert_many(&t, &many)
            .await
            .expect("insert_many over more than one chunk");
        assert_eq!(
            revocations::get(&t, acme, "b2499").await.expect("get"),
            Some(stored(&many[2499])),
            "{b:?}"
        );
        t.commit().await.expect("commit");
        let t = tx(&db, acme).await;
        let dup = revocations::insert_many(&t, &[new(acme, "0a", "unspecified", 9)]).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict { what: "revocation" })),
            "{b:?}: {dup:?}"
        );
    }
}

#[tokio::test]
async fn holds_are_lifted_escalated_and_re_revoked_only_from_the_right_state() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let hold = new(acme, "01", REASON_CERTIFICATE_HOLD, 1);
        let final_ = new(acme, "02", "keyCompromise", 1);
        for r in [&hold, &final_] {
            assert!(revocations::insert(&t, r).await.expect("insert"));
        }

        // Only a hold can be lifted or escalated.
        assert!(
            !revocations::lift_hold(&t, acme, "02", at(2))
                .await
                .expect("lift"),
            "{b:?}"
        );
        assert!(
            !revocations::escalate_hold(&t, acme, "02", "superseded", "x", "bob", at(2))
                .await
                .expect("escalate"),
            "{b:?}"
        );
        assert!(
            !revocations::lift_hold(&t, acme, "99", at(2))
                .await
                .expect("lift unknown")
        );
        // A revoked (not lifted) serial cannot be re-revoked.
        assert!(
            !revocations::re_revoke_lifted(&t, &new(acme, "01", "keyCompromise", 2))
                .await
                .expect("re-revoke"),
            "{b:?}"
        );
        assert_eq!(
            revocations::get(&t, acme, "02").await.expect("get"),
            Some(stored(&final_)),
            "{b:?}: refused changes change nothing"
        );

        // Lift the hold.
        assert!(
            revocations::lift_hold(&t, acme, "01", at(3))
                .await
                .expect("lift"),
            "{b:?}"
        );
        let lifted = revocations::get(&t, acme, "01")
            .await
            .expect("get")
            .expect("row");
        assert_eq!(
            lifted,
            RevocationRecord {
                status: STATUS_LIFTED.to_owned(),
                updated_at: truncate_ts(at(3)),
                ..stored(&hold)
            },
            "{b:?}: reason and time stay as history"
        );
        assert!(
            !revocations::lift_hold(&t, acme, "01", at(4))
                .await
                .expect("lift twice")
        );
        assert!(
            !revocations::escalate_hold(&t, acme, "01", "keyCompromise", "x", "bob", at(4))
                .await
                .expect("escalate a lifted hold"),
            "{b:?}: a lifted hold is not a hold"
        );

        // Revoke it again, on hold once more, then escalate.
        let mut again = new(acme, "01", REASON_CERTIFICATE_HOLD, 5);
        again.revoked_by = "carol".to_owned();
        again.reason_text = "held again".to_owned();
        // The certificate's key, shard and expiry stay as first recorded.
        again.crl_shard = 7;
        assert!(
            revocations::re_revoke_lifted(&t, &again)
                .await
                .expect("re-revoke"),
            "{b:?}"
        );
        assert!(
            !revocations::re_revoke_lifted(&t, &again)
                .await
                .expect("twice")
        );
        assert_eq!(
            revocations::get(&t, acme, "01").await.expect("get"),
            Some(RevocationRecord {
                reason_text: "held again".to_owned(),
                revoked_by: "carol".to_owned(),
                revoked_at: truncate_ts(at(5)),
                updated_at: truncate_ts(at(5)),
                ..stored(&hold)
            }),
            "{b:?}"
        );
        assert!(
            revocations::escalate_hold(&t, acme, "01", "keyCompromise", "leaked", "dave", at(6))
                .await
                .expect("escalate"),
            "{b:?}"
        );
        assert_eq!(
            revocations::get(&t, acme, "01").await.expect("get"),
            Some(RevocationRecord {
                reason: "keyCompromise".to_owned(),
                reason_text: "leaked".to_owned(),
                revoked_by: "dave".to_owned(),
                revoked_at: truncate_ts(at(5)),
                updated_at: truncate_ts(at(6)),
                ..stored(&hold)
            }),
            "{b:?}: escalation keeps the hold's revocation time"
        );
        assert!(
            !revocations::lift_hold(&t, acme, "01", at(7))
                .await
                .expect("lift"),
            "{b:?}: no longer a hold"
        );
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn for_crl_lists_unexpired_revoked_serials_of_one_key_and_shard() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let now = at(1000);
        let t = tx(&db, acme).await;
        let listed = new(acme, "01", "keyCompromise", 1);
        let held = new(acme, "02", REASON_CERTIFICATE_HOLD, 2);
        let lifted = new(acme, "03", REASON_CERTIFICATE_HOLD, 3);
        let mut expired = new(acme, "04", "keyCompromise", 4);
        expired.cert_not_after = truncate_ts(now);
        let mut just_valid = new(acme, "05", "superseded", 5);
        just_valid.cert_not_after = truncate_ts(now) + chrono::Duration::microseconds(1);
        let mut other_generation = new(acme, "06", "keyCompromise", 6);
        other_generation.ca_generation = 2;
        let mut other_shard = new(acme, "07", "keyCompromise", 7);
        other_shard.crl_shard = 1;
        let mut other_ca = new(acme, "08", "keyCompromise", 8);
        other_ca.issuer_ca_id = CaId(uuid::Uuid::from_u128(0xcb));
        revocations::insert_many(
            &t,
            &[
                listed.clone(),
                held.clone(),
                lifted,
                expired,
                just_valid.clone(),
                other_generation,
                other_shard,
                other_ca,
            ],
        )
        .await
        .expect("insert_many");
        assert!(
            revocations::lift_hold(&t, acme, "03", at(9))
                .await
                .expect("lift")
        );
        let mut rows = revocations::for_crl(&t, acme, CA, 1, 0, now)
            .await
            .expect("for_crl");
        rows.sort_by(|a, b| a.serial.cmp(&b.serial));
        let row = |r: &NewRevocation| CrlRow {
            serial: r.serial.clone(),
            revoked_at: truncate_ts(r.revoked_at),
            reason: r.reason.clone(),
        };
        assert_eq!(
            rows,
            [row(&listed), row(&held), row(&just_valid)],
            "{b:?}: no lifted, expired, other key, shard or CA"
        );
        let shard1 = revocations::for_crl(&t, acme, CA, 1, 1, now)
            .await
            .expect("for_crl");
        assert_eq!(
            shard1.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(),
            ["07"]
        );
        t.commit().await.expect("commit");
        let t = tx(&db, globex).await;
        assert!(
            revocations::for_crl(&t, globex, CA, 1, 0, now)
                .await
                .expect("for_crl")
                .is_empty(),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn last_change_and_changed_since_follow_updated_at() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        assert_eq!(
            revocations::last_change(&t, acme, CA, 1, 0)
                .await
                .expect("last"),
            None
        );
        let mut other_shard = new(acme, "09", "keyCompromise", 50);
        other_shard.crl_shard = 3;
        for r in [
            new(acme, "01", "keyCompromise", 10),
            new(acme, "02", REASON_CERTIFICATE_HOLD, 20),
            new(acme, "03", "superseded", 20),
            other_shard,
        ] {
            assert!(revocations::insert(&t, &r).await.expect("insert"));
        }
        assert_eq!(
            revocations::last_change(&t, acme, CA, 1, 0)
                .await
                .expect("last"),
            Some(truncate_ts(at(20))),
            "{b:?}"
        );
        assert_eq!(
            revocations::last_change(&t, acme, CA, 1, 3)
                .await
                .expect("last"),
            Some(truncate_ts(at(50))),
            "{b:?}: per shard"
        );
        assert_eq!(
            revocations::last_change(&t, acme, CA, 2, 0)
                .await
                .expect("last"),
            None,
            "{b:?}: per generation"
        );
        // A lifted hold is a change of the CRL too.
        assert!(
            revocations::lift_hold(&t, acme, "02", at(30))
                .await
                .expect("lift")
        );
        assert_eq!(
            revocations::last_change(&t, acme, CA, 1, 0)
                .await
                .expect("last"),
            Some(truncate_ts(at(30))),
            "{b:?}: any status counts"
        );

        let serials =
            |rows: Vec<RevocationRecord>| rows.into_iter().map(|r| r.serial).collect::<Vec<_>>();
        assert_eq!(
            serials(
                revocations::changed_since(&t, acme, at(0), 100)
                    .await
                    .expect("feed")
            ),
            ["01", "03", "02", "09"],
            "{b:?}: by updated_at, ties by serial"
        );
        // `since` is exclusive, also when it carries nanoseconds past a stored instant.
        assert_eq!(
            serials(
                revocations::changed_since(&t, acme, at(10), 100)
                    .await
                    .expect("feed")
            ),
            ["03", "02", "09"],
            "{b:?}"
        );
        assert_eq!(
            serials(
                revocations::changed_since(&t, acme, truncate_ts(at(20)), 100)
                    .await
                    .expect("feed")
            ),
            ["02", "09"],
            "{b:?}"
        );
        assert_eq!(
            serials(
                revocations::changed_since(&t, acme, at(0), 2)
                    .await
                    .expect("feed")
            ),
            ["01", "03"],
            "{b:?}: limit"
        );
        let row = revocations::changed_since(&t, acme, at(25), 1)
            .await
            .expect("feed")
            .pop()
            .expect("a row");
        assert_eq!(
            (row.serial.as_str(), row.status.as_str(), row.updated_at),
            ("02", STATUS_LIFTED, truncate_ts(at(30))),
            "{b:?}: full records"
        );
        t.commit().await.expect("commit");
    }
}

/// Seeds `n` revocations for one CA key and shard (a tenth of them expired or lifted) and
/// times one [`revocations::for_crl`] read.
async fn time_for_crl(db: &TestDb, n: usize) {
    let b = db.backend();
    let acme = tenant(db, "acme").await;
    let now = at(1000);
    let rows: Vec<NewRevocation> = (0..n)
        .map(|i| {
            let mut r = new(acme, &format!("{i:040x}"), "keyCompromise", 1);
            r.reason_text = String::new();
            if i % 10 == 0 {
                r.cert_not_after = at(10);
            }
            r
        })
        .collect();
    let seeding = Instant::now();
    let t = tx(db, acme).await;
    revocations::insert_many(&t, &rows).await.expect("seed");
    t.commit().await.expect("commit");
    let seeded = seeding.elapsed();
    // Fresh statistics, as autovacuum (PostgreSQL) or `PRAGMA optimize` would leave them.
    db.owner()
        .execute_unprepared("ANALYZE")
        .await
        .expect("analyze");
    let t = tx(db, acme).await;
    let reading = Instant::now();
    let entries = revocations::for_crl(&t, acme, CA, 1, 0, now)
        .await
        .expect("for_crl");
    let read = reading.elapsed();
    let checking = Instant::now();
    let last = revocations::last_change(&t, acme, CA, 1, 0)
        .await
        .expect("last_change");
    let checked = checking.elapsed();
    t.commit().await.expect("commit");
    assert_eq!(entries.len(), n - n.div_ceil(10), "{b:?}");
    assert_eq!(last, Some(truncate_ts(at(1))), "{b:?}");
    eprintln!("{b:?}: last_change over {n} rows in {checked:?}");
    eprintln!(
        "{b:?}: seeded {n} revocations in {seeded:?}; for_crl read {} in {read:?}",
        entries.len()
    );
}

/// `cargo nextest run -p certmesh-store --run-ignored only -- million` (best in release:
/// `--release`).
#[tokio::test]
#[ignore = "slow: seeds a million revocations per backend"]
async fn for_crl_reads_a_million_entries() {
    for db in each_backend().await {
        time_for_crl(&db, 1_000_000).await;
    }
}
