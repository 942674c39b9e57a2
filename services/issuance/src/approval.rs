//! Two-person approval: Issue requests held until a second principal approves or rejects them.
//!
//! A request is held when its profile requires approval or its caller may request but not
//! issue (an ra-officer). Approving runs the held request through the one issuance path
//! ([`Issuance::issue`]) as the requester, with the original idempotency key (or
//! `approval:<id>`), so the certificate is exactly what a retry of the original request with
//! that key returns, and two racing approvers mint one certificate between them. The decision
//! is then recorded with a conditional update that only one of them wins.

use certmesh_crypto::csr::Csr;
use certmesh_kit::{
    audit::{entry, record_refusal},
    auth::AuthContext,
};
use certmesh_store::{
    StoreError, TenantId,
    approvals::{self, ApprovalRecord, ApprovalStatus, Decision},
    audit::{self, Outcome},
    outbox,
};
use chrono::Duration;
use serde_json::json;

use crate::{
    Issuance,
    error::IssuanceError,
    issue::{IssueOutcome, evaluation_event},
    model::IssueCommand,
    profile::Grant,
};

/// How long a request waits for a decision before it expires.
pub const APPROVAL_TTL: Duration = Duration::hours(168);

impl Issuance {
    /// Hold an allowed request as a pending approval. A retry under the same idempotency key
    /// gets the approval it made before.
    pub(crate) async fn hold(
        &self,
        auth: &AuthContext,
        cmd: &IssueCommand,
        version: u32,
        grant: &Grant,
    ) -> Result<ApprovalRecord, IssuanceError> {
        let tenant = auth.tenant_id;
        let now = self.deps.clock.now();
        let csr_pem = cmd.csr.to_pem();
        let validity_seconds = cmd.validity.map(|d| d.num_seconds());
        if let Some(key) = &cmd.idempotency_key
            && let Some(held) = self
                .deps
                .store
                .in_tenant(tenant, async |tx| {
                    approvals::pending_by_key(tx, tenant, key, now).await
                })
                .await?
        {
            let same = held.csr_pem == csr_pem
                && held.profile == cmd.profile
                && held.validity_seconds == validity_seconds;
            return if same {
                Ok(held)
            } else {
                Err(IssuanceError::IdempotencyKeyReused { key: key.clone() })
            };
        }
        let approval = ApprovalRecord {
            id: uuid::Uuid::new_v4(),
            tenant_id: tenant,
            requester_id: auth.principal_id,
            requester: auth.principal.clone(),
            csr_pem,
            profile: cmd.profile.clone(),
            validity_seconds,
            idempotency_key: cmd.idempotency_key.clone(),
            status: ApprovalStatus::Pending,
            decided_by: None,
            note: None,
            certificate_serial: None,
            created_at: now,
            expires_at: now + APPROVAL_TTL,
            decided_at: None,
        };
        let evaluation = evaluation_event(auth, cmd, version, Ok(grant));
        let trail = entry(
            auth,
            "certs.request",
            format!("approval:{}", approval.id),
            Outcome::Allowed,
            json!({
                "profile": cmd.profile,
                "profile_version": version,
                "subject": cmd.csr.subject(),
                "dns_names": cmd.csr.dns_names(),
                "expires_at": approval.expires_at.to_rfc3339(),
            }),
            now,
        );
        // The insert is the transaction's first statement, so SQLite takes the write lock.
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let stored = approvals::create(&tx, &approval).await?;
        outbox::append(
            &tx,
            tenant,
            "issuance.profile_evaluated",
            &cmd.profile,
            evaluation,
            now,
        )
        .await?;
        audit::append(&tx, tenant, &[trail]).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::debug!(approval = %stored.id, profile = %stored.profile, "Issuance held for approval.");
        Ok(stored)
    }

    /// Approve a pending request: issue its certificate as the requester, then record the
    /// decision. The approver must not be the requester.
    pub async fn approve(
        &self,
        auth: &AuthContext,
        id: &str,
    ) -> Result<(ApprovalRecord, IssueOutcome), IssuanceError> {
        let approval = self.pending(auth.tenant_id, id).await?;
        if approval.requester_id == auth.principal_id {
            let refusal = entry(
                auth,
                "approvals.approve",
                format!("approval:{}", approval.id),
                Outcome::Denied,
                json!({"reason": "SELF_APPROVAL_FORBIDDEN", "requester": approval.requester}),
                self.deps.clock.now(),
            );
            record_refusal(&self.deps.store, auth.tenant_id, refusal).await;
            return Err(IssuanceError::SelfApprovalForbidden {
                id: approval.id.to_string(),
                principal: approval.requester,
            });
        }
        let requester = AuthContext {
            tenant_id: auth.tenant_id,
            principal: approval.requester.clone(),
            principal_id: approval.requester_id,
            token_id: uuid::Uuid::nil(),
            // Signing checks no roles; the approver's were checked.
            roles: Vec::new(),
            expires_at: None,
            request_id: auth.request_id.clone(),
        };
        let outcome = self.issue(&requester, command(&approval)?).await?;
        let serial = outcome.record.serial.clone();
        let decision = Decision {
            status: ApprovalStatus::Approved,
            decided_by: auth.principal.clone(),
            note: None,
            certificate_serial: Some(serial.clone()),
        };
        let details = json!({
            "requester": approval.requester,
            "profile": approval.profile,
            "serial": serial,
            "profile_version": outcome.record.profile_version,
        });
        let decided = self
            .decide(auth, &approval, decision, "approvals.approve", details)
            .await?;
        Ok((decided, outcome))
    }

