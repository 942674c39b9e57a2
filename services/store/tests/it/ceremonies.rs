//! Ceremonies: one approval per custodian with a running count, completed once and only with
//! quorum, expired on read, tenant-scoped.

use certmesh_store::ceremonies::{self, ApproveOutcome, CeremonyStatus, NewCeremony};
use certmesh_store::principal_keys::{self, ALGORITHM_ED25519, PrincipalKey};
use certmesh_store::testing::{TestDb, each_backend};
use certmesh_store::{Backend, CaId, StoreError, TenantId, cas, principals, truncate_ts};
use chrono::Duration;
use sea_orm::DatabaseTransaction;

use crate::{at, fingerprint, t0, tenant, tx};

/// Three custodians with a key each, sorted by principal id.
async fn custodians(t: &DatabaseTransaction, tenant: TenantId, seed: u64) -> Vec<PrincipalKey> {
    let mut keys = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let p = principals::create(t, tenant, name, "user", &["custodian".into()], t0())
            .await
            .expect("principal");
        let n = seed * 10 + i as u64;
        let key = principal_keys::add(
            t,
            tenant,
            p.id,
            ALGORITHM_ED25519,
            &[0x30, n as u8],
            &fingerprint(n),
            t0(),
        )
        .await
        .expect("key");
        keys.push(key);
    }
    keys.sort_by_key(|k| k.principal_id);
    keys
}

fn new_ceremony(tenant_id: TenantId, keys: &[PrincipalKey], threshold: u32) -> NewCeremony {
    NewCeremony {
        id: uuid::Uuid::new_v4(),
        tenant_id,
        purpose: "create_root".to_owned(),
        params: serde_json::json!({
            "excluded_dns": [],
            "key_spec": "ecdsa-p256",
            "permitted_dns": ["example.com"],
            "subject_cn": "Acme Root",
            "validity_days": 3650,
        }),
        digest: "ab".repeat(32),
        threshold,
        custodians: keys.iter().map(|k| k.principal_id).collect(),
        created_by: keys[0].principal_id,
        expires_at: t0() + Duration::hours(24),
    }
}

async fn approve(
    t: &DatabaseTransaction,
    tenant: TenantId,
    id: uuid::Uuid,
    key: &PrincipalKey,
    secs: i64,
) -> Result<ApproveOutcome, StoreError> {
    ceremonies::approve(
        t,
        tenant,
        id,
        key.principal_id,
        key.id,
        format!("sig-{}", key.fingerprint).as_bytes(),
        at(secs),
    )
    .await
}

async fn a_ca(t: &DatabaseTransaction, tenant: TenantId) -> CaId {
    let new = cas::NewCa {
        tenant_id: tenant,
        name: "root".to_owned(),
        parent_id: None,
        kind: cas::KIND_ROOT.to_owned(),
        path_len: None,
        key_spec: "ecdsa-p256".to_owned(),
        permitted_dns: vec!["example.com".to_owned()],
        excluded_dns: Vec::new(),
        key_offline: false,
        key_ref: "file:keys/root".to_owned(),
        certificate_der: vec![0x30],
        subject: "CN=Acme Root".to_owned(),
        not_before: t0(),
        not_after: at(86_400),
    };
    cas::insert(t, new, t0()).await.expect("ca").id
}

