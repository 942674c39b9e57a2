//! Published CRLs, per tenant: the latest CRL of each CA key (`generation`) and shard, and the
//! CRL numbers handed out per CA.
//!
//! RFC 5280 §5.2.3 wants CRL numbers monotonically increasing per issuer. [`next_number`]
//! draws them from one counter per CA, shared by all its generations and shards, and
//! [`upsert`] never replaces a CRL with one whose number is not higher, so a slow publisher
//! cannot overwrite a newer CRL with an older one.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use crate::entity::{crl_counters as counter, crls as t};
use crate::{CaId, Result, StoreError, TenantId, to_i32, to_i64, to_u32, to_u64, truncate_ts};

/// A stored CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlRecord {
    /// Owner.
    pub tenant_id: TenantId,
    /// The issuing CA.
    pub ca_id: CaId,
    /// The CA's generation (key) that signed it.
    pub generation: u32,
    /// The shard of that key's revocations it lists.
    pub shard: u32,
    /// The cRLNumber, from [`next_number`].
    pub number: u64,
    /// thisUpdate (microsecond precision).
    pub this_update: DateTime<Utc>,
    /// nextUpdate (microsecond precision).
    pub next_update: DateTime<Utc>,
    /// The signed CRL, DER.
    pub der: Vec<u8>,
    /// Lowercase hex SHA-256 of the DER (ETag).
    pub sha256: String,
    /// How many entries it lists.
    pub entries: u64,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// A stored CRL without its DER, for listings and freshness checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlHead {
    /// The issuing CA.
    pub ca_id: CaId,
    /// The CA's generation that signed it.
    pub generation: u32,
    /// The shard.
    pub shard: u32,
    /// The cRLNumber.
    pub number: u64,
    /// thisUpdate.
    pub this_update: DateTime<Utc>,
    /// nextUpdate.
    pub next_update: DateTime<Utc>,
    /// Lowercase hex SHA-256 of the DER.
    pub sha256: String,
    /// How many entries it lists.
    pub entries: u64,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// How often [`next_number`] tries the update-or-create dance before giving up. Two rounds
/// always suffice (counters are never deleted); the third is slack.
const NEXT_NUMBER_ATTEMPTS: usize = 3;

/// The next CRL number of the tenant's CA `ca`: increments its counter, creating it at 1, and
/// returns the new value. Strictly increasing across callers: on PostgreSQL the counter's row
/// lock makes concurrent transactions take turns (each waits until the one before commits or
/// rolls back), on SQLite the database write lock does. A number drawn in a transaction that
/// rolls back is handed out again; one drawn and not used leaves a gap, which RFC 5280 allows.
pub async fn next_number<C: ConnectionTrait>(c: &C, tenant: TenantId, ca: CaId) -> Result<u64> {
    for _ in 0..NEXT_NUMBER_ATTEMPTS {
        if let Some(n) = increment(c, tenant, ca).await? {
            return to_u64(n, "crl number");
        }
        let first = counter::Model {
            id: uuid::Uuid::new_v4(),
            tenant_id: tenant.0,
            ca_id: ca.0,
            last_number: 1,
        };
        let res = counter::Entity::insert(first.into_active_model())
            .on_conflict_do_nothing_on([counter::Column::TenantId, counter::Column::CaId])
            .exec_without_returning(c)
            .await?;
        if crate::inserted_rows(res) == 1 {
            return Ok(1);
        }
        // Someone else created it meanwhile: their row is committed now, increment it.
    }
    Err(StoreError::Conflict {
        what: "crl counter",
    })
}

/// `UPDATE … SET last_number = last_number + 1 … RETURNING last_number`: one statement, so the
/// read is the value this call wrote. `None` when the counter does not exist yet.
async fn increment<C: ConnectionTrait>(c: &C, tenant: TenantId, ca: CaId) -> Result<Option<i64>> {
    let stmt = Query::update()
        .table(counter::Entity)
        .value(
            counter::Column::LastNumber,
            Expr::col(counter::Column::LastNumber).add(1),
        )
        .and_where(Expr::col(counter::Column::TenantId).eq(tenant.0))
        .and_where(Expr::col(counter::Column::CaId).eq(ca.0))
        .returning_col(counter::Column::LastNumber)
        .to_owned();
    match c.query_one(&stmt).await? {
        Some(row) => Ok(Some(row.try_get::<i64>("", "last_number")?)),
        None => Ok(None),
    }
}

