//! CAs: insert, lookups, duplicate names, tenant scoping; the hierarchy's columns, conditional
//! status changes, rotation and the certificates of every generation.

use certmesh_store::ca_certificates::{self, NewCross, RELATION_CROSS, RELATION_PRIMARY};
use certmesh_store::cas::{self, NewCa, Rotation};
use certmesh_store::testing::each_backend;
use certmesh_store::{Backend, CaId, StoreError, TenantId, truncate_ts};

use crate::{at, t0, tenant, tx};

pub fn new_ca(tenant_id: TenantId, name: &str, parent_id: Option<CaId>) -> NewCa {
    NewCa {
        tenant_id,
        name: name.to_owned(),
        parent_id,
        kind: match parent_id {
            None => cas::KIND_ROOT,
            Some(_) => cas::KIND_INTERMEDIATE,
        }
        .to_owned(),
        path_len: parent_id.map_or(Some(1), |_| Some(0)),
        key_spec: "ecdsa-p256".to_owned(),
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
        key_offline: false,
        key_ref: format!("file:keys/{name}"),
        certificate_der: vec![0x30, 0x82, 0x01, 0x00, 0xff],
        subject: format!("CN={name}"),
        not_before: t0(),
        not_after: at(86_400),
    }
}

#[tokio::test]
async fn insert_get_by_name_duplicate() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let root = cas::insert(c, new_ca(acme, "root", None), t0())
            .await
            .expect("insert root");
        assert_eq!(root.status, cas::STATUS_ACTIVE);
        assert_eq!(root.not_before, certmesh_store::truncate_ts(t0()));
        let sub = cas::insert(c, new_ca(acme, "issuing", Some(root.id)), at(1))
            .await
            .expect("insert intermediate");

        let got = cas::get(c, acme, root.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got, root, "{b:?}: exact round-trip");
        let got = cas::by_name(c, acme, "issuing")
            .await
            .expect("by_name")
            .expect("found");
        assert_eq!(got, sub, "{b:?}");
        assert_eq!(got.parent_id, Some(root.id));
        assert_eq!(cas::by_name(c, acme, "nope").await.expect("by_name"), None);

        let dup = cas::insert(c, new_ca(acme, "root", None), at(2)).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict { what: "ca" })),
            "{b:?}: {dup:?}"
        );

        // Same name in another tenant is fine; lookups are tenant-scoped.
        let globex = tenant(&db, "globex").await;
        cas::insert(c, new_ca(globex, "root", None), t0())
            .await
            .expect("same name, other tenant");
        assert_eq!(
            cas::get(c, globex, sub.id).await.expect("get"),
            None,
            "{b:?}"
        );

        cas::retire(c, acme, sub.id).await.expect("retire");
        let got = cas::get(c, acme, sub.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.status, cas::STATUS_RETIRED);
    }
}

#[tokio::test]
async fn duplicate_inside_transaction_keeps_it_usable() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let txn = db.store.begin_tenant(acme).await.expect("begin");
        cas::insert(&txn, new_ca(acme, "root", None), t0())
            .await
            .expect("insert");
        let dup = cas::insert(&txn, new_ca(acme, "root", None), t0()).await;
        assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{b:?}");
        cas::insert(&txn, new_ca(acme, "other", None), t0())
            .await
            .expect("transaction still usable after a conflict");
        txn.commit().await.expect("commit");
        assert!(
            cas::by_name(db.owner(), acme, "other")
                .await
                .expect("get")
                .is_some()
        );
    }
}

fn rotation(from_generation: u32, key: &str) -> Rotation {
    Rotation {
        from_generation,
        key_ref: format!("file:keys/{key}"),
        certificate_der: key.as_bytes().to_vec(),
        subject: format!("CN={key}"),
        key_spec: "ecdsa-p384".to_owned(),
        not_before: at(100),
        not_after: at(200_000),
    }
}