#[tokio::test]
async fn approvals_count_once_per_custodian() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let keys = custodians(&t, acme, 1).await;
        let new = new_ceremony(acme, &keys, 2);
        let created = ceremonies::create(&t, &new, t0()).await.expect("create");
        assert_eq!(created.status, CeremonyStatus::Open);
        assert_eq!(created.created_at, truncate_ts(t0()));
        assert_eq!(
            ceremonies::get(&t, acme, new.id, at(1)).await.expect("get"),
            Some(created.clone()),
            "{b:?}: exact round-trip, params and custodians included"
        );

        let first = approve(&t, acme, new.id, &keys[0], 1).await.expect("first");
        assert_eq!(
            first,
            ApproveOutcome {
                count: 1,
                already: false
            },
            "{b:?}"
        );
        let again = approve(&t, acme, new.id, &keys[0], 2).await.expect("again");
        assert_eq!(
            again,
            ApproveOutcome {
                count: 1,
                already: true
            },
            "{b:?}: running count"
        );
        let second = approve(&t, acme, new.id, &keys[2], 3)
            .await
            .expect("second");
        assert_eq!(
            second,
            ApproveOutcome {
                count: 2,
                already: false
            },
            "{b:?}"
        );

        let stored = ceremonies::approvals(&t, acme, new.id)
            .await
            .expect("approvals");
        let who: Vec<_> = stored.iter().map(|a| (a.principal_id, a.key_id)).collect();
        assert_eq!(
            who,
            [
                (keys[0].principal_id, keys[0].id),
                (keys[2].principal_id, keys[2].id)
            ],
            "{b:?}: oldest first; the repeat wrote nothing"
        );
        assert_eq!(
            stored[0].signature,
            format!("sig-{}", keys[0].fingerprint).as_bytes(),
            "{b:?}: the first signature is kept"
        );
        assert_eq!(stored[0].created_at, truncate_ts(at(1)));

        // Someone who is not a custodian, and a custodian with another's key, are refused.
        let outsider = principals::create(&t, acme, "mallory", "user", &[], t0())
            .await
            .expect("outsider");
        let refused = ceremonies::approve(&t, acme, new.id, outsider.id, keys[1].id, b"s", at(4));
        assert!(
            matches!(refused.await, Err(StoreError::Invalid { .. })),
            "{b:?}"
        );
        let borrowed = ceremonies::approve(
            &t,
            acme,
            new.id,
            keys[1].principal_id,
            keys[0].id,
            b"s",
            at(4),
        );
        assert!(
            matches!(borrowed.await, Err(StoreError::Invalid { .. })),
            "{b:?}"
        );
        // A revoked key no longer approves.
        principal_keys::revoke(&t, acme, keys[1].id, at(4))
            .await
            .expect("revoke");
        let revoked = approve(&t, acme, new.id, &keys[1], 5).await;
        assert!(matches!(revoked, Err(StoreError::Invalid { .. })), "{b:?}");
        let missing = approve(&t, acme, uuid::Uuid::new_v4(), &keys[1], 5).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound { what: "ceremony" })),
            "{b:?}"
        );
        assert_eq!(
            ceremonies::approvals(&t, acme, new.id)
                .await
                .expect("approvals")
                .len(),
            2
        );
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn a_ceremony_completes_once_and_only_with_quorum() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let keys = custodians(&t, acme, 2).await;
        let ca = a_ca(&t, acme).await;
        let new = new_ceremony(acme, &keys, 2);
        ceremonies::create(&t, &new, t0()).await.expect("create");
        approve(&t, acme, new.id, &keys[1], 1)
            .await
            .expect("approve");

        let short = ceremonies::complete(&t, acme, new.id, Some(ca), at(2)).await;
        assert!(
            matches!(short, Err(StoreError::Conflict { what: "ceremony" })),
            "{b:?}: one of two approvals: {short:?}"
        );
        approve(&t, acme, new.id, &keys[2], 3)
            .await
            .expect("approve");
        ceremonies::complete(&t, acme, new.id, Some(ca), at(4))
            .await
            .expect("complete with quorum");
        let done = ceremonies::get(&t, acme, new.id, at(5))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(done.status, CeremonyStatus::Completed, "{b:?}");
        assert_eq!(done.completed_at, Some(truncate_ts(at(4))));
        assert_eq!(done.result_ca_id, Some(ca));

        let twice = ceremonies::complete(&t, acme, new.id, Some(ca), at(6)).await;
        assert!(
            matches!(twice, Err(StoreError::Conflict { what: "ceremony" })),
            "{b:?}: {twice:?}"
        );
        let late = approve(&t, acme, new.id, &keys[0], 7).await;
        assert!(
            matches!(late, Err(StoreError::Conflict { what: "ceremony" })),
            "{b:?}"
        );
        // Completed is final, even past expiry.
        let later = ceremonies::get(&t, acme, new.id, at(100_000))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(later.status, CeremonyStatus::Completed, "{b:?}");
        assert!(
            !ceremonies::expire(&t, acme, new.id, at(100_000))
                .await
                .expect("expire")
        );
        let gone = ceremonies::complete(&t, acme, uuid::Uuid::new_v4(), None, at(8)).await;
        assert!(
            matches!(gone, Err(StoreError::NotFound { what: "ceremony" })),
            "{b:?}"
        );
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn an_expired_ceremony_reads_expired_and_cannot_be_completed() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let keys = custodians(&t, acme, 3).await;
        let new = new_ceremony(acme, &keys, 1);
        let open = ceremonies::create(&t, &new, t0()).await.expect("create");
        approve(&t, acme, new.id, &keys[0], 1)
            .await
            .expect("approve");
        let expiry = (new.expires_at - t0()).num_seconds();
        let past = at(expiry);

        let got = ceremonies::get(&t, acme, new.id, past)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            got.status,
            CeremonyStatus::Expired,
            "{b:?}: expired on read"
        );
        let listed = |status| ceremonies::list(&t, acme, status, past);
        assert_eq!(
            listed(Some(CeremonyStatus::Expired))
                .await
                .expect("list")
                .len(),
            1
        );
        assert!(
            listed(Some(CeremonyStatus::Open))
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(
            ceremonies::list(&t, acme, Some(CeremonyStatus::Open), at(1))
                .await
                .expect("list"),
            [open],
            "{b:?}: open before expiry"
        );

        let refused = ceremonies::complete(&t, acme, new.id, None, past).await;
        assert!(
            matches!(refused, Err(StoreError::Conflict { what: "ceremony" })),
            "{b:?}: quorum met, but expired: {refused:?}"
        );
        let late = approve(&t, acme, new.id, &keys[1], expiry + 1).await;
        assert!(matches!(late, Err(StoreError::Conflict { .. })), "{b:?}");
        assert!(
            !ceremonies::expire(&t, acme, new.id, at(1))
                .await
                .expect("not yet")
        );
        assert!(
            ceremonies::expire(&t, acme, new.id, past)
                .await
                .expect("expire")
        );
        // Written down: expired even when read with an earlier clock.
        let got = ceremonies::get(&t, acme, new.id, at(1))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.status, CeremonyStatus::Expired, "{b:?}");
        assert!(matches!(
            ceremonies::complete(&t, acme, new.id, None, at(2)).await,
            Err(StoreError::Conflict { .. })
        ));
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn create_refuses_what_cannot_be_approved_or_is_taken() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let keys = custodians(&t, acme, 4).await;
        let invalid = async |new: NewCeremony| {
            matches!(
                ceremonies::create(&t, &new, t0()).await,
                Err(StoreError::Invalid { .. })
            )
        };
        let mut unsorted = new_ceremony(acme, &keys, 2);
        unsorted.custodians.reverse();
        assert!(invalid(unsorted).await, "{b:?}: unsorted custodians");
        let mut repeated = new_ceremony(acme, &keys, 2);
        repeated.custodians.insert(1, repeated.custodians[0]);
        assert!(invalid(repeated).await, "{b:?}: a custodian twice");
        assert!(
            invalid(new_ceremony(acme, &keys, 0)).await,
            "{b:?}: threshold 0"
        );
        assert!(invalid(new_ceremony(acme, &keys, 4)).await, "{b:?}: 4 of 3");
        let mut stale = new_ceremony(acme, &keys, 1);
        stale.expires_at = t0();
        assert!(invalid(stale).await, "{b:?}: expires at once");

        let new = new_ceremony(acme, &keys, 3);
        ceremonies::create(&t, &new, t0()).await.expect("create");
        let dup = ceremonies::create(&t, &new, t0()).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict { what: "ceremony" })),
            "{b:?}: {dup:?}"
        );
        ceremonies::create(&t, &new_ceremony(acme, &keys, 3), t0())
            .await
            .expect("the transaction is still usable");
        assert_eq!(
            ceremonies::list(&t, acme, None, at(1))
                .await
                .expect("list")
                .len(),
            2
        );
        t.commit().await.expect("commit");
    }
}

