//! Notification: channels, rules, deliveries and expiry alerts (m0014).
//!
//! A delivery is one (event, channel) pair, unique, so relaying an event twice queues it once.
//! Senders claim due deliveries with a short lease (`sending` until `claimed_until`): on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two senders never claim the same row; a claim
//! whose sender died runs out and the row is taken again (delivery is at least once).

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::{
    expiry_alerts as a, notification_channels as ch, notification_deliveries as d,
    notification_rules as r,
};
use crate::{Result, StoreError, TenantId, truncate_ts};

/// A delivery channel. `config` is the non-secret settings (JSON); `sealed_secrets` the secret
/// ones, sealed by the notification role (never plaintext here).
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: String,
    pub config: String,
    pub sealed_secrets: Vec<u8>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for ChannelRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("config", &self.config)
            .field(
                "sealed_secrets",
                &format_args!("{} bytes", self.sealed_secrets.len()),
            )
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl From<ch::Model> for ChannelRecord {
    fn from(m: ch::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            name: m.name,
            kind: m.kind,
            config: m.config,
            sealed_secrets: m.sealed_secrets,
            enabled: m.enabled,
            created_by: m.created_by,
            created_at: m.created_at,
        }
    }
}

/// Adds a channel; [`StoreError::Conflict`] if the tenant has one of that name.
pub async fn insert_channel<C: ConnectionTrait>(c: &C, rec: &ChannelRecord) -> Result<()> {
    let row = ch::Model {
        id: rec.id,
        tenant_id: rec.tenant_id.0,
        name: rec.name.clone(),
        kind: rec.kind.clone(),
        config: rec.config.clone(),
        sealed_secrets: rec.sealed_secrets.clone(),
        enabled: rec.enabled,
        created_by: rec.created_by.clone(),
        created_at: truncate_ts(rec.created_at),
    };
    let done = ch::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([ch::Column::TenantId, ch::Column::Name])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(done) == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict { what: "channel" })
    }
}

/// The tenant's channel `id`.
pub async fn get_channel<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<ChannelRecord>> {
    Ok(ch::Entity::find_by_id(id)
        .filter(ch::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(Into::into))
}

/// The tenant's channels by name.
pub async fn list_channels<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<Vec<ChannelRecord>> {
    Ok(ch::Entity::find()
        .filter(ch::Column::TenantId.eq(tenant.0))
        .order_by_asc(ch::Column::Name)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Deletes channel `id` (its deliveries stay, for the log); `NotFound` if there is none.
pub async fn delete_channel<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<()> {
    let done = ch::Entity::delete_many()
        .filter(ch::Column::TenantId.eq(tenant.0))
        .filter(ch::Column::Id.eq(id))
        .exec(c)
        .await?;
    if done.rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound { what: "channel" })
    }
}

/// A routing rule: events whose type matches one of `event_types` go to `channel_ids`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub name: String,
    /// Exact types, `prefix.*` or `*`.
    pub event_types: Vec<String>,
    pub channel_ids: Vec<uuid::Uuid>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<r::Model> for RuleRecord {
    type Error = StoreError;

    fn try_from(m: r::Model) -> Result<Self> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            detail: format!("rule {}: {e}", m.id),
        };
        Ok(Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            event_types: serde_json::from_str(&m.event_types).map_err(corrupt)?,
            channel_ids: serde_json::from_str(&m.channel_ids).map_err(corrupt)?,
            name: m.name,
            enabled: m.enabled,
            created_by: m.created_by,
            created_at: m.created_at,
        })
    }
}

/// Adds a rule; [`StoreError::Conflict`] if the tenant has one of that name.
pub async fn insert_rule<C: ConnectionTrait>(c: &C, rec: &RuleRecord) -> Result<()> {
    let row = r::Model {
        id: rec.id,
        tenant_id: rec.tenant_id.0,
        name: rec.name.clone(),
        event_types: serde_json::json!(rec.event_types).to_string(),
        channel_ids: serde_json::json!(rec.channel_ids).to_string(),
        enabled: rec.enabled,
        created_by: rec.created_by.clone(),
        created_at: truncate_ts(rec.created_at),
    };
    let done = r::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([r::Column::TenantId, r::Column::Name])
        .exec_without_returning(c)
        .await?;
    if crate::inserted_rows(done) == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict { what: "rule" })
    }
}

/// The tenant's rules by name.
pub async fn list_rules<C: ConnectionTrait>(c: &C, tenant: TenantId) -> Result<Vec<RuleRecord>> {
    r::Entity::find()
        .filter(r::Column::TenantId.eq(tenant.0))
        .order_by_asc(r::Column::Name)
        .all(c)
        .await?
        .into_iter()
        .map(RuleRecord::try_from)
        .collect()
}

/// Deletes rule `id`; `NotFound` if there is none.
pub async fn delete_rule<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<()> {
    let done = r::Entity::delete_many()
        .filter(r::Column::TenantId.eq(tenant.0))
        .filter(r::Column::Id.eq(id))
        .exec(c)
        .await?;
    if done.rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound { what: "rule" })
    }
}

