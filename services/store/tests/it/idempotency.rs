//! Idempotency keys: claim, replay, completion and the concurrency guard.

use certmesh_store::idempotency::{self, Claim};
use certmesh_store::testing::each_backend;

use crate::{t0, tenant};

#[tokio::test]
async fn claim_then_existing_then_complete() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let first = idempotency::claim(c, acme, "k1", "h1", t0())
            .await
            .expect("claim");
        assert_eq!(first, Claim::Fresh, "{b:?}");
        let again = idempotency::claim(c, acme, "k1", "h2", t0())
            .await
            .expect("claim");
        assert_eq!(
            again,
            Claim::Existing {
                request_hash: "h1".to_owned(),
                certificate_serial: None
            },
            "{b:?}: the first request's hash is kept"
        );
        idempotency::complete(c, acme, "k1", "0abc")
            .await
            .expect("complete");
        let done = idempotency::claim(c, acme, "k1", "h1", t0())
            .await
            .expect("claim");
        assert_eq!(
            done,
            Claim::Existing {
                request_hash: "h1".to_owned(),
                certificate_serial: Some("0abc".to_owned())
            }
        );
        let read = idempotency::get(c, acme, "k1").await.expect("get");
        assert_eq!(
            read,
            Some(idempotency::Existing {
                request_hash: "h1".to_owned(),
                certificate_serial: Some("0abc".to_owned())
            })
        );
        assert_eq!(idempotency::get(c, acme, "never").await.expect("get"), None);
        // Keys are per tenant.
        let globex = tenant(&db, "globex").await;
        let other = idempotency::claim(c, globex, "k1", "h9", t0())
            .await
            .expect("claim");
        assert_eq!(other, Claim::Fresh, "{b:?}");
        assert_eq!(
            idempotency::get(c, acme, "k1")
                .await
                .expect("get")
                .map(|e| e.request_hash)
                .as_deref(),
            Some("h1")
        );
        assert!(
            idempotency::complete(c, acme, "missing", "01")
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn concurrent_claims_yield_one_fresh() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                let txn = store.begin_tenant(acme).await?;
                let claim = idempotency::claim(&txn, acme, "same", &format!("h{i}"), t0()).await?;
                if claim == Claim::Fresh {
                    // Hold the claim a moment so the others really contend on it.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    idempotency::complete(&txn, acme, "same", "01").await?;
                }
                txn.commit().await?;
                Ok::<_, certmesh_store::StoreError>(claim)
            }));
        }
        let mut fresh = 0;
        for t in tasks {
            if t.await.expect("join").expect("claim") == Claim::Fresh {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "{b:?}: exactly one claim wins");
    }
}
