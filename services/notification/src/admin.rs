//! The operators' side: channels (secrets sealed at rest), rules, the delivery log, requeue and
//! test sends.

use std::collections::HashMap;
use std::str::FromStr;

use certmesh_crypto::keys::sealing;
use certmesh_kit::{audit, auth::AuthContext, secret::Secret};
use certmesh_store::audit::{AuditEntry, Outcome};
use certmesh_store::notification::{
    self as store, ChannelRecord, DeliveryFilter, DeliveryRecord, RuleRecord, delivery_state,
};
use certmesh_store::outbox::Event;
use certmesh_store::{StoreError, TenantId, outbox};
use serde_json::json;
use zeroize::Zeroizing;

use crate::channel::{ChannelKind, ChannelSettings};
use crate::model::{check_pattern, notice};
use crate::{Notifier, NotifyError};

/// Longest channel or rule name.
const NAME_MAX: usize = 64;
/// Most event types and channels one rule may name.
const RULE_LIST_MAX: usize = 32;
/// Most deliveries one listing returns.
const DELIVERIES_MAX: u32 = 1000;

/// Parses an id from a request field.
pub(crate) fn parse_id(field: &'static str, raw: &str) -> Result<uuid::Uuid, NotifyError> {
    raw.trim().parse().map_err(|_| NotifyError::InvalidField {
        field,
        problem: format!("{raw:?} is not an id"),
    })
}

fn check_name(raw: &str) -> Result<String, NotifyError> {
    let name = raw.trim();
    if name.is_empty()
        || name.len() > NAME_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(NotifyError::InvalidField {
            field: "name",
            problem: format!("must be 1 to {NAME_MAX} letters, digits, '-', '_' or '.'"),
        });
    }
    Ok(name.to_owned())
}

/// The associated data sealed secrets are bound to: a row's secrets open only as that row.
fn aad(tenant: TenantId, channel: uuid::Uuid) -> Vec<u8> {
    let mut aad = b"certmesh-channel-v1:".to_vec();
    aad.extend_from_slice(tenant.0.as_bytes());
    aad.extend_from_slice(channel.as_bytes());
    aad
}

/// A channel as the operator asked for it.
#[derive(Debug)]
pub struct NewChannel {
    pub name: String,
    pub kind: String,
    pub config: serde_json::Value,
    /// The secret settings (a JSON object of strings), sealed before they reach a row.
    pub secrets: Secret<serde_json::Value>,
}

