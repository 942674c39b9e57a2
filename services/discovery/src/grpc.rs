//! The discovery role's gRPC handlers: bearer token and RBAC (refusals audited), then the
//! domain calls.

use certmesh_crypto::cert::pem_from_der;
use certmesh_kit::clock::timestamp;
use certmesh_kit::{audit, auth::AuthContext, rbac::Permission};
use certmesh_proto::discovery::{self as pb, discovery_service_server::DiscoveryService};
use certmesh_store::discovery::{FoundRecord, ScanRecord, TargetRecord};
use tonic::{Request, Response, Status};

use crate::model::{NewTarget, StoredSpec};
use crate::run::Trigger;
use crate::targets::parse_id;
use crate::{Discovery, DiscoveryError};

/// Most scans one listing returns.
const SCANS_MAX: u32 = 500;

fn target_message(t: &TargetRecord) -> pb::ScanTarget {
    let spec = StoredSpec::from_json(&t.spec).unwrap_or_default();
    pb::ScanTarget {
        id: t.id.to_string(),
        name: t.name.clone(),
        hosts: spec.hosts,
        ports: spec.ports.into_iter().map(u32::from).collect(),
        sni: spec.sni,
        interval_seconds: u64::try_from(t.interval_seconds).unwrap_or(0),
        next_scan_at: t.next_scan_at.map(timestamp),
        last_scan_id: t.last_scan_id.map(|s| s.to_string()).unwrap_or_default(),
        created_by: t.created_by.clone(),
        created_at: Some(timestamp(t.created_at)),
    }
}

fn scan_message(s: &ScanRecord) -> pb::Scan {
    pb::Scan {
        id: s.id.to_string(),
        target_id: s.target_id.to_string(),
        trigger: s.trigger.clone(),
        state: s.state.clone(),
        endpoints: s.endpoints,
        reachable: s.reachable,
        refused: s.refused,
        certificates: s.certificates,
        detail: s.detail.clone(),
        started_at: Some(timestamp(s.started_at)),
        finished_at: s.finished_at.map(timestamp),
    }
}

fn found_message(f: &FoundRecord, with_pem: bool) -> pb::DiscoveredCertificate {
    let s = &f.sighting;
    pb::DiscoveredCertificate {
        id: f.id.to_string(),
        fingerprint_sha256: s.fingerprint_sha256.clone(),
        location: s.location.clone(),
        source: s.source.clone(),
        agent_id: s.agent_id.map(|a| a.to_string()).unwrap_or_default(),
        target_id: s.target_id.map(|t| t.to_string()).unwrap_or_default(),
        serial: s.serial.clone(),
        subject: s.subject.clone(),
        issuer: s.issuer.clone(),
        sans: s.sans.clone(),
        not_before: Some(timestamp(s.not_before)),
        not_after: Some(timestamp(s.not_after)),
        key_type: s.key_type.clone(),
        key_bits: s.key_bits,
        signature_algorithm: s.signature_algorithm.clone(),
        tls_version: s.tls_version.clone(),
        self_signed: s.self_signed,
        is_ca: s.is_ca,
        weaknesses: s.weaknesses.clone(),
        status: s.status.clone(),
        binding_id: f.binding_id.map(|b| b.to_string()).unwrap_or_default(),
        first_seen_at: Some(timestamp(f.first_seen_at)),
        last_seen_at: Some(timestamp(f.last_seen_at)),
        certificate_pem: if with_pem {
            pem_from_der(&s.certificate_der)
        } else {
            String::new()
        },
    }
}

impl Discovery {
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        permission: Permission,
        action: &'static str,
    ) -> Result<AuthContext, Status> {
        let auth = AuthContext::of(request)?;
        audit::require(self.store(), &auth, permission, action, self.now()).await?;
        Ok(auth)
    }
}

