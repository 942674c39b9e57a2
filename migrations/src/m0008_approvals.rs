//! Two-person approval: an Issue request held until a second principal approves or rejects it.

use sea_orm_migration::prelude::*;

use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Approvals {
    Table,
    Id,
    TenantId,
    RequesterId,
    Requester,
    CsrPem,
    Profile,
    ValiditySeconds,
    IdempotencyKey,
    Status,
    DecidedBy,
    Note,
    CertificateSerial,
    CreatedAt,
    ExpiresAt,
    DecidedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Approvals::Table)
                    .if_not_exists()
                    .col(uuid(Approvals::Id).primary_key())
                    .col(uuid(Approvals::TenantId))
                    .col(uuid(Approvals::RequesterId))
                    .col(text(Approvals::Requester))
                    .col(text(Approvals::CsrPem))
                    .col(text(Approvals::Profile))
                    .col(
                        ColumnDef::new(Approvals::ValiditySeconds)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(Approvals::IdempotencyKey).text().null())
                    .col(text(Approvals::Status))
                    .col(ColumnDef::new(Approvals::DecidedBy).text().null())
                    .col(ColumnDef::new(Approvals::Note).text().null())
                    .col(ColumnDef::new(Approvals::CertificateSerial).text().null())
                    .col(ts(Approvals::CreatedAt))
                    .col(ts(Approvals::ExpiresAt))
                    .col(
                        ColumnDef::new(Approvals::DecidedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(&mut tenant_fk(Approvals::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_approvals_tenant_status_created")
                    .table(Approvals::Table)
                    .col(Approvals::TenantId)
                    .col(Approvals::Status)
                    .col(Approvals::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Approvals::Table).if_exists().to_owned())
            .await
    }
}
