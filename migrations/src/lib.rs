//! The certmesh schema, for PostgreSQL and SQLite.
//!
//! One migration per table group, each with a working `down`, applied in order by [`Migrator`].
//! Column types are chosen so the same statements work on both backends: `uuid` (PostgreSQL
//! `uuid`, SQLite a 16-byte blob), `timestamptz` (SQLite RFC 3339 text), `bytea`/`blob`.
//! Every table carries a `tenant_id` that references `tenants(id)`. No key material is stored:
//! CA rows hold a key reference string only. On PostgreSQL every tenant table is also walled
//! by row-level security for the role servers run as ([`APP_ROLE`]; see m0009).

use sea_orm_migration::prelude::*;

mod m0001_tenants;
mod m0002_cas;
mod m0003_profiles;
mod m0004_certificates;
mod m0005_idempotency_outbox;
mod m0006_principals;
mod m0007_audit;
mod m0008_approvals;
mod m0009_row_level_security;

pub use m0009_row_level_security::{APP_ROLE, TENANT_TABLES};
pub use sea_orm_migration::MigratorTrait;

/// Applies the certmesh schema; use [`MigratorTrait::up`] / [`MigratorTrait::down`].
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_tenants::Migration),
            Box::new(m0002_cas::Migration),
            Box::new(m0003_profiles::Migration),
            Box::new(m0004_certificates::Migration),
            Box::new(m0005_idempotency_outbox::Migration),
            Box::new(m0006_principals::Migration),
            Box::new(m0007_audit::Migration),
            Box::new(m0008_approvals::Migration),
            Box::new(m0009_row_level_security::Migration),
        ]
    }
}

/// A foreign key from the `tenant_id` column of `table` to `tenants(id)`, shared by every tenant-scoped table.
fn tenant_fk(table: impl IntoTableRef) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, Alias::new("tenant_id"))
        .to(Alias::new("tenants"), Alias::new("id"))
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

/// A non-null `timestamptz` column.
fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

/// A non-null `uuid` column.
fn uuid(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).uuid().not_null().to_owned()
}

/// A non-null `text` column.
fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().to_owned()
}
