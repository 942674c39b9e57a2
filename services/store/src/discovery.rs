//! Discovery: scan targets, scan runs, and the inventory of certificates found on the network
//! and on agents' disks (m0013).
//!
//! The inventory is keyed by (fingerprint, location): the same certificate served on two ports
//! is two finds, the same port seen twice is one find whose `last_seen_at` moves. A find's
//! status is never changed by a later sighting, so a dismissed find stays dismissed.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::entity::{discovered_certificates as d, scan_targets as t, scans as s};
use crate::{Result, StoreError, TenantId, truncate_ts};

/// Inventory statuses.
pub mod status {
    /// Found, not issued by certmesh.
    pub const UNMANAGED: &str = "unmanaged";
    /// A certificate certmesh issued.
    pub const MANAGED: &str = "managed";
    /// An operator said to ignore it: no alerts, hidden unless asked for.
    pub const DISMISSED: &str = "dismissed";
    /// Every status.
    pub const ALL: [&str; 3] = [UNMANAGED, MANAGED, DISMISSED];
}

/// Scan run states.
pub mod scan_state {
    /// Dialling.
    pub const RUNNING: &str = "running";
    /// Every endpoint was tried.
    pub const DONE: &str = "done";
    /// The run stopped early (its replica died, or the target could not be expanded).
    pub const FAILED: &str = "failed";
}

/// A named scan target. `spec` is JSON owned by the discovery role (hosts, ports, SNI names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    pub spec: String,
    /// Seconds between scheduled scans; 0 = on demand only.
    pub interval_seconds: i64,
    pub next_scan_at: Option<DateTime<Utc>>,
    pub last_scan_id: Option<uuid::Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<t::Model> for TargetRecord {
    fn from(m: t::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            name: m.name,
            spec: m.spec,
            interval_seconds: m.interval_seconds,
            next_scan_at: m.next_scan_at,
            last_scan_id: m.last_scan_id,
            created_by: m.created_by,
            created_at: m.created_at,
        }
    }
}

/// Adds a target; [`StoreError::Conflict`] if the tenant has one of that name.
pub async fn insert_target<C: ConnectionTrait>(c: &C, rec: &TargetRecord) -> Result<()> {
    let row = t::Model {
        id: rec.id,
        tenant_id: rec.tenant_id.0,
        name: rec.name.clone(),
        spec: rec.spec.clone(),
        interval_seconds: rec.interval_seconds,
        next_scan_at: rec.next_scan_at.map(truncate_ts),
        last_scan_id: rec.last_scan_id,
        created_by: rec.created_by.clone(),
        created_at: truncate_ts(rec.created_at),
    };
    let done = t::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Name])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(done) == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            what: "scan target",
        })
    }
}

/// The tenant's target `id`.
pub async fn get_target<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<TargetRecord>> {
    Ok(t::Entity::find_by_id(id)
        .filter(t::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(Into::into))
}

/// The tenant's targets by name.
pub async fn list_targets<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<Vec<TargetRecord>> {
    Ok(t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .order_by_asc(t::Column::Name)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Deletes target `id` (its scans and finds stay); `NotFound` if there is none.
pub async fn delete_target<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<()> {
    let done = t::Entity::delete_many()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .exec(c)
        .await?;
    if done.rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            what: "scan target",
        })
    }
}

/// Scheduled targets whose next scan is due at `now`, soonest first, at most `limit`.
pub async fn due_targets<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<TargetRecord>> {
    Ok(t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::IntervalSeconds.gt(0))
        .filter(t::Column::NextScanAt.lte(truncate_ts(now)))
        .order_by_asc(t::Column::NextScanAt)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Records that target `id` got scan `scan` and is next due at `next` (`None`: on demand).
pub async fn mark_scanned<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    scan: uuid::Uuid,
    next: Option<DateTime<Utc>>,
) -> Result<()> {
    t::Entity::update_many()
        .col_expr(t::Column::LastScanId, Expr::value(scan))
        .col_expr(t::Column::NextScanAt, Expr::value(next.map(truncate_ts)))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .exec(c)
        .await?;
    Ok(())
}

