//! Certificate authorities: the current certificate, its place in the hierarchy, its
//! constraints and a reference to its key in a key backend. Key bytes never reach the store.
//!
//! A CA keeps its id for life (RFC 0003): [`rotate`] replaces the current certificate and key
//! and bumps [`CaRecord::generation`]; every certificate ever made for the CA stays in
//! [`crate::ca_certificates`]. State changes are conditional updates, so of two racing writers
//! exactly one wins and the other gets [`StoreError::Conflict`].

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use crate::entity::cas as t;
use crate::{CaId, Result, StoreError, TenantId, ca_certificates, to_i32, to_u32, truncate_ts};

/// Status of a CA that may issue.
pub const STATUS_ACTIVE: &str = "active";
/// Status of a CA on its way out: it signs no new children, its issued certificates stay valid.
pub const STATUS_RETIRING: &str = "retiring";
/// Status of a CA that no longer issues.
pub const STATUS_RETIRED: &str = "retired";
/// Every status, in lifecycle order.
const STATUSES: [&str; 3] = [STATUS_ACTIVE, STATUS_RETIRING, STATUS_RETIRED];

/// Kind of a CA with no parent: self-signed, or an imported root.
pub const KIND_ROOT: &str = "root";
/// Kind of a CA signed by its parent.
pub const KIND_INTERMEDIATE: &str = "intermediate";

/// A CA to record (generation 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCa {
    /// Owner.
    pub tenant_id: TenantId,
    /// Unique per tenant.
    pub name: String,
    /// The issuing CA, `None` for a root.
    pub parent_id: Option<CaId>,
    /// [`KIND_ROOT`] (no parent) or [`KIND_INTERMEDIATE`] (a parent).
    pub kind: String,
    /// The basicConstraints path length; `None` for unconstrained.
    pub path_len: Option<u8>,
    /// The key's algorithm, e.g. `ecdsa-p256`.
    pub key_spec: String,
    /// Permitted dNSName subtrees (RFC 5280 §4.2.1.10), as the caller normalised them.
    pub permitted_dns: Vec<String>,
    /// Excluded dNSName subtrees.
    pub excluded_dns: Vec<String>,
    /// True for an imported root whose key is not reachable: it cannot sign.
    pub key_offline: bool,
    /// Where the key lives (key backend reference), never the key.
    pub key_ref: String,
    /// The CA certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The subject DN, for display.
    pub subject: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

/// A stored CA, as of its current generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaRecord {
    /// Row id; stable across rotations.
    pub id: CaId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Unique per tenant.
    pub name: String,
    /// The issuing CA, `None` for a root.
    pub parent_id: Option<CaId>,
    /// [`KIND_ROOT`] or [`KIND_INTERMEDIATE`].
    pub kind: String,
    /// The path length; `None` for unconstrained, and for CAs recorded before the hierarchy
    /// existed (migration m0010), whose certificate carries it.
    pub path_len: Option<u8>,
    /// The current key's algorithm, e.g. `ecdsa-p256`.
    pub key_spec: String,
    /// Permitted dNSName subtrees.
    pub permitted_dns: Vec<String>,
    /// Excluded dNSName subtrees.
    pub excluded_dns: Vec<String>,
    /// The current generation, from 1; each [`rotate`] adds one.
    pub generation: u32,
    /// True for an imported root whose key is not reachable.
    pub key_offline: bool,
    /// Key backend reference of the current key.
    pub key_ref: String,
    /// The current CA certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The subject DN.
    pub subject: String,
    /// Start of validity (microsecond precision).
    pub not_before: DateTime<Utc>,
    /// End of validity (microsecond precision).
    pub not_after: DateTime<Utc>,
    /// [`STATUS_ACTIVE`], [`STATUS_RETIRING`] or [`STATUS_RETIRED`].
    pub status: String,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

