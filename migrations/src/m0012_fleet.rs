//! The fleet: agents, how they enroll, what they are asked to deploy, and what they reported.
//!
//! - `agent_identity_cas` is global (no tenant), like `leases`: the one CA that signs agents'
//!   client certificates, whose URI SAN names tenant and agent. It holds the CA certificate and
//!   a key reference, never key material. `name` is unique so that replicas starting together
//!   agree on one CA.
//! - `bootstrap_tokens`: one-time, expiring enrollment tokens bound to an agent group. Only the
//!   SHA-256 of the secret is kept (unique); like `api_tokens` a row is readable by whoever holds
//!   the secret (`certmesh.token_hash`), because enrollment happens before any tenant is known.
//! - `agents`: one row per enrolled agent: its group, host facts, identity certificate serial
//!   (and the previous one, valid until it expires, so a renewal never strands a connected
//!   agent), `status` (`active` | `retired`) and `last_seen_at`.
//! - `bindings`: what to issue and where to install it (`spec`, JSON), for one agent or a group.
//!   Deleted bindings keep their row (`deleted_at`) so jobs and deployments keep their meaning.
//! - `fleet_jobs`: work for one agent on one binding (`issue`, `renew`, `deploy`), with its
//!   state, attempts, the time it may next be offered, and the certificate issued for its
//!   current attempt (serial, SHA-256, notAfter and renewal time). `open_key` is `<binding>/<agent>` while
//!   the job is open and NULL after: its unique index makes "at most one open job per binding
//!   and agent" a rule of the database, on both backends.
//! - `deployments`: per (binding, agent), the certificate installed, when it is renewed, and
//!   the agent's last report.
//!
//! On PostgreSQL the tenant tables are walled like every tenant table (m0009); the app role may
//! read and add to `agent_identity_cas`.

use sea_orm_migration::prelude::*;