#[tokio::test]
async fn hierarchy_columns_round_trip_and_children_are_listed_in_order() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let mut root = new_ca(acme, "root", None);
        root.path_len = None;
        root.key_spec = "ecdsa-p384".to_owned();
        root.permitted_dns = vec!["example.com".to_owned(), ".corp.example".to_owned()];
        root.excluded_dns = vec!["bad.example.com".to_owned()];
        root.key_offline = true;
        let root = cas::insert(&t, root, t0()).await.expect("root");
        assert_eq!(
            (root.kind.as_str(), root.path_len, root.generation),
            (cas::KIND_ROOT, None, 1),
            "{b:?}"
        );
        let a = cas::insert(&t, new_ca(acme, "a", Some(root.id)), at(2))
            .await
            .expect("a");
        let z = cas::insert(&t, new_ca(acme, "z", Some(root.id)), at(1))
            .await
            .expect("z");
        let grandchild = cas::insert(&t, new_ca(acme, "g", Some(z.id)), at(3))
            .await
            .expect("grandchild");
        assert_eq!(
            cas::get(&t, acme, root.id).await.expect("get"),
            Some(root.clone()),
            "{b:?}: every new column round-trips"
        );
        let ids = |v: Vec<cas::CaRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(
            ids(cas::list(&t, acme).await.expect("list")),
            [root.id, z.id, a.id, grandchild.id],
            "{b:?}: oldest first"
        );
        assert_eq!(
            ids(cas::children(&t, acme, root.id).await.expect("children")),
            [z.id, a.id],
            "{b:?}"
        );
        assert!(
            cas::children(&t, acme, a.id)
                .await
                .expect("leafless")
                .is_empty()
        );

        // The kind follows the parent; the parent must be the tenant's.
        let mut wrong = new_ca(acme, "wrong", None);
        wrong.kind = cas::KIND_INTERMEDIATE.to_owned();
        assert!(
            matches!(
                cas::insert(&t, wrong, t0()).await,
                Err(StoreError::Invalid { .. })
            ),
            "{b:?}"
        );
        let orphan = cas::insert(
            &t,
            new_ca(acme, "orphan", Some(CaId(uuid::Uuid::new_v4()))),
            t0(),
        )
        .await;
        assert!(
            matches!(orphan, Err(StoreError::NotFound { what: "parent ca" })),
            "{b:?}: {orphan:?}"
        );
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn insert_records_the_first_generation_as_the_primary_certificate() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let root = cas::insert(&t, new_ca(acme, "root", None), t0())
            .await
            .expect("root");
        let sub = cas::insert(&t, new_ca(acme, "sub", Some(root.id)), at(1))
            .await
            .expect("sub");
        for (ca, issuer) in [(&root, None), (&sub, Some(root.id))] {
            let certs = ca_certificates::list(&t, acme, ca.id).await.expect("list");
            assert_eq!(certs.len(), 1, "{b:?}");
            let primary = &certs[0];
            assert_eq!(primary.relation, RELATION_PRIMARY);
            assert_eq!(primary.generation, 1);
            assert_eq!(
                primary.issuer_ca_id, issuer,
                "{b:?}: self-signed roots have none"
            );
            assert_eq!(primary.certificate_der, ca.certificate_der);
            assert_eq!(primary.key_ref, ca.key_ref);
            assert_eq!(
                (primary.not_before, primary.not_after),
                (ca.not_before, ca.not_after)
            );
            assert_eq!(primary.created_at, ca.created_at);
            assert_eq!(primary.superseded_at, None);
        }
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn set_status_moves_only_from_the_expected_status() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let ca = cas::insert(&t, new_ca(acme, "root", None), t0())
            .await
            .expect("root");
        cas::set_status(&t, acme, ca.id, cas::STATUS_ACTIVE, cas::STATUS_RETIRING)
            .await
            .expect("active → retiring");
        // A second writer that read `active` loses.
        let stale =
            cas::set_status(&t, acme, ca.id, cas::STATUS_ACTIVE, cas::STATUS_RETIRING).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { what: "ca" })),
            "{b:?}: {stale:?}"
        );
        cas::set_status(&t, acme, ca.id, cas::STATUS_RETIRING, cas::STATUS_RETIRED)
            .await
            .expect("retiring → retired, the transaction still usable");
        let got = cas::get(&t, acme, ca.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.status, cas::STATUS_RETIRED, "{b:?}");
        assert!(matches!(
            cas::set_status(&t, acme, ca.id, cas::STATUS_RETIRED, "deleted").await,
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            cas::set_status(
                &t,
                acme,
                CaId(uuid::Uuid::new_v4()),
                cas::STATUS_ACTIVE,
                cas::STATUS_RETIRING
            )
            .await,
            Err(StoreError::NotFound { what: "ca" })
        ));
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn rotate_bumps_the_generation_and_supersedes_the_previous_certificates() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        let root = cas::insert(&t, new_ca(acme, "root", None), t0())
            .await
            .expect("root");
        let other = cas::insert(&t, new_ca(acme, "other-root", None), t0())
            .await
            .expect("other root");
        let sub = cas::insert(&t, new_ca(acme, "sub", Some(root.id)), t0())
            .await
            .expect("sub");
        let cross = ca_certificates::add_cross(
            &t,
            acme,
            NewCross {
                ca_id: sub.id,
                issuer_ca_id: other.id,
                certificate_der: b"cross-1".to_vec(),
                not_before: t0(),
                not_after: at(86_400),
            },
            at(5),
        )
        .await
        .expect("cross");

        let rotated = cas::rotate(&t, acme, sub.id, rotation(1, "sub-2"), at(10))
            .await
            .expect("rotate");
        assert_eq!(rotated.id, sub.id, "{b:?}: the id is stable");
        assert_eq!(rotated.generation, 2);
        assert_eq!(rotated.key_ref, "file:keys/sub-2");
        assert_eq!(rotated.certificate_der, b"sub-2");
        assert_eq!(rotated.subject, "CN=sub-2");
        assert_eq!(rotated.key_spec, "ecdsa-p384");
        assert_eq!(rotated.not_before, truncate_ts(at(100)));
        assert_eq!(
            (rotated.name.as_str(), rotated.parent_id),
            ("sub", Some(root.id))
        );
        assert_eq!(rotated.created_at, sub.created_at, "{b:?}: not a new CA");
        assert_eq!(
            cas::get(&t, acme, sub.id).await.expect("get"),
            Some(rotated.clone())
        );

        let certs = ca_certificates::list(&t, acme, sub.id).await.expect("list");
        let summary: Vec<_> = certs
            .iter()
            .map(|c| (c.generation, c.relation.as_str(), c.superseded_at))
            .collect();
        let superseded = Some(truncate_ts(at(10)));
        assert_eq!(
            summary,
            [
                (1, RELATION_PRIMARY, superseded),
                (1, RELATION_CROSS, superseded),
                (2, RELATION_PRIMARY, None),
            ],
            "{b:?}"
        );
        assert_eq!(certs[1].id, cross.id);
        assert_eq!(
            certs[2].issuer_ca_id,
            Some(root.id),
            "{b:?}: signed by the parent"
        );
        assert_eq!(certs[2].key_ref, "file:keys/sub-2");
        assert_eq!(
            certs[0].certificate_der, sub.certificate_der,
            "{b:?}: history kept"
        );

        // A caller that read generation 1 is too late, and changes nothing.
        let stale = cas::rotate(&t, acme, sub.id, rotation(1, "sub-2b"), at(11)).await;
        assert!(
            matches!(stale, Err(StoreError::Conflict { what: "ca" })),
            "{b:?}: {stale:?}"
        );
        assert_eq!(
            ca_certificates::list(&t, acme, sub.id)
                .await
                .expect("list")
                .len(),
            3
        );
        // The transaction is still usable: the next rotation goes on from 2.
        let third = cas::rotate(&t, acme, sub.id, rotation(2, "sub-3"), at(12))
            .await
            .expect("rotate from 2");
        assert_eq!(third.generation, 3, "{b:?}");
        let missing = cas::rotate(
            &t,
            acme,
            CaId(uuid::Uuid::new_v4()),
            rotation(1, "x"),
            at(13),
        )
        .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound { what: "ca" })),
            "{b:?}"
        );
        // A rotated root stays self-signed.
        let root2 = cas::rotate(&t, acme, root.id, rotation(1, "root-2"), at(14))
            .await
            .expect("rotate root");
        let last = ca_certificates::list(&t, acme, root2.id)
            .await
            .expect("list");
        assert_eq!(last[1].issuer_ca_id, None, "{b:?}");
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn of_two_concurrent_rotations_one_wins_and_the_other_conflicts() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let ca = db
            .store
            .in_tenant(acme, async |t| {
                cas::insert(t, new_ca(acme, "root", None), t0()).await
            })
            .await
            .expect("root");
        let first = tx(&db, acme).await;
        cas::rotate(&first, acme, ca.id, rotation(1, "first"), at(1))
            .await
            .expect("first rotation");
        // The second has read generation 1 too; it waits for the first's lock.
        let store = db.store.clone();
        let second = tokio::spawn(async move {
            store
                .in_tenant(acme, async |t| {
                    cas::rotate(t, acme, ca.id, rotation(1, "second"), at(2)).await
                })
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        first.commit().await.expect("commit the first");
        let lost = second.await.expect("join");
        assert!(
            matches!(lost, Err(StoreError::Conflict { what: "ca" })),
            "{b:?}: {lost:?}"
        );
        let now = cas::get(db.owner(), acme, ca.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            (now.generation, now.key_ref.as_str()),
            (2, "file:keys/first"),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn cross_certificates_are_listed_with_their_generation() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let t = tx(&db, acme).await;
        let old = cas::insert(&t, new_ca(acme, "old-root", None), t0())
            .await
            .expect("old");
        let new = cas::insert(&t, new_ca(acme, "new-root", None), t0())
            .await
            .expect("new");
        let cross = |ca_id, issuer_ca_id, der: &[u8]| NewCross {
            ca_id,
            issuer_ca_id,
            certificate_der: der.to_vec(),
            not_before: t0(),
            not_after: at(86_400),
        };
        let row = ca_certificates::add_cross(&t, acme, cross(new.id, old.id, b"x1"), at(1))
            .await
            .expect("cross-sign the new root by the old");
        assert_eq!(
            (row.relation.as_str(), row.generation, row.issuer_ca_id),
            (RELATION_CROSS, 1, Some(old.id)),
            "{b:?}"
        );
        assert_eq!(
            row.key_ref, new.key_ref,
            "{b:?}: certifies the CA's current key"
        );
        let list = ca_certificates::list(&t, acme, new.id).await.expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].relation, RELATION_PRIMARY);
        assert_eq!(list[1], row, "{b:?}: exact round-trip");
        assert!(matches!(
            ca_certificates::add_cross(&t, acme, cross(new.id, new.id, b"self"), at(2)).await,
            Err(StoreError::Invalid { .. })
        ));
        t.commit().await.expect("commit");

        // Another tenant's CA can neither sign nor be signed.
        let t = tx(&db, globex).await;
        let theirs = cas::insert(&t, new_ca(globex, "root", None), t0())
            .await
            .expect("theirs");
        let refused =
            ca_certificates::add_cross(&t, globex, cross(theirs.id, old.id, b"x"), at(3)).await;
        assert!(
            matches!(refused, Err(StoreError::NotFound { what: "issuer ca" })),
            "{b:?}: {refused:?}"
        );
        let refused =
            ca_certificates::add_cross(&t, globex, cross(new.id, theirs.id, b"x"), at(3)).await;
        assert!(
            matches!(refused, Err(StoreError::NotFound { what: "ca" })),
            "{b:?}"
        );
        assert!(
            ca_certificates::list(&t, globex, new.id)
                .await
                .expect("list")
                .is_empty()
        );
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_cas() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let root = db
            .store
            .in_tenant(acme, async |t| {
                cas::insert(t, new_ca(acme, "root", None), t0()).await
            })
            .await
            .expect("root");
        let t = tx(&db, globex).await;
        assert!(
            cas::list(&t, globex).await.expect("list").is_empty(),
            "{b:?}"
        );
        assert_eq!(cas::get(&t, globex, root.id).await.expect("get"), None);
        assert!(matches!(
            cas::set_status(&t, globex, root.id, cas::STATUS_ACTIVE, cas::STATUS_RETIRED).await,
            Err(StoreError::NotFound { .. })
        ));
        // Naming acme in globex's transaction: on PostgreSQL the row-level security policy
        // still hides acme's rows; SQLite has only the repositories' filters.
        let leaked = cas::list(&t, acme).await.expect("list").len()
            + ca_certificates::list(&t, acme, root.id)
                .await
                .expect("certs")
                .len();
        let expected = if b == Backend::Postgres { 0 } else { 2 };
        assert_eq!(leaked, expected, "{b:?}");
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn a_generations_primary_row_id_names_its_key_and_primaries_lists_every_generation() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let t = tx(&db, acme).await;
        let root = cas::insert(&t, new_ca(acme, "root", None), t0())
            .await
            .expect("root");
        let sub = cas::insert(&t, new_ca(acme, "sub", Some(root.id)), at(1))
            .await
            .expect("sub");
        let other = cas::insert(&t, new_ca(acme, "other", None), at(2))
            .await
            .expect("other");
        ca_certificates::add_cross(
            &t,
            acme,
            NewCross {
                ca_id: sub.id,
                issuer_ca_id: other.id,
                certificate_der: b"cross".to_vec(),
                not_before: t0(),
                not_after: at(86_400),
            },
            at(3),
        )
        .await
        .expect("cross");
        for ca in [&root, &sub, &other] {
            let certs = ca_certificates::list(&t, acme, ca.id).await.expect("list");
            assert_eq!(
                certs[0].id, ca.id.0,
                "{b:?}: a new CA's generation-1 primary row id is the CA id"
            );
        }
        cas::rotate(&t, acme, sub.id, rotation(1, "sub-2"), at(10))
            .await
            .expect("rotate");
        let primaries = ca_certificates::primaries(&t, acme)
            .await
            .expect("primaries");
        assert!(
            primaries.iter().all(|p| p.relation == RELATION_PRIMARY),
            "{b:?}: no cross rows"
        );
        let mut want: Vec<(CaId, u32)> =
            vec![(root.id, 1), (sub.id, 1), (sub.id, 2), (other.id, 1)];
        want.sort();
        assert_eq!(
            primaries
                .iter()
                .map(|p| (p.ca_id, p.generation))
                .collect::<Vec<_>>(),
            want,
            "{b:?}: ordered by (ca_id, generation)"
        );
        let gen2 = primaries
            .iter()
            .find(|p| p.ca_id == sub.id && p.generation == 2)
            .expect("generation 2");
        assert_ne!(
            gen2.id, sub.id.0,
            "{b:?}: later generations get their own id"
        );
        assert_eq!(gen2.key_ref, "file:keys/sub-2");
        t.commit().await.expect("commit");

        let t = tx(&db, globex).await;
        assert!(
            ca_certificates::primaries(&t, globex)
                .await
                .expect("primaries")
                .is_empty(),
            "{b:?}: another tenant sees none"
        );
        let theirs = cas::insert(&t, new_ca(globex, "root", None), t0())
            .await
            .expect("globex root");
        let primaries = ca_certificates::primaries(&t, globex)
            .await
            .expect("primaries");
        assert_eq!(
            primaries.iter().map(|p| p.id).collect::<Vec<_>>(),
            [theirs.id.0],
            "{b:?}"
        );
        t.commit().await.expect("commit");
    }
}
