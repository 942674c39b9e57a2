//! Notification's records: channels and rules are named once, an (event, channel) pair is
//! queued once, a claim holds a delivery until it runs out, failures retry or die and dead
//! deliveries requeue, and an expiry alert is raised once per threshold. Each on SQLite and on
//! PostgreSQL under row-level security.

use certmesh_store::notification::{
    self, ChannelRecord, DeliveryFilter, DeliveryRecord, NewDelivery, RuleRecord, delivery_state,
};
use certmesh_store::testing::{each_backend, postgres};
use certmesh_store::{Backend, StoreError, TenantId, truncate_ts};
use chrono::Duration;
use sea_orm::ConnectionTrait;

use crate::{at, t0, tenant, tx};

/// Planted in a channel's sealed secrets; must never show in its `Debug`.
const SEALED: &[u8] = b"SEALED-hmac-key-0123456789";

fn channel(t: TenantId, name: &str) -> ChannelRecord {
    ChannelRecord {
        id: uuid::Uuid::new_v4(),
        tenant_id: t,
        name: name.to_owned(),
        kind: "webhook".to_owned(),
        config: r#"{"url":"https://hooks.example.com/certmesh"}"#.to_owned(),
        sealed_secrets: SEALED.to_vec(),
        enabled: true,
        created_by: "alice".to_owned(),
        created_at: t0(),
    }
}

fn rule(t: TenantId, name: &str, channels: &[uuid::Uuid]) -> RuleRecord {
    RuleRecord {
        id: uuid::Uuid::new_v4(),
        tenant_id: t,
        name: name.to_owned(),
        event_types: vec!["certificate.*".to_owned(), "ca.issue".to_owned()],
        channel_ids: channels.to_vec(),
        enabled: true,
        created_by: "alice".to_owned(),
        created_at: t0(),
    }
}

fn id(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

/// Event `event` for channel `channel`, by rule 0x70.
fn new(event: u128, channel: u128) -> NewDelivery {
    NewDelivery {
        event_id: id(event),
        channel_id: id(channel),
        rule_id: id(0x70),
        event_type: "certificate.issued".to_owned(),
    }
}

async fn claim<C: ConnectionTrait>(c: &C, t: TenantId, now: i64) -> Vec<DeliveryRecord> {
    notification::claim_due(c, t, at(now), Duration::seconds(30), 10)
        .await
        .expect("claim")
}

async fn get<C: ConnectionTrait>(c: &C, t: TenantId, d: uuid::Uuid) -> DeliveryRecord {
    notification::get_delivery(c, t, d)
        .await
        .expect("get")
        .expect("found")
}

async fn listed<C: ConnectionTrait>(c: &C, t: TenantId, f: &DeliveryFilter) -> Vec<uuid::Uuid> {
    notification::list_deliveries(c, t, f, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|d| d.id)
        .collect()
}

#[tokio::test]
async fn channels_are_named_once_and_their_debug_hides_the_sealed_secrets() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let ops = channel(acme, "ops");
        let audit = ChannelRecord {
            kind: "email".to_owned(),
            enabled: false,
            ..channel(acme, "audit")
        };
        notification::insert_channel(&c, &ops)
            .await
            .expect("insert");
        notification::insert_channel(&c, &audit)
            .await
            .expect("insert");
        let dup = notification::insert_channel(&c, &channel(acme, "ops")).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict { what: "channel" })),
            "{b:?}: {dup:?}"
        );
        let got = notification::get_channel(&c, acme, ops.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            got,
            ChannelRecord {
                created_at: truncate_ts(t0()),
                ..ops.clone()
            },
            "{b:?}: exact round-trip, sealed bytes included"
        );
        let all = notification::list_channels(&c, acme).await.expect("list");
        assert_eq!(
            all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["audit", "ops"],
            "{b:?}: by name"
        );
        assert_eq!(
            (all[0].kind.as_str(), all[0].enabled),
            ("email", false),
            "{b:?}"
        );

        let shown = format!("{got:?} {got:#?}");
        let bytes = format!("{SEALED:?}");
        let bytes = bytes.trim_matches(['[', ']']);
        assert!(!shown.contains("SEALED"), "{shown}");
        assert!(!shown.contains(bytes), "{shown}");
        assert!(shown.contains("ops") && shown.contains("bytes"), "{shown}");

        notification::delete_channel(&c, acme, ops.id)
            .await
            .expect("delete");
        assert!(matches!(
            notification::delete_channel(&c, acme, ops.id).await,
            Err(StoreError::NotFound { what: "channel" })
        ));
        assert_eq!(
            notification::get_channel(&c, acme, ops.id)
                .await
                .expect("get"),
            None
        );
        c.commit().await.expect("commit");

        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(
            notification::list_channels(&g, globex)
                .await
                .expect("list")
                .is_empty()
        );
        notification::insert_channel(&g, &channel(globex, "audit"))
            .await
            .expect("same name, another tenant");
        assert!(matches!(
            notification::delete_channel(&g, globex, audit.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            notification::get_channel(&g, acme, audit.id)
                .await
                .expect("get")
                .is_some(),
            b == Backend::Sqlite,
            "{b:?}: under row-level security another tenant's channel is invisible"
        );
    }
}

