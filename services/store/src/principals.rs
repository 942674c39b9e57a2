//! Principals: the users and service accounts that tokens act for, each holding roles.
//!
//! Roles are stored as names; the store does not interpret them (the permission matrix lives
//! in `certmesh-kit`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use crate::entity::principals as t;
use crate::{Result, StoreError, TenantId, truncate_ts};

/// A principal as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    /// Unique per tenant.
    pub name: String,
    /// `user` or `service`.
    pub kind: String,
    /// Role names.
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

fn from_model(m: t::Model) -> Result<PrincipalRecord> {
    let roles: Vec<String> = serde_json::from_str(&m.roles).map_err(|e| StoreError::Corrupt {
        detail: format!("principal {} roles: {e}", m.id),
    })?;
    Ok(PrincipalRecord {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        name: m.name,
        kind: m.kind,
        roles,
        created_at: m.created_at,
        disabled_at: m.disabled_at,
    })
}

/// Create a principal. `Conflict` if the tenant already has one with that name.
pub async fn create<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
    kind: &str,
    roles: &[String],
    now: DateTime<Utc>,
) -> Result<PrincipalRecord> {
    let model = t::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.0,
        name: name.to_owned(),
        kind: kind.to_owned(),
        roles: serde_json::to_string(roles).map_err(|e| StoreError::Invalid {
            detail: e.to_string(),
        })?,
        created_at: truncate_ts(now),
        disabled_at: None,
    };
    let inserted = t::Entity::insert(model.clone().into_active_model())
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Name])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(inserted) == 0 {
        return Err(StoreError::Conflict { what: "principal" });
    }
    from_model(model)
}

/// The principal `name`, created with `kind` and `roles` if missing (bootstrap).
pub async fn ensure<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
    kind: &str,
    roles: &[String],
    now: DateTime<Utc>,
) -> Result<PrincipalRecord> {
    match create(c, tenant, name, kind, roles, now).await {
        Err(StoreError::Conflict { .. }) => by_name(c, tenant, name)
            .await?
            .ok_or(StoreError::NotFound { what: "principal" }),
        other => other,
    }
}

/// The tenant's principal `name`.
pub async fn by_name<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
) -> Result<Option<PrincipalRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Name.eq(name))
        .one(c)
        .await?
        .map(from_model)
        .transpose()
}

/// The tenant's principal with `id`.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<PrincipalRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(id))
        .one(c)
        .await?
        .map(from_model)
        .transpose()
}

/// The tenant's principals, by name.
pub async fn list<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<Vec<PrincipalRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .order_by_asc(t::Column::Name)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}
