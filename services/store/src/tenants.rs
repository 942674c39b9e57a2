//! Tenants: the unit of isolation. Created on first use by name.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use crate::entity::tenants as t;
use crate::{Result, StoreError, TenantId, truncate_ts};

/// Returns the tenant named `name`, creating it if missing.
///
/// Race-safe: concurrent callers insert with `ON CONFLICT (name) DO NOTHING` and then read the
/// one row that won, so all of them get the same id.
pub async fn ensure<C: ConnectionTrait>(c: &C, name: &str, now: DateTime<Utc>) -> Result<TenantId> {
    if name.is_empty() {
        return Err(StoreError::Invalid {
            detail: "tenant name must not be empty".to_owned(),
        });
    }
    let row = t::ActiveModel {
        id: Set(uuid::Uuid::new_v4()),
        name: Set(name.to_owned()),
        created_at: Set(truncate_ts(now)),
    };
    t::Entity::insert(row)
        .on_conflict_do_nothing_on([t::Column::Name])
        .exec_without_returning(c)
        .await?;
    by_name(c, name)
        .await?
        .ok_or(StoreError::NotFound { what: "tenant" })
}

/// The id of the tenant named `name`, if it exists.
pub async fn by_name<C: ConnectionTrait>(c: &C, name: &str) -> Result<Option<TenantId>> {
    let id: Option<uuid::Uuid> = t::Entity::find()
        .select_only()
        .column(t::Column::Id)
        .filter(t::Column::Name.eq(name))
        .into_tuple()
        .one(c)
        .await?;
    Ok(id.map(TenantId))
}

/// Every tenant as (id, name, created), by name.
pub async fn list<C: ConnectionTrait>(c: &C) -> Result<Vec<(TenantId, String, DateTime<Utc>)>> {
    let rows = t::Entity::find()
        .order_by_asc(t::Column::Name)
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (TenantId(r.id), r.name, r.created_at))
        .collect())
}
