//! Principal keys: unique fingerprints per tenant, active until revoked, tenant-scoped.

use certmesh_store::principal_keys::{self, ALGORITHM_ECDSA_P256, ALGORITHM_ED25519};
use certmesh_store::testing::each_backend;
use certmesh_store::{Backend, StoreError, principals, truncate_ts};

use crate::{at, fingerprint, t0, tenant, tx};

#[tokio::test]
async fn keys_are_added_listed_while_active_and_revoked_once() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let alice = principals::create(&t, acme, "alice", "user", &[], t0())
            .await
            .expect("alice");
        let bob = principals::create(&t, acme, "bob", "user", &[], t0())
            .await
            .expect("bob");
        let spki = [0x30, 0x2a, 0x30, 0x05];
        let k1 = principal_keys::add(
            &t,
            acme,
            alice.id,
            ALGORITHM_ED25519,
            &spki,
            &fingerprint(1),
            t0(),
        )
        .await
        .expect("first key");
        assert_eq!(k1.principal_id, alice.id);
        assert_eq!(k1.public_key_der, spki);
        assert_eq!(k1.created_at, truncate_ts(t0()));
        assert_eq!(k1.revoked_at, None);
        let k2 = principal_keys::add(
            &t,
            acme,
            alice.id,
            ALGORITHM_ECDSA_P256,
            &[0x30],
            &fingerprint(2),
            at(1),
        )
        .await
        .expect("second key");
        principal_keys::add(
            &t,
            acme,
            bob.id,
            ALGORITHM_ED25519,
            &[0x30],
            &fingerprint(3),
            t0(),
        )
        .await
        .expect("bob's key");

        // One key cannot speak for two principals, nor be registered twice.
        for who in [alice.id, bob.id] {
            let dup = principal_keys::add(
                &t,
                acme,
                who,
                ALGORITHM_ED25519,
                &spki,
                &fingerprint(1),
                at(2),
            )
            .await;
            assert!(
                matches!(
                    dup,
                    Err(StoreError::Conflict {
                        what: "principal key"
                    })
                ),
                "{b:?}: {dup:?}"
            );
        }
        for bad in ["AB".repeat(32), "ab".repeat(31), "zz".repeat(32)] {
            let refused =
                principal_keys::add(&t, acme, alice.id, ALGORITHM_ED25519, &spki, &bad, t0()).await;
            assert!(
                matches!(refused, Err(StoreError::Invalid { .. })),
                "{b:?}: {bad}"
            );
        }
        let nobody = principal_keys::add(
            &t,
            acme,
            uuid::Uuid::new_v4(),
            ALGORITHM_ED25519,
            &spki,
            &fingerprint(9),
            t0(),
        )
        .await;
        assert!(
            matches!(nobody, Err(StoreError::NotFound { what: "principal" })),
            "{b:?}: {nobody:?}"
        );

        let active = principal_keys::active_for(&t, acme, alice.id)
            .await
            .expect("active");
        assert_eq!(
            active,
            [k1.clone(), k2.clone()],
            "{b:?}: oldest first, exact round-trip"
        );

        assert!(
            principal_keys::revoke(&t, acme, k1.id, at(5))
                .await
                .expect("revoke")
        );
        assert!(
            !principal_keys::revoke(&t, acme, k1.id, at(6))
                .await
                .expect("again"),
            "{b:?}: already revoked"
        );
        let revoked = principal_keys::get(&t, acme, k1.id)
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(
            revoked.revoked_at,
            Some(truncate_ts(at(5))),
            "{b:?}: the first time stays"
        );
        assert_eq!(
            principal_keys::active_for(&t, acme, alice.id)
                .await
                .expect("active"),
            [k2],
            "{b:?}"
        );
        // A revoked key's fingerprint stays taken.
        let reuse = principal_keys::add(
            &t,
            acme,
            alice.id,
            ALGORITHM_ED25519,
            &spki,
            &fingerprint(1),
            at(7),
        )
        .await;
        assert!(matches!(reuse, Err(StoreError::Conflict { .. })), "{b:?}");
        assert!(matches!(
            principal_keys::revoke(&t, acme, uuid::Uuid::new_v4(), at(8)).await,
            Err(StoreError::NotFound { .. })
        ));
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_keys() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let (alice, key) = db
            .store
            .in_tenant(acme, async |t| {
                let alice = principals::create(t, acme, "alice", "user", &[], t0()).await?;
                let key = principal_keys::add(
                    t,
                    acme,
                    alice.id,
                    ALGORITHM_ED25519,
                    &[0x30],
                    &fingerprint(1),
                    t0(),
                )
                .await?;
                Ok::<_, StoreError>((alice, key))
            })
            .await
            .expect("seed");

        let t = tx(&db, globex).await;
        assert_eq!(
            principal_keys::get(&t, globex, key.id).await.expect("get"),
            None
        );
        assert!(
            principal_keys::active_for(&t, globex, alice.id)
                .await
                .expect("active")
                .is_empty()
        );
        assert!(matches!(
            principal_keys::revoke(&t, globex, key.id, at(1)).await,
            Err(StoreError::NotFound { .. })
        ));
        // Another tenant may hold the same key, and cannot attach keys to acme's principals.
        let gina = principals::create(&t, globex, "gina", "user", &[], t0())
            .await
            .expect("gina");
        principal_keys::add(
            &t,
            globex,
            gina.id,
            ALGORITHM_ED25519,
            &[0x30],
            &fingerprint(1),
            t0(),
        )
        .await
        .expect("same fingerprint, other tenant");
        let planted = principal_keys::add(
            &t,
            globex,
            alice.id,
            ALGORITHM_ED25519,
            &[0x30],
            &fingerprint(2),
            t0(),
        )
        .await;
        assert!(
            matches!(planted, Err(StoreError::NotFound { what: "principal" })),
            "{b:?}"
        );
        // Naming acme in globex's transaction: PostgreSQL's policies still hide acme's rows.
        let seen = principal_keys::active_for(&t, acme, alice.id)
            .await
            .expect("active")
            .len();
        assert_eq!(seen, usize::from(b == Backend::Sqlite), "{b:?}");
        t.commit().await.expect("commit");
        let still = principal_keys::get(db.owner(), acme, key.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(still.revoked_at, None, "{b:?}");
    }
}
