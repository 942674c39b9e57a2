//! Migrations apply, re-apply as a no-op, and roll all the way down and up again.

use certmesh_store::testing::each_backend;
use sea_orm::ConnectionTrait;

use crate::{t0, tenant};

async fn table_count(db: &certmesh_store::testing::TestDb) -> i64 {
    let sql = match db.backend() {
        certmesh_store::Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN \
             ('tenants','api_tokens','cas','profiles','profile_versions','certificates',\
             'idempotency_keys','outbox')"
        }
        certmesh_store::Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ('tenants','api_tokens','cas','profiles','profile_versions',\
             'certificates','idempotency_keys','outbox')"
        }
    };
    let row = db
        .store
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(
            db.owner().get_database_backend(),
            sql,
        ))
        .await
        .expect("query")
        .expect("row");
    row.try_get::<i64>("", "n").expect("count")
}

#[tokio::test]
async fn apply_reapply_down_up() {
    for db in each_backend().await {
        let b = db.backend();
        assert_eq!(table_count(&db).await, 8, "{b:?}: all tables after migrate");
        let tenant_id = tenant(&db, "acme").await;
        db.store.migrate().await.expect("re-apply is a no-op");
        assert_eq!(
            certmesh_store::tenants::by_name(db.owner(), "acme")
                .await
                .expect("by_name"),
            Some(tenant_id),
            "{b:?}: data survives a re-apply"
        );
        db.store.migrate_down_all().await.expect("down all");
        assert_eq!(table_count(&db).await, 0, "{b:?}: no tables after down");
        db.store.migrate().await.expect("up again");
        assert_eq!(
            table_count(&db).await,
            8,
            "{b:?}: all tables after up again"
        );
        certmesh_store::tenants::ensure(db.owner(), "acme", t0())
            .await
            .expect("usable after up again");
    }
}

#[tokio::test]
async fn sqlite_pragmas_and_memory_store() {
    let db = certmesh_store::testing::sqlite().await;
    let c = db.owner();
    for (pragma, want) in [
        ("journal_mode", "wal"),
        ("foreign_keys", "1"),
        ("synchronous", "1"),
    ] {
        let row = c
            .query_one_raw(sea_orm::Statement::from_string(
                c.get_database_backend(),
                format!("SELECT CAST({pragma} AS TEXT) AS v FROM pragma_{pragma}"),
            ))
            .await
            .expect("pragma")
            .expect("row");
        let got: String = row.try_get("", "v").expect("value");
        assert_eq!(got.to_lowercase(), want, "PRAGMA {pragma}");
    }

    let mem = certmesh_store::Store::connect("sqlite::memory:")
        .await
        .expect("memory store");
    mem.migrate().await.expect("migrate memory store");
    mem.migrate().await.expect("re-apply");
    certmesh_store::tenants::ensure(mem.conn(), "acme", t0())
        .await
        .expect("usable");

    assert!(matches!(
        certmesh_store::Store::connect("mysql://nope").await,
        Err(certmesh_store::StoreError::Invalid { .. })
    ));
}