#[tokio::test]
async fn rules_round_trip_their_lists_and_are_named_once() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let page = rule(acme, "page", &[id(1), id(2)]);
        let all = RuleRecord {
            event_types: vec!["*".to_owned()],
            channel_ids: Vec::new(),
            enabled: false,
            ..rule(acme, "all", &[])
        };
        notification::insert_rule(&c, &page).await.expect("insert");
        notification::insert_rule(&c, &all).await.expect("insert");
        let dup = notification::insert_rule(&c, &rule(acme, "page", &[id(3)])).await;
        assert!(
            matches!(dup, Err(StoreError::Conflict { what: "rule" })),
            "{b:?}: {dup:?}"
        );
        let rules = notification::list_rules(&c, acme).await.expect("list");
        let truncated = |r: &RuleRecord| RuleRecord {
            created_at: truncate_ts(r.created_at),
            ..r.clone()
        };
        assert_eq!(
            rules,
            [truncated(&all), truncated(&page)],
            "{b:?}: by name, lists round-trip"
        );
        notification::delete_rule(&c, acme, page.id)
            .await
            .expect("delete");
        assert!(matches!(
            notification::delete_rule(&c, acme, page.id).await,
            Err(StoreError::NotFound { what: "rule" })
        ));
        assert_eq!(
            notification::list_rules(&c, acme)
                .await
                .expect("list")
                .len(),
            1
        );
        c.commit().await.expect("commit");

        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(
            notification::list_rules(&g, globex)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(matches!(
            notification::delete_rule(&g, globex, all.id).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

#[tokio::test]
async fn an_event_is_queued_once_per_channel_and_listed_by_filter() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let made = notification::enqueue(&c, acme, &[new(1, 10), new(1, 11)], at(0))
            .await
            .expect("enqueue");
        assert_eq!(made, 2, "{b:?}");
        let again = notification::enqueue(&c, acme, &[new(1, 10), new(1, 11)], at(5))
            .await
            .expect("enqueue again");
        assert_eq!(again, 0, "{b:?}: the same (event, channel) is queued once");
        let more = notification::enqueue(&c, acme, &[new(1, 10), new(2, 10)], at(5))
            .await
            .expect("enqueue more");
        assert_eq!(more, 1, "{b:?}: only the new pair");
        assert_eq!(
            notification::enqueue(&c, acme, &[], at(6))
                .await
                .expect("enqueue none"),
            0
        );

        let all = notification::list_deliveries(&c, acme, &DeliveryFilter::default(), 100)
            .await
            .expect("list");
        assert_eq!(all.len(), 3, "{b:?}");
        let newest = &all[0];
        assert_eq!(
            (newest.event_id, newest.channel_id),
            (id(2), id(10)),
            "{b:?}: newest first"
        );
        let first = all
            .iter()
            .find(|d| (d.event_id, d.channel_id) == (id(1), id(10)))
            .expect("queued");
        assert_eq!(first.state, delivery_state::PENDING, "{b:?}");
        assert_eq!(first.attempts, 0);
        assert_eq!(first.next_attempt_at, truncate_ts(at(0)));
        assert_eq!(
            first.created_at,
            truncate_ts(at(0)),
            "{b:?}: a repeated enqueue does not touch the row"
        );
        assert_eq!(
            (first.rule_id, first.event_type.as_str()),
            (id(0x70), "certificate.issued")
        );
        assert_eq!((first.claimed_until, first.delivered_at), (None, None));
        assert_eq!(get(&c, acme, first.id).await, *first);

        let ids_of = |pred: &dyn Fn(&DeliveryRecord) -> bool| -> Vec<uuid::Uuid> {
            all.iter().filter(|d| pred(d)).map(|d| d.id).collect()
        };
        assert_eq!(
            listed(
                &c,
                acme,
                &DeliveryFilter {
                    channel_id: Some(id(10)),
                    ..DeliveryFilter::default()
                }
            )
            .await,
            ids_of(&|d| d.channel_id == id(10)),
            "{b:?}: by channel"
        );
        assert_eq!(
            listed(
                &c,
                acme,
                &DeliveryFilter {
                    event_id: Some(id(1)),
                    ..DeliveryFilter::default()
                }
            )
            .await,
            ids_of(&|d| d.event_id == id(1)),
            "{b:?}: by event"
        );
        assert_eq!(
            listed(
                &c,
                acme,
                &DeliveryFilter {
                    event_id: Some(id(1)),
                    channel_id: Some(id(11)),
                    ..DeliveryFilter::default()
                }
            )
            .await
            .len(),
            1,
            "{b:?}: filters combine"
        );
        notification::mark_delivered(&c, acme, first.id, at(7))
            .await
            .expect("deliver");
        for (state, want) in [
            (delivery_state::DELIVERED, vec![first.id]),
            (delivery_state::PENDING, ids_of(&|d| d.id != first.id)),
            (delivery_state::DEAD, Vec::new()),
        ] {
            assert_eq!(
                listed(
                    &c,
                    acme,
                    &DeliveryFilter {
                        state: Some(state.to_owned()),
                        ..DeliveryFilter::default()
                    }
                )
                .await,
                want,
                "{b:?}: by state {state}"
            );
        }
        let limited = notification::list_deliveries(&c, acme, &DeliveryFilter::default(), 1)
            .await
            .expect("list");
        assert_eq!(limited.len(), 1, "{b:?}");
    }
}

#[tokio::test]
async fn a_claim_holds_due_deliveries_until_it_runs_out() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        notification::enqueue(&c, acme, &[new(1, 10)], at(0))
            .await
            .expect("enqueue");
        notification::enqueue(&c, acme, &[new(2, 10)], at(100))
            .await
            .expect("enqueue later");
        let now_due = listed(
            &c,
            acme,
            &DeliveryFilter {
                event_id: Some(id(1)),
                ..DeliveryFilter::default()
            },
        )
        .await[0];

        let claimed = claim(&c, acme, 10).await;
        assert_eq!(
            claimed.iter().map(|d| d.id).collect::<Vec<_>>(),
            [now_due],
            "{b:?}: only what is due"
        );
        let d = &claimed[0];
        assert_eq!(d.state, delivery_state::SENDING, "{b:?}");
        assert_eq!(d.attempts, 1);
        assert_eq!(d.claimed_until, Some(truncate_ts(at(40))));
        assert_eq!(d.updated_at, truncate_ts(at(10)));
        assert_eq!(
            get(&c, acme, d.id).await,
            *d,
            "{b:?}: the claim returns what it stored"
        );

        assert!(
            claim(&c, acme, 10).await.is_empty(),
            "{b:?}: a claimed row is not claimed again"
        );
        assert!(
            claim(&c, acme, 39).await.is_empty(),
            "{b:?}: the hold lasts"
        );
        let retaken = claim(&c, acme, 40).await;
        assert_eq!(
            retaken
                .iter()
                .map(|d| (d.id, d.attempts))
                .collect::<Vec<_>>(),
            [(now_due, 2)],
            "{b:?}: a lapsed claim is taken again, as another attempt"
        );
        assert_eq!(retaken[0].claimed_until, Some(truncate_ts(at(70))));

        // At 100 the second comes due and the first's second claim (until 70) has lapsed.
        let both = claim(&c, acme, 100).await;
        assert_eq!(
            both.iter().map(|d| d.attempts).collect::<Vec<_>>(),
            [3, 1],
            "{b:?}: oldest due first: {both:?}"
        );
        let limited = notification::claim_due(&c, acme, at(1000), Duration::seconds(30), 1)
            .await
            .expect("claim");
        assert_eq!(limited.len(), 1, "{b:?}: at most `limit`");
        c.commit().await.expect("commit");

        // Another tenant's sender claims none of acme's.
        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(claim(&g, globex, 10_000).await.is_empty(), "{b:?}");
        if b == Backend::Postgres {
            assert!(
                claim(&g, acme, 10_000).await.is_empty(),
                "row-level security hides acme's deliveries even when acme is named"
            );
        }
    }
}

