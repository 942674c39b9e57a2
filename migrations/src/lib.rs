//! The certmesh schema, for PostgreSQL and SQLite.
//!
//! One migration per table group, each with a working `down`, applied in order by [`Migrator`].
//! Column types are chosen so the same statements work on both backends: `uuid` (PostgreSQL
//! `uuid`, SQLite a 16-byte blob), `timestamptz` (SQLite RFC 3339 text), `bytea`/`blob`.
//! Every table but two carries a `tenant_id` that references `tenants(id)`: the directory
//! `tenants` itself, `leases` (m0011), the servers' named job locks, and `agent_identity_cas`
//! (m0012), the CA of agents' client certificates. No key material is
//! stored: CA rows hold a key reference string only. On PostgreSQL every tenant table is also
//! walled by row-level security for the role servers run as ([`APP_ROLE`]; see m0009), listed
//! in [`TENANT_TABLES`].

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
mod m0010_ca_hierarchy;
mod m0011_revocation;
mod m0012_fleet;
mod m0013_discovery;
mod m0014_notification;

pub use m0009_row_level_security::APP_ROLE;
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
            Box::new(m0010_ca_hierarchy::Migration),
            Box::new(m0011_revocation::Migration),
            Box::new(m0012_fleet::Migration),
            Box::new(m0013_discovery::Migration),
            Box::new(m0014_notification::Migration),
        ]
    }
}

/// Every table that carries a `tenant_id`, each walled on PostgreSQL by row-level security and
/// the `tenant_isolation` policy: m0009's tables, then those of later migrations.
pub const TENANT_TABLES: &[&str] = &ALL_TENANT_TABLES;

/// Each migration's walls in order: one [`concat`] per migration that adds tenant tables.
const ALL_TENANT_TABLES: [&str; M0013_END + m0014_notification::TENANT_TABLES.len()] =
    concat(&UP_TO_M0013, m0014_notification::TENANT_TABLES);

const M0013_END: usize = M0012_END + m0013_discovery::TENANT_TABLES.len();

/// The walls up to m0013.
const UP_TO_M0013: [&str; M0013_END] = concat(&UP_TO_M0012, m0013_discovery::TENANT_TABLES);

const M0012_END: usize = M0011_END + m0012_fleet::TENANT_TABLES.len();

/// The walls up to m0012.
const UP_TO_M0012: [&str; M0012_END] = concat(&UP_TO_M0011, m0012_fleet::TENANT_TABLES);

const M0011_END: usize = M0010_END + m0011_revocation::TENANT_TABLES.len();

/// The walls up to m0011.
const UP_TO_M0011: [&str; M0011_END] = concat(&UP_TO_M0010, m0011_revocation::TENANT_TABLES);

const M0010_END: usize =
    m0009_row_level_security::TENANT_TABLES.len() + m0010_ca_hierarchy::TENANT_TABLES.len();

/// The walls of m0009 and m0010.
const UP_TO_M0010: [&str; M0010_END] = concat(
    m0009_row_level_security::TENANT_TABLES,
    m0010_ca_hierarchy::TENANT_TABLES,
);

/// `a` then `b`, at compile time (the length `N` must be their sum).
const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    assert!(a.len() + b.len() == N, "concat: wrong length");
    let mut out = [""; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        out[a.len() + j] = b[j];
        j += 1;
    }
    out
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::TENANT_TABLES;

    #[test]
    fn tenant_tables_are_the_union_of_each_migrations_walls_without_repeats() {
        let unique: BTreeSet<_> = TENANT_TABLES.iter().collect();
        assert_eq!(unique.len(), TENANT_TABLES.len(), "{TENANT_TABLES:?}");
        for table in [
            "cas",
            "approvals",
            "ceremonies",
            "principal_keys",
            "revocations",
            "crls",
            "crl_counters",
            "agents",
            "fleet_jobs",
        ] {
            assert!(TENANT_TABLES.contains(&table), "{table}");
        }
        for global in ["tenants", "leases", "agent_identity_cas"] {
            assert!(
                !TENANT_TABLES.contains(&global),
                "{global} has no tenant_id"
            );
        }
    }
}
