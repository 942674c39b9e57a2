//! The append-only, hash-chained audit trail: `audit_events` (one row per audited action,
//! chained per tenant by `prev_hash` → `hash`) and `audit_heads` (the chain head per tenant).
//!
//! Append-only is enforced by the database, not only by the repository: a trigger rejects every
//! `UPDATE` and `DELETE` of `audit_events` (and, on PostgreSQL, `TRUNCATE`), so a bug or a
//! stray statement cannot rewrite history. A database owner can still bypass triggers; the
//! hash chain is what detects that.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    Seq,
    Actor,
    Action,
    Resource,
    RequestId,
    Outcome,
    Details,
    CreatedAt,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHeads {
    Table,
    TenantId,
    Seq,
    Hash,
}

/// The message both backends raise when a statement tries to change the trail.
const APPEND_ONLY: &str = "audit_events is append-only";

/// The trigger DDL, one statement per string (each is executed on its own).
fn postgres_up() -> Vec<String> {
    vec![
        format!(
            "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END; $$"
        ),
        "CREATE OR REPLACE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE \
         ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
            .to_owned(),
        "CREATE OR REPLACE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events \
         FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
            .to_owned(),
    ]
}

const POSTGRES_DOWN: [&str; 3] = [
    "DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events",
    "DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events",
    "DROP FUNCTION IF EXISTS audit_events_append_only()",
];

fn sqlite_up() -> Vec<String> {
    // SQLite has no TRUNCATE: `DELETE FROM audit_events` is covered by the DELETE trigger.
    ["update", "delete"]
        .iter()
        .map(|op| {
            format!(
                "CREATE TRIGGER IF NOT EXISTS audit_events_no_{op} BEFORE {op} ON audit_events \
                 BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
        })
        .collect()
}

const SQLITE_DOWN: [&str; 2] = [
    "DROP TRIGGER IF EXISTS audit_events_no_update",
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
];

fn unsupported(backend: DbBackend) -> DbErr {
    DbErr::Migration(format!("audit triggers are not written for {backend:?}"))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use AuditEvents as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .if_not_exists()
                    .col(uuid(E::Id).primary_key())
                    .col(uuid(E::TenantId))
                    .col(ColumnDef::new(E::Seq).big_integer().not_null())
                    .col(text(E::Actor))
                    .col(text(E::Action))
                    .col(text(E::Resource))
                    .col(text(E::RequestId))
                    .col(text(E::Outcome))
                    .col(text(E::Details))
                    .col(ts(E::CreatedAt))
                    .col(text(E::PrevHash))
                    .col(text(E::Hash))
                    .foreign_key(&mut tenant_fk(E::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_audit_events_tenant_seq")
                    .table(E::Table)
                    .col(E::TenantId)
                    .col(E::Seq)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_tenant_created")
                    .table(E::Table)
                    .col(E::TenantId)
                    .col(E::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditHeads::Table)
                    .if_not_exists()
                    .col(uuid(AuditHeads::TenantId).primary_key())
                    .col(ColumnDef::new(AuditHeads::Seq).big_integer().not_null())
                    .col(text(AuditHeads::Hash))
                    .foreign_key(&mut tenant_fk(AuditHeads::Table))
                    .to_owned(),
            )
            .await?;
        let ddl = match manager.get_database_backend() {
            DbBackend::Postgres => postgres_up(),
            DbBackend::Sqlite => sqlite_up(),
            other => return Err(unsupported(other)),
        };
        for sql in ddl {
            manager.get_connection().execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ddl: &[&str] = match manager.get_database_backend() {
            DbBackend::Postgres => &POSTGRES_DOWN,
            DbBackend::Sqlite => &SQLITE_DOWN,
            other => return Err(unsupported(other)),
        };
        for sql in ddl {
            manager.get_connection().execute_unprepared(sql).await?;
        }
        manager
            .drop_table(
                Table::drop()
                    .table(AuditHeads::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(AuditEvents::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
