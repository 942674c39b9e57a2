//! Idempotency keys: the guard that makes a retried issuance return the first result.
//!
//! [`claim`] is `INSERT … ON CONFLICT (tenant_id, key) DO NOTHING` followed, if nothing was
//! inserted, by a `SELECT` of the existing row. On PostgreSQL a conflicting insert waits for a
//! concurrent inserter's transaction to finish, so of many concurrent claims exactly one sees
//! [`Claim::Fresh`]; on SQLite writers are serialized by the database lock. No unique violation
//! is ever raised, so the caller's transaction stays usable.
//!
//! On SQLite, make the claim the first statement of the transaction: a deferred transaction
//! that has already read cannot upgrade to a writer once another writer committed
//! (`SQLITE_BUSY_SNAPSHOT`, not retried by the busy timeout).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};

use crate::entity::idempotency_keys as t;
use crate::{Result, StoreError, TenantId, truncate_ts};

/// The outcome of [`claim`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now belongs to the caller's transaction: do the work, then
    /// [`complete`].
    Fresh,
    /// The key was claimed before.
    Existing {
        /// Hash of the request that claimed it; a different hash means the key was reused for
        /// a different request.
        request_hash: String,
        /// The certificate issued under it, `None` while the first request is unfinished.
        certificate_serial: Option<String>,
    },
}

/// Claims `key` for the tenant, or reports who had it.
pub async fn claim<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    key: &str,
    request_hash: &str,
    now: DateTime<Utc>,
) -> Result<Claim> {
    if key.is_empty() {
        return Err(StoreError::Invalid {
            detail: "idempotency key must not be empty".to_owned(),
        });
    }
    let row = t::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.0,
        key: key.to_owned(),
        request_hash: request_hash.to_owned(),
        certificate_serial: None,
        created_at: truncate_ts(now),
    };
    let res = t::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Key])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(res) > 0 {
        return Ok(Claim::Fresh);
    }
    let existing = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Key.eq(key))
        .one(c)
        .await?
        .ok_or(StoreError::NotFound {
            what: "idempotency key",
        })?;
    Ok(Claim::Existing {
        request_hash: existing.request_hash,
        certificate_serial: existing.certificate_serial,
    })
}

/// A key's record as it stands, read without claiming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// Hash of the request that claimed the key.
    pub request_hash: String,
    /// The certificate issued under it, `None` while the first request is unfinished.
    pub certificate_serial: Option<String>,
}

/// Reads `key` without claiming it: `None` if the key was never claimed.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    key: &str,
) -> Result<Option<Existing>> {
    let row = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Key.eq(key))
        .one(c)
        .await?;
    Ok(row.map(|r| Existing {
        request_hash: r.request_hash,
        certificate_serial: r.certificate_serial,
    }))
}

/// Records the certificate issued under a claimed key. `NotFound` if the key was never claimed.
pub async fn complete<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    key: &str,
    serial: &str,
) -> Result<()> {
    let res = t::Entity::update_many()
        .col_expr(t::Column::CertificateSerial, Expr::value(serial))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Key.eq(key))
        .exec(c)
        .await?;
    if res.rows_affected == 0 {
        return Err(StoreError::NotFound {
            what: "idempotency key",
        });
    }
    Ok(())
}
