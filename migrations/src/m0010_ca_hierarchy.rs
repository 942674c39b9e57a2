//! The CA hierarchy and m-of-n key ceremonies (RFC 0003).
//!
//! - `cas` gains what a hierarchy needs: `kind`, `path_len`, `key_spec`, the dNSName subtrees
//!   (`permitted_dns`, `excluded_dns`, JSON arrays), `generation` and `key_offline`.
//! - `ca_certificates` keeps every certificate ever made for a CA: one `primary` row per
//!   generation (at most one, by a partial unique index) and its `cross` certificates.
//! - `ceremonies` and `ceremony_approvals` hold a ceremony's fixed parameters and one signed
//!   approval per custodian (the primary key); `principal_keys` the custodians' public keys,
//!   unique per tenant by fingerprint.
//!
//! Backfill: built-in CAs with a parent become `intermediate`; each existing CA gets its
//! generation-1 `primary` row, whose id is the CA's own id (one per CA, so unique, and the
//! backfill needs no id generator that both backends share). `path_len` stays null for existing
//! rows: the CA service reads the path length from the certificate when the column is null.
//!
//! On PostgreSQL the new tables are walled like every tenant table (m0009). `down` drops the
//! new tables (their policies and grants go with them) and the new `cas` columns: SQLite drops
//! columns in place since 3.35 (sqlx bundles 3.51 through libsqlite3-sys 0.37), so no table
//! rebuild is needed.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

use crate::m0009_row_level_security::{AppAccess, run_on_postgres, wall_tenant_table};
use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables this migration creates and walls on PostgreSQL, referenced tables first.
pub(crate) const TENANT_TABLES: &[&str] = &[
    "ca_certificates",
    "principal_keys",
    "ceremonies",
    "ceremony_approvals",
];

#[derive(DeriveIden, Clone, Copy)]
enum Cas {
    Table,
    Id,
    Kind,
    PathLen,
    KeySpec,
    PermittedDns,
    ExcludedDns,
    Generation,
    KeyOffline,
}

#[derive(DeriveIden)]
enum CaCertificates {
    Table,
    Id,
    TenantId,
    CaId,
    Generation,
    Relation,
    IssuerCaId,
    CertificateDer,
    KeyRef,
    NotBefore,
    NotAfter,
    CreatedAt,
    SupersededAt,
}

#[derive(DeriveIden)]
enum Ceremonies {
    Table,
    Id,
    TenantId,
    Purpose,
    Params,
    Digest,
    Threshold,
    Custodians,
    Status,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    CompletedAt,
    ResultCaId,
}

#[derive(DeriveIden)]
enum CeremonyApprovals {
    Table,
    CeremonyId,
    PrincipalId,
    TenantId,
    KeyId,
    Signature,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PrincipalKeys {
    Table,
    Id,
    TenantId,
    PrincipalId,
    Algorithm,
    PublicKeyDer,
    Fingerprint,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Principals {
    Table,
    Id,
}

/// The columns added to `cas`, in order. SQLite takes one per `ALTER TABLE`; a `NOT NULL`
/// column needs a default there, which also fills existing rows.
fn cas_columns() -> Vec<ColumnDef> {
    vec![
        text(Cas::Kind).default("root").to_owned(),
        ColumnDef::new(Cas::PathLen).integer().null().to_owned(),
        text(Cas::KeySpec).default("ecdsa-p256").to_owned(),
        text(Cas::PermittedDns).default("[]").to_owned(),
        text(Cas::ExcludedDns).default("[]").to_owned(),
        ColumnDef::new(Cas::Generation)
            .integer()
            .not_null()
            .default(1)
            .to_owned(),
        ColumnDef::new(Cas::KeyOffline)
            .boolean()
            .not_null()
            .default(false)
            .to_owned(),
    ]
}

/// A `Restrict` foreign key from `from.col` to `to(id)`.
fn fk(
    from: impl IntoTableRef,
    col: impl IntoIden,
    to: impl IntoTableRef,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from, col)
        .to(to, to_col)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

fn nullable_ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn ca_certificates() -> TableCreateStatement {
    use CaCertificates as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::CaId))
        .col(ColumnDef::new(T::Generation).integer().not_null())
        .col(text(T::Relation))
        .col(ColumnDef::new(T::IssuerCaId).uuid().null())
        .col(ColumnDef::new(T::CertificateDer).blob().not_null())
        .col(text(T::KeyRef))
        .col(ts(T::NotBefore))
        .col(ts(T::NotAfter))
        .col(ts(T::CreatedAt))
        .col(nullable_ts(T::SupersededAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .foreign_key(&mut fk(T::Table, T::CaId, Cas::Table, Cas::Id))
        .foreign_key(&mut fk(T::Table, T::IssuerCaId, Cas::Table, Cas::Id))
        .to_owned()
}

fn principal_keys() -> TableCreateStatement {
    use PrincipalKeys as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::PrincipalId))
        .col(text(T::Algorithm))
        .col(ColumnDef::new(T::PublicKeyDer).blob().not_null())
        .col(text(T::Fingerprint))
        .col(ts(T::CreatedAt))
        .col(nullable_ts(T::RevokedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .foreign_key(&mut fk(
            T::Table,
            T::PrincipalId,
            Principals::Table,
            Principals::Id,
        ))
        .to_owned()
}

fn ceremonies() -> TableCreateStatement {
    use Ceremonies as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::Purpose))
        .col(text(T::Params))
        .col(text(T::Digest))
        .col(ColumnDef::new(T::Threshold).integer().not_null())
        .col(text(T::Custodians))
        .col(text(T::Status))
        .col(uuid(T::CreatedBy))
        .col(ts(T::CreatedAt))
        .col(ts(T::ExpiresAt))
        .col(nullable_ts(T::CompletedAt))
        .col(ColumnDef::new(T::ResultCaId).uuid().null())
        .foreign_key(&mut tenant_fk(T::Table))
        .foreign_key(&mut fk(
            T::Table,
            T::CreatedBy,
            Principals::Table,
            Principals::Id,
        ))
        .foreign_key(&mut fk(T::Table, T::ResultCaId, Cas::Table, Cas::Id))
        .to_owned()
}

