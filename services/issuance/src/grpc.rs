//! The gRPC face of the issuance role; the only file that sees tonic's traits.

use certmesh_crypto::{cert::pem_from_der, serial::Serial};
use certmesh_kit::{auth::AuthContext, rbac::Permission};
use certmesh_proto::{
    common as cpb,
    issuance::{
        self as pb, approval_service_server::ApprovalService,
        issuance_service_server::IssuanceService, profile_service_server::ProfileService,
    },
};
use certmesh_store::{
    approvals::ApprovalRecord, certificates::CertificateRecord, profiles::ProfileVersion,
};
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use crate::{
    Issuance,
    ari::renewal_window,
    error::IssuanceError,
    issue::RequestOutcome,
    model::{IssueCommand, format_duration},
    profile::ValidatedProfile,
};

/// Metadata key a gRPC caller may use instead of the `idempotency_key` field; the gateway maps
/// the REST `Idempotency-Key` header onto it.
pub const IDEMPOTENCY_METADATA: &str = "idempotency-key";

fn timestamp(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn certificate(record: &CertificateRecord) -> Result<cpb::Certificate, IssuanceError> {
    let pem = pem_from_der(&record.certificate_der);
    Ok(cpb::Certificate {
        serial: record.serial.clone(),
        certificate_pem: pem,
        chain_pem: record.chain_pem.clone(),
        not_before: Some(timestamp(record.not_before)),
        not_after: Some(timestamp(record.not_after)),
        fingerprint_sha256: record.fingerprint_sha256.clone(),
        profile: record.profile_name.clone(),
        profile_version: record.profile_version,
        subject: record.subject.clone(),
        sans: record.sans.clone(),
        issuer_ca_id: record.issuer_ca_id.to_string(),
    })
}

fn renewal(record: &CertificateRecord) -> cpb::RenewalWindow {
    let serial = Serial::from_hex(&record.serial)
        .map(|s| s.as_bytes().to_vec())
        .unwrap_or_default();
    let w = renewal_window(&serial, record.not_before, record.not_after);
    cpb::RenewalWindow {
        window_start: Some(timestamp(w.start)),
        window_end: Some(timestamp(w.end)),
        renew_at: Some(timestamp(w.renew_at)),
    }
}

fn profile(version: &ProfileVersion) -> Result<pb::Profile, IssuanceError> {
    Ok(pb::Profile {
        name: version.name.clone(),
        version: version.version,
        spec: Some(ValidatedProfile::from_json(&version.spec)?.to_spec()),
        created_at: Some(timestamp(version.created_at)),
    })
}

fn approval(record: &ApprovalRecord) -> pb::Approval {
    pb::Approval {
        id: record.id.to_string(),
        status: record.status.as_str().to_string(),
        requester: record.requester.clone(),
        csr: record.csr_pem.clone(),
        profile: record.profile.clone(),
        validity: record
            .validity_seconds
            .map(|s| format_duration(chrono::Duration::seconds(s)))
            .unwrap_or_default(),
        decided_by: record.decided_by.clone().unwrap_or_default(),
        note: record.note.clone().unwrap_or_default(),
        certificate_serial: record.certificate_serial.clone().unwrap_or_default(),
        created_at: Some(timestamp(record.created_at)),
        expires_at: Some(timestamp(record.expires_at)),
        decided_at: record.decided_at.map(timestamp),
    }
}

impl Issuance {
    /// The caller, if its roles grant `permission` for `action`; else `PERMISSION_DENIED`.
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        permission: Permission,
        action: &'static str,
    ) -> Result<AuthContext, Status> {
        let auth = AuthContext::of(request)?;
        certmesh_kit::audit::require(
            &self.deps.store,
            &auth,
            permission,
            action,
            self.deps.clock.now(),
        )
        .await?;
        Ok(auth)
    }
}

impl Issuance {
    async fn record_forbidden(
        &self,
        auth: &AuthContext,
        action: &'static str,
        permission: Permission,
    ) {
        let entry = certmesh_kit::audit::forbidden(auth, action, permission, self.deps.clock.now());
        certmesh_kit::audit::record_refusal(&self.deps.store, auth.tenant_id, entry).await;
    }
}