fn to_model(rec: &CrlRecord) -> Result<t::Model> {
    Ok(t::Model {
        id: uuid::Uuid::new_v4(),
        tenant_id: rec.tenant_id.0,
        ca_id: rec.ca_id.0,
        generation: to_i32(rec.generation, "crl generation")?,
        shard: to_i32(rec.shard, "crl shard")?,
        number: to_i64(rec.number, "crl number")?,
        this_update: truncate_ts(rec.this_update),
        next_update: truncate_ts(rec.next_update),
        der: rec.der.clone(),
        sha256: rec.sha256.clone(),
        entries: to_i64(rec.entries, "crl entries")?,
        created_at: truncate_ts(rec.created_at),
    })
}

fn from_model(m: t::Model) -> Result<CrlRecord> {
    Ok(CrlRecord {
        tenant_id: TenantId(m.tenant_id),
        ca_id: CaId(m.ca_id),
        generation: to_u32(m.generation, "crl generation")?,
        shard: to_u32(m.shard, "crl shard")?,
        number: to_u64(m.number, "crl number")?,
        this_update: m.this_update,
        next_update: m.next_update,
        der: m.der,
        sha256: m.sha256,
        entries: to_u64(m.entries, "crl entries")?,
        created_at: m.created_at,
    })
}

fn from_head(h: t::Head) -> Result<CrlHead> {
    Ok(CrlHead {
        ca_id: CaId(h.ca_id),
        generation: to_u32(h.generation, "crl generation")?,
        shard: to_u32(h.shard, "crl shard")?,
        number: to_u64(h.number, "crl number")?,
        this_update: h.this_update,
        next_update: h.next_update,
        sha256: h.sha256,
        entries: to_u64(h.entries, "crl entries")?,
        created_at: h.created_at,
    })
}

/// Stores `rec` as the CRL of its (tenant, CA, generation, shard), replacing the one there only
/// if `rec.number` is higher. `Conflict { what: "crl" }` if the stored CRL's number is equal or
/// higher (a newer CRL got there first); the caller's transaction stays usable. One statement
/// (`INSERT … ON CONFLICT DO UPDATE … WHERE crls.number < excluded.number`), so racing
/// publishers cannot interleave.
pub async fn upsert<C: ConnectionTrait>(c: &C, rec: &CrlRecord) -> Result<()> {
    use t::Column as Col;
    let newer =
        Expr::col((t::Entity, Col::Number)).lt(Expr::col((Alias::new("excluded"), Col::Number)));
    let on_conflict = OnConflict::columns([Col::TenantId, Col::CaId, Col::Generation, Col::Shard])
        .update_columns([
            Col::Number,
            Col::ThisUpdate,
            Col::NextUpdate,
            Col::Der,
            Col::Sha256,
            Col::Entries,
            Col::CreatedAt,
        ])
        .action_and_where(newer)
        .to_owned();
    let written = t::Entity::insert(to_model(rec)?.into_active_model())
        .on_conflict(on_conflict)
        .exec_without_returning(c)
        .await?;
    if written == 0 {
        return Err(StoreError::Conflict { what: "crl" });
    }
    Ok(())
}

/// The tenant's CRL of `ca`'s key `generation` and `shard`, DER included.
pub async fn get<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: CaId,
    generation: u32,
    shard: u32,
) -> Result<Option<CrlRecord>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::CaId.eq(ca.0))
        .filter(t::Column::Generation.eq(to_i32(generation, "crl generation")?))
        .filter(t::Column::Shard.eq(to_i32(shard, "crl shard")?))
        .one(c)
        .await?
        .map(from_model)
        .transpose()
}

/// Like [`get`], without the DER.
pub async fn head<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: CaId,
    generation: u32,
    shard: u32,
) -> Result<Option<CrlHead>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::CaId.eq(ca.0))
        .filter(t::Column::Generation.eq(to_i32(generation, "crl generation")?))
        .filter(t::Column::Shard.eq(to_i32(shard, "crl shard")?))
        .into_partial_model::<t::Head>()
        .one(c)
        .await?
        .map(from_head)
        .transpose()
}

/// Every CRL of the tenant without its DER, ordered by `(ca_id, generation, shard)`.
pub async fn heads<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<Vec<CrlHead>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .order_by_asc(t::Column::CaId)
        .order_by_asc(t::Column::Generation)
        .order_by_asc(t::Column::Shard)
        .into_partial_model::<t::Head>()
        .all(c)
        .await?
        .into_iter()
        .map(from_head)
        .collect()
}