/// One run of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub target_id: uuid::Uuid,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// One of [`scan_state`].
    pub state: String,
    pub endpoints: u32,
    pub reachable: u32,
    pub refused: u32,
    pub certificates: u32,
    pub detail: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn count(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn stored(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl From<s::Model> for ScanRecord {
    fn from(m: s::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            target_id: m.target_id,
            trigger: m.trigger,
            state: m.state,
            endpoints: count(m.endpoints),
            reachable: count(m.reachable),
            refused: count(m.refused),
            certificates: count(m.certificates),
            detail: m.detail,
            started_at: m.started_at,
            finished_at: m.finished_at,
        }
    }
}

/// Starts a run of target `target` at `now`; returns it (state `running`).
pub async fn start_scan<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    target: uuid::Uuid,
    trigger: &str,
    now: DateTime<Utc>,
) -> Result<ScanRecord> {
    let now = truncate_ts(now);
    let row = s::Model {
        id: crate::time_ordered_id(now),
        tenant_id: tenant.0,
        target_id: target,
        trigger: trigger.to_owned(),
        state: scan_state::RUNNING.to_owned(),
        endpoints: 0,
        reachable: 0,
        refused: 0,
        certificates: 0,
        detail: String::new(),
        started_at: now,
        finished_at: None,
    };
    s::Entity::insert(row.clone().into_active_model())
        .exec_without_returning(c)
        .await?;
    Ok(row.into())
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanTally {
    pub endpoints: u32,
    pub reachable: u32,
    pub refused: u32,
    pub certificates: u32,
}

/// Ends run `id` in `state` with its tally; a run that already ended is left alone.
pub async fn finish_scan<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    state: &str,
    tally: &ScanTally,
    detail: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    s::Entity::update_many()
        .col_expr(s::Column::State, Expr::value(state))
        .col_expr(s::Column::Endpoints, Expr::value(stored(tally.endpoints)))
        .col_expr(s::Column::Reachable, Expr::value(stored(tally.reachable)))
        .col_expr(s::Column::Refused, Expr::value(stored(tally.refused)))
        .col_expr(
            s::Column::Certificates,
            Expr::value(stored(tally.certificates)),
        )
        .col_expr(s::Column::Detail, Expr::value(detail))
        .col_expr(s::Column::FinishedAt, Expr::value(Some(truncate_ts(now))))
        .filter(s::Column::TenantId.eq(tenant.0))
        .filter(s::Column::Id.eq(id))
        .filter(s::Column::State.eq(scan_state::RUNNING))
        .exec(c)
        .await?;
    Ok(())
}

/// Marks runs still `running` that started before `before` as failed (their replica died);
/// returns how many.
pub async fn fail_stale_scans<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64> {
    let done = s::Entity::update_many()
        .col_expr(s::Column::State, Expr::value(scan_state::FAILED))
        .col_expr(
            s::Column::Detail,
            Expr::value("the scan did not finish (its server stopped)"),
        )
        .col_expr(s::Column::FinishedAt, Expr::value(Some(truncate_ts(now))))
        .filter(s::Column::TenantId.eq(tenant.0))
        .filter(s::Column::State.eq(scan_state::RUNNING))
        .filter(s::Column::StartedAt.lt(truncate_ts(before)))
        .exec(c)
        .await?;
    Ok(done.rows_affected)
}

