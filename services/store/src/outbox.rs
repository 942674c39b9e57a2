//! The transactional outbox: every state change appends an event in the same transaction; the
//! notification role relays them (at least once, de-duplicated by event id).
//!
//! Event ids are UUIDv7 built from the event's `created_at` (not the wall clock) with a
//! process-wide monotonic counter, so ids sort by time and, within one millisecond, by append
//! order.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::entity::outbox as t;
use crate::{Result, StoreError, TenantId, truncate_ts};

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// UUIDv7 event id (de-duplication key for consumers).
    pub id: Uuid,
    /// Owner.
    pub tenant_id: TenantId,
    /// Dotted event name, e.g. `ca.issue`.
    pub event_type: String,
    /// Id of the thing that changed (a serial, a CA id, …).
    pub aggregate_id: String,
    /// Event body.
    pub payload: serde_json::Value,
    /// When the change happened.
    pub created_at: DateTime<Utc>,
    /// When the relay published it.
    pub published_at: Option<DateTime<Utc>>,
}

/// An event to append with [`append_many`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Owner.
    pub tenant_id: TenantId,
    /// Dotted event name.
    pub event_type: String,
    /// Id of the thing that changed.
    pub aggregate_id: String,
    /// Event body.
    pub payload: serde_json::Value,
    /// When the change happened.
    pub created_at: DateTime<Utc>,
}

/// A UUIDv7 for an event created at `at`.
pub fn event_id(at: DateTime<Utc>) -> Uuid {
    crate::time_ordered_id(at)
}

fn to_model(e: &NewEvent) -> t::Model {
    let created_at = truncate_ts(e.created_at);
    t::Model {
        id: event_id(created_at),
        tenant_id: e.tenant_id.0,
        event_type: e.event_type.clone(),
        aggregate_id: e.aggregate_id.clone(),
        payload: e.payload.to_string(),
        created_at,
        published_at: None,
    }
}

/// Appends one event; returns its id.
pub async fn append<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    event_type: &str,
    aggregate_id: &str,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<Uuid> {
    let model = to_model(&NewEvent {
        tenant_id: tenant,
        event_type: event_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        payload,
        created_at: now,
    });
    let id = model.id;
    t::Entity::insert(model.into_active_model())
        .exec_without_returning(c)
        .await?;
    Ok(id)
}

/// Appends many events with one multi-row `INSERT` per 1000 events (group commit).
pub async fn append_many<C: ConnectionTrait>(c: &C, events: &[NewEvent]) -> Result<()> {
    for chunk in events.chunks(1000) {
        let rows = chunk.iter().map(|e| to_model(e).into_active_model());
        t::Entity::insert_many(rows)
            .exec_without_returning(c)
            .await?;
    }
    Ok(())
}

/// Up to `limit` of the tenant's events, optionally of one type, oldest first.
pub async fn list<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    event_type: Option<&str>,
    limit: u64,
) -> Result<Vec<Event>> {
    let mut q = t::Entity::find().filter(t::Column::TenantId.eq(tenant.0));
    if let Some(ty) = event_type {
        q = q.filter(t::Column::EventType.eq(ty));
    }
    let rows = q
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .limit(limit)
        .all(c)
        .await?;
    rows.into_iter().map(from_model).collect()
}

/// The tenant's event `id`.
pub async fn get<C: ConnectionTrait>(c: &C, tenant: TenantId, id: Uuid) -> Result<Option<Event>> {
    t::Entity::find_by_id(id)
        .filter(t::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(from_model)
        .transpose()
}

/// Up to `limit` of the tenant's events not yet relayed, oldest first. Run it in the
/// transaction that marks them with [`mark_published`]: on PostgreSQL the rows are locked
/// `FOR UPDATE SKIP LOCKED`, so a second relay skips them instead of relaying them twice.
pub async fn unpublished<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    limit: u64,
) -> Result<Vec<Event>> {
    t::Entity::find()
        .filter(t::Column::TenantId.eq(tenant.0))
        .filter(t::Column::PublishedAt.is_null())
        .order_by_asc(t::Column::CreatedAt)
        .order_by_asc(t::Column::Id)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(c)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// The tenant's events not relayed yet: how many, and when the oldest was appended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events not relayed yet.
    pub pending: u64,
    /// `created_at` of the oldest of them; `None` when there are none.
    pub oldest: Option<DateTime<Utc>>,
}

/// The tenant's [`Backlog`], read without locking anything (for the outbox lag gauges).
pub async fn backlog<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<Backlog> {
    let unpublished = || {
        t::Entity::find()
            .filter(t::Column::TenantId.eq(tenant.0))
            .filter(t::Column::PublishedAt.is_null())
    };
    let pending = sea_orm::PaginatorTrait::count(unpublished(), c).await?;
    let oldest = unpublished()
        .select_only()
        .column(t::Column::CreatedAt)
        .order_by_asc(t::Column::CreatedAt)
        .limit(1)
        .into_tuple()
        .one(c)
        .await?;
    Ok(Backlog { pending, oldest })
}

/// Marks events `ids` relayed at `now`.
pub async fn mark_published<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in ids.chunks(500) {
        t::Entity::update_many()
            .col_expr(t::Column::PublishedAt, Expr::value(Some(truncate_ts(now))))
            .filter(t::Column::TenantId.eq(tenant.0))
            .filter(t::Column::Id.is_in(chunk.iter().copied()))
            .exec(c)
            .await?;
    }
    Ok(())
}

fn from_model(m: t::Model) -> Result<Event> {
    let payload = serde_json::from_str(&m.payload).map_err(|e| StoreError::Corrupt {
        detail: format!("outbox payload: {e}"),
    })?;
    Ok(Event {
        id: m.id,
        tenant_id: TenantId(m.tenant_id),
        event_type: m.event_type,
        aggregate_id: m.aggregate_id,
        payload,
        created_at: m.created_at,
        published_at: m.published_at,
    })
}
