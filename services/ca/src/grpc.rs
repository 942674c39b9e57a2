//! The CA role's gRPC handlers: authorize (an audited refusal when the caller lacks the
//! permission), run the operation as the caller, audit a refused operation, answer.

use certmesh_crypto::cert::pem_bundle;
use certmesh_kit::{
    audit::{self, record_refusal},
    auth::AuthContext,
    rbac::Permission,
};
use certmesh_proto::ca::{self as pb, ca_service_server::CaService};
use certmesh_store::audit::Outcome;
use serde_json::json;
use tonic::{Code, Request, Response, Status};

use crate::{Actor, CaError, Hierarchy, model};

impl Hierarchy {
    /// The caller as an [`Actor`], if it holds `permission`; otherwise the refusal is audited
    /// and returned.
    async fn authorize(
        &self,
        auth: &AuthContext,
        permission: Permission,
        action: &'static str,
    ) -> Result<Actor, Status> {
        audit::require(&self.deps.store, auth, permission, action, self.now()).await?;
        Ok(Actor::of(auth))
    }

    /// Audits a refused operation (a failed precondition or check, not malformed input or an
    /// internal failure) in a transaction of its own, then returns the error.
    async fn refused(
        &self,
        actor: &Actor,
        action: &'static str,
        resource: String,
        e: CaError,
    ) -> Status {
        let (code, reason) = e.code_and_reason();
        if matches!(
            code,
            Code::FailedPrecondition | Code::PermissionDenied | Code::Aborted | Code::AlreadyExists
        ) {
            let entry = actor.audit(
                action,
                resource,
                Outcome::Denied,
                json!({"reason": reason.as_str(), "detail": e.to_string()}),
                self.now(),
            );
            record_refusal(&self.deps.store, actor.tenant, entry).await;
        }
        e.into()
    }
}

fn ca_response(op: crate::tree::Operated) -> pb::CaOperationResponse {
    pb::CaOperationResponse {
        ca: Some(model::ca(&op.ca)),
        validity_capped: op.validity_capped,
    }
}

