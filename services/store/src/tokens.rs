//! API tokens: minted once, stored only as a SHA-256 hash, verified by hash.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use sha2::{Digest, Sha256};

use crate::entity::api_tokens as t;
use crate::{Result, Store, StoreError, TenantId, truncate_ts};

/// Prefix of every plaintext token, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "cmt_";

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's tenant.
    pub tenant_id: TenantId,
    /// The token's id.
    pub token_id: uuid::Uuid,
    /// The token's name.
    pub name: String,
    /// The principal the token acts for.
    pub principal_id: uuid::Uuid,
    /// The principal's name, for the audit trail.
    pub principal: String,
    /// The principal's role names.
    pub roles: Vec<String>,
    /// When the token stops working, if it expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its secret or hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub principal_id: Option<uuid::Uuid>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The stored form of a token: lowercase hex SHA-256 of the plaintext.
pub fn hash(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Mints a token for `principal` in `tenant`, optionally expiring. Returns its id and the
/// plaintext, which is never stored and cannot be recovered: `cmt_` followed by 64 hex
/// characters (244 random bits from two v4 UUIDs, drawn from the OS generator). A principal
/// may hold several tokens at once, which is how rotation works: mint the new one, move the
/// client, revoke the old one.
pub async fn create<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    principal_id: uuid::Uuid,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(uuid::Uuid, String)> {
    let mut random = Vec::with_capacity(32);
    random.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    random.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let plaintext = format!("{TOKEN_PREFIX}{}", hex::encode(random));
    let id = uuid::Uuid::new_v4();
    let row = t::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant.0),
        name: Set(name.to_owned()),
        token_hash: Set(hash(&plaintext)),
        created_at: Set(truncate_ts(now)),
        revoked_at: Set(None),
        principal_id: Set(Some(principal_id)),
        expires_at: Set(expires_at.map(truncate_ts)),
    };
    t::Entity::insert(row)
        .exec_without_returning(c)
        .await
        .map_err(|e| StoreError::from_insert(e, "token"))?;
    Ok((id, plaintext))
}

/// The principal behind a plaintext token, or `None` if the token is unknown, revoked,
/// expired at `now`, has no principal, or its principal is disabled.
///
/// Runs before any tenant is known, in a transaction of its own: on PostgreSQL the row-level
/// security policy on `api_tokens` shows a row to whoever presents its hash
/// (`certmesh.token_hash`); the token's tenant is then set to read its principal.
pub async fn verify(
    store: &Store,
    plaintext: &str,
    now: DateTime<Utc>,
) -> Result<Option<Principal>> {
    if !plaintext.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let tx = store.begin().await?;
    let found = lookup(&tx, plaintext, now).await;
    tx.commit().await?;
    found
}

async fn lookup<C: ConnectionTrait>(
    c: &C,
    plaintext: &str,
    now: DateTime<Utc>,
) -> Result<Option<Principal>> {
    let token_hash = hash(plaintext);
    crate::set_local(c, "certmesh.token_hash", &token_hash).await?;
    let Some(row) = t::Entity::find()
        .filter(t::Column::TokenHash.eq(token_hash))
        .filter(t::Column::RevokedAt.is_null())
        .one(c)
        .await?
    else {
        return Ok(None);
    };
    if row.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let Some(principal_id) = row.principal_id else {
        return Ok(None);
    };
    let tenant = TenantId(row.tenant_id);
    crate::set_tenant(c, tenant).await?;
    let Some(principal) = crate::principals::get(c, tenant, principal_id).await? else {
        return Ok(None);
    };
    if principal.disabled_at.is_some() {
        return Ok(None);
    }
    Ok(Some(Principal {
        tenant_id: tenant,
        token_id: row.id,
        name: row.name,
        principal_id,
        principal: principal.name,
        roles: principal.roles,
        expires_at: row.expires_at,
    }))
}

/// The tenant's tokens, optionally only one principal's, newest first. Never the hashes.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    principal_id: Option<uuid::Uuid>,
) -> Result<Vec<TokenInfo>> {
    let mut query = t::Entity::find().filter(t::Column::TenantId.eq(tenant.0));
    if let Some(p) = principal_id {
        query = query.filter(t::Column::PrincipalId.eq(p));
    }
    let rows = query
        .order_by_desc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenInfo {
            id: r.id,
            tenant_id: TenantId(r.tenant_id),
            principal_id: r.principal_id,
            name: r.name,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
        .collect())
}

/// Revokes a token of `tenant`; revoking twice keeps the first time. `NotFound` if the tenant
/// has no such token.
pub async fn revoke<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    token_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    let res = t::Entity::update_many()
        .col_expr(t::Column::RevokedAt, Expr::value(truncate_ts(now)))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(token_id))
        .filter(t::Column::RevokedAt.is_null())
        .exec(c)
        .await?;
    if res.rows_affected > 0 {
        return Ok(());
    }
    let exists = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(token_id))
        .one(c)
        .await?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound { what: "token" })
    }
}
