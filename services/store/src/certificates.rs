//! Issued certificates, per tenant, keyed by serial, listed with keyset pagination.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use crate::entity::certificates as t;
use crate::{CaId, Result, StoreError, TenantId, to_i32, to_u32, truncate_ts};

/// Rows per statement in [`insert_many`]; keeps bind parameters under both backends' limits.
const INSERT_CHUNK: usize = 1000;
/// The largest page [`list`] returns.
pub const MAX_PAGE: u64 = 1000;

/// An issued certificate as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Owner.
    pub tenant_id: TenantId,
    /// Serial number, unique per tenant (lowercase hex by convention).
    pub serial: String,
    /// The CA that signed it (not necessarily a row of `cas`: external CAs have none).
    pub issuer_ca_id: CaId,
    /// Profile it was issued under.
    pub profile_name: String,
    /// Version of that profile.
    pub profile_version: u32,
    /// Subject DN.
    pub subject: String,
    /// Subject alternative names.
    pub sans: Vec<String>,
    /// Start of validity (truncated to microseconds on write).
    pub not_before: DateTime<Utc>,
    /// End of validity (truncated to microseconds on write).
    pub not_after: DateTime<Utc>,
    /// Lowercase hex SHA-256 of the DER.
    pub fingerprint_sha256: String,
    /// The certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The chain up to (not including) the root, PEM.
    pub chain_pem: String,
    /// When it was stored; the pagination key with `serial` (truncated to microseconds).
    pub created_at: DateTime<Utc>,
    /// The CRL shard its revocation would be listed in, among the CRLs of its issuer's key
    /// (0 when the issuer publishes one CRL; 0 for certificates stored before shards existed).
    pub crl_shard: u32,
}

/// What [`list_filtered`] narrows a listing to; every `None` field matches all rows, so
/// `CertificateFilter::default()` lists like [`list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateFilter {
    /// Only certificates signed by this CA.
    pub issuer_ca_id: Option<CaId>,
    /// Only certificates issued under this profile (any version).
    pub profile_name: Option<String>,
    /// Only certificates stored at or after this instant (`created_at >= t`).
    pub issued_after: Option<DateTime<Utc>>,
    /// Only certificates stored before this instant (`created_at < t`).
    pub issued_before: Option<DateTime<Utc>>,
}

/// A position in a [`list`]: the last row of the previous page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// `created_at` of the last row returned.
    pub created_at: DateTime<Utc>,
    /// `serial` of the last row returned.
    pub serial: String,
}

impl Cursor {
    /// An opaque, URL-safe token for this position.
    pub fn encode(&self) -> String {
        let raw = format!("1:{}:{}", self.created_at.timestamp_micros(), self.serial);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses a token from [`Cursor::encode`]; `Invalid` on anything else.
    pub fn decode(s: &str) -> Result<Cursor> {
        let invalid = || StoreError::Invalid {
            detail: "malformed page token".to_owned(),
        };
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
        let raw = String::from_utf8(raw).map_err(|_| invalid())?;
        let rest = raw.strip_prefix("1:").ok_or_else(invalid)?;
        let (micros, serial) = rest.split_once(':').ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
        if serial.is_empty() {
            return Err(invalid());
        }
        Ok(Cursor {
            created_at,
            serial: serial.to_owned(),
        })
    }
}

fn to_model(rec: &CertificateRecord) -> Result<t::Model> {
    Ok(t::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: rec.tenant_id.0,
        serial: rec.serial.clone(),
        issuer_ca_id: rec.issuer_ca_id.0,
        profile_name: rec.profile_name.clone(),
        profile_version: to_i32(rec.profile_version, "profile version")?,
        subject: rec.subject.clone(),
        sans: serde_json::to_string(&rec.sans).map_err(|e| StoreError::Invalid {
            detail: format!("sans: {e}"),
        })?,
        not_before: truncate_ts(rec.not_before),
        not_after: truncate_ts(rec.not_after),
        fingerprint_sha256: rec.fingerprint_sha256.clone(),
        certificate_der: rec.certificate_der.clone(),
        chain_pem: rec.chain_pem.clone(),
        created_at: truncate_ts(rec.created_at),
        crl_shard: to_i32(rec.crl_shard, "crl shard")?,
    })
}

fn from_model(m: t::Model) -> Result<CertificateRecord> {
    let sans = serde_json::from_str(&m.sans).map_err(|e| StoreError::Corrupt {
        detail: format!("certificate sans: {e}"),
    })?;
    Ok(CertificateRecord {
        tenant_id: TenantId(m.tenant_id),
        serial: m.serial,
        issuer_ca_id: CaId(m.issuer_ca_id),
        profile_name: m.profile_name,
        profile_version: to_u32(m.profile_version, "profile version")?,
        subject: m.subject,
        sans,
        not_before: m.not_before,
        not_after: m.not_after,
        fingerprint_sha256: m.fingerprint_sha256,
        certificate_der: m.certificate_der,
        chain_pem: m.chain_pem,
        created_at: m.created_at,
        crl_shard: to_u32(m.crl_shard, "crl shard")?,
    })
}

/// Stores one certificate. `Conflict { what: "certificate" }` if the tenant already has this
/// serial; the caller's transaction stays usable (`ON CONFLICT DO NOTHING`).
pub async fn insert<C: ConnectionTrait>(c: &C, rec: &CertificateRecord) -> Result<()> {
    let res = t::Entity::insert(to_model(rec)?.into_active_model())
        .on_conflict_do_nothing_on([t::Column::TenantId, t::Column::Serial])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(res) == 0 {
        return Err(StoreError::Conflict {
            what: "certificate",
        });
    }
    Ok(())
}

