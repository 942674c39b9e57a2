//! Discovery: what to scan, each scan run, and the inventory of certificates found.
//!
//! - `scan_targets`: a named set of hosts/CIDRs, ports and SNI names (`spec`, JSON), scanned
//!   every `interval_seconds` (0 = only on demand); `next_scan_at` is when the scheduler takes
//!   it next.
//! - `scans`: one run of one target (`schedule` or `manual`), its state (`running` | `done` |
//!   `failed`) and counts: endpoints dialled, reachable, refused by the SSRF guard, and
//!   certificates recorded.
//! - `discovered_certificates`: the inventory, unique per (tenant, fingerprint, location). A
//!   location is `tls://<ip>:<port>[#<sni>]` for a network find and
//!   `file://<agent-id><path>` for an agent's; `source` says which. `status` is `unmanaged`,
//!   `managed` (certmesh issued it) or `dismissed`; `binding_id` is set once it is claimed.
//!   The DER is kept (certificates are public) so a find can be shown and claimed later.

use sea_orm_migration::prelude::*;

use crate::m0009_row_level_security::{AppAccess, run_on_postgres, wall_tenant_table};
use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tenant tables this migration creates and walls on PostgreSQL.
pub(crate) const TENANT_TABLES: &[&str] = &["scan_targets", "scans", "discovered_certificates"];

#[derive(DeriveIden)]
enum ScanTargets {
    Table,
    Id,
    TenantId,
    Name,
    Spec,
    IntervalSeconds,
    NextScanAt,
    LastScanId,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Scans {
    Table,
    Id,
    TenantId,
    TargetId,
    Trigger,
    State,
    Endpoints,
    Reachable,
    Refused,
    Certificates,
    Detail,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum DiscoveredCertificates {
    Table,
    Id,
    TenantId,
    FingerprintSha256,
    Location,
    Source,
    AgentId,
    TargetId,
    Serial,
    Subject,
    Issuer,
    Sans,
    NotBefore,
    NotAfter,
    KeyType,
    KeyBits,
    SignatureAlgorithm,
    TlsVersion,
    SelfSigned,
    IsCa,
    Weaknesses,
    Status,
    BindingId,
    CertificateDer,
    FirstSeenAt,
    LastSeenAt,
}

fn int(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).integer().not_null().to_owned()
}

fn big(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).big_integer().not_null().to_owned()
}

fn flag(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).boolean().not_null().to_owned()
}

fn opt_ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn opt_uuid(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).uuid().null().to_owned()
}

fn targets() -> TableCreateStatement {
    use ScanTargets as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::Name))
        .col(text(T::Spec))
        .col(big(T::IntervalSeconds))
        .col(opt_ts(T::NextScanAt))
        .col(opt_uuid(T::LastScanId))
        .col(text(T::CreatedBy))
        .col(ts(T::CreatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn scans() -> TableCreateStatement {
    use Scans as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::TargetId))
        .col(text(T::Trigger))
        .col(text(T::State))
        .col(int(T::Endpoints))
        .col(int(T::Reachable))
        .col(int(T::Refused))
        .col(int(T::Certificates))
        .col(text(T::Detail))
        .col(ts(T::StartedAt))
        .col(opt_ts(T::FinishedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn inventory() -> TableCreateStatement {
    use DiscoveredCertificates as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::FingerprintSha256))
        .col(text(T::Location))
        .col(text(T::Source))
        .col(opt_uuid(T::AgentId))
        .col(opt_uuid(T::TargetId))
        .col(text(T::Serial))
        .col(text(T::Subject))
        .col(text(T::Issuer))
        .col(text(T::Sans))
        .col(ts(T::NotBefore))
        .col(ts(T::NotAfter))
        .col(text(T::KeyType))
        .col(int(T::KeyBits))
        .col(text(T::SignatureAlgorithm))
        .col(text(T::TlsVersion))
        .col(flag(T::SelfSigned))
        .col(flag(T::IsCa))
        .col(text(T::Weaknesses))
        .col(text(T::Status))
        .col(opt_uuid(T::BindingId))
        .col(ColumnDef::new(T::CertificateDer).blob().not_null())
        .col(ts(T::FirstSeenAt))
        .col(ts(T::LastSeenAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    use DiscoveredCertificates as D;
    vec![
        Index::create()
            .name("ux_scan_targets_name")
            .table(ScanTargets::Table)
            .col(ScanTargets::TenantId)
            .col(ScanTargets::Name)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("idx_scans_target")
            .table(Scans::Table)
            .col(Scans::TenantId)
            .col(Scans::TargetId)
            .col(Scans::StartedAt)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_discovered_location")
            .table(D::Table)
            .col(D::TenantId)
            .col(D::FingerprintSha256)
            .col(D::Location)
            .unique()
            .if_not_exists()
            .to_owned(),
        // What the expiry watcher and the "expiring within N days" filter read.
        Index::create()
            .name("idx_discovered_not_after")
            .table(D::Table)
            .col(D::TenantId)
            .col(D::NotAfter)
            .if_not_exists()
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [targets(), scans(), inventory()] {
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
