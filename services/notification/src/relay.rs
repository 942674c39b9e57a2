//! The relay: outbox events become deliveries, one per (event, channel) a rule routes it to.
//!
//! One replica relays at a time (lease `notification-relay`); on PostgreSQL the events are
//! also read `FOR UPDATE SKIP LOCKED`, so even two relays never queue an event twice — and
//! the (event, channel) unique index would absorb it if they did. An event is marked published
//! in the same transaction that queues its deliveries: nothing is lost across a restart, and
//! an event whose transaction failed is relayed again.

use std::collections::HashSet;

use certmesh_store::notification::{self as store, NewDelivery, RuleRecord};
use certmesh_store::{StoreError, TenantId, leases, outbox, tenants};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

use crate::model::matches;
use crate::{Notifier, NotifyError};

/// The lease of the replica that relays, sends and watches expiry.
pub const RELAY_LEASE: &str = "notification-relay";

impl Notifier {
    /// Runs the relay, the sender and the expiry watcher while this replica holds the lease,
    /// until `shutdown` turns true; then gives the lease up.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config().every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expiry = tokio::time::interval(self.config().expiry_every);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.pass().await,
                () = self.wake.notified() => self.pass().await,
                _ = expiry.tick() => {
                    if self.lead().await
                        && let Err(e) = self.watch_expiry().await
                    {
                        tracing::warn!(error = %e, "Expiry watch failed.");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = leases::release(self.store().conn(), RELAY_LEASE, &self.config().replica).await;
    }

    /// Takes or renews the lease; whether this replica leads. A lease held with more than
    /// two thirds of its time left is not renewed yet, so an idle leader writes once every
    /// ten seconds or so, not every pass.
    async fn lead(&self) -> bool {
        let ttl = Duration::from_std(self.config().every * 15).unwrap_or(Duration::seconds(30));
        let ttl = ttl.max(Duration::seconds(10));
        let now = self.now();
        if let Some(until) = *self.lease_until.lock().unwrap_or_else(|p| p.into_inner())
            && until - now > ttl * 2 / 3
        {
            return true;
        }
        let lead = match leases::try_acquire(
            self.store().conn(),
            RELAY_LEASE,
            &self.config().replica,
            now,
            ttl,
        )
        .await
        {
            Ok(lead) => lead,
            Err(e) => {
                tracing::warn!(error = %e, "Taking the notification lease failed.");
                false
            }
        };
        *self.lease_until.lock().unwrap_or_else(|p| p.into_inner()) = lead.then_some(now + ttl);
        lead
    }

    async fn pass(&self) {
        if !self.lead().await {
            // Only the relaying replica reports a backlog; `max` over replicas is the lag.
            self.metrics().outbox_pending.set(0);
            self.metrics().outbox_lag_seconds.set(0.0);
            return;
        }
        if let Err(e) = self.relay().await {
            tracing::warn!(error = %e, "Relaying the outbox failed.");
        }
        if let Err(e) = self.send_due().await {
            tracing::warn!(error = %e, "Sending notifications failed.");
        }
    }

    /// One relay pass over every tenant; returns the deliveries queued. The backlog it found
    /// first goes to `certmesh_outbox_pending` and `certmesh_outbox_lag_seconds`.
    pub async fn relay(&self) -> Result<u64, NotifyError> {
        let tenants = tenants::list(self.store().conn()).await?;
        self.observe_backlog(tenants.iter().map(|(tenant, _, _)| *tenant))
            .await?;
        let mut queued = 0;
        for (tenant, _, _) in tenants {
            queued += self.relay_tenant(tenant).await?;
        }
        Ok(queued)
    }

    /// Sets the outbox gauges to the events not relayed yet in `tenants` and the age of the
    /// oldest (0 when none).
    async fn observe_backlog(
        &self,
        tenants: impl Iterator<Item = TenantId>,
    ) -> Result<(), NotifyError> {
        let mut pending = 0;
        let mut oldest: Option<DateTime<Utc>> = None;
        for tenant in tenants {
            let tx = self.store().begin_tenant(tenant).await?;
            let backlog = outbox::backlog(&tx, tenant).await?;
            drop(tx);
            pending += backlog.pending;
            oldest = match (oldest, backlog.oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        // An event stamped ahead of this replica's clock has no lag yet.
        let lag = oldest.map_or(0.0, |t| {
            (self.now() - t).to_std().map_or(0.0, |d| d.as_secs_f64())
        });
        let m = self.metrics();
        m.outbox_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        m.outbox_lag_seconds.set(lag);
        Ok(())
    }

    async fn relay_tenant(&self, tenant: TenantId) -> Result<u64, NotifyError> {
        let mut queued = 0;
        loop {
            // A look without the write lock first: an idle pass writes nothing.
            let peek = self.store().begin_tenant(tenant).await?;
            let idle = outbox::unpublished(&peek, tenant, 1).await?.is_empty();
            // Rolled back now, not on drop: its row lock must be gone before the real read.
            peek.rollback().await.map_err(StoreError::from)?;
            if idle {
                return Ok(queued);
            }
            let tx = self.store().begin_tenant(tenant).await?;
            certmesh_store::write_lock(&tx).await?;
            let events = outbox::unpublished(&tx, tenant, self.config().batch).await?;
            if events.is_empty() {
                return Ok(queued);
            }
            let rules: Vec<RuleRecord> = store::list_rules(&tx, tenant)
                .await?
                .into_iter()
                .filter(|r| r.enabled)
                .collect();
            let mut new = Vec::new();
            for e in &events {
                new.extend(
                    routes(&rules, &e.event_type)
                        .into_iter()
                        .map(|(rule, channel)| NewDelivery {
                            event_id: e.id,
                            channel_id: channel,
                            rule_id: rule,
                            event_type: e.event_type.clone(),
                        }),
                );
            }
            let made = store::enqueue(&tx, tenant, &new, self.now()).await?;
            let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
            outbox::mark_published(&tx, tenant, &ids, self.now()).await?;
            tx.commit().await.map_err(StoreError::from)?;
            if made > 0 {
                tracing::info!(%tenant, events = events.len(), deliveries = made, "Outbox relayed.");
            }
            queued += made;
            if u64::try_from(events.len()).unwrap_or(u64::MAX) < self.config().batch {
                return Ok(queued);
            }
        }
    }
}

/// The (rule, channel) pairs an event of `event_type` goes to: each channel once, by the first
/// rule (in name order) that sends it there.
pub fn routes(rules: &[RuleRecord], event_type: &str) -> Vec<(uuid::Uuid, uuid::Uuid)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for rule in rules {
        if !rule.event_types.iter().any(|p| matches(p, event_type)) {
            continue;
        }
        for channel in &rule.channel_ids {
            if seen.insert(*channel) {
                out.push((rule.id, *channel));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, types: &[&str], channels: &[uuid::Uuid]) -> RuleRecord {
        RuleRecord {
            id: uuid::Uuid::new_v4(),
            tenant_id: TenantId(uuid::Uuid::nil()),
            name: name.into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            channel_ids: channels.to_vec(),
            enabled: true,
            created_by: "admin".into(),
            created_at: chrono::DateTime::from_timestamp(0, 0).expect("epoch"),
        }
    }

    #[test]
    fn each_channel_gets_an_event_once() {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let rules = [
            rule("all", &["*"], &[a]),
            rule("expiry", &["certificate.expiring"], &[a, b]),
            rule("ca", &["ca.*"], &[b]),
        ];
        let r = routes(&rules, "certificate.expiring");
        assert_eq!(r, vec![(rules[0].id, a), (rules[1].id, b)]);
        assert_eq!(
            routes(&rules, "ca.issue"),
            vec![(rules[0].id, a), (rules[2].id, b)]
        );
        assert_eq!(routes(&rules[1..], "fleet.agent.enrolled"), vec![]);
    }
}