/// Stores many certificates with multi-row `INSERT`s (one per 1000 rows), for group commit.
///
/// All or nothing per statement: a duplicate serial fails the statement with
/// `Conflict { what: "certificate" }`. On PostgreSQL that also aborts the surrounding
/// transaction, which the caller must roll back (run it in a transaction if the batch spans
/// several statements).
pub async fn insert_many<C: ConnectionTrait>(c: &C, recs: &[CertificateRecord]) -> Result<()> {
    for chunk in recs.chunks(INSERT_CHUNK) {
        let models = chunk
            .iter()
            .map(|r| to_model(r).map(IntoActiveModel::into_active_model))
            .collect::<Result<Vec<_>>>()?;
        t::Entity::insert_many(models)
            .exec_without_returning(c)
            .await
            .map_err(|e| StoreError::from_insert(e, "certificate"))?;
    }
    Ok(())
}

/// The tenant's certificate with this serial.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    serial: &str,
) -> Result<Option<CertificateRecord>> {
    let row = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Serial.eq(serial))
        .one(c)
        .await?;
    row.map(from_model).transpose()
}

/// One page of the tenant's certificates, ordered by `(created_at, serial)`, starting after
/// `after`. Returns the next cursor, `None` on the last page. `limit` must be 1..=[`MAX_PAGE`].
pub async fn list<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    limit: u64,
    after: Option<&Cursor>,
) -> Result<(Vec<CertificateRecord>, Option<Cursor>)> {
    list_filtered(c, tenant, &CertificateFilter::default(), limit, after).await
}

/// Like [`list`], over the tenant's certificates that match `filter` only: same order, same
/// cursors (a cursor is only meaningful with the filter it was made under).
pub async fn list_filtered<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    filter: &CertificateFilter,
    limit: u64,
    after: Option<&Cursor>,
) -> Result<(Vec<CertificateRecord>, Option<Cursor>)> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(StoreError::Invalid {
            detail: format!("page size must be between 1 and {MAX_PAGE}"),
        });
    }
    let mut q = t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(filter_condition(filter));
    if let Some(cur) = after {
        let at = truncate_ts(cur.created_at);
        q = q.filter(
            Condition::any().add(t::Column::CreatedAt.gt(at)).add(
                Condition::all()
                    .add(t::Column::CreatedAt.eq(at))
                    .add(t::Column::Serial.gt(cur.serial.as_str())),
            ),
        );
    }
    // One extra row tells whether another page follows.
    let mut rows = q
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Serial)
        .limit(limit + 1)
        .all(c)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let page = rows
        .into_iter()
        .map(from_model)
        .collect::<Result<Vec<_>>>()?;
    let next = match page.last() {
        Some(last) if more => Some(Cursor {
            created_at: last.created_at,
            serial: last.serial.clone(),
        }),
        _ => None,
    };
    Ok((page, next))
}

/// The `WHERE` terms of a [`CertificateFilter`] (empty: all rows).
fn filter_condition(filter: &CertificateFilter) -> Condition {
    let CertificateFilter {
        issuer_ca_id,
        profile_name,
        issued_after,
        issued_before,
    } = filter;
    Condition::all()
        .add_option(issuer_ca_id.map(|ca| t::Column::IssuerCaId.eq(ca.0)))
        .add_option(
            profile_name
                .as_deref()
                .map(|name| t::Column::ProfileName.eq(name)),
        )
        .add_option(issued_after.map(|at| t::Column::CreatedAt.gte(ceil_micros(at))))
        .add_option(issued_before.map(|at| t::Column::CreatedAt.lt(ceil_micros(at))))
}

/// `t` rounded up to whole microseconds. Stored times are whole microseconds, so against
/// them `>= t` and `< t` mean the same as against the rounded-up bound, and both backends
/// compare alike (PostgreSQL would truncate the parameter, SQLite compare the text).
fn ceil_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let down = truncate_ts(t);
    if down == t {
        t
    } else {
        down + chrono::Duration::microseconds(1)
    }
}

/// The highest CRL shard among the tenant's certificates signed by `ca` (any key generation),
/// `None` if it signed none: how many shards the CA's CRLs have to cover.
pub async fn max_crl_shard<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: CaId,
) -> Result<Option<u32>> {
    let max: Option<Option<i32>> = t::Entity::find()
        .select_only()
        .column_as(
            Expr::from(Func::max(Expr::col(t::Column::CrlShard))),
            "max_shard",
        )
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::IssuerCaId.eq(ca.0))
        .into_tuple()
        .one(c)
        .await?;
    max.flatten().map(|m| to_u32(m, "crl shard")).transpose()
}

/// How many certificates the tenant has.
pub async fn count<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<u64> {
    Ok(t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .count(c)
        .await?)
}

/// The tenant's certificates whose notAfter lies in `[from, to]`, soonest first, at most
/// `limit` (what the expiry watcher reads).
pub async fn expiring<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<CertificateRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::NotAfter.gte(truncate_ts(from)))
        .filter(t::Column::NotAfter.lte(truncate_ts(to)))
        .order_by_asc(t::Column::NotAfter)
        .order_by_asc(t::Column::Serial)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Whether the tenant has a certificate for the same subject and names as `rec` that expires
/// after it: `rec` was renewed (or replaced), so it is not worth an alert.
pub async fn has_successor<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    rec: &CertificateRecord,
) -> Result<bool> {
    let sans = serde_json::to_string(&rec.sans).unwrap_or_default();
    Ok(t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::Subject.eq(rec.subject.as_str()))
        .filter(t::Column::Sans.eq(sans))
        .filter(t::Column::NotAfter.gt(truncate_ts(rec.not_after)))
        .one(c)
        .await?
        .is_some())
}
