//! The fleet role's gRPC handlers: the agents' service (enrollment and the stream, identified
//! by the client certificate) and the operators' service (bearer token and RBAC, refusals
//! audited).

use certmesh_kit::{audit, auth::AuthContext, rbac::Permission};
use certmesh_proto::fleet::{
    self as pb, agent_service_server::AgentService, fleet_service_server::FleetService,
};
use certmesh_store::fleet::{AgentRecord, BootstrapToken, DeploymentRecord, JobRecord};
use tonic::{Request, Response, Status, Streaming};

use crate::admin::{NewBinding, binding_message};
use crate::enroll::EnrollRequest;
use crate::session::{SessionStream, facts, timestamp};
use crate::{Fleet, model::AgentIdentity};

fn token_message(t: &BootstrapToken) -> pb::BootstrapToken {
    pb::BootstrapToken {
        id: t.id.to_string(),
        group: t.group.clone(),
        description: t.description.clone(),
        created_at: Some(timestamp(t.created_at)),
        expires_at: Some(timestamp(t.expires_at)),
        used_at: t.used_at.map(timestamp),
        agent_id: t.agent_id.map(|a| a.to_string()).unwrap_or_default(),
        created_by: t.created_by.clone(),
    }
}

fn job_message(j: &JobRecord) -> pb::FleetJob {
    pb::FleetJob {
        id: j.id.to_string(),
        binding_id: j.binding_id.to_string(),
        agent_id: j.agent_id.to_string(),
        kind: j.kind.clone(),
        state: j.state.clone(),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        outcome: j.outcome.clone(),
        detail: j.detail.clone(),
        serial: j.serial.clone(),
        created_at: Some(timestamp(j.created_at)),
        updated_at: Some(timestamp(j.updated_at)),
        not_before: Some(timestamp(j.not_before)),
    }
}

fn deployment_message(d: &DeploymentRecord) -> pb::Deployment {
    pb::Deployment {
        binding_id: d.binding_id.to_string(),
        agent_id: d.agent_id.to_string(),
        serial: d.serial.clone(),
        certificate_sha256: d.certificate_sha256.clone(),
        outcome: if d.outcome.is_empty() {
            "pending".to_owned()
        } else {
            d.outcome.clone()
        },
        detail: d.detail.clone(),
        served_sha256: d.served_sha256.clone(),
        not_after: (!d.serial.is_empty()).then(|| timestamp(d.not_after)),
        renew_at: Some(timestamp(d.renew_at)),
        updated_at: Some(timestamp(d.updated_at)),
    }
}

impl Fleet {
    fn agent_message(&self, a: &AgentRecord) -> pb::Agent {
        let who = AgentIdentity {
            tenant: a.tenant_id,
            agent: a.id,
        };
        pb::Agent {
            id: a.id.to_string(),
            group: a.group.clone(),
            host: Some(pb::HostFacts {
                hostname: a.host.hostname.clone(),
                os: a.host.os.clone(),
                arch: a.host.arch.clone(),
                version: a.host.version.clone(),
            }),
            status: self.health(a).as_str().to_owned(),
            spiffe_id: who.spiffe_id(self.deps.identity.trust_domain()),
            enrolled_at: Some(timestamp(a.enrolled_at)),
            last_seen_at: a.last_seen_at.map(timestamp),
            identity_not_after: Some(timestamp(a.identity_not_after)),
            retired_at: a.retired_at.map(timestamp),
        }
    }

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
impl AgentService for Fleet {
    type SessionStream = SessionStream;

    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let req = request.into_inner();
        let enrolled = Fleet::enroll(
            self,
            EnrollRequest {
                token: req.bootstrap_token,
                csr: req.csr,
                host: facts(req.host),
            },
        )
        .await?;
        Ok(Response::new(pb::EnrollResponse {
            agent_id: enrolled.agent.id.to_string(),
            tenant_id: enrolled.agent.tenant_id.to_string(),
            certificate_pem: enrolled.certificate.to_pem(),
            identity_ca_pem: self.deps.identity.certificate().to_pem(),
            spiffe_id: enrolled.spiffe_id,
            not_after: Some(timestamp(enrolled.certificate.not_after())),
            group: enrolled.agent.group,
        }))
    }

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let certs = request.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let agent = self.authenticate(leaf).await?;
        Ok(Response::new(
            self.open_session(agent, request.into_inner()),
        ))
    }
}