use crate::m0009_row_level_security::{APP_ROLE, AppAccess, run_on_postgres, wall_tenant_table};
use crate::{tenant_fk, text, ts, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tenant tables this migration creates and walls on PostgreSQL.
pub(crate) const TENANT_TABLES: &[&str] = &[
    "bootstrap_tokens",
    "agents",
    "bindings",
    "fleet_jobs",
    "deployments",
];

/// The global table this migration creates: no `tenant_id`, no wall.
const IDENTITY_CAS: &str = "agent_identity_cas";

#[derive(DeriveIden)]
enum AgentIdentityCas {
    Table,
    Name,
    Id,
    CertPem,
    KeyRef,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BootstrapTokens {
    Table,
    Id,
    TenantId,
    TokenHash,
    GroupName,
    Description,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    AgentId,
}

#[derive(DeriveIden)]
enum Agents {
    Table,
    Id,
    TenantId,
    GroupName,
    Hostname,
    Os,
    Arch,
    Version,
    Status,
    IdentitySerial,
    PreviousIdentitySerial,
    IdentityNotAfter,
    PrincipalId,
    EnrolledAt,
    LastSeenAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum Bindings {
    Table,
    Id,
    TenantId,
    Name,
    AgentId,
    GroupName,
    Spec,
    CreatedBy,
    CreatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum FleetJobs {
    Table,
    Id,
    TenantId,
    BindingId,
    AgentId,
    Kind,
    State,
    OpenKey,
    Attempts,
    MaxAttempts,
    NotBefore,
    Outcome,
    Detail,
    Serial,
    CertSha256,
    CertNotAfter,
    CertRenewAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    TenantId,
    BindingId,
    AgentId,
    Serial,
    CertificateSha256,
    NotAfter,
    RenewAt,
    Outcome,
    Detail,
    ServedSha256,
    UpdatedAt,
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

fn opt_uuid(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).uuid().null().to_owned()
}

fn opt_text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().null().to_owned()
}

fn identity_cas() -> TableCreateStatement {
    use AgentIdentityCas as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(text(T::Name).primary_key())
        .col(uuid(T::Id))
        .col(text(T::CertPem))
        .col(text(T::KeyRef))
        .col(ts(T::CreatedAt))
        .to_owned()
}

fn bootstrap_tokens() -> TableCreateStatement {
    use BootstrapTokens as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::TokenHash))
        .col(text(T::GroupName))
        .col(text(T::Description))
        .col(text(T::CreatedBy))
        .col(ts(T::CreatedAt))
        .col(ts(T::ExpiresAt))
        .col(opt_ts(T::UsedAt))
        .col(opt_uuid(T::AgentId))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn agents() -> TableCreateStatement {
    use Agents as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::GroupName))
        .col(text(T::Hostname))
        .col(text(T::Os))
        .col(text(T::Arch))
        .col(text(T::Version))
        .col(text(T::Status))
        .col(text(T::IdentitySerial))
        .col(opt_text(T::PreviousIdentitySerial))
        .col(ts(T::IdentityNotAfter))
        .col(uuid(T::PrincipalId))
        .col(ts(T::EnrolledAt))
        .col(opt_ts(T::LastSeenAt))
        .col(opt_ts(T::RetiredAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn bindings() -> TableCreateStatement {
    use Bindings as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(text(T::Name))
        .col(opt_uuid(T::AgentId))
        .col(opt_text(T::GroupName))
        .col(text(T::Spec))
        .col(text(T::CreatedBy))
        .col(ts(T::CreatedAt))
        .col(opt_ts(T::DeletedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn jobs() -> TableCreateStatement {
    use FleetJobs as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::BindingId))
        .col(uuid(T::AgentId))
        .col(text(T::Kind))
        .col(text(T::State))
        .col(opt_text(T::OpenKey))
        .col(int(T::Attempts))
        .col(int(T::MaxAttempts))
        .col(ts(T::NotBefore))
        .col(text(T::Outcome))
        .col(text(T::Detail))
        .col(text(T::Serial))
        .col(text(T::CertSha256))
        .col(opt_ts(T::CertNotAfter))
        .col(opt_ts(T::CertRenewAt))
        .col(ts(T::CreatedAt))
        .col(ts(T::UpdatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn deployments() -> TableCreateStatement {
    use Deployments as T;
    Table::create()
        .table(T::Table)
        .if_not_exists()
        .col(uuid(T::Id).primary_key())
        .col(uuid(T::TenantId))
        .col(uuid(T::BindingId))
        .col(uuid(T::AgentId))
        .col(text(T::Serial))
        .col(text(T::CertificateSha256))
        .col(ts(T::NotAfter))
        .col(ts(T::RenewAt))
        .col(text(T::Outcome))
        .col(text(T::Detail))
        .col(text(T::ServedSha256))
        .col(ts(T::UpdatedAt))
        .foreign_key(&mut tenant_fk(T::Table))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        Index::create()
            .name("ux_bootstrap_tokens_hash")
            .table(BootstrapTokens::Table)
            .col(BootstrapTokens::TokenHash)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("idx_agents_group")
            .table(Agents::Table)
            .col(Agents::TenantId)
            .col(Agents::GroupName)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_bindings_name")
            .table(Bindings::Table)
            .col(Bindings::TenantId)
            .col(Bindings::Name)
            .unique()
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_fleet_jobs_open")
            .table(FleetJobs::Table)
            .col(FleetJobs::TenantId)
            .col(FleetJobs::OpenKey)
            .unique()
            .if_not_exists()
            .to_owned(),
        // What a connecting agent's dispatch reads: its jobs by state.
        Index::create()
            .name("idx_fleet_jobs_agent")
            .table(FleetJobs::Table)
            .col(FleetJobs::TenantId)
            .col(FleetJobs::AgentId)
            .col(FleetJobs::State)
            .if_not_exists()
            .to_owned(),
        Index::create()
            .name("ux_deployments_target")
            .table(Deployments::Table)
            .col(Deployments::TenantId)
            .col(Deployments::BindingId)
            .col(Deployments::AgentId)
            .unique()
            .if_not_exists()
            .to_owned(),
        // What the renewal scheduler reads: deployments due.
        Index::create()
            .name("idx_deployments_renew")
            .table(Deployments::Table)
            .col(Deployments::TenantId)
            .col(Deployments::RenewAt)
            .if_not_exists()
            .to_owned(),
    ]
}

/// PostgreSQL: the walls of the tenant tables, the enrollment lookup by secret, and the app
/// role's rights on the identity CA table.
fn postgres_up() -> Vec<String> {
    let mut sql: Vec<String> = TENANT_TABLES
        .iter()
        .flat_map(|table| wall_tenant_table(table, AppAccess::ReadWrite))
        .collect();
    sql.push(
        "CREATE POLICY bootstrap_by_secret ON bootstrap_tokens FOR SELECT \
         USING (token_hash = NULLIF(current_setting('certmesh.token_hash', true), ''))"
            .to_owned(),
    );
    sql.push(format!(
        "GRANT SELECT, INSERT ON {IDENTITY_CAS} TO {APP_ROLE}"
    ));
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            identity_cas(),
            bootstrap_tokens(),
            agents(),
            bindings(),
            jobs(),
            deployments(),
        ] {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        run_on_postgres(manager, postgres_up()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TENANT_TABLES.iter().rev().chain([IDENTITY_CAS].iter()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tables_are_walled_and_tokens_readable_by_secret() {
        let up = postgres_up();
        for table in TENANT_TABLES {
            assert!(
                up.contains(&format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY")),
                "{table}"
            );
        }
        assert!(
            up.iter()
                .any(|s| s.starts_with("CREATE POLICY bootstrap_by_secret"))
        );
        assert!(
            !up.iter()
                .any(|s| s.contains(IDENTITY_CAS) && s.contains("POLICY")),
            "the identity CA table is global"
        );
    }
}
