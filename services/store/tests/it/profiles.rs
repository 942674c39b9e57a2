//! Profiles: immutable numbered versions, latest, listing, concurrent writers.

use certmesh_store::profiles;
use certmesh_store::testing::each_backend;
use serde_json::json;

use crate::{at, tenant};

#[tokio::test]
async fn versions_are_numbered_and_immutable() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        for n in 1..=3u32 {
            let v = profiles::create_version(c, acme, "web", json!({"ttl_days": n}), at(n.into()))
                .await
                .expect("create_version");
            assert_eq!(v.version, n, "{b:?}");
            assert_eq!(v.name, "web");
        }
        let v1 = profiles::version(c, acme, "web", 1)
            .await
            .expect("v1")
            .expect("found");
        assert_eq!(
            v1.spec,
            json!({"ttl_days": 1}),
            "{b:?}: v1 unchanged by later versions"
        );
        assert_eq!(v1.created_at, certmesh_store::truncate_ts(at(1)));
        let latest = profiles::latest(c, acme, "web")
            .await
            .expect("latest")
            .expect("found");
        assert_eq!(
            (latest.version, latest.spec.clone()),
            (3, json!({"ttl_days": 3}))
        );
        assert_eq!(latest.profile_id, v1.profile_id);
        assert_eq!(
            profiles::version(c, acme, "web", 4).await.expect("v4"),
            None
        );
        assert_eq!(
            profiles::latest(c, acme, "nope").await.expect("latest"),
            None
        );

        profiles::create_version(c, acme, "api", json!({"k": "v"}), at(9))
            .await
            .expect("second profile");
        let globex = tenant(&db, "globex").await;
        profiles::create_version(c, globex, "zzz", json!({}), at(9))
            .await
            .expect("other tenant");
        let listed = profiles::list_latest(c, acme).await.expect("list_latest");
        let names: Vec<_> = listed
            .iter()
            .map(|p| (p.name.as_str(), p.version))
            .collect();
        assert_eq!(
            names,
            [("api", 1), ("web", 3)],
            "{b:?}: ordered by name, tenant-scoped"
        );
        assert_eq!(
            profiles::latest(c, globex, "web").await.expect("latest"),
            None
        );
    }
}

#[tokio::test]
async fn concurrent_create_version_yields_distinct_versions() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .in_tenant(acme, async |tx| {
                        profiles::create_version(tx, acme, "race", json!({"i": i}), at(0)).await
                    })
                    .await
            }));
        }
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.expect("join").expect("create_version").version);
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=8).collect::<Vec<_>>(), "{b:?}");
        let latest = profiles::latest(db.owner(), acme, "race")
            .await
            .expect("latest");
        assert_eq!(latest.map(|l| l.version), Some(8));
    }
}

#[tokio::test]
async fn create_version_inside_caller_transaction() {
    for db in each_backend().await {
        let acme = tenant(&db, "acme").await;
        let txn = db.store.begin_tenant(acme).await.expect("begin");
        profiles::create_version(&txn, acme, "tx", json!({}), at(0))
            .await
            .expect("create");
        txn.rollback().await.expect("rollback");
        assert_eq!(
            profiles::latest(db.owner(), acme, "tx")
                .await
                .expect("latest"),
            None,
            "{:?}: rolled back with the caller",
            db.backend()
        );
    }
}