/// Delivery states.
pub mod delivery_state {
    /// Waiting for `next_attempt_at`.
    pub const PENDING: &str = "pending";
    /// Claimed by a sender until `claimed_until`.
    pub const SENDING: &str = "sending";
    /// The channel accepted it.
    pub const DELIVERED: &str = "delivered";
    /// Out of attempts, or refused for good: waits for an operator's requeue.
    pub const DEAD: &str = "dead";
    /// Every state.
    pub const ALL: [&str; 4] = [PENDING, SENDING, DELIVERED, DEAD];
}

/// One event for one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: uuid::Uuid,
    pub tenant_id: TenantId,
    pub event_id: uuid::Uuid,
    pub channel_id: uuid::Uuid,
    pub rule_id: uuid::Uuid,
    pub event_type: String,
    /// One of [`delivery_state`].
    pub state: String,
    /// Attempts started (claims).
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub claimed_until: Option<DateTime<Utc>>,
    pub last_error: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<d::Model> for DeliveryRecord {
    fn from(m: d::Model) -> Self {
        Self {
            id: m.id,
            tenant_id: TenantId(m.tenant_id),
            event_id: m.event_id,
            channel_id: m.channel_id,
            rule_id: m.rule_id,
            event_type: m.event_type,
            state: m.state,
            attempts: u32::try_from(m.attempts).unwrap_or(0),
            next_attempt_at: m.next_attempt_at,
            claimed_until: m.claimed_until,
            last_error: m.last_error,
            created_at: m.created_at,
            updated_at: m.updated_at,
            delivered_at: m.delivered_at,
        }
    }
}

/// What to queue: event `event_id` of type `event_type` for `channel_id`, by `rule_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDelivery {
    pub event_id: uuid::Uuid,
    pub channel_id: uuid::Uuid,
    pub rule_id: uuid::Uuid,
    pub event_type: String,
}

/// Queues each delivery due at `now` unless that (event, channel) is queued already; returns
/// how many were new.
pub async fn enqueue<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    new: &[NewDelivery],
    now: DateTime<Utc>,
) -> Result<u64> {
    let now = truncate_ts(now);
    let mut made = 0;
    for n in new {
        let row = d::Model {
            id: crate::time_ordered_id(now),
            tenant_id: tenant.0,
            event_id: n.event_id,
            channel_id: n.channel_id,
            rule_id: n.rule_id,
            event_type: n.event_type.clone(),
            state: delivery_state::PENDING.to_owned(),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: String::new(),
            created_at: now,
            updated_at: now,
            delivered_at: None,
        };
        let done = d::Entity::insert(row.into_active_model())
            .on_conflict_do_nothing_on([
                d::Column::TenantId,
                d::Column::EventId,
                d::Column::ChannelId,
            ])
            .exec_without_returning(c)
            .await?;
        made += crate::inserted_rows(done);
    }
    Ok(made)
}

/// Whether any delivery is due at `now` (what [`claim_due`] would claim), without locking.
pub async fn any_due<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<bool> {
    Ok(d::Entity::find()
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(due_condition(truncate_ts(now)))
        .one(c)
        .await?
        .is_some())
}

fn due_condition(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(
            Condition::all()
                .add(d::Column::State.eq(delivery_state::PENDING))
                .add(d::Column::NextAttemptAt.lte(now)),
        )
        .add(
            Condition::all()
                .add(d::Column::State.eq(delivery_state::SENDING))
                .add(d::Column::ClaimedUntil.lte(now)),
        )
}

/// Claims up to `limit` deliveries due at `now` (pending and due, or sending with a lapsed
/// claim) until `now + hold`, counting an attempt each; returns them as claimed. Run it in a
/// transaction: on PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED` so concurrent
/// claimers split the work.
pub async fn claim_due<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    now: DateTime<Utc>,
    hold: Duration,
    limit: u64,
) -> Result<Vec<DeliveryRecord>> {
    let now = truncate_ts(now);
    let due = due_condition(now);
    let rows = d::Entity::find()
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(due)
        .order_by_asc(d::Column::NextAttemptAt)
        .order_by_asc(d::Column::Id)
        .limit(limit)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(c)
        .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let until = truncate_ts(now + hold);
    let ids: Vec<uuid::Uuid> = rows.iter().map(|m| m.id).collect();
    d::Entity::update_many()
        .col_expr(d::Column::State, Expr::value(delivery_state::SENDING))
        .col_expr(d::Column::ClaimedUntil, Expr::value(Some(until)))
        .col_expr(d::Column::Attempts, Expr::col(d::Column::Attempts).add(1))
        .col_expr(d::Column::UpdatedAt, Expr::value(now))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::Id.is_in(ids))
        .exec(c)
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| DeliveryRecord {
            state: delivery_state::SENDING.to_owned(),
            attempts: u32::try_from(m.attempts).unwrap_or(0) + 1,
            claimed_until: Some(until),
            updated_at: now,
            ..m.into()
        })
        .collect())
}

