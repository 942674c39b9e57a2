//! Audit-trail plumbing shared by every role: entries attributed to the caller, and refusals
//! recorded in a transaction of their own. State changes append their entries with
//! `certmesh_store::audit::append` inside the transaction that makes the change.

use crate::{auth::AuthContext, rbac::Permission};
use certmesh_store::{
    Store, TenantId,
    audit::{self, AuditEntry, Outcome},
};
use chrono::{DateTime, Utc};
use serde_json::json;

/// An audit entry by `auth` at `at`.
pub fn entry(
    auth: &AuthContext,
    action: &str,
    resource: String,
    outcome: Outcome,
    details: serde_json::Value,
    at: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        actor: auth.principal.clone(),
        action: action.to_string(),
        resource,
        request_id: auth.request_id.clone(),
        outcome,
        details,
        at,
    }
}

/// Record a refused attempt in a transaction of its own. A failure to record is logged, not
/// returned: the caller is refused either way.
pub async fn record_refusal(store: &Store, tenant: TenantId, entry: AuditEntry) {
    let result = async {
        let tx = store.begin_tenant(tenant).await?;
        audit::append(&tx, tenant, std::slice::from_ref(&entry)).await?;
        tx.commit().await.map_err(certmesh_store::StoreError::from)
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, action = %entry.action, "Recording a refusal in the audit trail failed.");
    }
}

/// `Ok` if the caller's roles grant `permission`; otherwise the refusal is recorded (as
/// `action`, at `now`) and `PERMISSION_DENIED` / `PERMISSION_MISSING` returned. Every role's
/// handlers authorize through this.
pub async fn require(
    store: &Store,
    auth: &AuthContext,
    permission: Permission,
    action: &str,
    now: DateTime<Utc>,
) -> Result<(), tonic::Status> {
    if let Err(status) = auth.require(permission) {
        record_refusal(
            store,
            auth.tenant_id,
            forbidden(auth, action, permission, now),
        )
        .await;
        return Err(status);
    }
    Ok(())
}

/// The entry for a caller whose roles lack `permission`.
pub fn forbidden(
    auth: &AuthContext,
    action: &str,
    permission: Permission,
    at: DateTime<Utc>,
) -> AuditEntry {
    entry(
        auth,
        action,
        format!("principal:{}", auth.principal),
        Outcome::Denied,
        json!({"missing_permission": permission.as_str(), "reason": "PERMISSION_MISSING"}),
        at,
    )
}