#[tokio::test]
async fn a_failed_delivery_retries_or_dies_and_a_dead_one_requeues() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        notification::enqueue(&c, acme, &[new(1, 10)], at(0))
            .await
            .expect("enqueue");
        let claimed = claim(&c, acme, 0).await;
        assert_eq!(claimed.len(), 1, "{b:?}");
        let d = claimed[0].id;

        notification::mark_failed(&c, acme, d, "HTTP 503", Some(at(60)), at(1))
            .await
            .expect("fail");
        let retry = get(&c, acme, d).await;
        assert_eq!(retry.state, delivery_state::PENDING, "{b:?}");
        assert_eq!(retry.next_attempt_at, truncate_ts(at(60)));
        assert_eq!(retry.claimed_until, None);
        assert_eq!(retry.last_error, "HTTP 503");
        assert_eq!(retry.updated_at, truncate_ts(at(1)));
        assert_eq!(retry.attempts, 1, "{b:?}: a failure is not another attempt");
        assert!(
            claim(&c, acme, 59).await.is_empty(),
            "{b:?}: not before the retry time"
        );
        let second = claim(&c, acme, 60).await;
        assert_eq!(
            second
                .iter()
                .map(|d| (d.id, d.attempts))
                .collect::<Vec<_>>(),
            [(d, 2)],
            "{b:?}: retried at its time"
        );

        notification::mark_failed(&c, acme, d, "HTTP 410", None, at(61))
            .await
            .expect("fail for good");
        let dead = get(&c, acme, d).await;
        assert_eq!(dead.state, delivery_state::DEAD, "{b:?}");
        assert_eq!(
            (dead.claimed_until, dead.last_error.as_str()),
            (None, "HTTP 410")
        );
        assert!(
            claim(&c, acme, 100_000).await.is_empty(),
            "{b:?}: a dead delivery is not claimed"
        );

        // Only a dead delivery requeues.
        notification::enqueue(&c, acme, &[new(2, 10)], at(62))
            .await
            .expect("enqueue");
        let other = listed(
            &c,
            acme,
            &DeliveryFilter {
                event_id: Some(id(2)),
                ..DeliveryFilter::default()
            },
        )
        .await[0];
        let pending = get(&c, acme, other).await;
        assert_eq!(
            notification::requeue(&c, acme, other, at(63))
                .await
                .expect("requeue"),
            None,
            "{b:?}: a pending delivery is not requeued"
        );
        assert_eq!(
            get(&c, acme, other).await,
            pending,
            "{b:?}: nothing changed"
        );
        assert!(matches!(
            notification::requeue(&c, acme, id(0xdead), at(63)).await,
            Err(StoreError::NotFound { what: "delivery" })
        ));
        let back = notification::requeue(&c, acme, d, at(64))
            .await
            .expect("requeue")
            .expect("a dead delivery requeues");
        assert_eq!(back.state, delivery_state::PENDING, "{b:?}");
        assert_eq!(back.attempts, 0, "{b:?}: attempts reset");
        assert_eq!(back.next_attempt_at, truncate_ts(at(64)));
        assert_eq!(back, get(&c, acme, d).await, "{b:?}: returned as stored");
        assert_eq!(
            notification::requeue(&c, acme, d, at(65))
                .await
                .expect("requeue twice"),
            None,
            "{b:?}: requeued once"
        );

        let third = claim(&c, acme, 64).await;
        assert_eq!(
            third.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(),
            [(other, 1), (d, 1)],
            "{b:?}: the requeued delivery is due again, its attempts counted afresh"
        );
        notification::mark_delivered(&c, acme, d, at(65))
            .await
            .expect("deliver");
        let sent = get(&c, acme, d).await;
        assert_eq!(sent.state, delivery_state::DELIVERED, "{b:?}");
        assert_eq!(sent.delivered_at, Some(truncate_ts(at(65))));
        assert_eq!(sent.updated_at, truncate_ts(at(65)));
        assert_eq!((sent.claimed_until, sent.last_error.as_str()), (None, ""));
        assert!(
            claim(&c, acme, 100_000).await.iter().all(|r| r.id != d),
            "{b:?}: a delivered delivery is not claimed"
        );
        assert_eq!(
            notification::requeue(&c, acme, d, at(66))
                .await
                .expect("requeue"),
            None,
            "{b:?}: nor requeued"
        );
        // The late failure of a sender whose claim ran out does not undo the delivery.
        for retry in [Some(at(90)), None] {
            notification::mark_failed(&c, acme, d, "late timeout", retry, at(70))
                .await
                .expect("late failure");
            assert_eq!(
                get(&c, acme, d).await,
                sent,
                "{b:?}: a delivered delivery stays delivered ({retry:?})"
            );
        }
        // Nor does a failure recorded for a delivery nobody claimed.
        notification::enqueue(&c, acme, &[new(3, 10)], at(70))
            .await
            .expect("enqueue");
        let unclaimed = listed(
            &c,
            acme,
            &DeliveryFilter {
                event_id: Some(id(3)),
                ..DeliveryFilter::default()
            },
        )
        .await[0];
        let before = get(&c, acme, unclaimed).await;
        notification::mark_failed(&c, acme, unclaimed, "stray", None, at(71))
            .await
            .expect("stray failure");
        assert_eq!(get(&c, acme, unclaimed).await, before, "{b:?}");
    }
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_deliveries() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let c = tx(&db, acme).await;
        notification::enqueue(&c, acme, &[new(1, 10), new(2, 10)], at(0))
            .await
            .expect("enqueue");
        c.commit().await.expect("commit");
        let c = tx(&db, acme).await;
        let mine = listed(&c, acme, &DeliveryFilter::default()).await;
        drop(c);

        let g = tx(&db, globex).await;
        // The same (event, channel) in another tenant is its own delivery.
        assert_eq!(
            notification::enqueue(&g, globex, &[new(1, 10)], at(1))
                .await
                .expect("enqueue"),
            1,
            "{b:?}"
        );
        let theirs = listed(&g, globex, &DeliveryFilter::default()).await;
        assert_eq!(theirs.len(), 1, "{b:?}");
        assert_eq!(
            listed(&g, acme, &DeliveryFilter::default()).await.len(),
            if b == Backend::Sqlite { 2 } else { 0 },
            "{b:?}: under row-level security naming acme finds nothing"
        );
        assert_eq!(
            notification::get_delivery(&g, globex, mine[0])
                .await
                .expect("get"),
            None
        );
        assert_eq!(
            notification::get_delivery(&g, acme, mine[0])
                .await
                .expect("get")
                .is_some(),
            b == Backend::Sqlite,
            "{b:?}"
        );
        assert!(matches!(
            notification::requeue(&g, globex, mine[0], at(2)).await,
            Err(StoreError::NotFound { .. })
        ));
        if b == Backend::Postgres {
            let n = g
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT COUNT(*) FROM notification_deliveries",
                ))
                .await
                .expect("count")
                .expect("a row")
                .try_get_by_index::<i64>(0)
                .expect("a count");
            assert_eq!(n, 1, "raw SQL as globex sees only globex's row");
        }
        g.commit().await.expect("commit");
        let c = tx(&db, acme).await;
        assert_eq!(
            listed(&c, acme, &DeliveryFilter::default()).await,
            mine,
            "{b:?}: globex's enqueue left acme's queue alone"
        );
    }
}

