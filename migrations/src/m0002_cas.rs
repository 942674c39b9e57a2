//! Certificate authorities: the certificate and a key reference, never key bytes.

use sea_orm_migration::prelude::*;

use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Cas {
    Table,
    Id,
    TenantId,
    Name,
    ParentId,
    KeyRef,
    CertificateDer,
    Subject,
    NotBefore,
    NotAfter,
    Status,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Cas::Table)
                    .if_not_exists()
                    .col(uuid(Cas::Id).primary_key())
                    .col(uuid(Cas::TenantId))
                    .col(text(Cas::Name))
                    .col(ColumnDef::new(Cas::ParentId).uuid().null())
                    .col(text(Cas::KeyRef))
                    .col(ColumnDef::new(Cas::CertificateDer).blob().not_null())
                    .col(text(Cas::Subject))
                    .col(ts(Cas::NotBefore))
                    .col(ts(Cas::NotAfter))
                    .col(text(Cas::Status))
                    .col(ts(Cas::CreatedAt))
                    .foreign_key(&mut tenant_fk(Cas::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_cas_tenant_name")
                    .table(Cas::Table)
                    .col(Cas::TenantId)
                    .col(Cas::Name)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Cas::Table).if_exists().to_owned())
            .await
    }
}
