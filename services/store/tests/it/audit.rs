//! Audit trail: the per-tenant hash chain, redaction, the append-only triggers, tamper
//! detection, serialized concurrent appends and filtered queries.

use certmesh_store::audit::{
    self, AuditEntry, AuditFilter, AuditRecord, GENESIS_HASH, Outcome, Verification,
};
use certmesh_store::testing::{TestDb, each_backend};
use certmesh_store::{Backend, StoreError, TenantId, truncate_ts};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;

use crate::{at, tenant};

fn entry(actor: &str, action: &str, resource: &str, secs: i64) -> AuditEntry {
    AuditEntry {
        actor: actor.to_owned(),
        action: action.to_owned(),
        resource: resource.to_owned(),
        request_id: format!("req-{secs}"),
        outcome: Outcome::Allowed,
        details: json!({"n": secs}),
        at: at(secs),
    }
}

/// Every event of the tenant, oldest first.
async fn all(db: &TestDb, t: TenantId) -> Vec<AuditRecord> {
    audit::query(db.owner(), t, &AuditFilter::default(), 0, 1000)
        .await
        .expect("query")
}

async fn verify(db: &TestDb, t: TenantId) -> Verification {
    audit::verify(db.owner(), t).await.expect("verify")
}

/// The SQLite triggers of m0007, recreated after a bypass.
const SQLITE_TRIGGERS: [&str; 2] = [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events \
     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events \
     BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
];

/// Runs `sql` as the database owner around the append-only triggers, as an attacker with
/// owner rights could. One transaction, so the triggers are back when it commits (and SQLite
/// sees its own schema change: another pooled connection may still cache the old schema).
async fn bypassing_triggers(db: &TestDb, sql: &str) {
    let txn = db.owner().begin().await.expect("begin");
    match db.backend() {
        Backend::Postgres => {
            txn.execute_unprepared("SET LOCAL session_replication_role = replica")
                .await
                .expect("disable triggers");
            txn.execute_unprepared(sql).await.expect("tamper");
        }
        Backend::Sqlite => {
            for name in ["audit_events_no_update", "audit_events_no_delete"] {
                txn.execute_unprepared(&format!("DROP TRIGGER {name}"))
                    .await
                    .expect("drop trigger");
            }
            txn.execute_unprepared(sql).await.expect("tamper");
            for create in SQLITE_TRIGGERS {
                txn.execute_unprepared(create)
                    .await
                    .expect("recreate trigger");
            }
        }
    }
    txn.commit().await.expect("commit");
}

/// Every column of every `audit_events` row as text.
async fn dump(db: &TestDb) -> String {
    let sql = match db.backend() {
        Backend::Postgres => "SELECT string_agg(a::text, E'\\n') AS dump FROM audit_events a",
        Backend::Sqlite => {
            "SELECT group_concat(hex(id) || '|' || hex(tenant_id) || '|' || seq || '|' || actor \
             || '|' || action || '|' || resource || '|' || request_id || '|' || outcome || '|' \
             || details || '|' || created_at || '|' || prev_hash || '|' || hash, char(10)) \
             AS dump FROM audit_events"
        }
    };
    let c = db.owner();
    let row = c
        .query_one_raw(sea_orm::Statement::from_string(
            c.get_database_backend(),
            sql,
        ))
        .await
        .expect("dump")
        .expect("row");
    row.try_get("", "dump").expect("dump text")
}

#[tokio::test]
async fn appends_chain_per_tenant() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        assert_eq!(verify(&db, acme).await, Verification::Intact { rows: 0 });
        let mut seqs = Vec::new();
        for i in 0..3 {
            seqs.extend(
                audit::append(c, acme, &[entry("alice", "ca.create", "ca/1", i)])
                    .await
                    .expect("append"),
            );
        }
        let batch: Vec<_> = (3..7).map(|i| entry("bob", "cert.issue", "c", i)).collect();
        seqs.extend(audit::append(c, acme, &batch).await.expect("append batch"));
        assert_eq!(seqs, (1..=7).collect::<Vec<u64>>(), "{b:?}");
        assert!(audit::append(c, acme, &[]).await.expect("empty").is_empty());

        let rows = all(&db, acme).await;
        assert_eq!(rows.len(), 7, "{b:?}");
        assert_eq!(rows[0].prev_hash, GENESIS_HASH);
        for pair in rows.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash, "{b:?}: linked");
        }
        assert!(
            rows.iter()
                .all(|r| r.hash.len() == 64 && r.tenant_id == acme)
        );
        assert_eq!(rows[3].created_at, truncate_ts(at(3)), "{b:?}");
        assert_eq!(rows[3].details, json!({"n": 3}));
        assert_eq!(verify(&db, acme).await, Verification::Intact { rows: 7 });

        let other = audit::append(c, globex, &[entry("eve", "ca.create", "ca/9", 0)])
            .await
            .expect("append");
        assert_eq!(other, [1], "{b:?}: chains are per tenant");
        assert_eq!(all(&db, globex).await[0].prev_hash, GENESIS_HASH);
        assert_eq!(verify(&db, globex).await, Verification::Intact { rows: 1 });
        assert_eq!(verify(&db, acme).await, Verification::Intact { rows: 7 });
    }
}