#[tonic::async_trait]
impl FleetService for Fleet {
    async fn create_bootstrap_token(
        &self,
        request: Request<pb::CreateBootstrapTokenRequest>,
    ) -> Result<Response<pb::CreateBootstrapTokenResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::FleetManage,
                "fleet.bootstrap_token.create",
            )
            .await?;
        let req = request.into_inner();
        let (token, secret) = Fleet::create_bootstrap_token(
            self,
            &auth,
            &req.group,
            &req.expires_in,
            &req.description,
        )
        .await?;
        Ok(Response::new(pb::CreateBootstrapTokenResponse {
            token: Some(token_message(&token)),
            secret,
        }))
    }

    async fn list_bootstrap_tokens(
        &self,
        request: Request<pb::ListBootstrapTokensRequest>,
    ) -> Result<Response<pb::ListBootstrapTokensResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::FleetRead,
                "fleet.bootstrap_token.list",
            )
            .await?;
        let tokens = Fleet::list_bootstrap_tokens(self, &auth).await?;
        Ok(Response::new(pb::ListBootstrapTokensResponse {
            tokens: tokens.iter().map(token_message).collect(),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetRead, "fleet.agent.list")
            .await?;
        let agents = Fleet::list_agents(self, &auth, &request.get_ref().group).await?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.iter().map(|a| self.agent_message(a)).collect(),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetRead, "fleet.agent.get")
            .await?;
        let agent = Fleet::get_agent(self, &auth, &request.get_ref().agent_id).await?;
        Ok(Response::new(self.agent_message(&agent)))
    }

    async fn retire_agent(
        &self,
        request: Request<pb::RetireAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetManage, "fleet.agent.retire")
            .await?;
        let agent = Fleet::retire_agent(self, &auth, &request.get_ref().agent_id).await?;
        Ok(Response::new(self.agent_message(&agent)))
    }

    async fn create_binding(
        &self,
        request: Request<pb::CreateBindingRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetManage, "fleet.binding.create")
            .await?;
        let req = request.into_inner();
        let (binding, spec) = Fleet::create_binding(
            self,
            &auth,
            NewBinding {
                name: req.name,
                agent_id: req.agent_id,
                group: req.group,
                certificate: req.certificate,
                target: req.target,
            },
        )
        .await?;
        Ok(Response::new(binding_message(&binding, &spec)))
    }

    async fn list_bindings(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetRead, "fleet.binding.list")
            .await?;
        let bindings = Fleet::list_bindings(self, &auth).await?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: bindings
                .iter()
                .map(|(b, s)| binding_message(b, s))
                .collect(),
        }))
    }

    async fn delete_binding(
        &self,
        request: Request<pb::DeleteBindingRequest>,
    ) -> Result<Response<pb::DeleteBindingResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetManage, "fleet.binding.delete")
            .await?;
        let cancelled = Fleet::delete_binding(self, &auth, &request.get_ref().binding_id).await?;
        Ok(Response::new(pb::DeleteBindingResponse {
            cancelled_jobs: u32::try_from(cancelled).unwrap_or(u32::MAX),
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetRead, "fleet.job.list")
            .await?;
        let r = request.get_ref();
        let jobs =
            Fleet::list_jobs(self, &auth, &r.agent_id, &r.binding_id, &r.state, r.limit).await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(job_message).collect(),
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::FleetJob>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetRead, "fleet.job.get")
            .await?;
        let job = Fleet::get_job(self, &auth, &request.get_ref().job_id).await?;
        Ok(Response::new(job_message(&job)))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetRead, "fleet.deployment.list")
            .await?;
        let r = request.get_ref();
        let deployments =
            Fleet::list_deployments(self, &auth, &r.agent_id, &r.serial, &r.binding_id).await?;
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: deployments.iter().map(deployment_message).collect(),
        }))
    }

    async fn renew_now(
        &self,
        request: Request<pb::RenewNowRequest>,
    ) -> Result<Response<pb::RenewNowResponse>, Status> {
        let auth = self
            .authorize(
                &request,
                Permission::FleetManage,
                "fleet.certificate.renew_now",
            )
            .await?;
        let (deployments, jobs) = Fleet::renew_now(self, &auth, &request.get_ref().serial).await?;
        Ok(Response::new(pb::RenewNowResponse { deployments, jobs }))
    }

    async fn redeploy(
        &self,
        request: Request<pb::RedeployRequest>,
    ) -> Result<Response<pb::RedeployResponse>, Status> {
        let auth = self
            .authorize(&request, Permission::FleetManage, "fleet.binding.redeploy")
            .await?;
        let r = request.get_ref();
        let jobs = Fleet::redeploy(self, &auth, &r.binding_id, &r.agent_id).await?;
        Ok(Response::new(pb::RedeployResponse {
            jobs: jobs.iter().map(job_message).collect(),
        }))
    }
}