/// The tenant's run `id`.
pub async fn get_scan<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<ScanRecord>> {
    Ok(s::Entity::find_by_id(id)
        .filter(s::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(Into::into))
}

/// The tenant's runs, newest first, of one target or all, at most `limit`.
pub async fn list_scans<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    target: Option<uuid::Uuid>,
    limit: u64,
) -> Result<Vec<ScanRecord>> {
    let mut q = s::Entity::find().filter(s::Column::TenantId.eq(tenant.0));
    if let Some(target) = target {
        q = q.filter(s::Column::TargetId.eq(target));
    }
    Ok(q.order_by_desc(s::Column::StartedAt)
        .order_by_desc(s::Column::Id)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// A certificate seen somewhere: what a scan or an agent report adds to the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub tenant_id: TenantId,
    pub fingerprint_sha256: String,
    /// `tls://<ip>:<port>[#<sni>]` or `file://<agent-id><path>`.
    pub location: String,
    /// `network` or `filesystem`.
    pub source: String,
    pub agent_id: Option<uuid::Uuid>,
    pub target_id: Option<uuid::Uuid>,
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub sans: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub key_type: String,
    pub key_bits: u32,
    pub signature_algorithm: String,
    pub tls_version: String,
    pub self_signed: bool,
    pub is_ca: bool,
    pub weaknesses: Vec<String>,
    /// The status of a new find: `managed` when certmesh issued it, else `unmanaged`.
    pub status: String,
    pub certificate_der: Vec<u8>,
    pub seen_at: DateTime<Utc>,
}

/// An inventory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundRecord {
    pub id: uuid::Uuid,
    pub sighting: Sighting,
    pub binding_id: Option<uuid::Uuid>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

fn json_list(raw: &str) -> Result<Vec<String>> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
        detail: format!("inventory list: {e}"),
    })
}

impl TryFrom<d::Model> for FoundRecord {
    type Error = StoreError;

    fn try_from(m: d::Model) -> Result<Self> {
        Ok(Self {
            id: m.id,
            sighting: Sighting {
                tenant_id: TenantId(m.tenant_id),
                fingerprint_sha256: m.fingerprint_sha256,
                location: m.location,
                source: m.source,
                agent_id: m.agent_id,
                target_id: m.target_id,
                serial: m.serial,
                subject: m.subject,
                issuer: m.issuer,
                sans: json_list(&m.sans)?,
                not_before: m.not_before,
                not_after: m.not_after,
                key_type: m.key_type,
                key_bits: count(m.key_bits),
                signature_algorithm: m.signature_algorithm,
                tls_version: m.tls_version,
                self_signed: m.self_signed,
                is_ca: m.is_ca,
                weaknesses: json_list(&m.weaknesses)?,
                status: m.status,
                certificate_der: m.certificate_der,
                seen_at: m.last_seen_at,
            },
            binding_id: m.binding_id,
            first_seen_at: m.first_seen_at,
            last_seen_at: m.last_seen_at,
        })
    }
}

/// Adds `s` to the inventory, or moves the `last_seen_at` (and TLS version, target or agent)
/// of the find already at that fingerprint and location. Status, binding and first sighting
/// are kept. Returns `true` for a new find.
pub async fn record_sighting<C: ConnectionTrait>(c: &C, s: &Sighting) -> Result<bool> {
    let seen = truncate_ts(s.seen_at);
    let to_json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".to_owned());
    let row = d::Model {
        id: crate::time_ordered_id(seen),
        tenant_id: s.tenant_id.0,
        fingerprint_sha256: s.fingerprint_sha256.clone(),
        location: s.location.clone(),
        source: s.source.clone(),
        agent_id: s.agent_id,
        target_id: s.target_id,
        serial: s.serial.clone(),
        subject: s.subject.clone(),
        issuer: s.issuer.clone(),
        sans: to_json(&s.sans),
        not_before: truncate_ts(s.not_before),
        not_after: truncate_ts(s.not_after),
        key_type: s.key_type.clone(),
        key_bits: stored(s.key_bits),
        signature_algorithm: s.signature_algorithm.clone(),
        tls_version: s.tls_version.clone(),
        self_signed: s.self_signed,
        is_ca: s.is_ca,
        weaknesses: to_json(&s.weaknesses),
        status: s.status.clone(),
        binding_id: None,
        certificate_der: s.certificate_der.clone(),
        first_seen_at: seen,
        last_seen_at: seen,
    };
    let exists = d::Entity::find()
        .filter(d::Column::TenantId.eq(s.tenant_id.0))
        .filter(d::Column::FingerprintSha256.eq(s.fingerprint_sha256.as_str()))
        .filter(d::Column::Location.eq(s.location.as_str()))
        .count(c)
        .await?
        > 0;
    d::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([
                d::Column::TenantId,
                d::Column::FingerprintSha256,
                d::Column::Location,
            ])
            .update_columns([
                d::Column::LastSeenAt,
                d::Column::TlsVersion,
                d::Column::TargetId,
                d::Column::AgentId,
            ])
            .to_owned(),
        )
        .exec_without_returning(c)
        .await?;
    Ok(!exists)
}

