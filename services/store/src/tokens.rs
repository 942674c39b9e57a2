//! API tokens: minted once, stored only as a SHA-256 hash, verified by hash.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use crate::entity::api_tokens as t;
use crate::{Result, StoreError, TenantId, truncate_ts};

/// Prefix of every plaintext token, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "cmt_";

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's tenant.
    pub tenant_id: TenantId,
    /// The token's id (for audit and revocation).
    pub token_id: uuid::Uuid,
    /// The token's human-readable name.
    pub name: String,
}

/// The stored form of a token: lowercase hex SHA-256 of the plaintext.
pub fn hash(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

/// Mints a token for `tenant`. Returns its id and the plaintext, which is never stored and
/// cannot be recovered: `cmt_` followed by 64 hex characters (244 random bits from two v4
/// UUIDs, drawn from the OS generator).
pub async fn create<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    name: &str,
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
    };
    t::Entity::insert(row)
        .exec_without_returning(c)
        .await
        .map_err(|e| StoreError::from_insert(e, "token"))?;
    Ok((id, plaintext))
}

/// The principal of an unrevoked token, looked up by hash; `None` if unknown or revoked.
pub async fn verify<C: ConnectionTrait>(c: &C, plaintext: &str) -> Result<Option<Principal>> {
    if !plaintext.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let row = t::Entity::find()
        .filter(t::Column::TokenHash.eq(hash(plaintext)))
        .filter(t::Column::RevokedAt.is_null())
        .one(c)
        .await?;
    Ok(row.map(|r| Principal {
        tenant_id: TenantId(r.tenant_id),
        token_id: r.id,
        name: r.name,
    }))
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
