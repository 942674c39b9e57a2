//! Tenants are created once by name, also under concurrency.

use certmesh_store::tenants;
use certmesh_store::testing::each_backend;

use crate::t0;

#[tokio::test]
async fn ensure_is_idempotent() {
    for db in each_backend().await {
        let c = db.owner();
        assert_eq!(tenants::by_name(c, "acme").await.expect("by_name"), None);
        let a = tenants::ensure(c, "acme", t0()).await.expect("ensure");
        let again = tenants::ensure(c, "acme", t0())
            .await
            .expect("ensure again");
        assert_eq!(a, again, "{:?}", db.backend());
        let other = tenants::ensure(c, "globex", t0())
            .await
            .expect("ensure other");
        assert_ne!(a, other);
        assert_eq!(tenants::by_name(c, "acme").await.expect("by_name"), Some(a));
        assert!(
            tenants::ensure(c, "", t0()).await.is_err(),
            "empty name rejected"
        );
    }
}

#[tokio::test]
async fn concurrent_ensure_agrees() {
    for db in each_backend().await {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                tenants::ensure(store.conn(), "racy", t0()).await
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("join").expect("ensure"));
        }
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "{:?}: one tenant for all callers",
            db.backend()
        );
    }
}