#[tokio::test]
async fn secrets_in_details_are_never_stored() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let mut e = entry("alice", "cert.issue", "c", 0);
        e.details = json!({
            "token": "cmt_planted",
            "nested": {"Private_Key": "x", "list": [{"password": "p"}]},
            "idempotency_key": "k",
            "profile": "web",
        });
        audit::append(db.owner(), acme, &[e]).await.expect("append");
        let stored = &all(&db, acme).await[0].details;
        assert_eq!(
            stored,
            &json!({
                "token": "[REDACTED]",
                "nested": {"Private_Key": "[REDACTED]", "list": [{"password": "[REDACTED]"}]},
                "idempotency_key": "k",
                "profile": "web",
            }),
            "{b:?}"
        );
        let dump = dump(&db).await;
        assert!(dump.contains("web"), "{b:?}: the dump shows the row");
        assert!(!dump.contains("cmt_planted"), "{b:?}: {dump}");
        assert!(
            !dump.contains("\"x\"") && !dump.contains("\"p\""),
            "{b:?}: {dump}"
        );
        assert_eq!(verify(&db, acme).await, Verification::Intact { rows: 1 });
    }
}

#[tokio::test]
async fn rows_cannot_be_updated_or_deleted() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        audit::append(c, acme, &[entry("alice", "ca.create", "ca/1", 0)])
            .await
            .expect("append");
        let before = all(&db, acme).await;
        let hash = &before[0].hash;
        for sql in [
            format!("UPDATE audit_events SET action = 'nothing' WHERE hash = '{hash}'"),
            format!("DELETE FROM audit_events WHERE hash = '{hash}'"),
            "DELETE FROM audit_events".to_owned(),
        ] {
            let err = c
                .execute_unprepared(&sql)
                .await
                .expect_err("the trigger refuses");
            assert!(
                err.to_string().contains("audit_events is append-only"),
                "{b:?}: {sql}: {err}"
            );
        }
        if b == Backend::Postgres {
            let err = c
                .execute_unprepared("TRUNCATE audit_events")
                .await
                .expect_err("the trigger refuses");
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        assert_eq!(all(&db, acme).await, before, "{b:?}: row unchanged");
    }
}

#[tokio::test]
async fn verify_finds_the_first_broken_link() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        for t in [acme, globex] {
            let batch: Vec<_> = (0..4)
                .map(|i| entry("alice", "cert.issue", "c", i))
                .collect();
            audit::append(c, t, &batch).await.expect("append");
        }

        let second = all(&db, acme).await[1].hash.clone();
        bypassing_triggers(
            &db,
            &format!("UPDATE audit_events SET action = 'cert.revoke' WHERE hash = '{second}'"),
        )
        .await;
        assert_eq!(all(&db, acme).await[1].action, "cert.revoke", "{b:?}");
        assert_eq!(
            verify(&db, acme).await,
            Verification::Broken {
                seq: 2,
                reason: "hash mismatch".to_owned()
            },
            "{b:?}"
        );

        let last = all(&db, globex).await[3].hash.clone();
        bypassing_triggers(
            &db,
            &format!("DELETE FROM audit_events WHERE hash = '{last}'"),
        )
        .await;
        assert_eq!(all(&db, globex).await.len(), 3, "{b:?}");
        assert_eq!(
            verify(&db, globex).await,
            Verification::Broken {
                seq: 4,
                reason: "head does not match the last row".to_owned()
            },
            "{b:?}"
        );

        // A middle row removed: the gap is reported where the missing row was.
        let second = all(&db, globex).await[1].hash.clone();
        bypassing_triggers(
            &db,
            &format!("DELETE FROM audit_events WHERE hash = '{second}'"),
        )
        .await;
        assert_eq!(
            verify(&db, globex).await,
            Verification::Broken {
                seq: 2,
                reason: "sequence gap before seq 3".to_owned()
            },
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_appends_get_consecutive_seqs() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let mut tasks = Vec::new();
        for task in 0..8 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                let batch: Vec<_> = (0..5)
                    .map(|i| entry(&format!("task-{task}"), "cert.issue", "c", i))
                    .collect();
                let txn = store.begin_tenant(acme).await?;
                let seqs = audit::append(&txn, acme, &batch).await?;
                txn.commit().await?;
                Ok::<_, StoreError>(seqs)
            }));
        }
        for t in tasks {
            let seqs = t.await.expect("join").expect("append");
            assert_eq!(seqs.len(), 5, "{b:?}");
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "{b:?}: one batch is contiguous"
            );
        }
        let got: Vec<u64> = all(&db, acme).await.iter().map(|r| r.seq).collect();
        assert_eq!(got, (1..=40).collect::<Vec<u64>>(), "{b:?}");
        assert_eq!(verify(&db, acme).await, Verification::Intact { rows: 40 });
    }
}

