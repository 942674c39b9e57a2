//! Issued certificates, keyed by (tenant, serial), indexed for keyset pagination.

use sea_orm_migration::prelude::*;

use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Certificates {
    Table,
    Id,
    TenantId,
    Serial,
    IssuerCaId,
    ProfileName,
    ProfileVersion,
    Subject,
    Sans,
    NotBefore,
    NotAfter,
    FingerprintSha256,
    CertificateDer,
    ChainPem,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use Certificates as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .if_not_exists()
                    .col(uuid(C::Id).primary_key())
                    .col(uuid(C::TenantId))
                    .col(text(C::Serial))
                    // No foreign key: certificates from external CAs have no `cas` row.
                    .col(uuid(C::IssuerCaId))
                    .col(text(C::ProfileName))
                    .col(ColumnDef::new(C::ProfileVersion).integer().not_null())
                    .col(text(C::Subject))
                    .col(text(C::Sans))
                    .col(ts(C::NotBefore))
                    .col(ts(C::NotAfter))
                    .col(text(C::FingerprintSha256))
                    .col(ColumnDef::new(C::CertificateDer).blob().not_null())
                    .col(text(C::ChainPem))
                    .col(ts(C::CreatedAt))
                    .foreign_key(&mut tenant_fk(C::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_certificates_tenant_serial")
                    .table(C::Table)
                    .col(C::TenantId)
                    .col(C::Serial)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_certificates_page")
                    .table(C::Table)
                    .col(C::TenantId)
                    .col(C::CreatedAt)
                    .col(C::Serial)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Certificates::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
