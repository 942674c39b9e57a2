//! Principals (users and service accounts) with their roles; API tokens belong to a principal
//! and may expire.

use sea_orm_migration::prelude::*;

use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Principals {
    Table,
    Id,
    TenantId,
    Name,
    Kind,
    Roles,
    CreatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    PrincipalId,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Principals::Table)
                    .if_not_exists()
                    .col(uuid(Principals::Id).primary_key())
                    .col(uuid(Principals::TenantId))
                    .col(text(Principals::Name))
                    .col(text(Principals::Kind))
                    .col(text(Principals::Roles))
                    .col(ts(Principals::CreatedAt))
                    .col(
                        ColumnDef::new(Principals::DisabledAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(&mut tenant_fk(Principals::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_principals_tenant_name")
                    .table(Principals::Table)
                    .col(Principals::TenantId)
                    .col(Principals::Name)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // SQLite takes one change per ALTER TABLE. Tokens minted before principals existed
        // have no principal and stop verifying; `certmesh token create` mints new ones.
        manager
            .alter_table(
                Table::alter()
                    .table(ApiTokens::Table)
                    .add_column(ColumnDef::new(ApiTokens::PrincipalId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ApiTokens::Table)
                    .add_column(
                        ColumnDef::new(ApiTokens::ExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [ApiTokens::ExpiresAt, ApiTokens::PrincipalId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiTokens::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(
                Table::drop()
                    .table(Principals::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
