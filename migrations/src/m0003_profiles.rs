//! Issuance profiles and their immutable, numbered versions.

use sea_orm_migration::prelude::*;

use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Profiles {
    Table,
    Id,
    TenantId,
    Name,
    LatestVersion,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProfileVersions {
    Table,
    Id,
    TenantId,
    ProfileId,
    Version,
    Spec,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Profiles::Table)
                    .if_not_exists()
                    .col(uuid(Profiles::Id).primary_key())
                    .col(uuid(Profiles::TenantId))
                    .col(text(Profiles::Name))
                    .col(ColumnDef::new(Profiles::LatestVersion).integer().not_null())
                    .col(ts(Profiles::CreatedAt))
                    .col(ts(Profiles::UpdatedAt))
                    .foreign_key(&mut tenant_fk(Profiles::Table))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_profiles_tenant_name")
                    .table(Profiles::Table)
                    .col(Profiles::TenantId)
                    .col(Profiles::Name)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProfileVersions::Table)
                    .if_not_exists()
                    .col(uuid(ProfileVersions::Id).primary_key())
                    .col(uuid(ProfileVersions::TenantId))
                    .col(uuid(ProfileVersions::ProfileId))
                    .col(
                        ColumnDef::new(ProfileVersions::Version)
                            .integer()
                            .not_null(),
                    )
                    .col(text(ProfileVersions::Spec))
                    .col(ts(ProfileVersions::CreatedAt))
                    .foreign_key(&mut tenant_fk(ProfileVersions::Table))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProfileVersions::Table, ProfileVersions::ProfileId)
                            .to(Profiles::Table, Profiles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_profile_versions_profile_version")
                    .table(ProfileVersions::Table)
                    .col(ProfileVersions::ProfileId)
                    .col(ProfileVersions::Version)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ProfileVersions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Profiles::Table).if_exists().to_owned())
            .await
    }
}
