//! Row-level security, the database's own tenancy wall: raw SQL as the app role.
//!
//! These run on PostgreSQL, the backend that has roles and policies; on SQLite the same calls
//! must simply work (the tenant setting is a no-op there).

use certmesh_store::crls::{self, CrlRecord};
use certmesh_store::revocations::{self, NewRevocation};
use certmesh_store::testing::{TestDb, each_backend, postgres};
use certmesh_store::{APP_ROLE, Backend, CaId, TenantId, principals, set_tenant, tokens};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};

use crate::{t0, tenant};

async fn count<C: ConnectionTrait>(c: &C, sql: &str) -> i64 {
    c.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a count")
}

/// Two tenants, each with a principal and a token, a revocation, a CRL and a CRL counter.
async fn seed(db: &TestDb) -> (TenantId, TenantId) {
    let acme = tenant(db, "acme").await;
    let globex = tenant(db, "globex").await;
    for (t, name) in [(acme, "alice"), (globex, "gina")] {
        db.store
            .in_tenant(t, async |tx| {
                let p = principals::create(tx, t, name, "user", &["admin".into()], t0()).await?;
                tokens::create(tx, t, p.id, "laptop", None, t0()).await?;
                seed_revocation(tx, t).await
            })
            .await
            .expect("seed");
    }
    (acme, globex)
}

/// One row in each of the revocation tables (m0011) for `t`.
async fn seed_revocation(
    tx: &DatabaseTransaction,
    t: TenantId,
) -> Result<(), certmesh_store::StoreError> {
    let ca = CaId(uuid::Uuid::from_u128(0xca));
    revocations::insert(
        tx,
        &NewRevocation {
            tenant_id: t,
            serial: "0a".to_owned(),
            issuer_ca_id: ca,
            ca_generation: 1,
            crl_shard: 0,
            reason: "keyCompromise".to_owned(),
            reason_text: String::new(),
            revoked_at: t0(),
            revoked_by: "alice".to_owned(),
            cert_not_after: t0() + chrono::Duration::days(1),
        },
    )
    .await?;
    let number = crls::next_number(tx, t, ca).await?;
    crls::upsert(
        tx,
        &CrlRecord {
            tenant_id: t,
            ca_id: ca,
            generation: 1,
            shard: 0,
            number,
            this_update: t0(),
            next_update: t0() + chrono::Duration::hours(1),
            der: vec![0x30, 0x00],
            sha256: "00".repeat(32),
            entries: 1,
            created_at: t0(),
        },
    )
    .await
}

async fn as_tenant(db: &TestDb, t: TenantId) -> DatabaseTransaction {
    db.store.begin_tenant(t).await.expect("begin for tenant")
}

#[tokio::test]
async fn every_tenant_table_has_forced_row_level_security_and_a_tenant_policy() {
    let db = postgres().await;
    let rows = db
        .owner()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, \
               EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = c.relname \
                       AND p.policyname = 'tenant_isolation') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND EXISTS ( \
               SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid \
                 AND a.attname = 'tenant_id' AND NOT a.attisdropped) \
             ORDER BY 1",
        ))
        .await
        .expect("catalog");
    let mut walled = Vec::new();
    for row in rows {
        let table: String = row.try_get_by_index(0).expect("name");
        let (enabled, forced, policy): (bool, bool, bool) = (
            row.try_get_by_index(1).expect("enabled"),
            row.try_get_by_index(2).expect("forced"),
            row.try_get_by_index(3).expect("policy"),
        );
        assert!(
            enabled && forced && policy,
            "table {table} has a tenant_id but is not walled (rls {enabled}, forced {forced}, \
             policy {policy}): add it to certmesh_migrations::TENANT_TABLES in a new migration"
        );
        walled.push(table);
    }
    let mut listed: Vec<String> = certmesh_migrations::TENANT_TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    listed.sort();
    assert_eq!(walled, listed);
}

