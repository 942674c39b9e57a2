//! CAs: insert, lookups, duplicate names, tenant scoping.

use certmesh_store::cas::{self, NewCa};
use certmesh_store::testing::each_backend;
use certmesh_store::{CaId, StoreError, TenantId};

use crate::{at, t0, tenant};

fn new_ca(tenant_id: TenantId, name: &str, parent_id: Option<CaId>) -> NewCa {
    NewCa {
        tenant_id,
        name: name.to_owned(),
        parent_id,
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
