//! Issuance profiles: named, per tenant, with immutable numbered versions (1, 2, 3, …).
//!
//! A new version never changes an old one; `profiles.latest_version` points at the newest.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    TransactionSession, TransactionTrait,
};

use crate::entity::{profile_versions as v, profiles as p};
use crate::{Result, StoreError, TenantId, to_i32, to_u32, truncate_ts};

/// One immutable version of a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileVersion {
    /// The profile's id (stable across versions).
    pub profile_id: uuid::Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// Profile name, unique per tenant.
    pub name: String,
    /// 1-based version number.
    pub version: u32,
    /// The profile specification, as given.
    pub spec: serde_json::Value,
    /// When this version was written.
    pub created_at: DateTime<Utc>,
}

impl ProfileVersion {
    fn from_rows(profile: &p::Model, row: v::Model) -> Result<Self> {
        let spec = serde_json::from_str(&row.spec).map_err(|e| StoreError::Corrupt {
            detail: format!("profile spec is not JSON: {e}"),
        })?;
        Ok(ProfileVersion {
            profile_id: profile.id,
            tenant_id: TenantId(profile.tenant_id),
            name: profile.name.clone(),
            version: to_u32(row.version, "profile version")?,
            spec,
            created_at: row.created_at,
        })
    }
}

/// Writes a new version of the tenant's profile `name`: version 1 if the profile is new,
/// otherwise `latest_version + 1`.
///
/// Concurrency: runs in its own transaction (a savepoint when `c` already is one). It first
/// makes sure the profile row exists (`INSERT … ON CONFLICT DO NOTHING`), then increments
/// `latest_version` with an `UPDATE`, which takes the row lock on PostgreSQL (the same lock as
/// `SELECT … FOR UPDATE`) and the database write lock on SQLite, held until commit. Concurrent
/// callers for the same name therefore queue and **all succeed, with distinct consecutive
/// versions**; none gets a `Conflict`.
pub async fn create_version<C>(
    c: &C,
    tenant: TenantId,
    name: &str,
    spec: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<ProfileVersion>
where
    C: ConnectionTrait + TransactionTrait,
{
    if name.is_empty() {
        return Err(StoreError::Invalid {
            detail: "profile name must not be empty".to_owned(),
        });
    }
    let now = truncate_ts(now);
    let txn = c.begin().await?;
    let fresh = p::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.0,
        name: name.to_owned(),
        latest_version: 0,
        created_at: now,
        updated_at: now,
    };
    p::Entity::insert(fresh.into_active_model())
        .on_conflict_do_nothing_on([p::Column::TenantId, p::Column::Name])
        .exec_without_returning(&txn)
        .await?;
    p::Entity::update_many()
        .col_expr(
            p::Column::LatestVersion,
            Expr::col(p::Column::LatestVersion).add(1),
        )
        .col_expr(p::Column::UpdatedAt, Expr::value(now))
        .filter(p::Column::TenantId.eq(tenant.0))
        .filter(p::Column::Name.eq(name))
        .exec(&txn)
        .await?;
    let profile = find_profile(&txn, tenant, name)
        .await?
        .ok_or(StoreError::NotFound { what: "profile" })?;
    let row = v::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.0,
        profile_id: profile.id,
        version: profile.latest_version,
        spec: spec.to_string(),
        created_at: now,
    };
    v::Entity::insert(row.clone().into_active_model())
        .exec_without_returning(&txn)
        .await
        .map_err(|e| StoreError::from_insert(e, "profile version"))?;
    txn.commit().await?;
    ProfileVersion::from_rows(&profile, row)
}

/// The newest version of the tenant's profile `name`.
pub async fn latest<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
) -> Result<Option<ProfileVersion>> {
    let Some(profile) = find_profile(c, tenant, name).await? else {
        return Ok(None);
    };
    let version = to_u32(profile.latest_version, "profile version")?;
    version_of(c, &profile, version).await
}

/// The id and latest version number of the tenant's profile `name`: one indexed read, for
/// callers that cache the (immutable) versions themselves.
pub async fn head<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
) -> Result<Option<(uuid::Uuid, u32)>> {
    let Some(profile) = find_profile(c, tenant, name).await? else {
        return Ok(None);
    };
    Ok(Some((
        profile.id,
        to_u32(profile.latest_version, "profile version")?,
    )))
}

/// A given version of the tenant's profile `name`.
pub async fn version<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
    version: u32,
) -> Result<Option<ProfileVersion>> {
    let Some(profile) = find_profile(c, tenant, name).await? else {
        return Ok(None);
    };
    version_of(c, &profile, version).await
}

/// The newest version of each of the tenant's profiles, ordered by name.
pub async fn list_latest<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<Vec<ProfileVersion>> {
    let profiles = p::Entity::find()
        .filter(p::Column::TenantId.eq(tenant.0))
        .filter(p::Column::LatestVersion.gt(0))
        .order_by_asc(p::Column::Name)
        .all(c)
        .await?;
    if profiles.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = profiles.iter().fold(Condition::any(), |cond, prof| {
        cond.add(
            Condition::all()
                .add(v::Column::ProfileId.eq(prof.id))
                .add(v::Column::Version.eq(prof.latest_version)),
        )
    });
    let mut rows = v::Entity::find()
        .filter(v::Column::TenantId.eq(tenant.0))
        .filter(wanted)
        .all(c)
        .await?;
    let mut out = Vec::with_capacity(profiles.len());
    for prof in &profiles {
        let Some(pos) = rows.iter().position(|r| r.profile_id == prof.id) else {
            return Err(StoreError::Corrupt {
                detail: format!("profile {} has no version {}", prof.id, prof.latest_version),
            });
        };
        out.push(ProfileVersion::from_rows(prof, rows.swap_remove(pos))?);
    }
    Ok(out)
}

async fn find_profile<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
) -> Result<Option<p::Model>> {
    Ok(p::Entity::find()
        .filter(p::Column::TenantId.eq(tenant.0))
        .filter(p::Column::Name.eq(name))
        .one(c)
        .await?)
}

async fn version_of<C: ConnectionTrait>(
    c: &C,
    profile: &p::Model,
    version: u32,
) -> Result<Option<ProfileVersion>> {
    let row = v::Entity::find()
        .filter(v::Column::ProfileId.eq(profile.id))
        .filter(v::Column::Version.eq(to_i32(version, "profile version")?))
        .one(c)
        .await?;
    row.map(|r| ProfileVersion::from_rows(profile, r))
        .transpose()
}
