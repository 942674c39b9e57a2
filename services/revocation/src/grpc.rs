//! The revocation role's gRPC handlers: authorize (an audited refusal when the caller lacks the
//! permission), run the operation as the caller, audit a refused revocation, answer.

use certmesh_crypto::revocation::RevocationReason;
use certmesh_kit::{
    audit::{self, record_refusal},
    auth::AuthContext,
    rbac::Permission,
};
use certmesh_proto::revocation::{self as pb, revocation_service_server::RevocationService};
use certmesh_store::{
    audit::{AuditEntry, Outcome},
    revocations::RevocationRecord,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use tonic::{Code, Request, Response, Status};

use crate::{
    RevocationError, Revocations,
    revoke::{Actor, BulkFilter, RevokeOutcome},
};

fn timestamp(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn from_timestamp(
    field: &'static str,
    t: Option<&pbjson_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, RevocationError> {
    t.map(|t| {
        u32::try_from(t.nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
            .ok_or_else(|| RevocationError::InvalidField {
                field,
                problem: "not a valid timestamp".to_owned(),
            })
    })
    .transpose()
}

fn revocation(r: &RevocationRecord) -> pb::Revocation {
    pb::Revocation {
        serial: r.serial.clone(),
        reason: r.reason.clone(),
        reason_code: RevocationReason::parse(&r.reason).map_or(0, |r| u32::from(r.code())),
        reason_text: r.reason_text.clone(),
        revoked_at: Some(timestamp(r.revoked_at)),
        revoked_by: r.revoked_by.clone(),
        issuer_ca_id: r.issuer_ca_id.to_string(),
    }
}

impl Revocations {
    async fn authorize(
        &self,
        auth: &AuthContext,
        permission: Permission,
        action: &'static str,
    ) -> Result<Actor, Status> {
        audit::require(&self.deps.store, auth, permission, action, self.now()).await?;
        Ok(Actor::of(auth))
    }

    /// Audits a refused revocation (a failed precondition, not malformed input), then returns
    /// the error.
    async fn refused(
        &self,
        actor: &Actor,
        action: &'static str,
        resource: String,
        e: RevocationError,
    ) -> Status {
        let (code, reason) = e.code_and_reason();
        if code == Code::FailedPrecondition {
            let entry = AuditEntry {
                actor: actor.principal.clone(),
                action: action.to_owned(),
                resource,
                request_id: actor.request_id.clone(),
                outcome: Outcome::Denied,
                details: json!({"reason": reason.as_str(), "detail": e.to_string()}),
                at: self.now(),
            };
            record_refusal(&self.deps.store, actor.tenant, entry).await;
        }
        e.into()
    }
}

#[tonic::async_trait]
impl RevocationService for Revocations {
    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CertsRevoke, "certificates.revoke")
            .await?;
        let req = request.into_inner();
        if req.reason.trim().is_empty() {
            return Err(RevocationError::InvalidField {
                field: "reason",
                problem: "required (an RFC 5280 reason such as keyCompromise)".to_owned(),
            }
            .into());
        }
        match self
            .revoke(&actor, &req.serial, &req.reason, &req.reason_text)
            .await
        {
            Ok(RevokeOutcome::Revoked(r)) => Ok(Response::new(pb::RevokeResponse {
                revocation: Some(revocation(&r)),
                status: "revoked".to_owned(),
                already_revoked: false,
                hold_lifted: false,
            })),
            Ok(RevokeOutcome::AlreadyRevoked(r)) => Ok(Response::new(pb::RevokeResponse {
                revocation: Some(revocation(&r)),
                status: "revoked".to_owned(),
                already_revoked: true,
                hold_lifted: false,
            })),
            Ok(RevokeOutcome::HoldLifted) => Ok(Response::new(pb::RevokeResponse {
                revocation: None,
                status: "good".to_owned(),
                already_revoked: false,
                hold_lifted: true,
            })),
            Err(e) => Err(self
                .refused(
                    &actor,
                    "certificates.revoke",
                    format!("certificate:{}", req.serial),
                    e,
                )
                .await),
        }
    }

    async fn bulk_revoke(
        &self,
        request: Request<pb::BulkRevokeRequest>,
    ) -> Result<Response<pb::BulkRevokeResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CertsRevoke, "certificates.bulk_revoke")
            .await?;
        let req = request.into_inner();
        if req.reason.trim().is_empty() {
            return Err(RevocationError::InvalidField {
                field: "reason",
                problem: "required (an RFC 5280 reason such as cessationOfOperation)".to_owned(),
            }
            .into());
        }
        let filter = BulkFilter {
            issuer_ca_id: Some(req.issuer_ca_id.clone()).filter(|s| !s.is_empty()),
            profile: Some(req.profile.clone()).filter(|s| !s.is_empty()),
            issued_after: from_timestamp("issued_after", req.issued_after.as_ref())?,
            issued_before: from_timestamp("issued_before", req.issued_before.as_ref())?,
        };
        let totals = self
            .bulk_revoke(&actor, &filter, &req.reason, &req.reason_text, req.dry_run)
            .await?;
        Ok(Response::new(pb::BulkRevokeResponse {
            matched: totals.matched,
            revoked: totals.revoked,
            already_revoked: totals.already_revoked,
            skipped_external: totals.skipped_external,
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::CertificateStatus>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CertsRead, "certificates.status")
            .await?;
        let view = self.status(&actor, &request.get_ref().serial).await?;
        let cert = &view.certificate;
        Ok(Response::new(pb::CertificateStatus {
            serial: cert.serial.clone(),
            status: if view.revocation.is_some() {
                "revoked"
            } else {
                "good"
            }
            .to_owned(),
            revocation: view.revocation.as_ref().map(revocation),
            expired: view.expired,
            not_after: Some(timestamp(cert.not_after)),
            issuer_ca_id: cert.issuer_ca_id.to_string(),
            crl_shard: cert.crl_shard,
        }))
    }
}
