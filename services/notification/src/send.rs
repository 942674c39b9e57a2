//! The sender: due deliveries go out, at least once each.
//!
//! A pass claims up to `batch` due deliveries per tenant (a claim lasts `claim_hold`, so a
//! sender that dies mid-send gives its rows back), sends them `concurrency` at a time, and
//! records each outcome: delivered; failed and retried after `retry_base · 2^(attempt-1)`
//! (capped at `retry_cap`); or dead after `max_attempts`, or at once when the channel refuses
//! for good (a 4xx, a deleted channel, secrets that no longer open). Each recorded outcome is
//! logged and counted in `certmesh_notification_deliveries_total` ([`DeliveryRecorded`]).

use std::collections::HashMap;

use certmesh_kit::metrics::{DeliveryLabels, DeliveryOutcome, Metrics};
use certmesh_store::notification::{self as store, ChannelRecord, DeliveryRecord};
use certmesh_store::{StoreError, TenantId, outbox, tenants};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;

use crate::channel::{ChannelKind, ChannelSettings, DeliveryError};
use crate::model::notice;
use crate::{Notifier, NotifyError};

/// When the attempt after failed attempt number `attempt` (1-based) may start.
pub fn retry_at(now: DateTime<Utc>, attempt: u32, base: Duration, cap: Duration) -> DateTime<Utc> {
    let factor = 1i32 << attempt.saturating_sub(1).min(20);
    now + (base * factor).min(cap)
}

impl Notifier {
    /// One sending pass over every tenant; returns the deliveries attempted.
    pub async fn send_due(&self) -> Result<usize, NotifyError> {
        let mut sent = 0;
        for (tenant, name, _) in tenants::list(self.store().conn()).await? {
            sent += self.send_tenant(tenant, &name).await?;
        }
        Ok(sent)
    }

    async fn send_tenant(&self, tenant: TenantId, tenant_name: &str) -> Result<usize, NotifyError> {
        let peek = self.store().begin_tenant(tenant).await?;
        let idle = !store::any_due(&peek, tenant, self.now()).await?;
        drop(peek);
        if idle {
            return Ok(0);
        }
        let tx = self.store().begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let claimed = store::claim_due(
            &tx,
            tenant,
            self.now(),
            self.config().claim_hold,
            self.config().batch,
        )
        .await?;
        let channels: HashMap<uuid::Uuid, ChannelRecord> = if claimed.is_empty() {
            HashMap::new()
        } else {
            store::list_channels(&tx, tenant)
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect()
        };
        tx.commit().await.map_err(StoreError::from)?;
        let count = claimed.len();
        let settings: HashMap<uuid::Uuid, Result<ChannelSettings, String>> = channels
            .values()
            .map(|c| (c.id, self.open_channel(c)))
            .collect();
        let kinds: HashMap<uuid::Uuid, &'static str> = channels
            .values()
            .map(|c| {
                (
                    c.id,
                    c.kind.parse().map_or(UNKNOWN_KIND, ChannelKind::as_str),
                )
            })
            .collect();
        futures::stream::iter(claimed)
            .map(|d| {
                let kind = kinds.get(&d.channel_id).copied().unwrap_or(UNKNOWN_KIND);
                self.send_one(tenant, tenant_name, &settings, kind, d)
            })
            .buffer_unordered(self.config().concurrency.max(1))
            .for_each(|()| async {})
            .await;
        Ok(count)
    }

    fn open_channel(&self, c: &ChannelRecord) -> Result<ChannelSettings, String> {
        if !c.enabled {
            return Err("the channel is disabled".to_owned());
        }
        self.settings_of(c).map_err(|e| {
            tracing::error!(channel = %c.id, error = %e, "A channel's settings do not open.");
            "the channel's settings cannot be opened (was the key-encryption key changed?)"
                .to_owned()
        })
    }

    async fn send_one(
        &self,
        tenant: TenantId,
        tenant_name: &str,
        settings: &HashMap<uuid::Uuid, Result<ChannelSettings, String>>,
        kind: &'static str,
        d: DeliveryRecord,
    ) {
        let outcome = match settings.get(&d.channel_id) {
            None => Err(permanent("the channel was deleted")),
            Some(Err(why)) => Err(permanent(why)),
            Some(Ok(ch)) => self.attempt(tenant, tenant_name, ch, &d).await,
        };
        if let Err(e) = self.record(tenant, &d, kind, outcome).await {
            tracing::warn!(delivery = %d.id, error = %e, "Recording a delivery failed.");
        }
    }