/// The next generation of a CA, for [`rotate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The generation this one replaces, as the caller read it: if another rotation got there
    /// first, [`rotate`] answers [`StoreError::Conflict`] instead of replacing that one.
    pub from_generation: u32,
    /// Key backend reference of the new key.
    pub key_ref: String,
    /// The new certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Its subject DN.
    pub subject: String,
    /// The new key's algorithm.
    pub key_spec: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

fn dns_to_json(names: &[String]) -> Result<String> {
    serde_json::to_string(names).map_err(|e| StoreError::Invalid {
        detail: e.to_string(),
    })
}

fn dns_from_json(id: uuid::Uuid, column: &str, json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        detail: format!("ca {id} {column}: {e}"),
    })
}

fn from_model(m: t::Model) -> Result<CaRecord> {
    let path_len = m
        .path_len
        .map(|n| {
            u8::try_from(n).map_err(|_| StoreError::Corrupt {
                detail: format!("ca {} path_len {n}", m.id),
            })
        })
        .transpose()?;
    Ok(CaRecord {
        id: CaId(m.id),
        tenant_id: TenantId(m.tenant_id),
        permitted_dns: dns_from_json(m.id, "permitted_dns", &m.permitted_dns)?,
        excluded_dns: dns_from_json(m.id, "excluded_dns", &m.excluded_dns)?,
        generation: to_u32(m.generation, "ca generation")?,
        name: m.name,
        parent_id: m.parent_id.map(CaId),
        kind: m.kind,
        path_len,
        key_spec: m.key_spec,
        key_offline: m.key_offline,
        key_ref: m.key_ref,
        certificate_der: m.certificate_der,
        subject: m.subject,
        not_before: m.not_before,
        not_after: m.not_after,
        status: m.status,
        created_at: m.created_at,
    })
}

/// Records a new, active CA at generation 1, and its certificate as the generation's `primary`
/// row of [`crate::ca_certificates`] (same connection, so the caller's transaction keeps both
/// or neither). `Conflict { what: "ca" }` if the tenant already has one with this name (the
/// caller's transaction stays usable: `ON CONFLICT DO NOTHING`); `NotFound` if the parent is
/// not the tenant's; `Invalid` if `kind` does not match having a parent.
pub async fn insert<C: ConnectionTrait>(c: &C, new: NewCa, now: DateTime<Utc>) -> Result<CaRecord> {
    let expected_kind = match new.parent_id {
        None => KIND_ROOT,
        Some(_) => KIND_INTERMEDIATE,
    };
    if new.kind != expected_kind {
        return Err(StoreError::Invalid {
            detail: format!("a CA of kind {:?} must be {expected_kind}", new.kind),
        });
    }
    if let Some(parent) = new.parent_id
        && get(c, new.tenant_id, parent).await?.is_none()
    {
        return Err(StoreError::NotFound { what: "parent ca" });
    }
    let model = t::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: new.tenant_id.0,
        name: new.name,
        parent_id: new.parent_id.map(|p| p.0),
        key_ref: new.key_ref,
        certificate_der: new.certificate_der,
        subject: new.subject,
        not_before: truncate_ts(new.not_before),
        not_after: truncate_ts(new.not_after),
        status: STATUS_ACTIVE.to_owned(),
        created_at: truncate_ts(now),
        kind: new.kind,
        path_len: new.path_len.map(i32::from),
        key_spec: new.key_spec,
        permitted_dns: dns_to_json(&new.permitted_dns)?,
        excluded_dns: dns_to_json(&new.excluded_dns)?,
        generation: 1,
        key_offline: new.key_offline,
    };
    let inserted = t::Entity::insert(model.clone().into_active_model())
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Name])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(inserted) == 0 {
        return Err(StoreError::Conflict { what: "ca" });
    }
    let record = from_model(model)?;
    ca_certificates::insert_primary(c, &record, now).await?;
    Ok(record)
}

/// The tenant's CA with this id.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: CaId,
) -> Result<Option<CaRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id.0))
        .one(c)
        .await?
        .map(from_model)
        .transpose()
}

