//! m-of-n key ceremonies (RFC 0003): a CA operation whose parameters are fixed at start and
//! which runs only once `threshold` of its custodians have approved it with a signature.
//!
//! A ceremony is written `open` with an `expires_at`. Each custodian approves at most once
//! (the primary key of `ceremony_approvals`; a repeat reports the running count). It is
//! completed once, by [`complete`], whose conditional `UPDATE … WHERE status = 'open' AND
//! expires_at > now AND <approvals> >= threshold` lets exactly one of several racing callers
//! win. An open ceremony past `expires_at` reads as [`CeremonyStatus::Expired`]; [`expire`]
//! writes that down. The store checks neither signatures nor parameters: the CA service does,
//! in the same transaction.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::entity::{ceremonies as t, ceremony_approvals as a};
use crate::{CaId, Result, StoreError, TenantId, cas, principal_keys, to_i32, to_u32, truncate_ts};

/// The most rows [`list`] returns.
pub const MAX_LIST: u64 = 500;

/// Where a ceremony stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CeremonyStatus {
    /// Collecting approvals.
    Open,
    /// Its operation ran; it cannot be used again.
    Completed,
    /// Not completed before `expires_at`.
    Expired,
}

impl CeremonyStatus {
    /// The stored and wire form.
    pub const fn as_str(self) -> &'static str {
        match self {
            CeremonyStatus::Open => "open",
            CeremonyStatus::Completed => "completed",
            CeremonyStatus::Expired => "expired",
        }
    }

    /// Parses [`CeremonyStatus::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        [
            CeremonyStatus::Open,
            CeremonyStatus::Completed,
            CeremonyStatus::Expired,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A ceremony to start with [`create`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCeremony {
    /// Chosen by the caller, because the digest covers it.
    pub id: uuid::Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// `create_root`, `create_intermediate`, `rotate`, `cross_sign` or `import_root`; stored
    /// as given.
    pub purpose: String,
    /// The operation's parameters, fixed at start.
    pub params: serde_json::Value,
    /// Hex SHA-256 of the canonical ceremony, as the custodians sign it.
    pub digest: String,
    /// Approvals needed, 1 to the number of custodians.
    pub threshold: u32,
    /// The principals who may approve, sorted, without repeats.
    pub custodians: Vec<uuid::Uuid>,
    /// The principal who started it.
    pub created_by: uuid::Uuid,
    /// When it stops being usable (truncated to microseconds; the digest uses whole seconds,
    /// so callers pick a whole second).
    pub expires_at: DateTime<Utc>,
}

/// A ceremony as stored (with expiry applied on read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyRecord {
    /// Row id.
    pub id: uuid::Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// What it authorises.
    pub purpose: String,
    /// The operation's parameters.
    pub params: serde_json::Value,
    /// Hex SHA-256 that custodians sign.
    pub digest: String,
    /// Approvals needed.
    pub threshold: u32,
    /// The principals who may approve, sorted.
    pub custodians: Vec<uuid::Uuid>,
    /// Where it stands at the `now` it was read with.
    pub status: CeremonyStatus,
    /// The principal who started it.
    pub created_by: uuid::Uuid,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
    /// When it was completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// The CA its operation made or changed.
    pub result_ca_id: Option<CaId>,
}

/// One custodian's approval of a ceremony.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeremonyApproval {
    /// The ceremony approved.
    pub ceremony_id: uuid::Uuid,
    /// The approving custodian.
    pub principal_id: uuid::Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// The custodian's key that made the signature ([`crate::principal_keys`]).
    pub key_id: uuid::Uuid,
    /// The signature over the ceremony's message, as received.
    pub signature: Vec<u8>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// What [`approve`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApproveOutcome {
    /// Approvals of the ceremony after this call.
    pub count: u32,
    /// True if this custodian had approved already (nothing was written).
    pub already: bool,
}

