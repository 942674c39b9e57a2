//! Held Issue requests awaiting a second person's decision (two-person approval).
//!
//! A row is written `pending` with an `expires_at`; it is decided once, by [`decide`], whose
//! `UPDATE … WHERE status = 'pending' AND expires_at > now` lets exactly one of several racing
//! deciders win (the others get [`StoreError::Conflict`]). A pending row whose `expires_at` has
//! passed reads as [`ApprovalStatus::Expired`]; [`expire`] writes that down when a caller
//! touches it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::approvals as t;
use crate::{Result, StoreError, TenantId, truncate_ts};

/// The most rows [`list`] returns.
pub const MAX_LIST: u64 = 500;

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved; the certificate was issued.
    Approved,
    /// Rejected, with a note.
    Rejected,
    /// Not decided before `expires_at`.
    Expired,
}

impl ApprovalStatus {
    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
        }
    }

    /// Parses [`ApprovalStatus::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            ApprovalStatus::Rejected,
            ApprovalStatus::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// An approval as stored (with expiry applied on read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    /// The requesting principal's id; the approver must differ.
    pub requester_id: uuid::Uuid,
    /// The requesting principal's name.
    pub requester: String,
    /// The CSR, PEM.
    pub csr_pem: String,
    /// Profile name.
    pub profile: String,
    /// Requested lifetime in seconds; `None` for the profile maximum.
    pub validity_seconds: Option<i64>,
    /// The original request's idempotency key, if it had one.
    pub idempotency_key: Option<String>,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    /// Why it was rejected.
    pub note: Option<String>,
    /// The certificate issued on approval.
    pub certificate_serial: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// A decision for [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// [`ApprovalStatus::Approved`] or [`ApprovalStatus::Rejected`].
    pub status: ApprovalStatus,
    /// The deciding principal.
    pub decided_by: String,
    pub note: Option<String>,
    pub certificate_serial: Option<String>,
}

fn from_model(m: t::Model, now: DateTime<Utc>) -> Result<ApprovalRecord> {
    let stored = ApprovalStatus::parse(&m.status).ok_or_else(|| StoreError::Corrupt {
        detail: format!("approval {} has status {:?}", m.id, m.status),
    })?;
    let status = match stored {
        ApprovalStatus::Pending if m.expires_at <= now => ApprovalStatus::Expired,
        other => other,
    };
    Ok(ApprovalRecord {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        requester_id: m.requester_id,
        requester: m.requester,
        csr_pem: m.csr_pem,
        profile: m.profile,
        validity_seconds: m.validity_seconds,
        idempotency_key: m.idempotency_key,
        status,
        decided_by: m.decided_by,
        note: m.note,
        certificate_serial: m.certificate_serial,
        created_at: m.created_at,
        expires_at: m.expires_at,
        decided_at: m.decided_at,
    })
}

/// Stores a new approval; timestamps are truncated to microseconds. Returns it as stored.
pub async fn create<C: ConnectionTrait>(c: &C, rec: &ApprovalRecord) -> Result<ApprovalRecord> {
    let model = t::Model {
        id: rec.id,
        tenant_id: rec.tenant_id.0,
        requester_id: rec.requester_id,
        requester: rec.requester.clone(),
        csr_pem: rec.csr_pem.clone(),
        profile: rec.profile.clone(),
        validity_seconds: rec.validity_seconds,
        idempotency_key: rec.idempotency_key.clone(),
        status: rec.status.as_str().to_owned(),
        decided_by: rec.decided_by.clone(),
        note: rec.note.clone(),
        certificate_serial: rec.certificate_serial.clone(),
        created_at: truncate_ts(rec.created_at),
        expires_at: truncate_ts(rec.expires_at),
        decided_at: rec.decided_at.map(truncate_ts),
    };
    t::Entity::insert(model.clone().into_active_model())
        .exec_without_returning(c)
        .await
        .map_err(|e| StoreError::from_insert(e, "approval"))?;
    from_model(model, truncate_ts(rec.created_at))
}

/// The tenant's approval `id`, as it stands at `now`.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<Option<ApprovalRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .one(c)
        .await?
        .map(|m| from_model(m, now))
        .transpose()
}

/// The tenant's pending approval held under idempotency key `key`, if any.
pub async fn pending_by_key<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<ApprovalRecord>> {
    let rows = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Status.eq(ApprovalStatus::Pending.as_str()))
        .filter(t::Column::IdempotencyKey.eq(key))
        .all(c)
        .await?;
    for m in rows {
        let rec = from_model(m, now)?;
        if rec.status == ApprovalStatus::Pending {
            return Ok(Some(rec));
        }
    }
    Ok(None)
}

/// The tenant's approvals as they stand at `now`, oldest first, at most [`MAX_LIST`];
/// `status` filters.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    status: Option<ApprovalStatus>,
    now: DateTime<Utc>,
) -> Result<Vec<ApprovalRecord>> {
    let mut query = t::Entity::find().filter(t::Column::TenantId.eq(tenant.0));
    // An expired row may still be stored as pending; expiry is applied on read.
    query = match status {
        None => query,
        Some(ApprovalStatus::Expired) => query.filter(t::Column::Status.is_in([
            ApprovalStatus::Pending.as_str(),
            ApprovalStatus::Expired.as_str(),
        ])),
        Some(s) => query.filter(t::Column::Status.eq(s.as_str())),
    };
    let rows = query
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .limit(MAX_LIST)
        .all(c)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for m in rows {
        let rec = from_model(m, now)?;
        if status.is_none_or(|s| s == rec.status) {
            out.push(rec);
        }
    }
    Ok(out)
}

/// Records `decision` on a pending, unexpired approval. `Conflict` if it was decided (or
/// expired) already, `NotFound` if the tenant has no such approval.
pub async fn decide<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Result<()> {
    if !matches!(
        decision.status,
        ApprovalStatus::Approved | ApprovalStatus::Rejected
    ) {
        return Err(StoreError::Invalid {
            detail: "a decision approves or rejects".to_owned(),
        });
    }
    let now = truncate_ts(now);
    let res = t::Entity::update_many()
        .col_expr(t::Column::Status, Expr::value(decision.status.as_str()))
        .col_expr(
            t::Column::DecidedBy,
            Expr::value(decision.decided_by.clone()),
        )
        .col_expr(t::Column::Note, Expr::value(decision.note.clone()))
        .col_expr(
            t::Column::CertificateSerial,
            Expr::value(decision.certificate_serial.clone()),
        )
        .col_expr(t::Column::DecidedAt, Expr::value(Some(now)))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .filter(t::Column::Status.eq(ApprovalStatus::Pending.as_str()))
        .filter(t::Column::ExpiresAt.gt(now))
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        return Ok(());
    }
    match get(c, tenant, id, now).await? {
        Some(_) => Err(StoreError::Conflict { what: "approval" }),
        None => Err(StoreError::NotFound { what: "approval" }),
    }
}

/// Marks the approval expired if it is pending and past `expires_at`; true if it changed.
pub async fn expire<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = t::Entity::update_many()
        .col_expr(
            t::Column::Status,
            Expr::value(ApprovalStatus::Expired.as_str()),
        )
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .filter(t::Column::Status.eq(ApprovalStatus::Pending.as_str()))
        .filter(t::Column::ExpiresAt.lte(truncate_ts(now)))
        .exec(c)
        .await?;
    Ok(res.rows_affected > 0)
}