/// The tenant's CA with this name.
pub async fn by_name<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
) -> Result<Option<CaRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Name.eq(name))
        .one(c)
        .await?
        .map(from_model)
        .transpose()
}

/// The tenant's CAs, oldest first (ties by id).
pub async fn list<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<Vec<CaRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// The tenant's CAs whose parent is `id`, oldest first (ties by id).
pub async fn children<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: CaId,
) -> Result<Vec<CaRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::ParentId.eq(id.0))
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Moves the tenant's CA from status `from` to status `to` (one of the `STATUS_*` constants;
/// which moves are allowed is the CA service's rule). `Conflict` if the CA is not in `from`
/// (another writer moved it first), `NotFound` if the tenant has no such CA.
pub async fn set_status<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: CaId,
    from: &str,
    to: &str,
) -> Result<()> {
    for status in [from, to] {
        if !STATUSES.contains(&status) {
            return Err(StoreError::Invalid {
                detail: format!("unknown CA status {status:?}"),
            });
        }
    }
    let res = t::Entity::update_many()
        .col_expr(t::Column::Status, Expr::value(to))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id.0))
        .filter(t::Column::Status.eq(from))
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        return Ok(());
    }
    match get(c, tenant, id).await? {
        Some(_) => Err(StoreError::Conflict { what: "ca" }),
        None => Err(StoreError::NotFound { what: "ca" }),
    }
}

/// Marks the tenant's CA retired, whatever its status. `NotFound` if there is no such CA.
pub async fn retire<C: ConnectionTrait>(c: &C, tenant: TenantId, id: CaId) -> Result<()> {
    let res = t::Entity::update_many()
        .col_expr(t::Column::Status, Expr::value(STATUS_RETIRED))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::NotFound { what: "ca" });
    }
    Ok(())
}

/// Makes `next` the CA's current certificate and key, one generation up: the CA row is
/// updated only if it is still at `next.from_generation`; every certificate of that generation
/// still current in [`crate::ca_certificates`] (its primary and any cross-certificates) is
/// marked superseded at `now`; the new certificate becomes the new generation's primary row,
/// issued by the CA's parent. Run it in the caller's transaction so all of it lands or none.
///
/// `Conflict { what: "ca" }` if the CA is past `from_generation` (a concurrent rotation won;
/// on PostgreSQL the loser waits on the row lock, then finds the generation moved on).
/// `NotFound` if the tenant has no such CA. Returns the CA as rotated.
pub async fn rotate<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: CaId,
    next: Rotation,
    now: DateTime<Utc>,
) -> Result<CaRecord> {
    let from = to_i32(next.from_generation, "generation")?;
    let to = from.checked_add(1).ok_or_else(|| StoreError::Invalid {
        detail: "generation overflow".to_owned(),
    })?;
    let res = t::Entity::update_many()
        .col_expr(t::Column::KeyRef, Expr::value(next.key_ref))
        .col_expr(t::Column::CertificateDer, Expr::value(next.certificate_der))
        .col_expr(t::Column::Subject, Expr::value(next.subject))
        .col_expr(t::Column::KeySpec, Expr::value(next.key_spec))
        .col_expr(
            t::Column::NotBefore,
            Expr::value(truncate_ts(next.not_before)),
        )
        .col_expr(
            t::Column::NotAfter,
            Expr::value(truncate_ts(next.not_after)),
        )
        .col_expr(t::Column::Generation, Expr::value(to))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id.0))
        .filter(t::Column::Generation.eq(from))
        .exec(c)
        .await?;
    let rotated = get(c, tenant, id)
        .await?
        .ok_or(StoreError::NotFound { what: "ca" })?;
    if res.rows_affected != 1 {
        return Err(StoreError::Conflict { what: "ca" });
    }
    ca_certificates::supersede_generation(c, tenant, id, next.from_generation, now).await?;
    ca_certificates::insert_primary(c, &rotated, now).await?;
    Ok(rotated)
}
