//! Every certificate ever made for a CA: one `primary` row per generation (the CA's own
//! certificate of that generation, written by [`crate::cas::insert`] and [`crate::cas::rotate`])
//! and `cross` rows (the CA's current key certified by another CA of the tenant).
//!
//! Rows are never deleted: leaves and children signed by an older generation keep verifying
//! through the chain stored with them. `superseded_at` records when a generation stopped being
//! current.
//!
//! A primary row's id is the public name of its generation's key (CRL URLs carry it): for
//! generation 1 it is the CA's own id, for later generations a fresh random id.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use crate::cas::{self, CaRecord};
use crate::entity::ca_certificates as t;
use crate::{CaId, Result, StoreError, TenantId, to_i32, to_u32, truncate_ts};

/// A generation's own certificate.
pub const RELATION_PRIMARY: &str = "primary";
/// A cross-certificate: the CA's key certified by another CA.
pub const RELATION_CROSS: &str = "cross";

/// One stored certificate of a CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaCertificate {
    /// Row id.
    pub id: uuid::Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// The CA whose key the certificate certifies.
    pub ca_id: CaId,
    /// The CA's generation (key) it certifies.
    pub generation: u32,
    /// [`RELATION_PRIMARY`] or [`RELATION_CROSS`].
    pub relation: String,
    /// The signing CA; `None` when self-signed.
    pub issuer_ca_id: Option<CaId>,
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Key backend reference of the subject key.
    pub key_ref: String,
    /// Start of validity (microsecond precision).
    pub not_before: DateTime<Utc>,
    /// End of validity (microsecond precision).
    pub not_after: DateTime<Utc>,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
    /// When its generation stopped being the CA's current one; `None` while current.
    pub superseded_at: Option<DateTime<Utc>>,
}

/// A cross-certificate to record with [`add_cross`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCross {
    /// The CA whose current key is certified.
    pub ca_id: CaId,
    /// The CA that signed the cross-certificate.
    pub issuer_ca_id: CaId,
    /// The cross-certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

fn from_model(m: t::Model) -> Result<CaCertificate> {
    Ok(CaCertificate {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        ca_id: CaId(m.ca_id),
        generation: to_u32(m.generation, "ca certificate generation")?,
        relation: m.relation,
        issuer_ca_id: m.issuer_ca_id.map(CaId),
        certificate_der: m.certificate_der,
        key_ref: m.key_ref,
        not_before: m.not_before,
        not_after: m.not_after,
        created_at: m.created_at,
        superseded_at: m.superseded_at,
    })
}

async fn insert<C: ConnectionTrait>(c: &C, model: t::Model) -> Result<CaCertificate> {
    t::Entity::insert(model.clone().into_active_model())
        .exec_without_returning(c)
        .await
        .map_err(|e| StoreError::from_insert(e, "ca certificate"))?;
    from_model(model)
}

/// Writes `ca`'s current certificate as the primary row of its current generation, issued by
/// its parent (none for a root).
///
/// A generation's primary row id names that CA key in public: CRL distribution points and
/// CRL URLs carry it, so it must be stable and unique. Generation 1 takes the CA's own id (as
/// m0010's backfill does for CAs that predate the table), so a never-rotated CA is named by its
/// CA id; later generations get a fresh random (v4) id.
pub(crate) async fn insert_primary<C: ConnectionTrait>(
    c: &C,
    ca: &CaRecord,
    now: DateTime<Utc>,
) -> Result<CaCertificate> {
    let id = if ca.generation == 1 {
        ca.id.0
    } else {
        uuid::Uuid::new_v4()
    };
    let model = t::Model {
        id,
        tenant_id: ca.tenant_id.0,
        ca_id: ca.id.0,
        generation: to_i32(ca.generation, "generation")?,
        relation: RELATION_PRIMARY.to_owned(),
        issuer_ca_id: ca.parent_id.map(|p| p.0),
        certificate_der: ca.certificate_der.clone(),
        key_ref: ca.key_ref.clone(),
        not_before: truncate_ts(ca.not_before),
        not_after: truncate_ts(ca.not_after),
        created_at: truncate_ts(now),
        superseded_at: None,
    };
    insert(c, model).await
}

/// Marks every still-current row of the CA's `generation` superseded at `now`.
pub(crate) async fn supersede_generation<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca_id: CaId,
    generation: u32,
    now: DateTime<Utc>,
) -> Result<()> {
    t::Entity::update_many()
        .col_expr(t::Column::SupersededAt, Expr::value(Some(truncate_ts(now))))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::CaId.eq(ca_id.0))
        .filter(t::Column::Generation.eq(to_i32(generation, "generation")?))
        .filter(t::Column::SupersededAt.is_null())
        .exec(c)
        .await?;
    Ok(())
}

/// Records a cross-certificate of the CA's current generation (and key), signed by another of
/// the tenant's CAs. `NotFound` if either CA is not the tenant's; `Invalid` if they are the
/// same CA.
pub async fn add_cross<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    cross: NewCross,
    now: DateTime<Utc>,
) -> Result<CaCertificate> {
    if cross.ca_id == cross.issuer_ca_id {
        return Err(StoreError::Invalid {
            detail: "a CA does not cross-sign itself".to_owned(),
        });
    }
    let ca = cas::get(c, tenant, cross.ca_id)
        .await?
        .ok_or(StoreError::NotFound { what: "ca" })?;
    if cas::get(c, tenant, cross.issuer_ca_id).await?.is_none() {
        return Err(StoreError::NotFound { what: "issuer ca" });
    }
    let model = t::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.0,
        ca_id: ca.id.0,
        generation: to_i32(ca.generation, "generation")?,
        relation: RELATION_CROSS.to_owned(),
        issuer_ca_id: Some(cross.issuer_ca_id.0),
        certificate_der: cross.certificate_der,
        key_ref: ca.key_ref,
        not_before: truncate_ts(cross.not_before),
        not_after: truncate_ts(cross.not_after),
        created_at: truncate_ts(now),
        superseded_at: None,
    };
    insert(c, model).await
}

/// The tenant's certificates of CA `ca_id`: by generation, each generation's primary first,
/// then its cross-certificates oldest first (ties by id). Empty if the tenant has no such CA.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca_id: CaId,
) -> Result<Vec<CaCertificate>> {
    let mut rows = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::CaId.eq(ca_id.0))
        .order_by_asc(t::Column::Generation)
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect::<Result<Vec<_>>>()?;
    // Stable: keeps the database's order within each group.
    rows.sort_by_key(|r| (r.generation, r.relation != RELATION_PRIMARY));
    Ok(rows)
}

/// Every primary row of the tenant, that is one per key generation of each of its CAs, ordered
/// by `(ca_id, generation)`: the CA keys a CRL publisher covers.
pub async fn primaries<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<Vec<CaCertificate>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Relation.eq(RELATION_PRIMARY))
        .order_by_asc(t::Column::CaId)
        .order_by_asc(t::Column::Generation)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}
