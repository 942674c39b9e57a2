//! PostgreSQL row-level security: the database's own tenancy wall, behind the service layer's.
//!
//! Servers run their statements as the role [`APP_ROLE`] (`certmesh_app`): not the owner of any
//! table, no `BYPASSRLS`. Every table with a `tenant_id` has row-level security enabled and
//! forced (so even the owner, unless a superuser, is subject to it) and one policy: a row is
//! visible and writable only while the transaction's `certmesh.tenant` setting names its tenant.
//! The setting is made transaction-local by the store (`set_config(…, true)`); a statement with
//! no tenant set sees no rows and can write none. Fail-closed.
//!
//! Two tables differ:
//! - `tenants` is the directory of tenants (id, name, creation time) and carries no tenant data;
//!   it has no policy, and the app role may read it and add to it (`certmesh tenant create`).
//! - `api_tokens` is also readable by the hash of a token's secret (`certmesh.token_hash`): a
//!   bearer token must be resolved to its tenant before any tenant is known, and whoever holds
//!   the secret may see that one row.
//!
//! The migration creates the role if it is missing (that needs `CREATEROLE`; a DBA may create it
//! beforehand instead), makes the migrating user a member so a server started with the same
//! login can `SET ROLE` to it, and grants the app role exactly what it needs: read and write on
//! tenant tables, read and append on `audit_events` (whose triggers forbid change anyway), and
//! read on the migration ledger so a server can tell whether the schema is current. SQLite has no
//! roles or policies; there the migration does nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The role servers run as on PostgreSQL.
pub const APP_ROLE: &str = "certmesh_app";

/// The tables this migration walls: every table with a `tenant_id` up to m0008. Later
/// migrations wall their own tables with [`wall_tenant_table`]; the crate's `TENANT_TABLES` is
/// the union.
pub(crate) const TENANT_TABLES: &[&str] = &[
    "api_tokens",
    "cas",
    "profiles",
    "profile_versions",
    "certificates",
    "idempotency_keys",
    "outbox",
    "principals",
    "audit_events",
    "audit_heads",
    "approvals",
];

/// The tenant the current transaction acts for, or NULL when none is set. After a
/// transaction-local setting ends, PostgreSQL leaves an empty string behind, hence `NULLIF`.
const CURRENT_TENANT: &str = "NULLIF(current_setting('certmesh.tenant', true), '')::uuid";

/// What the app role may do with the rows of a walled table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppAccess {
    /// Read, add, change and delete.
    ReadWrite,
    /// Read and add only (`audit_events`, whose triggers forbid change anyway).
    AppendOnly,
}

/// PostgreSQL statements that wall one tenant table: the app role's privileges on it,
/// row-level security enabled and forced, and the `tenant_isolation` policy. The table must
/// have a `tenant_id uuid` column.
pub(crate) fn wall_tenant_table(table: &str, access: AppAccess) -> Vec<String> {
    let privileges = match access {
        AppAccess::ReadWrite => "SELECT, INSERT, UPDATE, DELETE",
        AppAccess::AppendOnly => "SELECT, INSERT",
    };
    vec![
        format!("GRANT {privileges} ON {table} TO {APP_ROLE}"),
        format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
        format!(
            "CREATE POLICY tenant_isolation ON {table} \
             USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        ),
    ]
}

/// The reverse of [`wall_tenant_table`]. Not needed before dropping the table: its policy and
/// grants go with it.
pub(crate) fn unwall_tenant_table(table: &str) -> Vec<String> {
    vec![
        format!("DROP POLICY IF EXISTS tenant_isolation ON {table}"),
        format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"),
        format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"),
        format!("REVOKE ALL ON {table} FROM {APP_ROLE}"),
    ]
}

fn postgres_up() -> Vec<String> {
    let mut sql = vec![
        // CREATE ROLE races with concurrent migrations of other databases on the same server
        // (roles are cluster-wide): a lost race is fine, the role exists.
        format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN \
                 BEGIN CREATE ROLE {APP_ROLE} NOLOGIN; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
               END IF; \
               IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN \
                 EXECUTE format('GRANT {APP_ROLE} TO %I', current_user); \
               END IF; \
             END $$"
        ),
        format!("GRANT USAGE ON SCHEMA public TO {APP_ROLE}"),
        format!("GRANT SELECT, INSERT ON tenants TO {APP_ROLE}"),
        format!("GRANT SELECT ON seaql_migrations TO {APP_ROLE}"),
    ];
    for table in TENANT_TABLES {
        let access = if *table == "audit_events" {
            AppAccess::AppendOnly
        } else {
            AppAccess::ReadWrite
        };
        sql.extend(wall_tenant_table(table, access));
    }
    sql.push(
        "CREATE POLICY token_by_secret ON api_tokens FOR SELECT \
         USING (token_hash = NULLIF(current_setting('certmesh.token_hash', true), ''))"
            .to_owned(),
    );
    sql.push(format!(
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}"
    ));
    sql
}

fn postgres_down() -> Vec<String> {
    let mut sql = vec!["DROP POLICY IF EXISTS token_by_secret ON api_tokens".to_owned()];
    for table in TENANT_TABLES {
        sql.extend(unwall_tenant_table(table));
    }
    // The role itself stays: it is cluster-wide and other databases may use it.
    sql.extend([
        format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}"),
        format!("REVOKE ALL ON seaql_migrations FROM {APP_ROLE}"),
        format!("REVOKE ALL ON tenants FROM {APP_ROLE}"),
        format!("REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}"),
    ]);
    sql
}

/// Runs `statements` in order on PostgreSQL; does nothing on other backends.
pub(crate) async fn run_on_postgres(
    manager: &SchemaManager<'_>,
    statements: Vec<String>,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    for statement in statements {
        db.execute_unprepared(&statement).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_postgres(manager, postgres_up()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_on_postgres(manager, postgres_down()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_walled_and_audit_events_is_append_only() {
        let up = postgres_up();
        for table in TENANT_TABLES {
            let privileges = if *table == "audit_events" {
                "SELECT, INSERT"
            } else {
                "SELECT, INSERT, UPDATE, DELETE"
            };
            for statement in [
                format!("GRANT {privileges} ON {table} TO {APP_ROLE}"),
                format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
            ] {
                assert!(up.contains(&statement), "missing: {statement}");
            }
            assert!(
                up.iter().any(|s| s.starts_with(&format!(
                    "CREATE POLICY tenant_isolation ON {table} USING (tenant_id = NULLIF("
                ))),
                "{table} has no policy"
            );
            assert!(
                postgres_down().contains(&format!("REVOKE ALL ON {table} FROM {APP_ROLE}")),
                "{table} is not unwalled"
            );
        }
    }
}
