//! Certificate authorities: the certificate, its place in the hierarchy and a reference to its
//! key in a key backend. Key bytes never reach the store.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::entity::cas as t;
use crate::{CaId, Result, StoreError, TenantId, truncate_ts};

/// Status of a CA that may issue.
pub const STATUS_ACTIVE: &str = "active";
/// Status of a CA that no longer issues.
pub const STATUS_RETIRED: &str = "retired";

/// A CA to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCa {
    /// Owner.
    pub tenant_id: TenantId,
    /// Unique per tenant.
    pub name: String,
    /// The issuing CA, `None` for a root.
    pub parent_id: Option<CaId>,
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

/// A stored CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaRecord {
    /// Row id.
    pub id: CaId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Unique per tenant.
    pub name: String,
    /// The issuing CA, `None` for a root.
    pub parent_id: Option<CaId>,
    /// Key backend reference.
    pub key_ref: String,
    /// The CA certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The subject DN.
    pub subject: String,
    /// Start of validity (microsecond precision).
    pub not_before: DateTime<Utc>,
    /// End of validity (microsecond precision).
    pub not_after: DateTime<Utc>,
    /// [`STATUS_ACTIVE`] or [`STATUS_RETIRED`].
    pub status: String,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
}

impl From<t::Model> for CaRecord {
    fn from(m: t::Model) -> Self {
        CaRecord {
            id: CaId(m.id),
            tenant_id: TenantId(m.tenant_id),
            name: m.name,
            parent_id: m.parent_id.map(CaId),
            key_ref: m.key_ref,
            certificate_der: m.certificate_der,
            subject: m.subject,
            not_before: m.not_before,
            not_after: m.not_after,
            status: m.status,
            created_at: m.created_at,
        }
    }
}

/// Records a new, active CA. `Conflict { what: "ca" }` if the tenant already has one with this
/// name; the caller's transaction stays usable (`ON CONFLICT DO NOTHING`).
pub async fn insert<C: ConnectionTrait>(c: &C, new: NewCa, now: DateTime<Utc>) -> Result<CaRecord> {
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
    };
    let row = t::ActiveModel {
        id: Set(model.id),
        tenant_id: Set(model.tenant_id),
        name: Set(model.name.clone()),
        parent_id: Set(model.parent_id),
        key_ref: Set(model.key_ref.clone()),
        certificate_der: Set(model.certificate_der.clone()),
        subject: Set(model.subject.clone()),
        not_before: Set(model.not_before),
        not_after: Set(model.not_after),
        status: Set(model.status.clone()),
        created_at: Set(model.created_at),
    };
    let inserted = t::Entity::insert(row)
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Name])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(inserted) == 0 {
        return Err(StoreError::Conflict { what: "ca" });
    }
    Ok(model.into())
}

/// The tenant's CA with this id.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: CaId,
) -> Result<Option<CaRecord>> {
    let row = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id.0))
        .one(c)
        .await?;
    Ok(row.map(CaRecord::from))
}

/// The tenant's CA with this name.
pub async fn by_name<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
) -> Result<Option<CaRecord>> {
    let row = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Name.eq(name))
        .one(c)
        .await?;
    Ok(row.map(CaRecord::from))
}

/// Marks the tenant's CA retired. `NotFound` if there is no such CA.
pub async fn retire<C: ConnectionTrait>(c: &C, tenant: TenantId, id: CaId) -> Result<()> {
    let res = t::Entity::update_many()
        .col_expr(
            t::Column::Status,
            sea_orm::sea_query::Expr::value(STATUS_RETIRED),
        )
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id.0))
        .exec(c)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::NotFound { what: "ca" });
    }
    Ok(())
}