/// One ceremony with an approval in `acme`; returns its id.
async fn seed_ceremony(db: &TestDb, acme: TenantId) -> uuid::Uuid {
    let t = tx(db, acme).await;
    let keys = custodians(&t, acme, 5).await;
    let new = new_ceremony(acme, &keys, 2);
    ceremonies::create(&t, &new, t0()).await.expect("create");
    approve(&t, acme, new.id, &keys[0], 1)
        .await
        .expect("approve");
    t.commit().await.expect("commit");
    new.id
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_ceremonies() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let id = seed_ceremony(&db, acme).await;

        let t = tx(&db, globex).await;
        assert_eq!(
            ceremonies::get(&t, globex, id, at(2)).await.expect("get"),
            None
        );
        assert!(
            ceremonies::list(&t, globex, None, at(2))
                .await
                .expect("list")
                .is_empty()
        );
        assert!(
            ceremonies::approvals(&t, globex, id)
                .await
                .expect("approvals")
                .is_empty()
        );
        let theirs = ceremonies::complete(&t, globex, id, None, at(2)).await;
        assert!(matches!(theirs, Err(StoreError::NotFound { .. })), "{b:?}");
        // Naming acme in globex's transaction: PostgreSQL's policies still hide acme's rows.
        let seen = ceremonies::list(&t, acme, None, at(2))
            .await
            .expect("list")
            .len()
            + ceremonies::approvals(&t, acme, id)
                .await
                .expect("approvals")
                .len();
        let expected = if b == Backend::Postgres { 0 } else { 2 };
        assert_eq!(seen, expected, "{b:?}");
        t.commit().await.expect("commit");
    }
}