#[tonic::async_trait]
impl IssuanceService for Issuance {
    async fn issue(
        &self,
        request: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        // certs:issue issues; certs:request alone may ask, and the request is held for approval.
        if !auth.can(Permission::CertsIssue)
            && let Err(status) = auth.require(Permission::CertsRequest)
        {
            self.record_forbidden(&auth, "certs.issue", Permission::CertsRequest)
                .await;
            return Err(status);
        }
        let key = request
            .metadata()
            .get(IDEMPOTENCY_METADATA)
            .map(|v| v.to_str().map(str::to_string))
            .transpose()
            .map_err(|_| IssuanceError::InvalidField {
                field: "idempotency_key",
                problem: "is not ASCII".into(),
            })?;
        let cmd = IssueCommand::parse(request.into_inner(), key.as_deref())?;
        let response = match Issuance::request(self, &auth, cmd).await? {
            RequestOutcome::Issued(outcome) => pb::IssueResponse {
                certificate: Some(certificate(&outcome.record)?),
                renewal: Some(renewal(&outcome.record)),
                validity_capped: outcome.capped,
                approval_id: String::new(),
                status: "issued".into(),
            },
            RequestOutcome::PendingApproval(held) => pb::IssueResponse {
                certificate: None,
                renewal: None,
                validity_capped: false,
                approval_id: held.id.to_string(),
                status: "pending_approval".into(),
            },
        };
        Ok(Response::new(response))
    }

    async fn get_certificate(
        &self,
        request: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::GetCertificateResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::CertsRead, "certs.get")
            .await?;
        let record = Issuance::get_certificate(self, &auth, &request.get_ref().serial).await?;
        Ok(Response::new(pb::GetCertificateResponse {
            certificate: Some(certificate(&record)?),
            renewal: Some(renewal(&record)),
        }))
    }

    async fn list_certificates(
        &self,
        request: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::CertsRead, "certs.list")
            .await?;
        let req = request.get_ref();
        let (records, next) =
            Issuance::list_certificates(self, &auth, req.page_size, &req.page_token).await?;
        let certificates = records
            .iter()
            .map(certificate)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates,
            next_page_token: next.unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl ProfileService for Issuance {
    async fn create_profile(
        &self,
        request: Request<pb::CreateProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let auth = self
            .authorize(&request, Permission::ProfilesWrite, "profiles.create")
            .await?;
        let req = request.into_inner();
        let version = Issuance::create_profile(self, &auth, req.name.trim(), req.spec).await?;
        Ok(Response::new(profile(&version)?))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let auth = self
            .authorize(&request, Permission::ProfilesRead, "profiles.get")
            .await?;
        let version = Issuance::get_profile(self, &auth, &request.get_ref().name, None).await?;
        Ok(Response::new(profile(&version)?))
    }

    async fn get_profile_version(
        &self,
        request: Request<pb::GetProfileVersionRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let auth = self
            .authorize(&request, Permission::ProfilesRead, "profiles.get")
            .await?;
        let req = request.get_ref();
        if req.version == 0 {
            return Err(IssuanceError::InvalidField {
                field: "version",
                problem: "must be 1 or more".into(),
            }
            .into());
        }
        let version = Issuance::get_profile(self, &auth, &req.name, Some(req.version)).await?;
        Ok(Response::new(profile(&version)?))
    }

    async fn list_profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::ProfilesRead, "profiles.list")
            .await?;
        let versions = Issuance::list_profiles(self, &auth).await?;
        let profiles = versions
            .iter()
            .map(profile)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListProfilesResponse { profiles }))
    }
}

#[tonic::async_trait]
impl ApprovalService for Issuance {
    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::ApprovalsRead, "approvals.list")
            .await?;
        let records = Issuance::list_approvals(self, &auth, &request.get_ref().status).await?;
        Ok(Response::new(pb::ListApprovalsResponse {
            approvals: records.iter().map(approval).collect(),
        }))
    }

    async fn approve(
        &self,
        request: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::ApprovalsDecide, "approvals.approve")
            .await?;
        let (decided, outcome) = Issuance::approve(self, &auth, &request.get_ref().id).await?;
        Ok(Response::new(pb::ApproveResponse {
            approval: Some(approval(&decided)),
            certificate: Some(certificate(&outcome.record)?),
            renewal: Some(renewal(&outcome.record)),
        }))
    }

    async fn reject(
        &self,
        request: Request<pb::RejectRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        let auth = self
            .authorize(&request, Permission::ApprovalsDecide, "approvals.reject")
            .await?;
        let req = request.get_ref();
        let decided = Issuance::reject(self, &auth, &req.id, &req.note).await?;
        Ok(Response::new(approval(&decided)))
    }
}
