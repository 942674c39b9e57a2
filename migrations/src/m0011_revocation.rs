//! Revocation: revoked certificates, the CRLs published for them, CRL numbers and leases.
//!
//! - `certificates` gains `crl_shard`, the CRL shard a certificate's revocation is listed in
//!   (0 for every certificate issued before shards existed), and an index on
//!   (tenant, issuer, issue time) for listing a CA's certificates.
//! - `revocations` holds one row per revoked serial of a tenant (unique), with the issuing CA
//!   key (`issuer_ca_id`, `ca_generation`) and shard that decide which CRL lists it, the
//!   RFC 5280 reason name, and a `status`: `revoked`, or `lifted` once a `certificateHold` is
//!   released. Rows are kept after the certificate expires; CRL builds skip expired ones by
//!   `cert_not_after`. `updated_at` moves on every change, for CRL freshness and for feeds.
//! - `crls` keeps the latest CRL of each (CA, generation, shard), DER and all; `crl_counters`
//!   the last CRL number handed out per CA (RFC 5280 §5.2.3: monotonically increasing per
//!   issuer, whatever the shard).
//! - `leases` is global (no tenant): named, expiring locks so that one server at a time runs a
//!   periodic job, e.g. the CRL publisher.
//!
//! No foreign key points at `cas`: like `certificates.issuer_ca_id`, revocations may name a CA
//! the store has no row for, and CA rows are never deleted anyway.
//!
//! On PostgreSQL the three tenant tables are walled like every tenant table (m0009); the app
//! role gets plain read and write on `leases`. `down` drops the new tables (their policies and
//! grants go with them), the index and the `certificates` column (SQLite ≥ 3.35 drops an
//! unindexed column in place).

use sea_orm_migration::prelude::*;

use crate::m0009_row_level_security::{APP_ROLE, AppAccess, run_on_postgres, wall_tenant_table};
use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tenant tables this migration creates and walls on PostgreSQL.
pub(crate) const TENANT_TABLES: &[&str] = &["revocations", "crls", "crl_counters"];

/// The global table this migration creates: no `tenant_id`, no wall.
const LEASES: &str = "leases";

#[derive(DeriveIden, Clone, Copy)]
enum Certificates {
    Table,
    TenantId,
    IssuerCaId,
    CreatedAt,
    CrlShard,
}

#[derive(DeriveIden)]
enum Revocations {
    Table,
    Id,
    TenantId,
    Serial,
    IssuerCaId,
    CaGeneration,
    CrlShard,
    Reason,
    ReasonText,
    Status,
    RevokedAt,
    RevokedBy,
    CertNotAfter,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Crls {
    Table,
    Id,
    TenantId,
    CaId,
    Generation,
    Shard,
    Number,
    ThisUpdate,
    NextUpdate,
    Der,
    Sha256,
    Entries,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CrlCounters {
    Table,
    Id,
    TenantId,
    CaId,
    LastNumber,
}

#[derive(DeriveIden)]
enum Leases {
    Table,
    Name,
    Holder,
    ExpiresAt,
    AcquiredAt,
}

/// The certificate index this migration adds (and `down` drops).
const CERTIFICATES_ISSUER_INDEX: &str = "idx_certificates_issuer";

fn int(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).integer().not_null().to_owned()
}

fn bigint(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}

fn revocations() -> TableCreateStatement {
    use Revocations as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::Serial))
        .col(uuid(T::IssuerCaId))
        .col(int(T::CaGeneration))
        .col(int(T::CrlShard))
        .col(text(T::Reason))
        .col(text(T::ReasonText))
        .col(text(T::Status))
        .col(ts(T::RevokedAt))
        .col(text(T::RevokedBy))
        .col(ts(T::CertNotAfter))
        .col(ts(T::UpdatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn crls() -> TableCreateStatement {
    use Crls as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::CaId))
        .col(int(T::Generation))
        .col(int(T::Shard))
        .col(bigint(T::Number))
        .col(ts(T::ThisUpdate))
        .col(ts(T::NextUpdate))
        .col(ColumnDef::new(T::Der).blob().not_null())
        .col(text(T::Sha256))
        .col(bigint(T::Entries))
        .col(ts(T::CreatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn crl_counters() -> TableCreateStatement {
    use CrlCounters as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::CaId))
        .col(bigint(T::LastNumber))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn leases() -> TableCreateStatement {
    use Leases as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(text(T::Name).primary_key())
        .col(text(T::Holder))
        .col(ts(T::ExpiresAt))
        .col(ts(T::AcquiredAt))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name(CERTIFICATES_ISSUER_INDEX)
            .table(Certificates::Table)
            .col(Certificates::TenantId)
            .col(Certificates::IssuerCaId)
            .col(Certificates::CreatedAt)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_revocations_tenant_serial")
            .table(Revocations::Table)
            .col(Revocations::TenantId)
            .col(Revocations::Serial)
            .unique()
            .if_not_exists()
            .to_owned(),
        // What a CRL build reads: one CA key's shard, revoked rows only.
        Index::create()
            .name("idx_revocations_crl")
            .table(Revocations::Table)
            .col(Revocations::TenantId)
            .col(Revocations::IssuerCaId)
            .col(Revocations::CaGeneration)
            .col(Revocations::CrlShard)
            .col(Revocations::Status)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("idx_revocations_updated")
            .table(Revocations::Table)
            .col(Revocations::TenantId)
            .col(Revocations::UpdatedAt)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_crls_scope")
            .table(Crls::Table)
            .col(Crls::TenantId)
            .col(Crls::CaId)
            .col(Crls::Generation)
            .col(Crls::Shard)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_crl_counters_ca")
            .table(CrlCounters::Table)
            .col(CrlCounters::TenantId)
            .col(CrlCounters::CaId)
            .unique()
            .if_not_exists()
            .to_owned(),
    ]
}

/// PostgreSQL: the walls of the tenant tables and the app role's rights on `leases`.
fn postgres_up() -> Vec<String> {
    let mut sql: Vec<String> = TENANT_TABLES
        .iter()
        .flat_map(|table| wall_tenant_table(table, AppAccess::ReadWrite))
        .collect();
    sql.push(format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON {LEASES} TO {APP_ROLE}"
    ));
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Certificates::Table)
                    .add_column(int(Certificates::CrlShard).default(0).to_owned())
                    .to_owned(),
            )
            .await?;
        for table in [revocations(), crls(), crl_counters(), leases()] {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        run_on_postgres(manager, postgres_up()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [LEASES].iter().chain(TENANT_TABLES.iter().rev()) {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(*table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name(CERTIFICATES_ISSUER_INDEX)
                    .table(Certificates::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Certificates::Table)
                    .drop_column(Certificates::CrlShard)
                    .to_owned(),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tables_are_walled_and_leases_granted_not_walled() {
        let up = postgres_up();
        for table in TENANT_TABLES {
            for statement in [
                format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}"),
                format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
            ] {
                assert!(up.contains(&statement), "missing: {statement}");
            }
            assert!(
                up.iter()
                    .any(|s| s.starts_with(&format!("CREATE POLICY tenant_isolation ON {table} "))),
                "{table} has no policy"
            );
        }
        assert!(up.contains(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON leases TO {APP_ROLE}"
        )));
        assert!(
            !up.iter()
                .any(|s| s.contains("ON leases") && s.contains("POLICY")),
            "leases is global: no tenant policy"
        );
    }
}