    /// Reject a pending request, saying why.
    pub async fn reject(
        &self,
        auth: &AuthContext,
        id: &str,
        note: &str,
    ) -> Result<ApprovalRecord, IssuanceError> {
        let note = note.trim();
        if note.is_empty() {
            return Err(IssuanceError::InvalidField {
                field: "note",
                problem: "is required: say why the request is rejected".into(),
            });
        }
        let approval = self.pending(auth.tenant_id, id).await?;
        let decision = Decision {
            status: ApprovalStatus::Rejected,
            decided_by: auth.principal.clone(),
            note: Some(note.to_string()),
            certificate_serial: None,
        };
        let details = json!({
            "requester": approval.requester,
            "profile": approval.profile,
            "note": note,
        });
        self.decide(auth, &approval, decision, "approvals.reject", details)
            .await
    }

    /// The tenant's approvals, oldest first; `status` filters ("" for all).
    pub async fn list_approvals(
        &self,
        auth: &AuthContext,
        status: &str,
    ) -> Result<Vec<ApprovalRecord>, IssuanceError> {
        let status = match status.trim() {
            "" => None,
            s => Some(
                ApprovalStatus::parse(s).ok_or_else(|| IssuanceError::InvalidField {
                    field: "status",
                    problem: "must be pending, approved, rejected or expired".into(),
                })?,
            ),
        };
        let now = self.deps.clock.now();
        let tenant = auth.tenant_id;
        Ok(self
            .deps
            .store
            .in_tenant(tenant, async |tx| {
                approvals::list(tx, tenant, status, now).await
            })
            .await?)
    }

    /// The tenant's approval `id` if it is pending; an expired one is marked so.
    async fn pending(&self, tenant: TenantId, id: &str) -> Result<ApprovalRecord, IssuanceError> {
        let not_found = || IssuanceError::ApprovalNotFound { id: id.to_string() };
        let uuid = uuid::Uuid::parse_str(id.trim()).map_err(|_| not_found())?;
        let now = self.deps.clock.now();
        let store = &self.deps.store;
        let approval = store
            .in_tenant(tenant, async |tx| {
                approvals::get(tx, tenant, uuid, now).await
            })
            .await?
            .ok_or_else(not_found)?;
        match approval.status {
            ApprovalStatus::Pending => Ok(approval),
            ApprovalStatus::Expired => {
                store
                    .in_tenant(tenant, async |tx| {
                        approvals::expire(tx, tenant, uuid, now).await
                    })
                    .await?;
                Err(not_pending(&approval))
            }
            ApprovalStatus::Approved | ApprovalStatus::Rejected => Err(not_pending(&approval)),
        }
    }

    /// Record `decision` and its audit entry in one transaction; a lost race (or an expiry
    /// in between) is `APPROVAL_NOT_PENDING`.
    async fn decide(
        &self,
        auth: &AuthContext,
        approval: &ApprovalRecord,
        decision: Decision,
        action: &str,
        details: serde_json::Value,
    ) -> Result<ApprovalRecord, IssuanceError> {
        let tenant = auth.tenant_id;
        let now = self.deps.clock.now();
        let trail = entry(
            auth,
            action,
            format!("approval:{}", approval.id),
            Outcome::Allowed,
            details,
            now,
        );
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        match approvals::decide(&tx, tenant, approval.id, &decision, now).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                drop(tx);
                let current = self
                    .deps
                    .store
                    .in_tenant(tenant, async |tx| {
                        approvals::get(tx, tenant, approval.id, now).await
                    })
                    .await?
                    .unwrap_or_else(|| approval.clone());
                return Err(not_pending(&current));
            }
            Err(e) => return Err(e.into()),
        }
        audit::append(&tx, tenant, &[trail]).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.deps
            .store
            .in_tenant(tenant, async |tx| {
                approvals::get(tx, tenant, approval.id, now).await
            })
            .await?
            .ok_or_else(|| IssuanceError::ApprovalNotFound {
                id: approval.id.to_string(),
            })
    }
}

fn not_pending(approval: &ApprovalRecord) -> IssuanceError {
    IssuanceError::ApprovalNotPending {
        id: approval.id.to_string(),
        status: approval.status.as_str(),
    }
}

/// The held request as an Issue command, under its original idempotency key or
/// `approval:<id>`.
fn command(approval: &ApprovalRecord) -> Result<IssueCommand, IssuanceError> {
    Ok(IssueCommand {
        csr: Csr::from_pem(&approval.csr_pem)?,
        profile: approval.profile.clone(),
        validity: approval.validity_seconds.map(Duration::seconds),
        idempotency_key: Some(
            approval
                .idempotency_key
                .clone()
                .unwrap_or_else(|| format!("approval:{}", approval.id)),
        ),
    })
}
