//! Outbox: append, batch append, ordering, filtering by type.

use certmesh_store::outbox::{self, NewEvent};
use certmesh_store::testing::each_backend;
use serde_json::json;

use crate::{at, tenant};

#[tokio::test]
async fn append_and_list_oldest_first() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let e1 = outbox::append(c, acme, "ca.issue", "01", json!({"n": 1}), at(1))
            .await
            .expect("append");
        // Same instant: ordered by the v7 id, i.e. append order.
        let e2 = outbox::append(c, acme, "ca.revoke", "01", json!({"n": 2}), at(1))
            .await
            .expect("append");
        outbox::append(c, globex, "ca.issue", "zz", json!({}), at(0))
            .await
            .expect("append");
        let batch: Vec<_> = (3..6)
            .map(|n| NewEvent {
                tenant_id: acme,
                event_type: "ca.issue".to_owned(),
                aggregate_id: format!("{n:02}"),
                payload: json!({"n": n}),
                created_at: at(n),
            })
            .collect();
        outbox::append_many(c, &batch).await.expect("append_many");
        assert!(e1 < e2, "v7 ids sort by time and append order");

        let all = outbox::list(c, acme, None, 100).await.expect("list");
        let ns: Vec<_> = all.iter().map(|e| e.payload["n"].as_i64()).collect();
        assert_eq!(ns, [Some(1), Some(2), Some(3), Some(4), Some(5)], "{b:?}");
        assert_eq!((all[0].id, all[1].id), (e1, e2));
        assert!(
            all.iter()
                .all(|e| e.tenant_id == acme && e.published_at.is_none())
        );
        assert_eq!(all[0].created_at, certmesh_store::truncate_ts(at(1)));

        let issues = outbox::list(c, acme, Some("ca.issue"), 2)
            .await
            .expect("list");
        let aggs: Vec<_> = issues.iter().map(|e| e.aggregate_id.as_str()).collect();
        assert_eq!(aggs, ["01", "03"], "{b:?}: filtered and limited");
    }
}
