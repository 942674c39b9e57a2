//! Revoked certificates, per tenant, keyed by serial: what CRLs and OCSP answer from.
//!
//! A serial is revoked at most once (the row is unique per tenant); every later change is a
//! compare-and-set on the row's status and reason, so of two racing writers exactly one
//! changes it and the other learns so from the returned `false`:
//! - a `certificateHold` can be escalated to a final reason ([`escalate_hold`]) or lifted
//!   ([`lift_hold`]; the row stays, with status [`STATUS_LIFTED`]);
//! - a lifted serial can be revoked again ([`re_revoke_lifted`]).
//!
//! Each row also records which CRL lists it, the issuing CA key (`issuer_ca_id`,
//! `ca_generation`) and the shard, and when the certificate expires, after which CRLs leave it
//! out (RFC 5280 §3.3 allows dropping expired entries). `updated_at` moves with every change:
//! [`last_change`] tells a CRL publisher whether a CRL is stale, [`changed_since`] feeds
//! followers.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::revocations as t;
use crate::{CaId, Result, StoreError, TenantId, to_i32, to_u32, truncate_ts};

/// Status of a serial that is revoked (listed on CRLs, `revoked` in OCSP).
pub const STATUS_REVOKED: &str = "revoked";
/// Status of a serial whose `certificateHold` was lifted: good again.
pub const STATUS_LIFTED: &str = "lifted";
/// The RFC 5280 reason (§5.3.1) of a revocation that may still be lifted.
pub const REASON_CERTIFICATE_HOLD: &str = "certificateHold";

/// Columns of a revocation row, the bind parameters per row of [`insert_many`].
const COLUMNS: usize = 13;
/// Rows per statement in [`insert_many`]: 2000 × 13 = 26 000 bind parameters, under SQLite's
/// 32 766 and PostgreSQL's 65 535.
const INSERT_CHUNK: usize = 2000;
const _: () = assert!(INSERT_CHUNK * COLUMNS <= 32_766);

/// A revocation as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Owner.
    pub tenant_id: TenantId,
    /// The certificate's serial, as in `certificates` (lowercase hex by convention).
    pub serial: String,
    /// The CA that signed the certificate.
    pub issuer_ca_id: CaId,
    /// The generation (key) of that CA that signed it: the CRL of that key lists it.
    pub ca_generation: u32,
    /// The shard among that key's CRLs.
    pub crl_shard: u32,
    /// RFC 5280 reason name, e.g. `keyCompromise` or [`REASON_CERTIFICATE_HOLD`].
    pub reason: String,
    /// Free text from whoever revoked it (not published).
    pub reason_text: String,
    /// [`STATUS_REVOKED`] or [`STATUS_LIFTED`].
    pub status: String,
    /// When it was (last) revoked: the CRL entry's revocationDate.
    pub revoked_at: DateTime<Utc>,
    /// Who revoked it (a principal or subsystem name).
    pub revoked_by: String,
    /// The certificate's notAfter: once past, CRLs leave the entry out.
    pub cert_not_after: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
}

/// A revocation to record with [`insert`], [`insert_many`] or [`re_revoke_lifted`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRevocation {
    /// Owner.
    pub tenant_id: TenantId,
    /// The certificate's serial.
    pub serial: String,
    /// The CA that signed the certificate.
    pub issuer_ca_id: CaId,
    /// The generation of that CA that signed it.
    pub ca_generation: u32,
    /// The certificate's CRL shard.
    pub crl_shard: u32,
    /// RFC 5280 reason name.
    pub reason: String,
    /// Free text.
    pub reason_text: String,
    /// When it is revoked (also the row's `updated_at`).
    pub revoked_at: DateTime<Utc>,
    /// Who revokes it.
    pub revoked_by: String,
    /// The certificate's notAfter.
    pub cert_not_after: DateTime<Utc>,
}

/// One CRL entry, as [`for_crl`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRow {
    /// The serial.
    pub serial: String,
    /// The entry's revocationDate.
    pub revoked_at: DateTime<Utc>,
    /// RFC 5280 reason name.
    pub reason: String,
}

fn to_model(new: &NewRevocation) -> Result<t::Model> {
    let revoked_at = truncate_ts(new.revoked_at);
    Ok(t::Model {
        // Time-ordered: bulk loads append to the primary key index.
        id: crate::time_ordered_id(revoked_at),
        tenant_id: new.tenant_id.0,
        serial: new.serial.clone(),
        issuer_ca_id: new.issuer_ca_id.0,
        ca_generation: to_i32(new.ca_generation, "ca generation")?,
        crl_shard: to_i32(new.crl_shard, "crl shard")?,
        reason: new.reason.clone(),
        reason_text: new.reason_text.clone(),
        status: STATUS_REVOKED.to_owned(),
        revoked_at,
        revoked_by: new.revoked_by.clone(),
        cert_not_after: truncate_ts(new.cert_not_after),
        updated_at: revoked_at,
    })
}