impl Notifier {
    async fn commit_with(
        &self,
        auth: &AuthContext,
        tx: sea_orm::DatabaseTransaction,
        event: (&str, String, serde_json::Value),
    ) -> Result<(), NotifyError> {
        let now = self.now();
        let (event_type, resource, details) = event;
        outbox::append(
            &tx,
            auth.tenant_id,
            event_type,
            &resource,
            details.clone(),
            now,
        )
        .await?;
        let entry: AuditEntry =
            audit::entry(auth, event_type, resource, Outcome::Allowed, details, now);
        certmesh_store::audit::append(&tx, auth.tenant_id, std::slice::from_ref(&entry)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// The validated settings of a stored channel, its secrets opened.
    pub(crate) fn settings_of(&self, rec: &ChannelRecord) -> Result<ChannelSettings, NotifyError> {
        let kind = ChannelKind::from_str(&rec.kind)?;
        let config: serde_json::Value = serde_json::from_str(&rec.config)
            .map_err(|e| NotifyError::Corrupt(format!("channel {} config: {e}", rec.id)))?;
        let plain = sealing::open(self.kek(), &aad(rec.tenant_id, rec.id), &rec.sealed_secrets)?;
        let secrets: serde_json::Value = serde_json::from_slice(&plain)
            .map_err(|e| NotifyError::Corrupt(format!("channel {} secrets: {e}", rec.id)))?;
        Ok(ChannelSettings::parse(kind, &config, &secrets)?)
    }

    /// Adds a channel after validating its settings; its secrets are sealed.
    pub async fn create_channel(
        &self,
        auth: &AuthContext,
        new: NewChannel,
    ) -> Result<(ChannelRecord, ChannelSettings), NotifyError> {
        let name = check_name(&new.name)?;
        let kind = ChannelKind::from_str(new.kind.trim())?;
        let secrets = new.secrets.expose();
        let settings = ChannelSettings::parse(kind, &new.config, secrets)?;
        let id = uuid::Uuid::new_v4();
        let plain = Zeroizing::new(secrets.to_string().into_bytes());
        let rec = ChannelRecord {
            id,
            tenant_id: auth.tenant_id,
            name: name.clone(),
            kind: kind.as_str().to_owned(),
            config: new.config.to_string(),
            sealed_secrets: sealing::seal(self.kek(), &aad(auth.tenant_id, id), &plain)?,
            enabled: true,
            created_by: auth.principal.clone(),
            created_at: self.now(),
        };
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        match store::insert_channel(&tx, &rec).await {
            Err(StoreError::Conflict { .. }) => return Err(NotifyError::ChannelExists(name)),
            other => other?,
        }
        self.commit_with(
            auth,
            tx,
            (
                "notification.channel.created",
                format!("channel:{id}"),
                json!({"name": name, "kind": kind.as_str(), "config": settings.public_config()}),
            ),
        )
        .await?;
        Ok((rec, settings))
    }

    /// The tenant's channels with their public settings.
    pub async fn list_channels(
        &self,
        auth: &AuthContext,
    ) -> Result<Vec<(ChannelRecord, serde_json::Value)>, NotifyError> {
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let channels = store::list_channels(&tx, auth.tenant_id).await?;
        Ok(channels
            .into_iter()
            .map(|c| {
                let public = self
                    .settings_of(&c)
                    .map(|s| s.public_config())
                    .unwrap_or_else(|e| json!({"error": e.to_string()}));
                (c, public)
            })
            .collect())
    }

    async fn channel(&self, auth: &AuthContext, raw: &str) -> Result<ChannelRecord, NotifyError> {
        let id = parse_id("channel_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        store::get_channel(&tx, auth.tenant_id, id)
            .await?
            .ok_or_else(|| NotifyError::ChannelNotFound(raw.trim().to_owned()))
    }

    /// Deletes a channel; its queued deliveries die when their turn comes.
    pub async fn delete_channel(&self, auth: &AuthContext, raw: &str) -> Result<(), NotifyError> {
        let id = parse_id("channel_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        match store::delete_channel(&tx, auth.tenant_id, id).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(NotifyError::ChannelNotFound(raw.trim().to_owned()));
            }
            other => other?,
        }
        self.commit_with(
            auth,
            tx,
            (
                "notification.channel.deleted",
                format!("channel:{id}"),
                json!({}),
            ),
        )
        .await
    }

    /// Sends a `notification.test` notice through one channel now; returns (event id, the
    /// failure if it failed).
    pub async fn test_channel(
        &self,
        auth: &AuthContext,
        raw: &str,
    ) -> Result<(uuid::Uuid, Option<String>), NotifyError> {
        let rec = self.channel(auth, raw).await?;
        let settings = self.settings_of(&rec)?;
        let now = self.now();
        let event = Event {
            id: outbox::event_id(now),
            tenant_id: auth.tenant_id,
            event_type: "notification.test".to_owned(),
            aggregate_id: format!("channel:{}", rec.id),
            payload: json!({"channel": rec.name, "requested_by": auth.principal}),
            created_at: now,
            published_at: None,
        };
        let result = self
            .sender
            .deliver(&settings, &notice(&event, &auth.tenant_id.to_string()), now)
            .await;
        let failure = result.err().map(|e| e.detail);
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let entry = audit::entry(
            auth,
            "notification.channel.test",
            format!("channel:{}", rec.id),
            Outcome::Allowed,
            json!({"event_id": event.id.to_string(), "delivered": failure.is_none(),
                   "detail": failure.clone().unwrap_or_default()}),
            now,
        );
        certmesh_store::audit::append(&tx, auth.tenant_id, std::slice::from_ref(&entry)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok((event.id, failure))
    }

    /// Adds a rule: its patterns checked, its channels this tenant's.
    pub async fn create_rule(
        &self,
        auth: &AuthContext,
        name: &str,
        event_types: &[String],
        channel_ids: &[String],
    ) -> Result<RuleRecord, NotifyError> {
        let name = check_name(name)?;
        if event_types.is_empty() || event_types.len() > RULE_LIST_MAX {
            return Err(NotifyError::RuleInvalid(format!(
                "name 1 to {RULE_LIST_MAX} event types"
            )));
        }
        if channel_ids.is_empty() || channel_ids.len() > RULE_LIST_MAX {
            return Err(NotifyError::RuleInvalid(format!(
                "name 1 to {RULE_LIST_MAX} channels"
            )));
        }
        let patterns = event_types
            .iter()
            .map(|p| check_pattern(p))
            .collect::<Result<Vec<_>, _>>()?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let mut channels = Vec::new();
        for raw in channel_ids {
            let id = parse_id("channel_ids", raw)?;
            if store::get_channel(&tx, auth.tenant_id, id).await?.is_none() {
                return Err(NotifyError::RuleInvalid(format!(
                    "channel {} does not exist",
                    raw.trim()
                )));
            }
            if !channels.contains(&id) {
                channels.push(id);
            }
        }
        let rec = RuleRecord {
            id: uuid::Uuid::new_v4(),
            tenant_id: auth.tenant_id,
            name: name.clone(),
            event_types: patterns,
            channel_ids: channels,
            enabled: true,
            created_by: auth.principal.clone(),
            created_at: self.now(),
        };
        match store::insert_rule(&tx, &rec).await {
            Err(StoreError::Conflict { .. }) => return Err(NotifyError::RuleExists(name)),
            other => other?,
        }
        self.commit_with(
            auth,
            tx,
            (
                "notification.rule.created",
                format!("rule:{}", rec.id),
                json!({"name": rec.name, "event_types": rec.event_types,
                       "channel_ids": rec.channel_ids}),
            ),
        )
        .await?;
        Ok(rec)
    }

    pub async fn list_rules(&self, auth: &AuthContext) -> Result<Vec<RuleRecord>, NotifyError> {
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(store::list_rules(&tx, auth.tenant_id).await?)
    }

    pub async fn delete_rule(&self, auth: &AuthContext, raw: &str) -> Result<(), NotifyError> {
        let id = parse_id("rule_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        match store::delete_rule(&tx, auth.tenant_id, id).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(NotifyError::RuleNotFound(raw.trim().to_owned()));
            }
            other => other?,
        }
        self.commit_with(
            auth,
            tx,
            ("notification.rule.deleted", format!("rule:{id}"), json!({})),
        )
        .await
    }

    /// The delivery log, newest first.
    pub async fn list_deliveries(
        &self,
        auth: &AuthContext,
        state: &str,
        channel: &str,
        event: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, NotifyError> {
        let state = match state.trim() {
            "" => None,
            s if delivery_state::ALL.contains(&s) => Some(s.to_owned()),
            other => {
                return Err(NotifyError::InvalidField {
                    field: "state",
                    problem: format!("{other:?} is not one of {:?}", delivery_state::ALL),
                });
            }
        };
        let opt = |field, raw: &str| {
            (!raw.trim().is_empty())
                .then(|| parse_id(field, raw))
                .transpose()
        };
        let filter = DeliveryFilter {
            state,
            channel_id: opt("channel_id", channel)?,
            event_id: opt("event_id", event)?,
        };
        let limit = if limit == 0 {
            100
        } else {
            limit.min(DELIVERIES_MAX)
        };
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(store::list_deliveries(&tx, auth.tenant_id, &filter, u64::from(limit)).await?)
    }

    /// Puts a dead delivery back in the queue with its attempts reset, and wakes the sender.
    pub async fn requeue(
        &self,
        auth: &AuthContext,
        raw: &str,
    ) -> Result<DeliveryRecord, NotifyError> {
        let id = parse_id("delivery_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let requeued = match store::requeue(&tx, auth.tenant_id, id, self.now()).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(NotifyError::DeliveryNotFound(raw.trim().to_owned()));
            }
            other => other?,
        };
        let Some(rec) = requeued else {
            let state = store::get_delivery(&tx, auth.tenant_id, id)
                .await?
                .map(|d| d.state)
                .unwrap_or_default();
            return Err(NotifyError::DeliveryNotDead {
                id: id.to_string(),
                state,
            });
        };
        self.commit_with(
            auth,
            tx,
            (
                "notification.delivery.requeued",
                format!("delivery:{id}"),
                json!({"event_id": rec.event_id.to_string(), "channel_id": rec.channel_id.to_string()}),
            ),
        )
        .await?;
        self.wake.notify_one();
        Ok(rec)
    }
}

/// The request's secret map as the JSON object channels parse.
pub fn secrets_of(map: HashMap<String, String>) -> Secret<serde_json::Value> {
    Secret::new(serde_json::Value::Object(
        map.into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect(),
    ))
}