#[tokio::test]
async fn an_expiry_alert_is_raised_once_per_threshold() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let c = tx(&db, acme).await;
        let raise = |subject: &'static str, days: u32, n: u128| {
            let c = &c;
            async move {
                notification::raise_alert(c, acme, subject, days, id(n), at(0))
                    .await
                    .expect("raise")
            }
        };
        assert!(raise("0a", 30, 1).await, "{b:?}: first time");
        assert!(!raise("0a", 30, 2).await, "{b:?}: once per threshold");
        assert!(raise("0a", 7, 3).await, "{b:?}: another threshold");
        assert!(raise("0b", 30, 4).await, "{b:?}: another subject");
        assert!(!raise("0a", 7, 5).await);
        let mut raised = notification::raised_thresholds(&c, acme, "0a")
            .await
            .expect("raised");
        raised.sort_unstable();
        assert_eq!(raised, [7, 30], "{b:?}");
        assert!(
            notification::raised_thresholds(&c, acme, "0c")
                .await
                .expect("raised")
                .is_empty()
        );
        c.commit().await.expect("commit");

        let g = tx(&db, globex).await;
        assert!(
            notification::raised_thresholds(&g, globex, "0a")
                .await
                .expect("raised")
                .is_empty(),
            "{b:?}"
        );
        assert!(
            notification::raise_alert(&g, globex, "0a", 30, id(6), at(1))
                .await
                .expect("raise"),
            "{b:?}: alerts are per tenant"
        );
    }
}