#[tokio::test]
async fn with_no_tenant_set_the_app_role_sees_and_writes_nothing() {
    let db = postgres().await;
    let (acme, _) = seed(&db).await;
    let app = db.store.conn();
    let who = app
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_user::text",
        ))
        .await
        .expect("query")
        .expect("row")
        .try_get_by_index::<String>(0)
        .expect("name");
    assert_eq!(who, APP_ROLE);
    for table in certmesh_migrations::TENANT_TABLES {
        assert_eq!(
            count(app, &format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}: rows visible with no tenant set"
        );
    }
    // A transaction without a tenant is the same: nothing.
    let tx = db.store.begin().await.expect("begin");
    assert_eq!(count(&tx, "SELECT COUNT(*) FROM api_tokens").await, 0);
    let insert = tx
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO principals (id, tenant_id, name, kind, roles, created_at) \
             VALUES ($1, $2, 'mallory', 'user', '[]', now())",
            [uuid::Uuid::new_v4().into(), acme.0.into()],
        ))
        .await;
    let err = insert.expect_err("an insert with no tenant set is refused");
    assert!(
        err.to_string().contains("row-level security"),
        "unexpected error: {err}"
    );
    drop(tx);
    // The rows are there: the owner (a superuser here) sees both tenants'.
    for table in ["principals", "revocations", "crls", "crl_counters"] {
        assert_eq!(
            count(db.owner(), &format!("SELECT COUNT(*) FROM {table}")).await,
            2,
            "{table}"
        );
    }
}

#[tokio::test]
async fn a_tenant_sees_and_changes_only_its_own_rows() {
    let db = postgres().await;
    let (acme, globex) = seed(&db).await;
    let tx = as_tenant(&db, acme).await;
    for table in [
        "principals",
        "api_tokens",
        "audit_heads",
        "audit_events",
        "revocations",
        "crls",
        "crl_counters",
    ] {
        assert_eq!(
            count(
                &tx,
                &format!(
                    "SELECT COUNT(*) FROM {table} WHERE tenant_id <> '{}'::uuid",
                    acme.0
                )
            )
            .await,
            0,
            "{table}: another tenant's rows are visible"
        );
    }
    for table in [
        "principals",
        "api_tokens",
        "revocations",
        "crls",
        "crl_counters",
    ] {
        assert_eq!(
            count(&tx, &format!("SELECT COUNT(*) FROM {table}")).await,
            1,
            "{table}: the tenant's own row"
        );
    }
    // Even naming globex's rows outright changes nothing.
    let gone = tx
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE principals SET disabled_at = now() WHERE tenant_id = $1",
            [globex.0.into()],
        ))
        .await
        .expect("update");
    assert_eq!(gone.rows_affected(), 0);
    let deleted = tx
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM api_tokens WHERE tenant_id = $1",
            [globex.0.into()],
        ))
        .await
        .expect("delete");
    assert_eq!(deleted.rows_affected(), 0);
    // Writing a row into another tenant is refused by the policy's check.
    let planted = tx
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO principals (id, tenant_id, name, kind, roles, created_at) \
             VALUES ($1, $2, 'mallory', 'user', '[\"admin\"]', now())",
            [uuid::Uuid::new_v4().into(), globex.0.into()],
        ))
        .await
        .expect_err("planting a row in another tenant is refused");
    assert!(
        planted.to_string().contains("row-level security"),
        "{planted}"
    );
    drop(tx);
    // Moving one's own row to another tenant is refused too.
    let tx = as_tenant(&db, acme).await;
    let moved = tx
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE principals SET tenant_id = $1",
            [globex.0.into()],
        ))
        .await
        .expect_err("moving a row out of the tenant is refused");
    assert!(moved.to_string().contains("row-level security"), "{moved}");
    drop(tx);
    // The tenant setting ends with its transaction.
    let tx = as_tenant(&db, globex).await;
    tx.commit().await.expect("commit");
    assert_eq!(
        count(db.store.conn(), "SELECT COUNT(*) FROM principals").await,
        0
    );
    assert_eq!(
        count(
            db.owner(),
            "SELECT COUNT(*) FROM principals WHERE disabled_at IS NOT NULL"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_token_row_is_visible_to_whoever_holds_its_secret_and_no_other() {
    let db = postgres().await;
    let acme = tenant(&db, "acme").await;
    let (_, plaintext) = db
        .store
        .in_tenant(acme, async |tx| {
            let p = principals::create(tx, acme, "alice", "user", &["viewer".into()], t0()).await?;
            tokens::create(tx, acme, p.id, "laptop", None, t0()).await
        })
        .await
        .expect("seed");
    let verified = tokens::verify(&db.store, &plaintext, t0())
        .await
        .expect("verify")
        .expect("the secret finds its token");
    assert_eq!(verified.tenant_id, acme);
    // A wrong hash shows nothing, and the right one shows that row only.
    let tx = db.store.begin().await.expect("begin");
    tx.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('certmesh.token_hash', $1, true)",
        [tokens::hash(&plaintext).into()],
    ))
    .await
    .expect("set");
    assert_eq!(count(&tx, "SELECT COUNT(*) FROM api_tokens").await, 1);
    assert_eq!(count(&tx, "SELECT COUNT(*) FROM principals").await, 0);
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn on_every_backend_a_tenant_transaction_reads_and_writes() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let tx = db.store.begin().await.expect("begin");
        set_tenant(&tx, acme).await.expect("set tenant");
        principals::create(&tx, acme, "alice", "user", &[], t0())
            .await
            .expect("create");
        tx.commit().await.expect("commit");
        let found = db
            .store
            .in_tenant(acme, async |tx| {
                principals::by_name(tx, acme, "alice").await
            })
            .await
            .expect("read");
        assert!(found.is_some(), "{b:?}");
        let unscoped = principals::by_name(db.store.conn(), acme, "alice")
            .await
            .expect("read");
        assert_eq!(
            unscoped.is_some(),
            b == Backend::Sqlite,
            "{b:?}: outside a tenant transaction only SQLite (no policies) finds the row"
        );
    }
}