/// Which finds [`list_found`] returns; unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct FoundFilter {
    /// notAfter at or before this.
    pub expiring_before: Option<DateTime<Utc>>,
    /// One of [`status`]; dismissed finds are left out unless asked for.
    pub status: Option<String>,
    /// Only finds with (true) or without (false) a weakness.
    pub weak: Option<bool>,
    pub self_signed: Option<bool>,
    /// Issuer contains this, case-insensitively.
    pub issuer: Option<String>,
    /// `network` or `filesystem`.
    pub source: Option<String>,
    pub fingerprint: Option<String>,
}

/// The tenant's finds matching `f`, soonest to expire first, at most `limit`.
pub async fn list_found<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    f: &FoundFilter,
    limit: u64,
) -> Result<Vec<FoundRecord>> {
    let mut q = d::Entity::find().filter(d::Column::TenantId.eq(tenant.0));
    if let Some(before) = f.expiring_before {
        q = q.filter(d::Column::NotAfter.lte(truncate_ts(before)));
    }
    q = match &f.status {
        Some(st) => q.filter(d::Column::Status.eq(st.as_str())),
        None => q.filter(d::Column::Status.ne(status::DISMISSED)),
    };
    match f.weak {
        Some(true) => q = q.filter(d::Column::Weaknesses.ne("[]")),
        Some(false) => q = q.filter(d::Column::Weaknesses.eq("[]")),
        None => {}
    }
    if let Some(self_signed) = f.self_signed {
        q = q.filter(d::Column::SelfSigned.eq(self_signed));
    }
    if let Some(issuer) = &f.issuer {
        let lower_issuer = Expr::expr(Func::lower(Expr::col(d::Column::Issuer)));
        q = q.filter(lower_issuer.like(contains(issuer)));
    }
    if let Some(source) = &f.source {
        q = q.filter(d::Column::Source.eq(source.as_str()));
    }
    if let Some(fp) = &f.fingerprint {
        q = q.filter(d::Column::FingerprintSha256.eq(fp.as_str()));
    }
    q.order_by_asc(d::Column::NotAfter)
        .order_by_asc(d::Column::Id)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(FoundRecord::try_from)
        .collect()
}

/// A `LIKE` pattern matching text that contains `needle`, lower-cased, taken literally: its
/// `%` and `_` are escaped, not wildcards (`!` is the escape: both backends accept it as is).
fn contains(needle: &str) -> LikeExpr {
    let mut pattern = String::from("%");
    for ch in needle.to_lowercase().chars() {
        if matches!(ch, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(ch);
    }
    pattern.push('%');
    LikeExpr::new(pattern).escape('!')
}

/// The tenant's find `id`.
pub async fn get_found<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<FoundRecord>> {
    d::Entity::find_by_id(id)
        .filter(d::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(FoundRecord::try_from)
        .transpose()
}

/// Sets find `id`'s status; `NotFound` if there is none.
pub async fn set_status<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    new: &str,
) -> Result<()> {
    let done = d::Entity::update_many()
        .col_expr(d::Column::Status, Expr::value(new))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::Id.eq(id))
        .exec(c)
        .await?;
    if done.rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            what: "discovered certificate",
        })
    }
}

/// Records that find `id` was claimed by binding `binding`; `NotFound` if there is none.
pub async fn set_binding<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    binding: uuid::Uuid,
) -> Result<()> {
    let done = d::Entity::update_many()
        .col_expr(d::Column::BindingId, Expr::value(Some(binding)))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::Id.eq(id))
        .exec(c)
        .await?;
    if done.rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound {
            what: "discovered certificate",
        })
    }
}