fn from_model(m: t::Model, now: DateTime<Utc>) -> Result<CeremonyRecord> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt {
        detail: format!("ceremony {} {what}: {e}", m.id),
    };
    let stored = CeremonyStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?;
    let status = match stored {
        CeremonyStatus::Open if m.expires_at <= now => CeremonyStatus::Expired,
        other => other,
    };
    let params = serde_json::from_str(&m.params).map_err(|e| corrupt("params", &e))?;
    let custodians = serde_json::from_str(&m.custodians).map_err(|e| corrupt("custodians", &e))?;
    Ok(CeremonyRecord {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        purpose: m.purpose,
        params,
        digest: m.digest,
        threshold: to_u32(m.threshold, "ceremony threshold")?,
        custodians,
        status,
        created_by: m.created_by,
        created_at: m.created_at,
        expires_at: m.expires_at,
        completed_at: m.completed_at,
        result_ca_id: m.result_ca_id.map(CaId),
    })
}

fn check_new(new: &NewCeremony, now: DateTime<Utc>) -> Result<()> {
    let invalid = |detail: &str| {
        Err(StoreError::Invalid {
            detail: detail.to_owned(),
        })
    };
    if !new.custodians.is_sorted_by(|a, b| a < b) {
        return invalid("custodians must be sorted, without repeats");
    }
    if new.threshold == 0 || new.threshold as usize > new.custodians.len() {
        return invalid("threshold must be between 1 and the number of custodians");
    }
    if new.expires_at <= now {
        return invalid("a ceremony must expire after it starts");
    }
    Ok(())
}

/// Starts a ceremony, `open`, at `now`. `Invalid` if the custodians are unsorted or repeated,
/// the threshold is 0 or above their number, or it would expire at once; `Conflict` if the id
/// is taken (the caller's transaction stays usable).
pub async fn create<C: ConnectionTrait>(
    c: &C,
    new: &NewCeremony,
    now: DateTime<Utc>,
) -> Result<CeremonyRecord> {
    check_new(new, now)?;
    let json = |e: serde_json::Error| StoreError::Invalid {
        detail: e.to_string(),
    };
    let now = truncate_ts(now);
    let model = t::Model {
        id: new.id,
        tenant_id: new.tenant_id.0,
        purpose: new.purpose.clone(),
        params: serde_json::to_string(&new.params).map_err(json)?,
        digest: new.digest.clone(),
        threshold: to_i32(new.threshold, "threshold")?,
        custodians: serde_json::to_string(&new.custodians).map_err(json)?,
        status: CeremonyStatus::Open.as_str().to_owned(),
        created_by: new.created_by,
        created_at: now,
        expires_at: truncate_ts(new.expires_at),
        completed_at: None,
        result_ca_id: None,
    };
    let inserted = t::Entity::insert(model.clone().into_active_model())
        .on_conflict_do_nothing_on([t::Column::Id])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(inserted) == 0 {
        return Err(StoreError::Conflict { what: "ceremony" });
    }
    from_model(model, now)
}

/// The tenant's ceremony `id`, as it stands at `now`.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<Option<CeremonyRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .one(c)
        .await?
        .map(|m| from_model(m, now))
        .transpose()
}