fn from_model(m: t::Model) -> Result<RevocationRecord> {
    Ok(RevocationRecord {
        tenant_id: TenantId(m.tenant_id),
        serial: m.serial,
        issuer_ca_id: CaId(m.issuer_ca_id),
        ca_generation: to_u32(m.ca_generation, "ca generation")?,
        crl_shard: to_u32(m.crl_shard, "crl shard")?,
        reason: m.reason,
        reason_text: m.reason_text,
        status: m.status,
        revoked_at: m.revoked_at,
        revoked_by: m.revoked_by,
        cert_not_after: m.cert_not_after,
        updated_at: m.updated_at,
    })
}

/// The tenant's revocation of this serial, in whatever status.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    serial: &str,
) -> Result<Option<RevocationRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Serial.eq(serial))
        .one(c)
        .await?
        .map(from_model)
        .transpose()
}

/// Records a revocation with status [`STATUS_REVOKED`] and `updated_at = revoked_at`. Returns
/// `false`, changing nothing, if the tenant already has a row for the serial (in any status);
/// the caller's transaction stays usable (`ON CONFLICT DO NOTHING`).
pub async fn insert<C: ConnectionTrait>(c: &C, new: &NewRevocation) -> Result<bool> {
    let res = t::Entity::insert(to_model(new)?.into_active_model())
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Serial])
        .exec_without_returning(c)
        .await?;
    Ok(crate::inserted_rows(res) == 1)
}

/// Records many revocations as [`insert`] does, with multi-row `INSERT`s of up to 2000 rows
/// (bulk loads, benchmarks). All or nothing per statement: a serial the tenant already has
/// fails the statement with `Conflict { what: "revocation" }`, which on PostgreSQL also aborts
/// the surrounding transaction.
pub async fn insert_many<C: ConnectionTrait>(c: &C, rows: &[NewRevocation]) -> Result<()> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let models = chunk
            .iter()
            .map(|r| to_model(r).map(IntoActiveModel::into_active_model))
            .collect::<Result<Vec<_>>>()?;
        t::Entity::insert_many(models)
            .exec_without_returning(c)
            .await
            .map_err(|e| StoreError::from_insert(e, "revocation"))?;
    }
    Ok(())
}

/// Revokes a serial again whose hold was lifted: only if its row is [`STATUS_LIFTED`], sets it
/// back to [`STATUS_REVOKED`] with `new`'s reason, reason text, revocation time and revoker
/// (`updated_at = new.revoked_at`). The CA key, shard and expiry stay as first recorded.
/// Returns whether a row changed.
pub async fn re_revoke_lifted<C: ConnectionTrait>(c: &C, new: &NewRevocation) -> Result<bool> {
    let revoked_at = truncate_ts(new.revoked_at);
    let res = t::Entity::update_many()
        .col_expr(t::Column::Status, Expr::value(STATUS_REVOKED))
        .col_expr(t::Column::Reason, Expr::value(new.reason.as_str()))
        .col_expr(t::Column::ReasonText, Expr::value(new.reason_text.as_str()))
        .col_expr(t::Column::RevokedAt, Expr::value(revoked_at))
        .col_expr(t::Column::RevokedBy, Expr::value(new.revoked_by.as_str()))
        .col_expr(t::Column::UpdatedAt, Expr::value(revoked_at))
        .filter(t::Column::TenantId.eq(new.tenant_id.0))
        .filter(t::Column::Serial.eq(new.serial.as_str()))
        .filter(t::Column::Status.eq(STATUS_LIFTED))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Replaces a hold with a final reason: only if the serial is [`STATUS_REVOKED`] with reason
/// [`REASON_CERTIFICATE_HOLD`], sets `reason`, `reason_text`, `revoked_by` and
/// `updated_at = now`. The revocation time stays that of the hold (RFC 5280 §5.3.2 lets the
/// invalidity date say otherwise). Returns whether a row changed.
pub async fn escalate_hold<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    serial: &str,
    reason: &str,
    reason_text: &str,
    revoked_by: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = t::Entity::update_many()
        .col_expr(t::Column::Reason, Expr::value(reason))
        .col_expr(t::Column::ReasonText, Expr::value(reason_text))
        .col_expr(t::Column::RevokedBy, Expr::value(revoked_by))
        .col_expr(t::Column::UpdatedAt, Expr::value(truncate_ts(now)))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Serial.eq(serial))
        .filter(t::Column::Status.eq(STATUS_REVOKED))
        .filter(t::Column::Reason.eq(REASON_CERTIFICATE_HOLD))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Lifts a hold: only if the serial is [`STATUS_REVOKED`] with reason