/// A login role for one test, dropped at the end (roles are cluster-wide).
struct Login {
    db_owner: sea_orm::DatabaseConnection,
    name: String,
}

impl Login {
    async fn create(db: &TestDb, member_of_app: bool) -> Login {
        let name = format!("certmesh_t_login_{}", uuid::Uuid::new_v4().simple());
        let membership = if member_of_app {
            format!(" IN ROLE {APP_ROLE}")
        } else {
            String::new()
        };
        db.owner()
            .execute_unprepared(&format!("CREATE ROLE {name} LOGIN{membership}"))
            .await
            .expect("create login");
        Login {
            db_owner: db.owner().clone(),
            name,
        }
    }

    async fn drop(self) {
        let _ = self
            .db_owner
            .execute_unprepared(&format!("DROP ROLE IF EXISTS {}", self.name))
            .await;
    }
}

#[tokio::test]
async fn servers_run_with_a_login_that_is_only_a_member_of_the_app_role() {
    let db = postgres().await;
    let member = Login::create(&db, true).await;
    let stranger = Login::create(&db, false).await;
    let result = async {
        let store = certmesh_store::Store::connect(&db.url_as(&member.name).expect("pg url"))
            .await
            .expect("connect");
        // Nothing pending: the start-up migration step only reads the ledger.
        store
            .migrate()
            .await
            .expect("a current schema needs no DDL rights");
        store.ping().await.expect("ping as the app role");
        let acme = certmesh_store::tenants::ensure(store.conn(), "acme", t0())
            .await
            .expect("tenant directory");
        let created = store
            .in_tenant(acme, async |tx| {
                principals::create(tx, acme, "alice", "user", &[], t0()).await
            })
            .await
            .expect("write in the tenant");
        assert_eq!(created.name, "alice");
        store.close().await.expect("close");

        let outsider = certmesh_store::Store::connect(&db.url_as(&stranger.name).expect("pg url"))
            .await
            .expect("a lazy pool connects on first use");
        let refused = outsider
            .ping()
            .await
            .expect_err("not a member of the app role");
        assert!(
            refused
                .to_string()
                .contains("permission denied to set role"),
            "{refused}"
        );
    }
    .await;
    member.drop().await;
    stranger.drop().await;
    result
}