    async fn attempt(
        &self,
        tenant: TenantId,
        tenant_name: &str,
        ch: &ChannelSettings,
        d: &DeliveryRecord,
    ) -> Result<(), DeliveryError> {
        let event = {
            let tx = self
                .store()
                .begin_tenant(tenant)
                .await
                .map_err(|e| transient(&e))?;
            outbox::get(&tx, tenant, d.event_id)
                .await
                .map_err(|e| transient(&e))?
        };
        let Some(event) = event else {
            return Err(permanent("the event is no longer in the outbox"));
        };
        self.sender
            .deliver(ch, &notice(&event, tenant_name), self.now())
            .await
    }

    async fn record(
        &self,
        tenant: TenantId,
        d: &DeliveryRecord,
        kind: &'static str,
        outcome: Result<(), DeliveryError>,
    ) -> Result<(), NotifyError> {
        let now = self.now();
        let tx = self.store().begin_tenant(tenant).await?;
        let (detail, retry) = match &outcome {
            Ok(()) => {
                store::mark_delivered(&tx, tenant, d.id, now).await?;
                (None, None)
            }
            Err(e) => {
                let c = self.config();
                let retry = (e.retryable && d.attempts < c.max_attempts)
                    .then(|| retry_at(now, d.attempts, c.retry_base, c.retry_cap));
                store::mark_failed(&tx, tenant, d.id, &e.detail, retry, now).await?;
                (Some(e.detail.as_str()), retry)
            }
        };
        tx.commit().await.map_err(StoreError::from)?;
        DeliveryRecorded {
            delivery: d,
            kind,
            detail,
            retry,
        }
        .emit(self.metrics());
        Ok(())
    }
}

/// The `channel_kind` of a delivery whose channel is gone.
const UNKNOWN_KIND: &str = "unknown";

/// A delivery attempt's outcome, once it is recorded: its log line and its count.
#[derive(Debug)]
struct DeliveryRecorded<'a> {
    delivery: &'a DeliveryRecord,
    kind: &'static str,
    /// Why it failed; `None` when it was delivered.
    detail: Option<&'a str>,
    /// When the next attempt may start; `None` when there is none.
    retry: Option<DateTime<Utc>>,
}

impl DeliveryRecorded<'_> {
    fn emit(self, metrics: &Metrics) {
        let d = self.delivery;
        let outcome = match (self.detail, self.retry) {
            (None, _) => {
                tracing::info!(delivery = %d.id, event = %d.event_id, channel = %d.channel_id, kind = self.kind, attempt = d.attempts, "Notification delivered.");
                DeliveryOutcome::Delivered
            }
            (Some(detail), Some(at)) => {
                tracing::info!(delivery = %d.id, channel = %d.channel_id, kind = self.kind, attempt = d.attempts, retry_at = %at, detail, "Notification failed; will retry.");
                DeliveryOutcome::Failed
            }
            (Some(detail), None) => {
                tracing::warn!(delivery = %d.id, channel = %d.channel_id, kind = self.kind, attempt = d.attempts, detail, "Notification dead-lettered.");
                DeliveryOutcome::Dead
            }
        };
        metrics
            .notification_deliveries
            .get_or_create(&DeliveryLabels {
                channel_kind: self.kind,
                outcome,
            })
            .inc();
    }
}

fn permanent(detail: &str) -> DeliveryError {
    DeliveryError {
        retryable: false,
        detail: detail.to_owned(),
    }
}

fn transient(e: &StoreError) -> DeliveryError {
    tracing::warn!(error = %e, "Reading an event to deliver failed.");
    DeliveryError {
        retryable: true,
        detail: "the store failed reading the event".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let (base, cap) = (Duration::seconds(30), Duration::hours(1));
        let waits: Vec<i64> = (1..=9)
            .map(|a| (retry_at(now, a, base, cap) - now).num_seconds())
            .collect();
        assert_eq!(waits, vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
