//! Outbox: append, batch append, ordering, filtering by type, relaying what is unpublished.

use certmesh_store::outbox::{self, NewEvent};
use certmesh_store::testing::{each_backend, postgres};
use certmesh_store::{Backend, truncate_ts};
use serde_json::json;

use crate::{at, tenant, tx};

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

#[tokio::test]
async fn unpublished_events_are_relayed_once_oldest_first() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let c = tx(&db, acme).await;
        let e1 = outbox::append(&c, acme, "ca.issue", "01", json!({"n": 1}), at(1))
            .await
            .expect("append");
        let e2 = outbox::append(&c, acme, "ca.issue", "02", json!({"n": 2}), at(2))
            .await
            .expect("append");
        let e0 = outbox::append(&c, acme, "ca.revoke", "00", json!({"n": 0}), at(0))
            .await
            .expect("append");
        c.commit().await.expect("commit");
        let g = tx(&db, globex).await;
        let theirs = outbox::append(&g, globex, "ca.issue", "zz", json!({}), at(0))
            .await
            .expect("append");
        g.commit().await.expect("commit");

        let c = tx(&db, acme).await;
        let ids = |v: Vec<outbox::Event>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(outbox::unpublished(&c, acme, 10)
                .await
                .expect("unpublished")),
            [e0, e1, e2],
            "{b:?}: oldest first, one tenant's"
        );
        assert_eq!(
            ids(outbox::unpublished(&c, acme, 2).await.expect("unpublished")),
            [e0, e1],
            "{b:?}: limited"
        );
        assert_eq!(
            outbox::backlog(&c, acme).await.expect("backlog"),
            outbox::Backlog {
                pending: 3,
                oldest: Some(truncate_ts(at(0)))
            },
            "{b:?}: the tenant's own, oldest by creation"
        );
        outbox::mark_published(&c, acme, &[e0, e1, theirs], at(5))
            .await
            .expect("mark");
        outbox::mark_published(&c, acme, &[], at(5))
            .await
            .expect("mark none");
        assert_eq!(
            ids(outbox::unpublished(&c, acme, 10)
                .await
                .expect("unpublished")),
            [e2],
            "{b:?}: published events are gone from it"
        );
        assert_eq!(
            outbox::backlog(&c, acme).await.expect("backlog"),
            outbox::Backlog {
                pending: 1,
                oldest: Some(truncate_ts(at(2)))
            },
            "{b:?}"
        );
        let got = outbox::get(&c, acme, e1)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.published_at, Some(truncate_ts(at(5))), "{b:?}");
        assert_eq!(
            (got.event_type.as_str(), got.aggregate_id.as_str()),
            ("ca.issue", "01")
        );
        assert_eq!(got.payload, json!({"n": 1}));
        assert_eq!(got.created_at, truncate_ts(at(1)));
        assert_eq!(
            outbox::get(&c, acme, e2)
                .await
                .expect("get")
                .map(|e| e.published_at),
            Some(None)
        );
        assert_eq!(outbox::get(&c, acme, theirs).await.expect("get"), None);
        assert_eq!(
            outbox::get(&c, globex, e1).await.expect("get"),
            None,
            "{b:?}: not across tenants"
        );
        c.commit().await.expect("commit");

        let g = tx(&db, globex).await;
        let still = outbox::get(&g, globex, theirs)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            still.published_at, None,
            "{b:?}: acme cannot mark globex's events"
        );
        assert_eq!(
            outbox::get(&g, acme, e1).await.expect("get").is_some(),
            b == Backend::Sqlite,
            "{b:?}: under row-level security another tenant's event is invisible"
        );
        assert_eq!(
            ids(outbox::unpublished(&g, globex, 10)
                .await
                .expect("unpublished")),
            [theirs]
        );
        outbox::mark_published(&g, globex, &[theirs], at(6))
            .await
            .expect("mark");
        assert_eq!(
            outbox::backlog(&g, globex).await.expect("backlog"),
            outbox::Backlog::default(),
            "{b:?}: nothing pending"
        );
    }
}

#[tokio::test]
async fn two_relays_do_not_take_the_same_unpublished_events() {
    // Row locks are PostgreSQL's; SQLite serialises writers instead.
    let db = postgres().await;
    let acme = tenant(&db, "acme").await;
    let c = tx(&db, acme).await;
    let e1 = outbox::append(&c, acme, "ca.issue", "01", json!({}), at(1))
        .await
        .expect("append");
    let e2 = outbox::append(&c, acme, "ca.issue", "02", json!({}), at(2))
        .await
        .expect("append");
    c.commit().await.expect("commit");

    let first = tx(&db, acme).await;
    let taken = outbox::unpublished(&first, acme, 1).await.expect("first");
    assert_eq!(taken.iter().map(|e| e.id).collect::<Vec<_>>(), [e1]);
    let second = tx(&db, acme).await;
    let rest = outbox::unpublished(&second, acme, 10)
        .await
        .expect("second");
    assert_eq!(
        rest.iter().map(|e| e.id).collect::<Vec<_>>(),
        [e2],
        "the row the first relay holds is skipped"
    );
    outbox::mark_published(&first, acme, &[e1], at(3))
        .await
        .expect("mark");
    first.commit().await.expect("commit");
    outbox::mark_published(&second, acme, &[e2], at(3))
        .await
        .expect("mark");
    second.commit().await.expect("commit");
    let c = tx(&db, acme).await;
    assert!(
        outbox::unpublished(&c, acme, 10)
            .await
            .expect("unpublished")
            .is_empty()
    );
}
