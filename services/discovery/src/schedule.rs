//! Scheduled scans: every tick, the replica holding the `discovery-scheduler` lease scans the
//! targets whose `next_scan_at` has come (one at a time, each bounded by the scanner's
//! concurrency and timeouts) and marks scans whose replica died as failed.

use certmesh_store::discovery::{self, ScanRecord};
use certmesh_store::{leases, tenants};
use chrono::Duration;
use tokio::sync::watch;

use crate::run::Trigger;
use crate::{Discovery, DiscoveryError};

/// The scheduler's lease.
pub const SCHEDULER_LEASE: &str = "discovery-scheduler";
/// Targets scanned per tenant per tick.
const PER_TICK: u64 = 16;

impl Discovery {
    /// Runs scheduled scans until `shutdown` turns true, then gives up the lease.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config().tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.tick_if_leader().await {
                        tracing::warn!(error = %e, "Scheduled discovery failed.");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        let _ = leases::release(self.store().conn(), SCHEDULER_LEASE, &self.config().replica).await;
    }

    async fn tick_if_leader(&self) -> Result<(), DiscoveryError> {
        // The lease outlives the longest pass we expect; it is renewed every tick.
        let ttl = Duration::from_std(self.config().tick * 4).unwrap_or(Duration::minutes(2));
        let leader = leases::try_acquire(
            self.store().conn(),
            SCHEDULER_LEASE,
            &self.config().replica,
            self.now(),
            ttl,
        )
        .await?;
        if leader {
            self.scan_due().await?;
        }
        Ok(())
    }

    /// One pass: every tenant's due targets are scanned; returns the scans run.
    pub async fn scan_due(&self) -> Result<Vec<ScanRecord>, DiscoveryError> {
        let mut done = Vec::new();
        for (tenant, _, _) in tenants::list(self.store().conn()).await? {
            let tx = self.store().begin_tenant(tenant).await?;
            let stale = self.now() - self.config().stale_after;
            discovery::fail_stale_scans(&tx, tenant, stale, self.now()).await?;
            let due = discovery::due_targets(&tx, tenant, self.now(), PER_TICK).await?;
            tx.commit()
                .await
                .map_err(certmesh_store::StoreError::from)?;
            for target in due {
                done.push(self.run_scan(&target, Trigger::Schedule).await?);
            }
        }
        Ok(done)
    }
}