#[tokio::test]
async fn two_senders_split_the_due_deliveries() {
    // Row locks are PostgreSQL's; SQLite serialises writers instead.
    let db = postgres().await;
    let acme = tenant(&db, "acme").await;
    let c = tx(&db, acme).await;
    notification::enqueue(&c, acme, &[new(1, 10), new(2, 10), new(3, 10)], at(0))
        .await
        .expect("enqueue");
    c.commit().await.expect("commit");

    let first = tx(&db, acme).await;
    let mine = notification::claim_due(&first, acme, at(1), Duration::seconds(30), 2)
        .await
        .expect("claim");
    let second = tx(&db, acme).await;
    let theirs = notification::claim_due(&second, acme, at(1), Duration::seconds(30), 10)
        .await
        .expect("claim");
    assert_eq!(mine.len(), 2);
    assert_eq!(
        theirs.len(),
        1,
        "the rows the first sender holds are skipped"
    );
    assert!(mine.iter().all(|m| theirs.iter().all(|t| t.id != m.id)));
    first.commit().await.expect("commit");
    second.commit().await.expect("commit");
    let c = tx(&db, acme).await;
    assert!(claim(&c, acme, 1).await.is_empty(), "all three are held");
    let sending = listed(
        &c,
        acme,
        &DeliveryFilter {
            state: Some(delivery_state::SENDING.to_owned()),
            ..DeliveryFilter::default()
        },
    )
    .await;
    assert_eq!(sending.len(), 3);
}