#[tonic::async_trait]
impl DiscoveryService for Discovery {
    async fn create_scan_target(
        &self,
        request: Request<pb::CreateScanTargetRequest>,
    ) -> Result<Response<pb::ScanTarget>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::DiscoveryManage,
                "discovery.target.create",
            )
            .await?;
        let new = NewTarget::parse(request.get_ref(), self.config().max_cidr_addresses)?;
        self.refuse_guarded_literals(&new)?;
        let target = self.create_target(&auth, new).await?;
        Ok(Response::new(target_message(&target)))
    }

    async fn list_scan_targets(
        &self,
        request: Request<pb::ListScanTargetsRequest>,
    ) -> Result<Response<pb::ListScanTargetsResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::DiscoveryRead, "discovery.target.list")
            .await?;
        let targets = self.list_targets(&auth).await?;
        Ok(Response::new(pb::ListScanTargetsResponse {
            targets: targets.iter().map(target_message).collect(),
        }))
    }

    async fn delete_scan_target(
        &self,
        request: Request<pb::DeleteScanTargetRequest>,
    ) -> Result<Response<pb::DeleteScanTargetResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::DiscoveryManage,
                "discovery.target.delete",
            )
            .await?;
        self.delete_target(&auth, &request.get_ref().target_id)
            .await?;
        Ok(Response::new(pb::DeleteScanTargetResponse {}))
    }

    async fn start_scan(
        &self,
        request: Request<pb::StartScanRequest>,
    ) -> Result<Response<pb::Scan>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::DiscoveryManage,
                "discovery.scan.start",
            )
            .await?;
        let target = self.get_target(&auth, &request.get_ref().target_id).await?;
        let scan = self.run_scan(&target, Trigger::Manual).await?;
        Ok(Response::new(scan_message(&scan)))
    }

    async fn list_scans(
        &self,
        request: Request<pb::ListScansRequest>,
    ) -> Result<Response<pb::ListScansResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::DiscoveryRead, "discovery.scan.list")
            .await?;
        let r = request.get_ref();
        let target = match r.target_id.trim() {
            "" => None,
            raw => Some(parse_id("target_id", raw)?),
        };
        let limit = if r.limit == 0 {
            50
        } else {
            r.limit.min(SCANS_MAX)
        };
        let tx = self
            .store()
            .begin_tenant(auth.tenant_id)
            .await
            .map_err(DiscoveryError::from)?;
        let scans =
            certmesh_store::discovery::list_scans(&tx, auth.tenant_id, target, u64::from(limit))
                .await
                .map_err(DiscoveryError::from)?;
        Ok(Response::new(pb::ListScansResponse {
            scans: scans.iter().map(scan_message).collect(),
        }))
    }

    async fn get_scan(
        &self,
        request: Request<pb::GetScanRequest>,
    ) -> Result<Response<pb::Scan>, Status> {
        let auth = self
            .authorize(&request, Permission::DiscoveryRead, "discovery.scan.get")
            .await?;
        let raw = &request.get_ref().scan_id;
        let id = parse_id("scan_id", raw)?;
        let tx = self
            .store()
            .begin_tenant(auth.tenant_id)
            .await
            .map_err(DiscoveryError::from)?;
        let scan = certmesh_store::discovery::get_scan(&tx, auth.tenant_id, id)
            .await
            .map_err(DiscoveryError::from)?
            .ok_or_else(|| DiscoveryError::ScanNotFound(raw.trim().to_owned()))?;
        Ok(Response::new(scan_message(&scan)))
    }

    async fn list_discovered(
        &self,
        request: Request<pb::ListDiscoveredRequest>,
    ) -> Result<Response<pb::ListDiscoveredResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::DiscoveryRead,
                "discovery.certificate.list",
            )
            .await?;
        let found = self.list_found(&auth, request.get_ref()).await?;
        Ok(Response::new(pb::ListDiscoveredResponse {
            certificates: found.iter().map(|f| found_message(f, false)).collect(),
        }))
    }

    async fn get_discovered(
        &self,
        request: Request<pb::GetDiscoveredRequest>,
    ) -> Result<Response<pb::DiscoveredCertificate>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::DiscoveryRead,
                "discovery.certificate.get",
            )
            .await?;
        let found = self.get_found(&auth, &request.get_ref().id).await?;
        Ok(Response::new(found_message(&found, true)))
    }

    async fn claim_discovered(
        &self,
        request: Request<pb::ClaimDiscoveredRequest>,
    ) -> Result<Response<pb::ClaimDiscoveredResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::DiscoveryManage,
                "discovery.certificate.claim",
            )
            .await?;
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (found, binding_id) = self
            .claim(&auth, authorization.as_deref(), request.get_ref())
            .await?;
        Ok(Response::new(pb::ClaimDiscoveredResponse {
            certificate: Some(found_message(&found, false)),
            binding_id,
        }))
    }

    async fn dismiss_discovered(
        &self,
        request: Request<pb::DismissDiscoveredRequest>,
    ) -> Result<Response<pb::DiscoveredCertificate>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::DiscoveryManage,
                "discovery.certificate.dismiss",
            )
            .await?;
        let found = self.dismiss(&auth, &request.get_ref().id).await?;
        Ok(Response::new(found_message(&found, false)))
    }
}
