//! The expiry watcher: a `certificate.expiring` event for each certificate that crossed a
//! threshold (30, 14, 7, 1, 0 days by default), raised once per certificate and threshold.
//!
//! It reads the certificates certmesh issued (not revoked, not already replaced by a later one
//! for the same names) and the inventory's finds (not dismissed). A certificate is keyed by its
//! SHA-256, so an issued certificate that a scan also found is one alert, not two. When a
//! certificate is first seen past several thresholds, only the most urgent one is raised. The
//! `expiry_alerts` row and the outbox event are written in one transaction: the relay then
//! sends it to each matching channel once, across restarts and replicas.

use certmesh_store::discovery::{self, FoundFilter};
use certmesh_store::notification as store;
use certmesh_store::{StoreError, TenantId, certificates, outbox, revocations, tenants};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::{Notifier, NotifyError};

/// Certificates read per tenant per pass, of each kind.
const PER_PASS: u64 = 5000;

/// A certificate the watcher considers.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expiring {
    fingerprint: String,
    serial: String,
    subject: String,
    location: String,
    source: &'static str,
    not_after: DateTime<Utc>,
}

/// The most urgent threshold (in days) `not_after` has crossed at `now`, if any: the smallest
/// threshold `t` with `days_left <= t`.
pub fn crossed(thresholds: &[u32], now: DateTime<Utc>, not_after: DateTime<Utc>) -> Option<u32> {
    let days_left = (not_after - now).num_days();
    thresholds
        .iter()
        .copied()
        .filter(|t| days_left <= i64::from(*t))
        .min()
}

impl Notifier {
    /// One pass over every tenant; returns the alerts raised.
    pub async fn watch_expiry(&self) -> Result<u32, NotifyError> {
        let mut raised = 0;
        for (tenant, _, _) in tenants::list(self.store().conn()).await? {
            raised += self.watch_tenant(tenant).await?;
        }
        Ok(raised)
    }

    async fn watch_tenant(&self, tenant: TenantId) -> Result<u32, NotifyError> {
        let now = self.now();
        let Some(horizon) = self.config().thresholds.iter().max().copied() else {
            return Ok(0);
        };
        let until = now + Duration::days(i64::from(horizon) + 1);
        let candidates: Vec<(Expiring, u32)> = self
            .candidates(tenant, now, until)
            .await?
            .into_iter()
            .filter_map(|c| crossed(&self.config().thresholds, now, c.not_after).map(|t| (c, t)))
            .collect();
        // Which are new, read without the write lock: an idle pass writes nothing.
        let peek = self.store().begin_tenant(tenant).await?;
        let mut fresh = Vec::new();
        for (c, threshold) in candidates {
            let key = format!("cert:{}", c.fingerprint);
            let already = store::raised_thresholds(&peek, tenant, &key).await?;
            if !already.iter().any(|t| *t <= threshold) {
                fresh.push((c, threshold));
            }
        }
        drop(peek);
        if fresh.is_empty() {
            return Ok(0);
        }
        let candidates = fresh;
        let tx = self.store().begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let mut raised = 0;
        for (c, threshold) in candidates {
            let key = format!("cert:{}", c.fingerprint);
            let already = store::raised_thresholds(&tx, tenant, &key).await?;
            if already.iter().any(|t| *t <= threshold) {
                continue;
            }
            let days_left = (c.not_after - now).num_days();
            let event = outbox::append(
                &tx,
                tenant,
                "certificate.expiring",
                &format!("certificate:{}", c.serial),
                json!({"fingerprint_sha256": c.fingerprint, "serial": c.serial,
                       "subject": c.subject, "location": c.location, "source": c.source,
                       "not_after": c.not_after.to_rfc3339(), "threshold_days": threshold,
                       "days_left": days_left}),
                now,
            )
            .await?;
            if store::raise_alert(&tx, tenant, &key, threshold, event, now).await? {
                raised += 1;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        if raised > 0 {
            tracing::info!(%tenant, alerts = raised, "Expiry alerts raised.");
        }
        Ok(raised)
    }

    /// Issued certificates still in force and inventory finds, expiring before `until`.
    async fn candidates(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Expiring>, NotifyError> {
        let tx = self.store().begin_tenant(tenant).await?;
        let mut out = Vec::new();
        // Issued ones that expired over a day ago were either replaced or alerted at 0 days.
        for rec in
            certificates::expiring(&tx, tenant, now - Duration::days(1), until, PER_PASS).await?
        {
            if revocations::get(&tx, tenant, &rec.serial).await?.is_some()
                || certificates::has_successor(&tx, tenant, &rec).await?
            {
                continue;
            }
            out.push(Expiring {
                fingerprint: rec.fingerprint_sha256.clone(),
                serial: rec.serial.clone(),
                subject: rec.subject.clone(),
                location: format!("issued by certmesh ({})", rec.profile_name),
                source: "managed",
                not_after: rec.not_after,
            });
        }
        let filter = FoundFilter {
            expiring_before: Some(until),
            ..FoundFilter::default()
        };
        for f in discovery::list_found(&tx, tenant, &filter, PER_PASS).await? {
            let s = f.sighting;
            if out.iter().any(|o| o.fingerprint == s.fingerprint_sha256) {
                continue;
            }
            out.push(Expiring {
                fingerprint: s.fingerprint_sha256,
                serial: s.serial,
                subject: s.subject,
                location: s.location,
                source: "discovered",
                not_after: s.not_after,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_crossed_threshold_is_picked() {
        let t = [30, 14, 7, 1, 0];
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let at = |days: i64, hours: i64| now + Duration::days(days) + Duration::hours(hours);
        assert_eq!(crossed(&t, now, at(45, 0)), None);
        assert_eq!(crossed(&t, now, at(30, 12)), Some(30));
        assert_eq!(crossed(&t, now, at(7, 3)), Some(7));
        assert_eq!(crossed(&t, now, at(6, 0)), Some(7));
        assert_eq!(crossed(&t, now, at(1, 0)), Some(1));
        assert_eq!(crossed(&t, now, at(0, 5)), Some(0));
        assert_eq!(crossed(&t, now, at(-3, 0)), Some(0));
    }
}