/// [`REASON_CERTIFICATE_HOLD`], sets [`STATUS_LIFTED`] and `updated_at = now` (the reason and
/// revocation time stay, as history). Returns whether a row changed.
pub async fn lift_hold<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    serial: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = t::Entity::update_many()
        .col_expr(t::Column::Status, Expr::value(STATUS_LIFTED))
        .col_expr(t::Column::UpdatedAt, Expr::value(truncate_ts(now)))
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Serial.eq(serial))
        .filter(t::Column::Status.eq(STATUS_REVOKED))
        .filter(t::Column::Reason.eq(REASON_CERTIFICATE_HOLD))
        .exec(c)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The entries of one CRL: the tenant's serials revoked under `ca`'s key `generation` in
/// `shard`, still [`STATUS_REVOKED`], whose certificates have not expired at `now`. In no
/// particular order. Reads three columns only (by the `idx_revocations_crl` index), as CRLs may
/// have a million entries.
pub async fn for_crl<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: CaId,
    generation: u32,
    shard: u32,
    now: DateTime<Utc>,
) -> Result<Vec<CrlRow>> {
    let rows: Vec<(String, DateTime<Utc>, String)> = t::Entity::find()
        .select_only()
        .column(t::Column::Serial)
        .column(t::Column::RevokedAt)
        .column(t::Column::Reason)
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::IssuerCaId.eq(ca.0))
        .filter(t::Column::CaGeneration.eq(to_i32(generation, "ca generation")?))
        .filter(t::Column::CrlShard.eq(to_i32(shard, "crl shard")?))
        .filter(t::Column::Status.eq(STATUS_REVOKED))
        .filter(t::Column::CertNotAfter.gt(truncate_ts(now)))
        .into_tuple()
        .all(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(serial, revoked_at, reason)| CrlRow {
            serial,
            revoked_at,
            reason,
        })
        .collect())
}

/// The latest `updated_at` among the tenant's revocations under `ca`'s key `generation` in
/// `shard`, in any status (a lifted hold changes the CRL too); `None` if there are none. A CRL
/// built after this instant is current.
pub async fn last_change<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: CaId,
    generation: u32,
    shard: u32,
) -> Result<Option<DateTime<Utc>>> {
    let max: Option<Option<DateTime<Utc>>> = t::Entity::find()
        .select_only()
        .column_as(
            Expr::from(Func::max(Expr::col(t::Column::UpdatedAt))),
            "last_change",
        )
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::IssuerCaId.eq(ca.0))
        .filter(t::Column::CaGeneration.eq(to_i32(generation, "ca generation")?))
        .filter(t::Column::CrlShard.eq(to_i32(shard, "crl shard")?))
        .into_tuple()
        .one(c)
        .await?;
    Ok(max.flatten())
}

/// Up to `limit` of the tenant's revocations that changed after `since` (`updated_at > since`),
/// oldest change first (ties by serial). Pass the last row's `updated_at` to read on; rows
/// that share it with a row beyond `limit` are then skipped, so ask for more than the changes
/// a single instant can carry.
pub async fn changed_since<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    since: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<RevocationRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::UpdatedAt.gt(truncate_ts(since)))
        .order_by_asc(t::Column::UpdatedAt)
        .order_by_asc(t::Column::Serial)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Up to `limit` of the tenant's revocations that changed after the position `(updated_at,
/// serial)`, in that order: a keyset page, so paging on from the last row returned never skips
/// rows that share an instant.
pub async fn changed_after<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    after: (DateTime<Utc>, &str),
    limit: u64,
) -> Result<Vec<RevocationRecord>> {
    let at = truncate_ts(after.0);
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(
            sea_orm::Condition::any()
                .add(t::Column::UpdatedAt.gt(at))
                .add(
                    sea_orm::Condition::all()
                        .add(t::Column::UpdatedAt.eq(at))
                        .add(t::Column::Serial.gt(after.1)),
                ),
        )
        .order_by_asc(t::Column::UpdatedAt)
        .order_by_asc(t::Column::Serial)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}