fn ceremony_approvals() -> TableCreateStatement {
    use CeremonyApprovals as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::CeremonyId))
        .col(uuid(T::PrincipalId))
        .col(uuid(T::TenantId))
        .col(uuid(T::KeyId))
        .col(ColumnDef::new(T::Signature).blob().not_null())
        .col(ts(T::CreatedAt))
        // One approval per custodian.
        .primary_key(Index::create().col(T::CeremonyId).col(T::PrincipalId))
        .foreign_key(&mut tenant_fk(T::Table))
        .foreign_key(&mut fk(
            T::Table,
            T::CeremonyId,
            Ceremonies::Table,
            Ceremonies::Id,
        ))
        .foreign_key(&mut fk(
            T::Table,
            T::PrincipalId,
            Principals::Table,
            Principals::Id,
        ))
        .foreign_key(&mut fk(
            T::Table,
            T::KeyId,
            PrincipalKeys::Table,
            PrincipalKeys::Id,
        ))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("ix_ca_certificates_ca_generation")
            .table(CaCertificates::Table)
            .col(CaCertificates::CaId)
            .col(CaCertificates::Generation)
            .if_not_exists()
            .to_owned(),
        // A generation has exactly one certificate of its own; cross-certificates are extra.
        Index::create()
            .name("ux_ca_certificates_primary")
            .table(CaCertificates::Table)
            .col(CaCertificates::CaId)
            .col(CaCertificates::Generation)
            .unique()
            .and_where(Expr::col(CaCertificates::Relation).eq("primary"))
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ix_ceremonies_tenant_status")
            .table(Ceremonies::Table)
            .col(Ceremonies::TenantId)
            .col(Ceremonies::Status)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_principal_keys_tenant_fingerprint")
            .table(PrincipalKeys::Table)
            .col(PrincipalKeys::TenantId)
            .col(PrincipalKeys::Fingerprint)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ix_principal_keys_principal")
            .table(PrincipalKeys::Table)
            .col(PrincipalKeys::PrincipalId)
            .if_not_exists()
            .to_owned(),
    ]
}

/// Fills the new columns and table for CAs that existed before this migration. Plain SQL that
/// both backends run as is.
const BACKFILL: [&str; 2] = [
    "UPDATE cas SET kind = 'intermediate' WHERE parent_id IS NOT NULL",
    "INSERT INTO ca_certificates (id, tenant_id, ca_id, generation, relation, issuer_ca_id, \
       certificate_der, key_ref, not_before, not_after, created_at, superseded_at) \
     SELECT id, tenant_id, id, 1, 'primary', parent_id, \
       certificate_der, key_ref, not_before, not_after, created_at, NULL \
     FROM cas",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for mut column in cas_columns() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Cas::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // In the order of TENANT_TABLES: approvals point at keys and ceremonies.
        for table in [
            ca_certificates(),
            principal_keys(),
            ceremonies(),
            ceremony_approvals(),
        ] {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        let db = manager.get_connection();
        for statement in BACKFILL {
            db.execute_unprepared(statement).await?;
        }
        let walls = TENANT_TABLES
            .iter()
            .flat_map(|table| wall_tenant_table(table, AppAccess::ReadWrite))
            .collect();
        run_on_postgres(manager, walls).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Referencing tables first (TENANT_TABLES reversed); their walls go with them.
        for table in TENANT_TABLES.iter().rev() {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(*table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            Cas::KeyOffline,
            Cas::Generation,
            Cas::ExcludedDns,
            Cas::PermittedDns,
            Cas::KeySpec,
            Cas::PathLen,
            Cas::Kind,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Cas::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
