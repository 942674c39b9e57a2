//! What the agents do: deployment bindings, the jobs made from them, and the deployments the
//! agents report.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::{bindings as b, deployments as d, fleet_jobs as j};
use crate::{Result, StoreError, TenantId, truncate_ts};

/// A deployment binding: what to issue (`spec`, JSON owned by the fleet role) for one agent
/// or every agent of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    pub agent_id: Option<uuid::Uuid>,
    pub group: Option<String>,
    pub spec: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<b::Model> for BindingRecord {
    fn from(m: b::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            name: m.name,
            agent_id: m.agent_id,
            group: m.group_name,
            spec: m.spec,
            created_by: m.created_by,
            created_at: m.created_at,
            deleted_at: m.deleted_at,
        }
    }
}

/// Adds a binding; [`StoreError::Conflict`] if the tenant has one of that name (deleted ones
/// included: names are never reused, so old jobs keep their meaning).
pub async fn insert_binding<C: ConnectionTrait>(c: &C, rec: &BindingRecord) -> Result<()> {
    let row = b::Model {
        id: rec.id,
        tenant_id: rec.tenant_id.0,
        name: rec.name.clone(),
        agent_id: rec.agent_id,
        group_name: rec.group.clone(),
        spec: rec.spec.clone(),
        created_by: rec.created_by.clone(),
        created_at: truncate_ts(rec.created_at),
        deleted_at: None,
    };
    let done = b::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([b::Column::TenantId, b::Column::Name])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(done) == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict { what: "binding" })
    }
}

