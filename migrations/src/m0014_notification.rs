//! Notification: where events go, what was sent, and which expiry alerts were raised.
//!
//! - `notification_channels`: a named delivery channel (`webhook`, `email`, `slack`, `teams`,
//!   `pagerduty`); `config` is the non-secret settings (JSON) and `sealed_secrets` the secret
//!   ones (HMAC key, chat webhook URL, routing key, SMTP password) sealed with the key-encryption
//!   key (AES-256-GCM, the channel id as associated data). Never plaintext in a row.
//! - `notification_rules`: which event types (exact, `prefix.*` or `*`) go to which channels.
//! - `notification_deliveries`: one row per (event, channel), unique, so an event reaches a
//!   channel once however often the relay runs. `state` is `pending` | `sending` |
//!   `delivered` | `dead`; `next_attempt_at` drives retries with backoff; a `sending` row
//!   whose `claimed_until` passed is taken again (at least once).
//! - `expiry_alerts`: one row per (certificate, threshold in days), unique, written with the
//!   `certificate.expiring` outbox event in one transaction, so an alert is raised once even
//!   across restarts and replicas.
//!
//! The relay reads each tenant's `outbox` rows whose `published_at` is NULL, oldest first;
//! `idx_outbox_relay` (tenant, published_at, created_at) makes that cheap.

use sea_orm_migration::prelude::*;

use crate::m0009_row_level_security::{AppAccess, run_on_postgres, wall_tenant_table};
use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tenant tables this migration creates and walls on PostgreSQL.
pub(crate) const TENANT_TABLES: &[&str] = &[
    "notification_channels",
    "notification_rules",
    "notification_deliveries",
    "expiry_alerts",
];

#[derive(DeriveIden)]
enum NotificationChannels {
    Table,
    Id,
    TenantId,
    Name,
    Kind,
    Config,
    SealedSecrets,
    Enabled,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationRules {
    Table,
    Id,
    TenantId,
    Name,
    EventTypes,
    ChannelIds,
    Enabled,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationDeliveries {
    Table,
    Id,
    TenantId,
    EventId,
    ChannelId,
    RuleId,
    EventType,
    State,
    Attempts,
    NextAttemptAt,
    ClaimedUntil,
    LastError,
    CreatedAt,
    UpdatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum ExpiryAlerts {
    Table,
    Id,
    TenantId,
    Subject,
    ThresholdDays,
    EventId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    TenantId,
    PublishedAt,
    CreatedAt,
}

fn int(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).integer().not_null().to_owned()
}

fn opt_ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn channels() -> TableCreateStatement {
    use NotificationChannels as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::Name))
        .col(text(T::Kind))
        .col(text(T::Config))
        .col(ColumnDef::new(T::SealedSecrets).blob().not_null())
        .col(ColumnDef::new(T::Enabled).boolean().not_null())
        .col(text(T::CreatedBy))
        .col(ts(T::CreatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn rules() -> TableCreateStatement {
    use NotificationRules as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::Name))
        .col(text(T::EventTypes))
        .col(text(T::ChannelIds))
        .col(ColumnDef::new(T::Enabled).boolean().not_null())
        .col(text(T::CreatedBy))
        .col(ts(T::CreatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn deliveries() -> TableCreateStatement {
    use NotificationDeliveries as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::EventId))
        .col(uuid(T::ChannelId))
        .col(uuid(T::RuleId))
        .col(text(T::EventType))
        .col(text(T::State))
        .col(int(T::Attempts))
        .col(ts(T::NextAttemptAt))
        .col(opt_ts(T::ClaimedUntil))
        .col(text(T::LastError))
        .col(ts(T::CreatedAt))
        .col(ts(T::UpdatedAt))
        .col(opt_ts(T::DeliveredAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn alerts() -> TableCreateStatement {
    use ExpiryAlerts as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::Subject))
        .col(int(T::ThresholdDays))
        .col(uuid(T::EventId))
        .col(ts(T::CreatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    use NotificationDeliveries as D;
    vec![
        Index::create()
            .name("ux_notification_channels_name")
            .table(NotificationChannels::Table)
            .col(NotificationChannels::TenantId)
            .col(NotificationChannels::Name)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_notification_rules_name")
            .table(NotificationRules::Table)
            .col(NotificationRules::TenantId)
            .col(NotificationRules::Name)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_deliveries_event_channel")
            .table(D::Table)
            .col(D::TenantId)
            .col(D::EventId)
            .col(D::ChannelId)
            .unique()
            .if_not_exists()
            .to_owned(),
        // What the sender reads: deliveries due.
        Index::create()
            .name("idx_deliveries_due")
            .table(D::Table)
            .col(D::TenantId)
            .col(D::State)
            .col(D::NextAttemptAt)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_expiry_alerts")
            .table(ExpiryAlerts::Table)
            .col(ExpiryAlerts::TenantId)
            .col(ExpiryAlerts::Subject)
            .col(ExpiryAlerts::ThresholdDays)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("idx_outbox_relay")
            .table(Outbox::Table)
            .col(Outbox::TenantId)
            .col(Outbox::PublishedAt)
            .col(Outbox::CreatedAt)
            .if_not_exists()
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [channels(), rules(), deliveries(), alerts()] {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        let walls = TENANT_TABLES
            .iter()
            .flat_map(|table| wall_tenant_table(table, AppAccess::ReadWrite))
            .collect();
        run_on_postgres(manager, walls).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_outbox_relay")
                    .table(Outbox::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
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
        Ok(())
    }
}
