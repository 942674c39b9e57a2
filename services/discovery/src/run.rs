//! One scan of one target: expand it behind the guard, dial every endpoint, and record each
//! certificate served in the inventory.

use certmesh_crypto::cert::Certificate;
use certmesh_store::discovery::{self, ScanRecord, ScanTally, TargetRecord, scan_state};
use certmesh_store::{StoreError, TenantId, outbox};
use chrono::Duration;
use serde_json::json;

use crate::inventory::sighting;
use crate::model::{StoredSpec, network_location};
use crate::scan::{self, Endpoint, Planned, ScanResult};
use crate::{Discovery, DiscoveryError};

/// Why a scan ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

impl Discovery {
    /// Scans `target` now and returns the finished scan. A target that cannot be expanded
    /// (a hostname that does not resolve, say) ends as a failed scan, not an error.
    pub async fn run_scan(
        &self,
        target: &TargetRecord,
        trigger: Trigger,
    ) -> Result<ScanRecord, DiscoveryError> {
        let tenant = target.tenant_id;
        let tx = self.store().begin_tenant(tenant).await?;
        let scan =
            discovery::start_scan(&tx, tenant, target.id, trigger.as_str(), self.now()).await?;
        let next = (target.interval_seconds > 0)
            .then(|| self.now() + Duration::seconds(target.interval_seconds));
        discovery::mark_scanned(&tx, tenant, target.id, scan.id, next).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(%tenant, target = %target.name, scan = %scan.id, trigger = trigger.as_str(), "Scan started.");

        let (state, tally, detail) = match self.dial(target).await {
            Ok((endpoints, refused, results)) => {
                let (reachable, certificates) = self.record(tenant, target, &results).await?;
                let tally = ScanTally {
                    endpoints,
                    reachable,
                    refused,
                    certificates,
                };
                (scan_state::DONE, tally, String::new())
            }
            Err(e) => (scan_state::FAILED, ScanTally::default(), e.to_string()),
        };
        let tx = self.store().begin_tenant(tenant).await?;
        discovery::finish_scan(&tx, tenant, scan.id, state, &tally, &detail, self.now()).await?;
        outbox::append(
            &tx,
            tenant,
            "discovery.scan.finished",
            &format!("scan:{}", scan.id),
            json!({"target_id": target.id.to_string(), "target": target.name, "state": state,
                   "endpoints": tally.endpoints, "reachable": tally.reachable,
                   "refused": tally.refused, "certificates": tally.certificates, "detail": detail}),
            self.now(),
        )
        .await?;
        let done = discovery::get_scan(&tx, tenant, scan.id)
            .await?
            .ok_or_else(|| DiscoveryError::Corrupt(format!("scan {} vanished", scan.id)))?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(%tenant, target = %target.name, scan = %scan.id, state, endpoints = tally.endpoints, reachable = tally.reachable, refused = tally.refused, certificates = tally.certificates, "Scan finished.");
        Ok(done)
    }

    /// Expands the target and dials what the guard allows: (endpoints planned, refused,
    /// results).
    async fn dial(
        &self,
        target: &TargetRecord,
    ) -> Result<(u32, u32, Vec<ScanResult>), DiscoveryError> {
        let spec = StoredSpec::from_json(&target.spec)?.to_spec();
        let c = self.config();
        let planned = scan::expand(&spec, &c.guard, c.max_cidr_addresses).await?;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let total = count(planned.len());
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut refused = 0usize;
        for p in planned {
            match p {
                Planned::Endpoint(e) => endpoints.push(e),
                Planned::Refused { .. } => refused += 1,
            }
        }
        let results = self.scanner.scan(endpoints).await;
        Ok((total, count(refused), results))
    }

    /// Records every certificate of every chain served; returns (endpoints that answered,
    /// certificates recorded).
    async fn record(
        &self,
        tenant: TenantId,
        target: &TargetRecord,
        results: &[ScanResult],
    ) -> Result<(u32, u32), DiscoveryError> {
        let now = self.now();
        let (mut reachable, mut recorded) = (0u32, 0u32);
        let tx = self.store().begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        for r in results {
            let Ok(served) = &r.outcome else { continue };
            reachable += 1;
            let e = &r.endpoint;
            let location = network_location(e.ip, e.port, e.sni.as_deref());
            for der in &served.chain {
                let Ok(cert) = Certificate::from_der(der.clone()) else {
                    continue;
                };
                let mut s = sighting(&tx, tenant, &cert, location.clone(), now).await?;
                s.source = "network".to_owned();
                s.target_id = Some(target.id);
                s.tls_version = served.tls_version.clone();
                self.note_sighting(&tx, &s).await?;
                recorded += 1;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok((reachable, recorded))
    }
}