/// Marks claimed delivery `id` delivered at `now`.
pub async fn mark_delivered<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    let now = truncate_ts(now);
    d::Entity::update_many()
        .col_expr(d::Column::State, Expr::value(delivery_state::DELIVERED))
        .col_expr(
            d::Column::ClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(d::Column::LastError, Expr::value(""))
        .col_expr(d::Column::DeliveredAt, Expr::value(Some(now)))
        .col_expr(d::Column::UpdatedAt, Expr::value(now))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::Id.eq(id))
        .exec(c)
        .await?;
    Ok(())
}

/// Records a failed attempt of delivery `id`: pending again from `retry_at`, or dead when
/// `retry_at` is `None`. Only a claimed (`sending`) delivery changes: the late failure of a
/// sender whose claim ran out must not undo another sender's delivery (nor dead-letter it).
pub async fn mark_failed<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<()> {
    let now = truncate_ts(now);
    let (state, next) = match retry_at {
        Some(at) => (delivery_state::PENDING, truncate_ts(at)),
        None => (delivery_state::DEAD, now),
    };
    d::Entity::update_many()
        .col_expr(d::Column::State, Expr::value(state))
        .col_expr(d::Column::NextAttemptAt, Expr::value(next))
        .col_expr(
            d::Column::ClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(d::Column::LastError, Expr::value(error))
        .col_expr(d::Column::UpdatedAt, Expr::value(now))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::Id.eq(id))
        .filter(d::Column::State.eq(delivery_state::SENDING))
        .exec(c)
        .await?;
    Ok(())
}

/// Puts dead delivery `id` back in the queue, due at `now` with its attempts reset. `NotFound`
/// if there is no such delivery; `Ok(None)` (nothing changed) if it is not dead.
pub async fn requeue<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<Option<DeliveryRecord>> {
    let now = truncate_ts(now);
    let done = d::Entity::update_many()
        .col_expr(d::Column::State, Expr::value(delivery_state::PENDING))
        .col_expr(d::Column::Attempts, Expr::value(0))
        .col_expr(d::Column::NextAttemptAt, Expr::value(now))
        .col_expr(d::Column::UpdatedAt, Expr::value(now))
        .filter(d::Column::TenantId.eq(tenant.0))
        .filter(d::Column::Id.eq(id))
        .filter(d::Column::State.eq(delivery_state::DEAD))
        .exec(c)
        .await?;
    let rec = get_delivery(c, tenant, id)
        .await?
        .ok_or(StoreError::NotFound { what: "delivery" })?;
    Ok((done.rows_affected == 1).then_some(rec))
}

/// The tenant's delivery `id`.
pub async fn get_delivery<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
) -> Result<Option<DeliveryRecord>> {
    Ok(d::Entity::find_by_id(id)
        .filter(d::Column::TenantId.eq(tenant.0))
        .one(c)
        .await?
        .map(Into::into))
}

/// Which deliveries [`list_deliveries`] returns; unset fields do not filter.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    pub state: Option<String>,
    pub channel_id: Option<uuid::Uuid>,
    pub event_id: Option<uuid::Uuid>,
}

/// The tenant's deliveries matching `f`, newest first, at most `limit`.
pub async fn list_deliveries<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    f: &DeliveryFilter,
    limit: u64,
) -> Result<Vec<DeliveryRecord>> {
    let mut q = d::Entity::find().filter(d::Column::TenantId.eq(tenant.0));
    if let Some(state) = &f.state {
        q = q.filter(d::Column::State.eq(state.as_str()));
    }
    if let Some(channel) = f.channel_id {
        q = q.filter(d::Column::ChannelId.eq(channel));
    }
    if let Some(event) = f.event_id {
        q = q.filter(d::Column::EventId.eq(event));
    }
    Ok(q.order_by_desc(d::Column::CreatedAt)
        .order_by_desc(d::Column::Id)
        .limit(limit)
        .all(c)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Records that the alert for `subject` at `threshold_days` was raised as event `event_id`;
/// `false` (nothing changes) if it was raised before.
pub async fn raise_alert<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    subject: &str,
    threshold_days: u32,
    event_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let now = truncate_ts(now);
    let row = a::Model {
        id: crate::time_ordered_id(now),
        tenant_id: tenant.0,
        subject: subject.to_owned(),
        threshold_days: i32::try_from(threshold_days).unwrap_or(i32::MAX),
        event_id,
        created_at: now,
    };
    let done = a::Entity::insert(row.into_active_model())
        .on_conflict_do_nothing_on([
            a::Column::TenantId,
            a::Column::Subject,
            a::Column::ThresholdDays,
        ])
        .exec_without_returning(c)
        .await?;
    Ok(crate::inserted_rows(done) == 1)
}

/// The thresholds already raised for `subject`.
pub async fn raised_thresholds<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    subject: &str,
) -> Result<Vec<u32>> {
    Ok(a::Entity::find()
        .filter(a::Column::TenantId.eq(tenant.0))
        .filter(a::Column::Subject.eq(subject))
        .all(c)
        .await?
        .into_iter()
        .map(|m| u32::try_from(m.threshold_days).unwrap_or(0))
        .collect())
}
