//! Scan targets: what to scan and how often.

use certmesh_kit::{audit, auth::AuthContext};
use certmesh_store::audit::{AuditEntry, Outcome};
use certmesh_store::discovery::{self, TargetRecord};
use certmesh_store::{StoreError, outbox};
use serde_json::json;

use crate::model::NewTarget;
use crate::scan::Host;
use crate::{Discovery, DiscoveryError};

/// Parses an id from a request field.
pub(crate) fn parse_id(field: &'static str, raw: &str) -> Result<uuid::Uuid, DiscoveryError> {
    raw.trim()
        .parse()
        .map_err(|_| DiscoveryError::InvalidField {
            field,
            problem: format!("{raw:?} is not an id"),
        })
}

impl Discovery {
    /// Writes the outbox event and the audit entry of a change, then commits it.
    pub(crate) async fn commit_with(
        &self,
        auth: &AuthContext,
        tx: sea_orm::DatabaseTransaction,
        event: (&str, String, serde_json::Value),
    ) -> Result<(), DiscoveryError> {
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

    /// Adds a target; the scheduler takes a scheduled one at once.
    pub async fn create_target(
        &self,
        auth: &AuthContext,
        new: NewTarget,
    ) -> Result<TargetRecord, DiscoveryError> {
        let now = self.now();
        let rec = TargetRecord {
            id: uuid::Uuid::new_v4(),
            tenant_id: auth.tenant_id,
            name: new.name.clone(),
            spec: new.spec.to_json(),
            interval_seconds: new.interval_seconds,
            next_scan_at: (new.interval_seconds > 0).then_some(now),
            last_scan_id: None,
            created_by: auth.principal.clone(),
            created_at: now,
        };
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        match discovery::insert_target(&tx, &rec).await {
            Err(StoreError::Conflict { .. }) => return Err(DiscoveryError::TargetExists(new.name)),
            other => other?,
        }
        self.commit_with(
            auth,
            tx,
            (
                "discovery.target.created",
                format!("scan-target:{}", rec.id),
                json!({"name": rec.name, "hosts": new.spec.hosts, "ports": new.spec.ports,
                       "interval_seconds": rec.interval_seconds}),
            ),
        )
        .await?;
        Ok(rec)
    }

    pub async fn list_targets(
        &self,
        auth: &AuthContext,
    ) -> Result<Vec<TargetRecord>, DiscoveryError> {
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(discovery::list_targets(&tx, auth.tenant_id).await?)
    }

    pub async fn get_target(
        &self,
        auth: &AuthContext,
        raw: &str,
    ) -> Result<TargetRecord, DiscoveryError> {
        let id = parse_id("target_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        discovery::get_target(&tx, auth.tenant_id, id)
            .await?
            .ok_or_else(|| DiscoveryError::TargetNotFound(raw.trim().to_owned()))
    }

    /// Deletes a target; its scans and finds stay.
    pub async fn delete_target(&self, auth: &AuthContext, raw: &str) -> Result<(), DiscoveryError> {
        let id = parse_id("target_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        match discovery::delete_target(&tx, auth.tenant_id, id).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(DiscoveryError::TargetNotFound(raw.trim().to_owned()));
            }
            other => other?,
        }
        self.commit_with(
            auth,
            tx,
            (
                "discovery.target.deleted",
                format!("scan-target:{id}"),
                json!({}),
            ),
        )
        .await
    }
}

impl Discovery {
    /// Refuses a target naming an address (or a block holding one) that the guard would never
    /// let a scan dial, so the operator hears it now rather than from every scan. Hostnames
    /// are checked at scan time, on every address they resolve to.
    pub(crate) fn refuse_guarded_literals(&self, new: &NewTarget) -> Result<(), DiscoveryError> {
        let guard = &self.config().guard;
        for host in &new.spec.hosts {
            match Host::parse(host)? {
                Host::Name(_) => {}
                Host::Ip(ip) => guard.check(ip)?,
                Host::Cidr(cidr) => {
                    for ip in cidr.addresses() {
                        guard.check(ip)?;
                    }
                }
            }
        }
        Ok(())
    }
}