/// The tenant's ceremonies as they stand at `now`, oldest first, at most [`MAX_LIST`];
/// `status` filters.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    status: Option<CeremonyStatus>,
    now: DateTime<Utc>,
) -> Result<Vec<CeremonyRecord>> {
    let mut query = t::Entity::find().filter(t::Column::TenantId.eq(tenant.0));
    // An expired ceremony may still be stored as open; expiry is applied on read.
    query = match status {
        None => query,
        Some(CeremonyStatus::Expired) => query.filter(t::Column::Status.is_in([
            CeremonyStatus::Open.as_str(),
            CeremonyStatus::Expired.as_str(),
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

/// Records custodian `principal_id`'s approval of an open ceremony, made with their key
/// `key_id`; the caller has verified `signature`. A second approval by the same custodian
/// writes nothing and reports `already` with the running count.
///
/// `NotFound` if the tenant has no such ceremony or key; `Conflict { what: "ceremony" }` if it
/// is completed or expired; `Invalid` if the principal is not a custodian or the key is not
/// one of theirs, or is revoked.
pub async fn approve<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ceremony_id: uuid::Uuid,
    principal_id: uuid::Uuid,
    key_id: uuid::Uuid,
    signature: &[u8],
    now: DateTime<Utc>,
) -> Result<ApproveOutcome> {
    let ceremony = get(c, tenant, ceremony_id, now)
        .await?
        .ok_or(StoreError::NotFound { what: "ceremony" })?;
    if ceremony.status != CeremonyStatus::Open {
        return Err(StoreError::Conflict { what: "ceremony" });
    }
    if !ceremony.custodians.contains(&principal_id) {
        return Err(StoreError::Invalid {
            detail: "the principal is not a custodian of the ceremony".to_owned(),
        });
    }
    let key = principal_keys::get(c, tenant, key_id)
        .await?
        .ok_or(StoreError::NotFound {
            what: "principal key",
        })?;
    if key.principal_id != principal_id || key.revoked_at.is_some() {
        return Err(StoreError::Invalid {
            detail: "the key is not an active key of the custodian".to_owned(),
        });
    }
    let row = a::Model {
        ceremony_id,
        principal_id,
        tenant_id: tenant.0,
        key_id,
        signature: signature.to_vec(),
        created_at: truncate_ts(now),
    };
    let inserted = a::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([a::Column::CeremonyId, a::Column::PrincipalId])
        .exec_without_returning(c)
        .await?;
    let already = crate::inserted_rows(inserted) == 0;
    let count = a::Entity::find()
        .filter(a::Column::TenantId.eq(tenant.0))
        .filter(a::Column::CeremonyId.eq(ceremony_id))
        .count(c)
        .await?;
    let count = u32::try_from(count).map_err(|_| StoreError::Corrupt {
        detail: format!("ceremony {ceremony_id} has {count} approvals"),
    })?;
    Ok(ApproveOutcome { count, already })
}

/// The ceremony's approvals, oldest first (ties by principal id).
pub async fn approvals<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ceremony_id: uuid::Uuid,
) -> Result<Vec<CeremonyApproval>> {
    let rows = a::Entity::find()
        .filter(a::Column::TenantId.eq(tenant.0))
        .filter(a::Column::CeremonyId.eq(ceremony_id))
        .order_by_asc(a::Column::CreatedAt)
        .order_by_asc(a::Column::PrincipalId)
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| CeremonyApproval {
            ceremony_id: m.ceremony_id,
            principal_id: m.principal_id,
            tenant_id: TenantId(m.tenant_id),
            key_id: m.key_id,
            signature: m.signature,
            created_at: m.created_at,
        })
        .collect())
}

/// Completes an open, unexpired ceremony that has its threshold of approvals, recording the
/// CA its operation made or changed. Exactly one of several racing callers succeeds; the
/// others, and any call on a completed, expired or short-of-quorum ceremony, get
/// `Conflict { what: "ceremony" }` (the CA service tells these apart beforehand, for its
/// refusal reasons). `NotFound` if the tenant has no such ceremony, or `result_ca_id` is not
/// the tenant's.
pub async fn complete<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    result_ca_id: Option<CaId>,
    now: DateTime<Utc>,
) -> Result<()> {
    if let Some(ca) = result_ca_id
        && cas::get(c, tenant, ca).await?.is_none()
    {
        return Err(StoreError::NotFound { what: "ca" });
    }
    let now = truncate_ts(now);
    let res = t::Entity::update_many()
        .col_expr(
            t::Column::Status,
            Expr::value(CeremonyStatus::Completed.as_str()),
        )
        .col_expr(t::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(
            t::Column::ResultCaId,
            Expr::value(result_ca_id.map(|ca| ca.0)),
        )
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .filter(t::Column::Status.eq(CeremonyStatus::Open.as_str()))
        .filter(t::Column::ExpiresAt.gt(now))
        // Quorum, checked by the statement that completes: no path completes without it.
        .filter(Expr::cust(
            "(SELECT COUNT(*) FROM ceremony_approvals \
              WHERE ceremony_approvals.ceremony_id = ceremonies.id) >= ceremonies.threshold",
        ))
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        return Ok(());
    }
    match get(c, tenant, id, now).await? {
        Some(_) => Err(StoreError::Conflict { what: "ceremony" }),
        None => Err(StoreError::NotFound { what: "ceremony" }),
    }
}

/// Marks the ceremony expired if it is open and past `expires_at`; true if it changed.
pub async fn expire<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = t::Entity::update_many()
        .col_expr(
            t::Column::Status,
            Expr::value(CeremonyStatus::Expired.as_str()),
        )
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .filter(t::Column::Status.eq(CeremonyStatus::Open.as_str()))
        .filter(t::Column::ExpiresAt.lte(truncate_ts(now)))
        .exec(c)
        .await?;
    Ok(res.rows_affected > 0)
}
