//! Leases: named, expiring locks that let one server of many run a periodic job (the CRL
//! publisher, say) while the others stand by and take over when it stops renewing.
//!
//! The `leases` table is global, not a tenant table: these calls take no tenant and work on the
//! bare pool ([`crate::Store::conn`]) as well as inside any transaction. Every change is one
//! conditional statement whose row count says who won, so two servers racing for a lease
//! cannot both get it, on either backend.
//!
//! A lease is only as good as the clocks of the servers that pass `now`: keep the TTL well
//! above the skew between them and renew well before it runs out.

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect,
};

use crate::entity::leases as t;
use crate::{Result, StoreError, truncate_ts};

/// Makes `holder` the holder of lease `name` until `now + ttl` if it can: creates the lease
/// when there is none, takes it over when it expired (`expires_at <= now`), renews it when
/// `holder` already holds it. Returns `false`, changing nothing, while someone else holds an
/// unexpired lease. `Invalid` if `ttl` is not positive.
pub async fn try_acquire<C: ConnectionTrait>(
    c: &C,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<bool> {
    if ttl <= Duration::zero() {
        return Err(StoreError::Invalid {
            detail: format!("lease ttl must be positive, got {ttl}"),
        });
    }
    let now = truncate_ts(now);
    let expires_at = now
        .checked_add_signed(ttl)
        .map(truncate_ts)
        .ok_or_else(|| StoreError::Invalid {
            detail: format!("lease ttl out of range: {ttl}"),
        })?;
    // Renewal keeps the original acquisition time; a takeover starts a new one. The CASE reads
    // the row as it was before this update.
    let acquired_at = Expr::case(
        t::Column::Holder.eq(holder),
        Expr::col(t::Column::AcquiredAt),
    )
    .finally(Expr::value(now));
    let taken = t::Entity::update_many()
        .col_expr(t::Column::AcquiredAt, acquired_at.into())
        .col_expr(t::Column::Holder, Expr::value(holder))
        .col_expr(t::Column::ExpiresAt, Expr::value(expires_at))
        .filter(t::Column::Name.eq(name))
        .filter(
            t::Column::Holder
                .eq(holder)
                .or(t::Column::ExpiresAt.lte(now)),
        )
        .exec(c)
        .await?;
    if taken.rows_affected == 1 {
        return Ok(true);
    }
    let lease = t::Model {
        name: name.to_owned(),
        holder: holder.to_owned(),
        expires_at,
        acquired_at: now,
    };
    let created = t::Entity::insert(lease.into_active_model())
        .on_conflict_do_nothing_on([t::Column::Name])
        .exec_without_returning(c)
        .await?;
    // No row: the lease exists and is someone else's (or just became so).
    Ok(crate::inserted_rows(created) == 1)
}

/// Gives up lease `name` if `holder` holds it (expired or not); does nothing otherwise.
pub async fn release<C: ConnectionTrait>(c: &C, name: &str, holder: &str) -> Result<()> {
    t::Entity::delete_many()
        .filter(t::Column::Name.eq(name))
        .filter(t::Column::Holder.eq(holder))
        .exec(c)
        .await?;
    Ok(())
}

/// Who holds lease `name` at `now`; `None` if nobody does or the lease expired.
pub async fn holder<C: ConnectionTrait>(
    c: &C,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    Ok(t::Entity::find()
        .select_only()
        .column(t::Column::Holder)
        .filter(t::Column::Name.eq(name))
        .filter(t::Column::ExpiresAt.gt(truncate_ts(now)))
        .into_tuple::<String>()
        .one(c)
        .await?)
}