#[tokio::test]
async fn query_filters_and_pages() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let mut batch = vec![
            entry("alice", "cert.issue", "cert/1", 0),
            entry("bob", "cert.issue", "cert/2", 1),
            entry("alice", "cert.revoke", "cert/1", 2),
            entry("bob", "ca.create", "ca/1", 3),
            entry("alice", "cert.issue", "cert/3", 4),
        ];
        batch[3].outcome = Outcome::Denied;
        audit::append(c, acme, &batch).await.expect("append");
        audit::append(c, globex, &[entry("alice", "cert.issue", "cert/1", 0)])
            .await
            .expect("append");

        let seqs = |filter: AuditFilter, after: u64, limit: u64| async move {
            audit::query(c, acme, &filter, after, limit)
                .await
                .expect("query")
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        };
        let by_actor = AuditFilter {
            actor: Some("alice".to_owned()),
            ..AuditFilter::default()
        };
        assert_eq!(seqs(by_actor.clone(), 0, 100).await, [1, 3, 5], "{b:?}");
        let by_action = AuditFilter {
            action: Some("cert.issue".to_owned()),
            ..AuditFilter::default()
        };
        assert_eq!(seqs(by_action, 0, 100).await, [1, 2, 5], "{b:?}");
        let by_resource = AuditFilter {
            resource: Some("cert/1".to_owned()),
            actor: Some("alice".to_owned()),
            ..AuditFilter::default()
        };
        assert_eq!(seqs(by_resource, 0, 100).await, [1, 3], "{b:?}");
        let window = AuditFilter {
            since: Some(at(1)),
            until: Some(at(3)),
            ..AuditFilter::default()
        };
        assert_eq!(
            seqs(window, 0, 100).await,
            [2, 3],
            "{b:?}: since inclusive, until exclusive"
        );
        let denied = audit::query(c, acme, &AuditFilter::default(), 3, 1)
            .await
            .expect("query");
        assert_eq!(denied[0].outcome, Outcome::Denied, "{b:?}");

        assert_eq!(seqs(by_actor.clone(), 0, 2).await, [1, 3], "{b:?}: page 1");
        assert_eq!(seqs(by_actor.clone(), 3, 2).await, [5], "{b:?}: page 2");
        assert_eq!(seqs(by_actor, 5, 2).await, Vec::<u64>::new(), "{b:?}: done");

        for limit in [0, 1001] {
            assert!(
                matches!(
                    audit::query(c, acme, &AuditFilter::default(), 0, limit).await,
                    Err(StoreError::Invalid { .. })
                ),
                "{b:?}: limit {limit}"
            );
        }
    }
}

#[tokio::test]
async fn migration_down_removes_the_trail() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        audit::append(c, acme, &[entry("alice", "ca.create", "ca/1", 0)])
            .await
            .expect("append");
        db.store.migrate_down_all().await.expect("down all");
        let leftovers = match b {
            Backend::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_master WHERE name LIKE 'audit_%'",
            Backend::Postgres => {
                "SELECT (SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name LIKE 'audit_%') \
                 + (SELECT COUNT(*) FROM pg_proc WHERE proname = 'audit_events_append_only') \
                 AS n"
            }
        };
        let row = c
            .query_one_raw(sea_orm::Statement::from_string(
                c.get_database_backend(),
                leftovers,
            ))
            .await
            .expect("count")
            .expect("row");
        assert_eq!(row.try_get::<i64>("", "n").expect("n"), 0, "{b:?}");
        db.store.migrate().await.expect("up again");
        let acme = tenant(&db, "acme").await;
        assert_eq!(
            audit::append(c, acme, &[entry("alice", "ca.create", "ca/1", 0)])
                .await
                .expect("append after up"),
            [1]
        );
    }
}