#[tonic::async_trait]
impl CaService for Hierarchy {
    async fn start_ceremony(
        &self,
        request: Request<pb::StartCeremonyRequest>,
    ) -> Result<Response<pb::Ceremony>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasManage, "ceremonies.start")
            .await?;
        let req = request.into_inner();
        match self.start_ceremony(&actor, &req).await {
            Ok(view) => Ok(Response::new(model::ceremony(&view))),
            Err(e) => Err(self
                .refused(&actor, "ceremonies.start", "ceremony:new".into(), e)
                .await),
        }
    }

    async fn get_ceremony(
        &self,
        request: Request<pb::GetCeremonyRequest>,
    ) -> Result<Response<pb::Ceremony>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasRead, "ceremonies.get")
            .await?;
        let view = self.ceremony(&actor, &request.get_ref().id).await?;
        Ok(Response::new(model::ceremony(&view)))
    }

    async fn list_ceremonies(
        &self,
        request: Request<pb::ListCeremoniesRequest>,
    ) -> Result<Response<pb::ListCeremoniesResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasRead, "ceremonies.list")
            .await?;
        let views = self.ceremonies(&actor, &request.get_ref().status).await?;
        Ok(Response::new(pb::ListCeremoniesResponse {
            ceremonies: views.iter().map(model::ceremony).collect(),
        }))
    }

    async fn approve_ceremony(
        &self,
        request: Request<pb::ApproveCeremonyRequest>,
    ) -> Result<Response<pb::ApproveCeremonyResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CeremoniesApprove, "ceremonies.approve")
            .await?;
        let req = request.into_inner();
        match self.approve(&actor, &req.id, &req.signature).await {
            Ok(a) => Ok(Response::new(pb::ApproveCeremonyResponse {
                ceremony: Some(model::ceremony(&a.ceremony)),
                approvals: a.approvals,
                threshold: a.threshold,
                already_approved: a.already_approved,
            })),
            Err(e) => {
                let resource = format!("ceremony:{}", req.id.trim());
                Err(self
                    .refused(&actor, "ceremonies.approve", resource, e)
                    .await)
            }
        }
    }

    async fn create_root(
        &self,
        request: Request<pb::CreateRootRequest>,
    ) -> Result<Response<pb::CaOperationResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let req = request.into_inner();
        let action = match req.import {
            Some(_) => "cas.import_root",
            None => "cas.create_root",
        };
        let actor = self.authorize(&auth, Permission::CasManage, action).await?;
        let params = req.params.unwrap_or_default();
        match self
            .create_root(&actor, &req.ceremony_id, &params, req.import.as_ref())
            .await
        {
            Ok(op) => Ok(Response::new(ca_response(op))),
            Err(e) => {
                let resource = format!("ceremony:{}", req.ceremony_id.trim());
                Err(self.refused(&actor, action, resource, e).await)
            }
        }
    }

    async fn create_intermediate(
        &self,
        request: Request<pb::CreateIntermediateRequest>,
    ) -> Result<Response<pb::CaOperationResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasManage, "cas.create_intermediate")
            .await?;
        let req = request.into_inner();
        let params = req.params.unwrap_or_default();
        match self
            .create_intermediate(&actor, &req.parent_id, &req.ceremony_id, &params)
            .await
        {
            Ok(op) => Ok(Response::new(ca_response(op))),
            Err(e) => {
                let resource = format!("ca:{}", req.parent_id.trim());
                Err(self
                    .refused(&actor, "cas.create_intermediate", resource, e)
                    .await)
            }
        }
    }

    async fn rotate_ca(
        &self,
        request: Request<pb::RotateCaRequest>,
    ) -> Result<Response<pb::CaOperationResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasManage, "cas.rotate")
            .await?;
        let req = request.into_inner();
        let params = req.params.unwrap_or_default();
        match self
            .rotate(&actor, &req.id, &req.ceremony_id, &params)
            .await
        {
            Ok(op) => Ok(Response::new(ca_response(op))),
            Err(e) => {
                let resource = format!("ca:{}", req.id.trim());
                Err(self.refused(&actor, "cas.rotate", resource, e).await)
            }
        }
    }

    async fn cross_sign_ca(
        &self,
        request: Request<pb::CrossSignCaRequest>,
    ) -> Result<Response<pb::CrossSignCaResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasManage, "cas.cross_sign")
            .await?;
        let req = request.into_inner();
        let params = req.params.unwrap_or_default();
        match self
            .cross_sign(&actor, &req.id, &req.ceremony_id, &params)
            .await
        {
            Ok(op) => Ok(Response::new(pb::CrossSignCaResponse {
                ca: Some(model::ca(&op.ca)),
                certificate_pem: op.cross.map(|c| c.to_pem()).unwrap_or_default(),
                validity_capped: op.validity_capped,
            })),
            Err(e) => {
                let resource = format!("ca:{}", req.id.trim());
                Err(self.refused(&actor, "cas.cross_sign", resource, e).await)
            }
        }
    }

    async fn retire_ca(
        &self,
        request: Request<pb::RetireCaRequest>,
    ) -> Result<Response<pb::Ca>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasManage, "cas.retire")
            .await?;
        let req = request.into_inner();
        match self.retire(&actor, &req.id, req.confirm).await {
            Ok(ca) => Ok(Response::new(model::ca(&ca))),
            Err(e) => {
                let resource = format!("ca:{}", req.id.trim());
                Err(self.refused(&actor, "cas.retire", resource, e).await)
            }
        }
    }

    async fn list_cas(
        &self,
        request: Request<pb::ListCasRequest>,
    ) -> Result<Response<pb::ListCasResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasRead, "cas.list")
            .await?;
        let cas = self.list(&actor).await?;
        Ok(Response::new(pb::ListCasResponse {
            cas: cas.iter().map(model::ca).collect(),
        }))
    }

    async fn get_ca(&self, request: Request<pb::GetCaRequest>) -> Result<Response<pb::Ca>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasRead, "cas.get")
            .await?;
        let ca = self.get(&actor, &request.get_ref().id).await?;
        Ok(Response::new(model::ca(&ca)))
    }

    async fn get_ca_chain(
        &self,
        request: Request<pb::GetCaChainRequest>,
    ) -> Result<Response<pb::GetCaChainResponse>, Status> {
        let auth = AuthContext::of(&request)?;
        let actor = self
            .authorize(&auth, Permission::CasRead, "cas.chain")
            .await?;
        let chain = self.chain(&actor, &request.get_ref().id).await?;
        Ok(Response::new(pb::GetCaChainResponse {
            chain_pem: pem_bundle(&chain),
        }))
    }
}