/// The tenant's binding `id` (deleted or not).
pub async fn get_binding<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<BindingRecord>> {
    Ok(b::Entity::find_by_id(id)
        .filter(b::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(Into::into))
}

/// The tenant's live bindings, oldest first.
pub async fn list_bindings<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<Vec<BindingRecord>> {
    Ok(b::Entity::find()
        .filter(b::Column::TenantId.eq(tenant.0))
        .filter(b::Column::DeletedAt.is_null())
        .order_by_asc(b::Column::CreatedAt)
        .order_by_asc(b::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Marks binding `id` deleted at `now` and cancels its open jobs; returns how many. `NotFound`
/// if there is no live binding `id`.
pub async fn delete_binding<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<u64> {
    let done = b::Entity::update_many()
        .col_expr(b::Column::DeletedAt, Expr::value(truncate_ts(now)))
        .filter(b::Column::TenantId.eq(tenant.0))
        .filter(b::Column::Id.eq(id))
        .filter(b::Column::DeletedAt.is_null())
        .exec(c)
        .await?;
    if done.rows_affected != 1 {
        return Err(StoreError::NotFound { what: "binding" });
    }
    cancel_jobs(c, tenant, j::Column::BindingId, id, now).await
}

/// Jobs are in one of these states.
pub mod state {
    /// Made, waiting for its agent's stream.
    pub const PENDING: &str = "pending";
    /// Pushed down the agent's stream.
    pub const SENT: &str = "sent";
    /// The agent acknowledged it.
    pub const ACKED: &str = "acked";
    /// The certificate for the agent's CSR was sent.
    pub const ISSUED: &str = "issued";
    /// Failed; offered again from `not_before` on.
    pub const FAILED: &str = "failed";
    /// Done: the agent reported success.
    pub const SUCCEEDED: &str = "succeeded";
    /// Out of attempts.
    pub const DEAD: &str = "dead";
    /// Its binding was deleted or its agent retired.
    pub const CANCELLED: &str = "cancelled";
    /// States of a job that is not finished.
    pub const OPEN: [&str; 5] = [PENDING, SENT, ACKED, ISSUED, FAILED];
    /// Every state, in lifecycle order.
    pub const ALL: [&str; 8] = [
        PENDING, SENT, ACKED, ISSUED, FAILED, SUCCEEDED, DEAD, CANCELLED,
    ];
}

/// A job for one agent on one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub binding_id: uuid::Uuid,
    pub agent_id: uuid::Uuid,
    /// `issue`, `renew` or `deploy`.
    pub kind: String,
    /// One of [`state`].
    pub state: String,
    /// Attempts started so far (the first is 1).
    pub attempts: u32,
    pub max_attempts: u32,
    /// Not offered before this.
    pub not_before: DateTime<Utc>,
    pub outcome: String,
    pub detail: String,
    /// The certificate issued for the current attempt: serial (hex), SHA-256 (hex), notAfter
    /// and the time to renew it.
    pub serial: String,
    pub cert_sha256: String,
    pub cert_not_after: Option<DateTime<Utc>>,
    pub cert_renew_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<j::Model> for JobRecord {
    fn from(m: j::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            binding_id: m.binding_id,
            agent_id: m.agent_id,
            kind: m.kind,
            state: m.state,
            attempts: u32::try_from(m.attempts).unwrap_or(0),
            max_attempts: u32::try_from(m.max_attempts).unwrap_or(0),
            not_before: m.not_before,
            outcome: m.outcome,
            detail: m.detail,
            serial: m.serial,
            cert_sha256: m.cert_sha256,
            cert_not_after: m.cert_not_after,
            cert_renew_at: m.cert_renew_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

fn open_key(binding: uuid::Uuid, agent: uuid::Uuid) -> String {
    format!("{binding}/{agent}")
}

/// Adds a pending job of `kind` (first attempt) unless the binding already has an open job on
/// that agent: `None` then, and nothing changes.
pub async fn insert_job<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    binding_id: uuid::Uuid,
    agent_id: uuid::Uuid,
    kind: &str,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Result<Option<JobRecord>> {
    let now = truncate_ts(now);
    let row = j::Model {
        id: crate::time_ordered_id(now),
        tenant_id: tenant.0,
        binding_id,
        agent_id,
        kind: kind.to_owned(),
        state: state::PENDING.to_owned(),
        open_key: Some(open_key(binding_id, agent_id)),
        attempts: 1,
        max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
        not_before: now,
        outcome: String::new(),
        detail: String::new(),
        serial: String::new(),
        cert_sha256: String::new(),
        cert_not_after: None,
        cert_renew_at: None,
        created_at: now,
        updated_at: now,
    };
    let done = j::Entity::insert(row.clone().into_active_model())
        .on_conflict_do_nothing_on([j::Column::TenantId, j::Column::OpenKey])
        .exec_without_returning(c)
        .await?;
    Ok((crate::inserted_rows(done) == 1).then(|| row.into()))
}

/// Adds a pending "deploy" job that installs `d`'s current certificate again, unless the
/// target already has an open job (`None` then, and nothing changes).
pub async fn insert_deploy_job<C: ConnectionTrait>(
    c: &C,
    d: &DeploymentRecord,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Result<Option<JobRecord>> {
    let now = truncate_ts(now);
    let row = j::Model {
        id: crate::time_ordered_id(now),
        tenant_id: d.tenant_id.0,
        binding_id: d.binding_id,
        agent_id: d.agent_id,
        kind: "deploy".to_owned(),
        state: state::PENDING.to_owned(),
        open_key: Some(open_key(d.binding_id, d.agent_id)),
        attempts: 1,
        max_attempts: i32::try_from(max_attempts).unwrap_or(i32::MAX),
        not_before: now,
        outcome: String::new(),
        detail: String::new(),
        serial: d.serial.clone(),
        cert_sha256: d.certificate_sha256.clone(),
        cert_not_after: Some(truncate_ts(d.not_after)),
        cert_renew_at: Some(truncate_ts(d.renew_at)),
        created_at: now,
        updated_at: now,
    };
    let done = j::Entity::insert(row.clone().into_active_model())
        .on_conflict_do_nothing_on([j::Column::TenantId, j::Column::OpenKey])
        .exec_without_returning(c)
        .await?;
    Ok((crate::inserted_rows(done) == 1).then(|| row.into()))
}

/// The tenant's job `id`.
pub async fn get_job<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<JobRecord>> {
    Ok(j::Entity::find_by_id(id)
        .filter(j::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(Into::into))
}

/// Which jobs [`list_jobs`] returns; unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub agent_id: Option<uuid::Uuid>,
    pub binding_id: Option<uuid::Uuid>,
    pub state: Option<String>,
    pub limit: u64,
}

/// The tenant's jobs matching `f`, newest first.
pub async fn list_jobs<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    f: &JobFilter,
) -> Result<Vec<JobRecord>> {
    let mut q = j::Entity::find().filter(j::Column::TenantId.eq(tenant.0));
    if let Some(agent) = f.agent_id {
        q = q.filter(j::Column::AgentId.eq(agent));
    }
    if let Some(binding) = f.binding_id {
        q = q.filter(j::Column::BindingId.eq(binding));
    }
    if let Some(st) = &f.state {
        q = q.filter(j::Column::State.eq(st.as_str()));
    }
    Ok(q.order_by_desc(j::Column::Id)
        .limit(std::cmp::max(f.limit, 1))
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// The open jobs of the given agents that may be offered at `now`, oldest first.
pub async fn offerable_jobs<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    agents: &[uuid::Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<JobRecord>> {
    let mut out = Vec::new();
    for chunk in agents.chunks(500) {
        out.extend(
            j::Entity::find()
                .filter(j::Column::TenantId.eq(tenant.0))
                .filter(j::Column::AgentId.is_in(chunk.iter().copied()))
                .filter(j::Column::State.is_in(state::OPEN))
                .filter(j::Column::NotBefore.lte(truncate_ts(now)))
                .order_by_asc(j::Column::Id)
                .all(c)
                .await?
                .into_iter()
                .map(JobRecord::from),
        );
    }
    Ok(out)
}

/// How many of the tenant's jobs are in each state (states without jobs are left out), for
/// the fleet's jobs gauge.
pub async fn count_jobs_by_state<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<Vec<(String, u64)>> {
    let rows: Vec<(String, i64)> = j::Entity::find()
        .select_only()
        .column(j::Column::State)
        .column_as(Expr::col(j::Column::Id).count(), "jobs")
        .filter(j::Column::TenantId.eq(tenant.0))
        .group_by(j::Column::State)
        .into_tuple()
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(state, n)| (state, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// The open jobs of the tenant (binding and agent of each), for the scheduler.
pub async fn open_job_targets<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<Vec<(uuid::Uuid, uuid::Uuid)>> {
    Ok(j::Entity::find()
        .select_only()
        .column(j::Column::BindingId)
        .column(j::Column::AgentId)
        .filter(j::Column::TenantId.eq(tenant.0))
        .filter(j::Column::OpenKey.is_not_null())
        .into_tuple()
        .all(c)
        .await?)
}

/// The certificate issued for a job's attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    pub serial: String,
    pub sha256: String,
    pub not_after: DateTime<Utc>,
    pub renew_at: DateTime<Utc>,
}

/// Moves an open job to `to` (an open state), recording the certificate issued when given.
/// Returns false, changing nothing, if the job is not open or not in one of `from`.
pub async fn advance_job<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    from: &[&str],
    to: &str,
    issued: Option<&IssuedCert>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut q = j::Entity::update_many()
        .col_expr(j::Column::State, Expr::value(to))
        .col_expr(j::Column::UpdatedAt, Expr::value(truncate_ts(now)));
    if let Some(cert) = issued {
        q = q
            .col_expr(j::Column::Serial, Expr::value(cert.serial.as_str()))
            .col_expr(j::Column::CertSha256, Expr::value(cert.sha256.as_str()))
            .col_expr(
                j::Column::CertNotAfter,
                Expr::value(truncate_ts(cert.not_after)),
            )
            .col_expr(
                j::Column::CertRenewAt,
                Expr::value(truncate_ts(cert.renew_at)),
            );
    }
    let done = q
        .filter(j::Column::TenantId.eq(tenant.0))
        .filter(j::Column::Id.eq(id))
        .filter(j::Column::State.is_in(from.iter().copied()))
        .exec(c)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Marks the pending or failed jobs among `ids` sent (they were pushed down their agents'
/// streams); returns how many changed.
pub async fn mark_sent<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ids: &[uuid::Uuid],
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut changed = 0;
    for chunk in ids.chunks(500) {
        changed += j::Entity::update_many()
            .col_expr(j::Column::State, Expr::value(state::SENT))
            .col_expr(j::Column::UpdatedAt, Expr::value(truncate_ts(now)))
            .filter(j::Column::TenantId.eq(tenant.0))
            .filter(j::Column::Id.is_in(chunk.iter().copied()))
            .filter(j::Column::State.is_in([state::PENDING, state::FAILED]))
            .exec(c)
            .await?
            .rows_affected;
    }
    Ok(changed)
}

/// Ends an open job in `to` (`succeeded`, `dead` or `cancelled`) with the outcome; it is no
/// longer open, so the binding may get a new job. False if it was not open.
pub async fn finish_job<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    to: &str,
    outcome: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = j::Entity::update_many()
        .col_expr(j::Column::State, Expr::value(to))
        .col_expr(j::Column::OpenKey, Expr::value(Option::<String>::None))
        .col_expr(j::Column::Outcome, Expr::value(outcome))
        .col_expr(j::Column::Detail, Expr::value(detail))
        .col_expr(j::Column::UpdatedAt, Expr::value(truncate_ts(now)))
        .filter(j::Column::TenantId.eq(tenant.0))
        .filter(j::Column::Id.eq(id))
        .filter(j::Column::OpenKey.is_not_null())
        .exec(c)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Records a failed attempt: the job waits in `failed` until `not_before`, then its next
/// attempt is offered. False if it was not open.
pub async fn retry_job<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    outcome: &str,
    detail: &str,
    not_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = j::Entity::update_many()
        .col_expr(j::Column::State, Expr::value(state::FAILED))
        .col_expr(
            j::Column::Attempts,
            Expr::col(j::Column::Attempts).add(Expr::value(1)),
        )
        .col_expr(j::Column::NotBefore, Expr::value(truncate_ts(not_before)))
        .col_expr(j::Column::Outcome, Expr::value(outcome))
        .col_expr(j::Column::Detail, Expr::value(detail))
        // An issue or renew attempt gets a new certificate; a deploy job keeps the one it
        // installs.
        .col_expr(
            j::Column::Serial,
            Expr::case(j::Column::Kind.eq("deploy"), Expr::col(j::Column::Serial))
                .finally(Expr::value(""))
                .into(),
        )
        .col_expr(j::Column::UpdatedAt, Expr::value(truncate_ts(now)))
        .filter(j::Column::TenantId.eq(tenant.0))
        .filter(j::Column::Id.eq(id))
        .filter(j::Column::OpenKey.is_not_null())
        .exec(c)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Cancels the open jobs whose `column` is `id` (a binding or an agent); returns how many.
async fn cancel_jobs<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    column: j::Column,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<u64> {
    let done = j::Entity::update_many()
        .col_expr(j::Column::State, Expr::value(state::CANCELLED))
        .col_expr(j::Column::OpenKey, Expr::value(Option::<String>::None))
        .col_expr(j::Column::UpdatedAt, Expr::value(truncate_ts(now)))
        .filter(j::Column::TenantId.eq(tenant.0))
        .filter(column.eq(id))
        .filter(j::Column::OpenKey.is_not_null())
        .exec(c)
        .await?;
    Ok(done.rows_affected)
}

/// Cancels agent `id`'s open jobs (it was retired); returns how many.
pub async fn cancel_agent_jobs<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    agent: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<u64> {
    cancel_jobs(c, tenant, j::Column::AgentId, agent, now).await
}

/// The state of one binding on one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentRecord {
    pub tenant_id: TenantId,
    pub binding_id: uuid::Uuid,
    pub agent_id: uuid::Uuid,
    pub serial: String,
    pub certificate_sha256: String,
    pub not_after: DateTime<Utc>,
    pub renew_at: DateTime<Utc>,
    pub outcome: String,
    pub detail: String,
    pub served_sha256: String,
    pub updated_at: DateTime<Utc>,
}

impl From<d::Model> for DeploymentRecord {
    fn from(m: d::Model) -> Self {
        Self {
            tenant_id: TenantId(m.tenant_id),
            binding_id: m.binding_id,
            agent_id: m.agent_id,
            serial: m.serial,
            certificate_sha256: m.certificate_sha256,
            not_after: m.not_after,
            renew_at: m.renew_at,
            outcome: m.outcome,
            detail: m.detail,
            served_sha256: m.served_sha256,
            updated_at: m.updated_at,
        }
    }
}

/// Creates or replaces the deployment of `rec.binding_id` on `rec.agent_id`.
pub async fn upsert_deployment<C: ConnectionTrait>(c: &C, rec: &DeploymentRecord) -> Result<()> {
    let row = d::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: rec.tenant_id.0,
        binding_id: rec.binding_id,
        agent_id: rec.agent_id,
        serial: rec.serial.clone(),
        certificate_sha256: rec.certificate_sha256.clone(),
        not_after: truncate_ts(rec.not_after),
        renew_at: truncate_ts(rec.renew_at),
        outcome: rec.outcome.clone(),
        detail: rec.detail.clone(),
        served_sha256: rec.served_sha256.clone(),
        updated_at: truncate_ts(rec.updated_at),
    };
    d::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([
                d::Column::TenantId,
                d::Column::BindingId,
                d::Column::AgentId,
            ])
            .update_columns([
                d::Column::Serial,
                d::Column::CertificateSha256,
                d::Column::NotAfter,
                d::Column::RenewAt,
                d::Column::Outcome,
                d::Column::Detail,
                d::Column::ServedSha256,
                d::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(())
}

/// Which deployments [`list_deployments`] returns; unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct DeploymentFilter {
    pub agent_id: Option<uuid::Uuid>,
    pub binding_id: Option<uuid::Uuid>,
    pub serial: Option<String>,
}

/// The tenant's deployments matching `f`.
pub async fn list_deployments<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    f: &DeploymentFilter,
) -> Result<Vec<DeploymentRecord>> {
    let mut q = d::Entity::find().filter(d::Column::TenantId.eq(tenant.0));
    if let Some(agent) = f.agent_id {
        q = q.filter(d::Column::AgentId.eq(agent));
    }
    if let Some(binding) = f.binding_id {
        q = q.filter(d::Column::BindingId.eq(binding));
    }
    if let Some(serial) = &f.serial {
        q = q.filter(d::Column::Serial.eq(serial.as_str()));
    }
    Ok(q.order_by_asc(d::Column::BindingId)
        .order_by_asc(d::Column::AgentId)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Deployments whose renewal time has come at `now`, soonest first, at most `limit`.
pub async fn due_deployments<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<DeploymentRecord>> {
    Ok(d::Entity::find()
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::RenewAt.lte(truncate_ts(now)))
        .order_by_asc(d::Column::RenewAt)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Moves the renewal time of every deployment of certificate `serial` to `now`; returns them.
pub async fn renew_now<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    serial: &str,
    now: DateTime<Utc>,
) -> Result<Vec<DeploymentRecord>> {
    d::Entity::update_many()
        .col_expr(d::Column::RenewAt, Expr::value(truncate_ts(now)))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::Serial.eq(serial))
        .exec(c)
        .await?;
    list_deployments(
        c,
        tenant,
        &DeploymentFilter {
            serial: Some(serial.to_owned()),
            ..DeploymentFilter::default()
        },
    )
    .await
}

/// Records the agent's report on the deployment of `binding` on `agent`.
#[allow(clippy::too_many_arguments)]
pub async fn record_report<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    binding: uuid::Uuid,
    agent: uuid::Uuid,
    outcome: &str,
    detail: &str,
    served_sha256: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    d::Entity::update_many()
        .col_expr(d::Column::Outcome, Expr::value(outcome))
        .col_expr(d::Column::Detail, Expr::value(detail))
        .col_expr(d::Column::ServedSha256, Expr::value(served_sha256))
        .col_expr(d::Column::UpdatedAt, Expr::value(truncate_ts(now)))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::BindingId.eq(binding))
        .filter(d::Column::AgentId.eq(agent))
        .exec(c)
        .await?;
    Ok(())
}
