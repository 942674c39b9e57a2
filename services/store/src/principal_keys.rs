//! Principals' public keys, with which custodians sign ceremony approvals (RFC 0003).
//!
//! The store keeps the SubjectPublicKeyInfo and its fingerprint as the caller computed them
//! (parsing keys is `certmesh-crypto`'s job); the fingerprint is unique per tenant, so one key
//! cannot speak for two principals. Keys are revoked, never deleted: old approvals keep naming
//! the key that made them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use crate::entity::principal_keys as t;
use crate::{Result, StoreError, TenantId, principals, truncate_ts};

/// Ed25519 (RFC 8032).
pub const ALGORITHM_ED25519: &str = "ed25519";
/// ECDSA on P-256 with SHA-256.
pub const ALGORITHM_ECDSA_P256: &str = "ecdsa-p256";

/// A principal's public key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrincipalKey {
    /// Row id, the `key_id` of approvals made with it.
    pub id: uuid::Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// The principal the key speaks for.
    pub principal_id: uuid::Uuid,
    /// [`ALGORITHM_ED25519`] or [`ALGORITHM_ECDSA_P256`], as given.
    pub algorithm: String,
    /// SubjectPublicKeyInfo, DER.
    pub public_key_der: Vec<u8>,
    /// Hex SHA-256 of the SPKI, lower case.
    pub fingerprint: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; `None` while active.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<t::Model> for PrincipalKey {
    fn from(m: t::Model) -> Self {
        PrincipalKey {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            principal_id: m.principal_id,
            algorithm: m.algorithm,
            public_key_der: m.public_key_der,
            fingerprint: m.fingerprint,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        }
    }
}

/// A fingerprint is 64 lower-case hex digits, so equal keys always collide on the index.
fn check_fingerprint(fingerprint: &str) -> Result<()> {
    let ok = fingerprint.len() == 64
        && fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            detail: "a key fingerprint is 64 lower-case hex digits (SHA-256)".to_owned(),
        })
    }
}

/// Registers a public key for the tenant's principal. `Conflict { what: "principal key" }` if
/// the tenant already has a key with this fingerprint, revoked or not (the caller's transaction
/// stays usable); `NotFound` if the tenant has no such principal; `Invalid` if the fingerprint
/// is not 64 lower-case hex digits.
pub async fn add<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    principal_id: uuid::Uuid,
    algorithm: &str,
    spki_der: &[u8],
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<PrincipalKey> {
    check_fingerprint(fingerprint)?;
    if principals::get(c, tenant, principal_id).await?.is_none() {
        return Err(StoreError::NotFound { what: "principal" });
    }
    let model = t::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant.0,
        principal_id,
        algorithm: algorithm.to_owned(),
        public_key_der: spki_der.to_vec(),
        fingerprint: fingerprint.to_owned(),
        created_at: truncate_ts(now),
        revoked_at: None,
    };
    let inserted = t::Entity::insert(model.clone().into_active_model())
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Fingerprint])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(inserted) == 0 {
        return Err(StoreError::Conflict {
            what: "principal key",
        });
    }
    Ok(model.into())
}

/// The tenant's key `key_id`, revoked or not.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    key_id: uuid::Uuid,
) -> Result<Option<PrincipalKey>> {
    let row = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(key_id))
        .one(c)
        .await?;
    Ok(row.map(PrincipalKey::from))
}

/// The principal's keys that are not revoked, oldest first (ties by id).
pub async fn active_for<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    principal_id: uuid::Uuid,
) -> Result<Vec<PrincipalKey>> {
    let rows = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::PrincipalId.eq(principal_id))
        .filter(t::Column::RevokedAt.is_null())
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .all(c)
        .await?;
    Ok(rows.into_iter().map(PrincipalKey::from).collect())
}

/// All the principal's keys, revoked ones too, oldest first (ties by id): the history an
/// operator reads, where [`active_for`] is what approvals are checked against.
pub async fn all_for<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    principal_id: uuid::Uuid,
) -> Result<Vec<PrincipalKey>> {
    let rows = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::PrincipalId.eq(principal_id))
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .all(c)
        .await?;
    Ok(rows.into_iter().map(PrincipalKey::from).collect())
}

/// Revokes the tenant's key `key_id` at `now`; true if it changed, false if it was revoked
/// already (the first revocation time stays). `NotFound` if the tenant has no such key.
pub async fn revoke<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    key_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = t::Entity::update_many()
        .col_expr(t::Column::RevokedAt, Expr::value(Some(truncate_ts(now))))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Id.eq(key_id))
        .filter(t::Column::RevokedAt.is_null())
        .exec(c)
        .await?;
    if res.rows_affected == 1 {
        return Ok(true);
    }
    match get(c, tenant, key_id).await? {
        Some(_) => Ok(false),
        None => Err(StoreError::NotFound {
            what: "principal key",
        }),
    }
}
