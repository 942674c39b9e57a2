//! Jobs on the stream: offered to the agent, acknowledged, the agent's CSR issued through the
//! issuance role, the agent's report recorded.
//!
//! The issuance role is called through its gRPC client like any other caller, as the agent's
//! own principal (role `agent`), with a short-lived token this role mints for it and keeps only
//! in memory. The idempotency key is the job id and attempt: an agent that reconnects in the
//! middle of an attempt sends the same CSR (it keeps the attempt's key on the host) and gets
//! the same certificate; the next attempt gets a new one.

use std::collections::HashMap;
use std::sync::Mutex;

use certmesh_crypto::cert::pem_from_der;
use certmesh_crypto::csr::Csr;
use certmesh_kit::reason::reason_of;
use certmesh_proto::fleet::{self as pb, server_message::Message as Out};
use certmesh_proto::issuance::{IssueRequest, issuance_service_client::IssuanceServiceClient};
use certmesh_store::fleet::{self, DeploymentRecord, IssuedCert, JobRecord, state};
use certmesh_store::{StoreError, TenantId, certificates, outbox, tokens};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use tonic::Code;

use crate::registry::Outbox;
use crate::session::send;
use crate::{Fleet, FleetError, model::AgentIdentity, model::BindingSpec};

/// Lifetime of a token minted for an agent's issuance; reused for half of it.
const TOKEN_LIFETIME: Duration = Duration::minutes(20);

/// Outcomes an agent reports that end a job well.
const SUCCESS: [&str; 3] = ["verified", "installed", "unchanged"];
/// Every outcome an agent may report.
const OUTCOMES: [&str; 6] = [
    "verified",
    "installed",
    "unchanged",
    "mismatch",
    "unreachable",
    "failed",
];

/// Tokens minted for agents' principals, in memory only.
#[derive(Debug, Default)]
pub struct AgentTokens {
    cache: Mutex<HashMap<uuid::Uuid, (String, DateTime<Utc>)>>,
}

impl AgentTokens {
    fn get(&self, agent: uuid::Uuid, now: DateTime<Utc>) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(&agent)
            .filter(|(_, until)| *until > now)
            .map(|(t, _)| t.clone())
    }

    fn put(&self, agent: uuid::Uuid, token: String, until: DateTime<Utc>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, (_, u)| *u > until - TOKEN_LIFETIME);
        }
        cache.insert(agent, (token, until));
    }
}

/// Why the server side of an attempt failed.
struct ServerFailure {
    reason: String,
    message: String,
    retry: bool,
}

impl Fleet {
    /// Sends a new stream all of `who`'s open jobs whose time came, those in flight on an
    /// earlier stream included (the agent resumes them with the key it kept).
    pub(crate) async fn offer(&self, who: AgentIdentity, tx: &Outbox) {
        let jobs = match self.offerable(who.tenant, &[who.agent]).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(agent = %who.agent, error = %e, "Reading jobs failed.");
                return;
            }
        };
        for job in jobs {
            match self.offer_one(who.tenant, &job).await {
                Ok(Some(message)) => {
                    if !send(tx, Out::Job(message)).await {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(job = %job.id, error = %e, "Offering a job failed."),
            }
        }
    }

    pub(crate) async fn offerable(
        &self,
        tenant: TenantId,
        agents: &[uuid::Uuid],
    ) -> Result<Vec<JobRecord>, FleetError> {
        let tx = self.store().begin_tenant(tenant).await?;
        let jobs = fleet::offerable_jobs(&tx, tenant, agents, self.now()).await?;
        drop(tx);
        Ok(jobs)
    }

    /// Marks `job` sent and builds its message; `None` if another offer raced it.
    async fn offer_one(
        &self,
        tenant: TenantId,
        job: &JobRecord,
    ) -> Result<Option<pb::Job>, FleetError> {
        let tx = self.store().begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let binding = fleet::get_binding(&tx, tenant, job.binding_id)
            .await?
            .ok_or_else(|| FleetError::Corrupt(format!("job {} without binding", job.id)))?;
        let spec = BindingSpec::from_json(&binding.spec)?;
        if matches!(job.state.as_str(), state::PENDING | state::FAILED)
            && !fleet::advance_job(
                &tx,
                tenant,
                job.id,
                &[state::PENDING, state::FAILED],
                state::SENT,
                None,
                self.now(),
            )
            .await?
        {
            return Ok(None);
        }
        let (certificate_pem, chain_pem) = deploy_material(&tx, tenant, job).await?;

        tx.commit().await.map_err(StoreError::from)?;
        Ok(Some(pb::Job {
            job_id: job.id.to_string(),
            kind: job.kind.clone(),
            binding: Some(crate::admin::binding_message(&binding, &spec)),
            attempt: job.attempts,
            certificate_pem,
            chain_pem,
        }))
    }

    fn job_id(raw: &str) -> Option<uuid::Uuid> {
        raw.trim().parse().ok()
    }

    /// The agent's job `raw`, if it is its own and open.
    async fn own_open_job(
        &self,
        who: AgentIdentity,
        raw: &str,
    ) -> Result<Option<JobRecord>, FleetError> {
        let Some(id) = Self::job_id(raw) else {
            return Ok(None);
        };
        let tx = self.store().begin_tenant(who.tenant).await?;
        let job = fleet::get_job(&tx, who.tenant, id).await?;
        Ok(job.filter(|j| j.agent_id == who.agent && state::OPEN.contains(&j.state.as_str())))
    }

    pub(crate) async fn ack(&self, who: AgentIdentity, raw: &str) {
        let result = async {
            let Some(job) = self.own_open_job(who, raw).await? else {
                return Ok::<_, FleetError>(());
            };
            let tx = self.store().begin_tenant(who.tenant).await?;
            fleet::advance_job(
                &tx,
                who.tenant,
                job.id,
                &[state::SENT],
                state::ACKED,
                None,
                self.now(),
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(agent = %who.agent, error = %e, "Recording an ack failed.");
        }
    }

    /// Issues the certificate for a job's CSR; the reply is the certificate or why not.
    pub(crate) async fn issue_for(&self, who: AgentIdentity, raw: &str, csr_pem: &str) -> Out {
        let job = match self.own_open_job(who, raw).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                return job_failed(
                    raw,
                    "JOB_NOT_FOUND",
                    "no such open job of this agent",
                    false,
                );
            }
            Err(e) => return job_failed(raw, "INTERNAL", &e.to_string(), true),
        };
        match self.try_issue(who, &job, csr_pem).await {
            Ok(message) => message,
            Err(failure) => {
                let will_retry = self.fail_attempt(who, &job, &failure).await;
                job_failed(raw, &failure.reason, &failure.message, will_retry)
            }
        }
    }

    async fn try_issue(
        &self,
        who: AgentIdentity,
        job: &JobRecord,
        csr_pem: &str,
    ) -> Result<Out, ServerFailure> {
        let internal = |e: FleetError| ServerFailure {
            reason: "INTERNAL".to_owned(),
            message: e.to_string(),
            retry: true,
        };
        let tx = self
            .store()
            .begin_tenant(who.tenant)
            .await
            .map_err(|e| internal(e.into()))?;
        let binding = fleet::get_binding(&tx, who.tenant, job.binding_id)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or_else(|| internal(FleetError::Corrupt("job without binding".to_owned())))?;
        let agent = fleet::get_agent(&tx, who.tenant, who.agent)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or_else(|| internal(FleetError::AgentNotFound(who.agent.to_string())))?;
        drop(tx);
        let spec = BindingSpec::from_json(&binding.spec).map_err(internal)?;
        check_csr(&spec, csr_pem)?;
        let token = self.agent_token(&agent).await.map_err(internal)?;
        let mut request = tonic::Request::new(IssueRequest {
            csr: csr_pem.to_owned(),
            profile: spec.profile.clone(),
            validity: spec.validity.clone(),
            idempotency_key: format!("fleet-job-{}-{}", job.id, job.attempts),
        });
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| internal(FleetError::Corrupt("token header".to_owned())))?;
        request.metadata_mut().insert("authorization", bearer);
        if let Ok(id) = format!("fleet-job-{}", job.id).parse() {
            request.metadata_mut().insert("x-request-id", id);
        }
        let mut client = IssuanceServiceClient::new(self.deps.issuance.clone());
        let response = client
            .issue(request)
            .await
            .map_err(|status| ServerFailure {
                reason: reason_of(&status).unwrap_or_else(|| format!("{:?}", status.code())),
                message: status.message().to_owned(),
                retry: matches!(
                    status.code(),
                    Code::Unavailable
                        | Code::Internal
                        | Code::Unknown
                        | Code::DeadlineExceeded
                        | Code::ResourceExhausted
                        | Code::Aborted
                ),
            })?;
        let response = response.into_inner();
        let Some(cert) = response.certificate.filter(|_| response.status == "issued") else {
            return Err(ServerFailure {
                reason: "PENDING_APPROVAL".to_owned(),
                message: format!(
                    "profile {} holds requests for approval ({}); agents cannot wait for one",
                    spec.profile, response.approval_id
                ),
                retry: false,
            });
        };
        let to_time = |t: Option<&pbjson_types::Timestamp>| {
            t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        };
        let not_after = to_time(cert.not_after.as_ref()).unwrap_or_else(|| self.now());
        let renew_at = to_time(response.renewal.as_ref().and_then(|r| r.renew_at.as_ref()))
            .unwrap_or(not_after);
        let issued = IssuedCert {
            serial: cert.serial.clone(),
            sha256: cert.fingerprint_sha256.clone(),
            not_after,
            renew_at,
        };
        let tx = self
            .store()
            .begin_tenant(who.tenant)
            .await
            .map_err(|e| internal(e.into()))?;
        fleet::advance_job(
            &tx,
            who.tenant,
            job.id,
            &[state::SENT, state::ACKED, state::ISSUED],
            state::ISSUED,
            Some(&issued),
            self.now(),
        )
        .await
        .map_err(|e| internal(e.into()))?;
        tx.commit()
            .await
            .map_err(|e| internal(StoreError::from(e).into()))?;
        tracing::info!(job = %job.id, agent = %who.agent, serial = %cert.serial, "Certificate issued for an agent job.");
        Ok(Out::Certificate(pb::JobCertificate {
            job_id: job.id.to_string(),
            certificate_pem: cert.certificate_pem,
            chain_pem: cert.chain_pem,
            serial: cert.serial,
        }))
    }

    /// A token for `agent`'s principal, minted when the cached one is old.
    async fn agent_token(
        &self,
        agent: &certmesh_store::fleet::AgentRecord,
    ) -> Result<String, FleetError> {
        let now = self.now();
        if let Some(token) = self.tokens.get(agent.id, now) {
            return Ok(token);
        }
        let tx = self.store().begin_tenant(agent.tenant_id).await?;
        let (_, secret) = tokens::create(
            &tx,
            agent.tenant_id,
            agent.principal_id,
            "fleet",
            Some(now + TOKEN_LIFETIME),
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.tokens
            .put(agent.id, secret.clone(), now + TOKEN_LIFETIME / 2);
        Ok(secret)
    }

    /// Records a failed attempt: retried while attempts remain (and the failure is one that
    /// may pass), else the job is dead and the target waits. Returns whether it will retry.
    async fn fail_attempt(
        &self,
        who: AgentIdentity,
        job: &JobRecord,
        failure: &ServerFailure,
    ) -> bool {
        let result = self
            .end_attempt(who, job, &failure.reason, &failure.message, failure.retry)
            .await;
        match result {
            Ok(retry) => retry,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "Recording a failed attempt failed.");
                false
            }
        }
    }

    async fn end_attempt(
        &self,
        who: AgentIdentity,
        job: &JobRecord,
        outcome: &str,
        detail: &str,
        retryable: bool,
    ) -> Result<bool, FleetError> {
        let now = self.now();
        let retry = retryable && job.attempts < job.max_attempts;
        let tx = self.store().begin_tenant(who.tenant).await?;
        if retry {
            let not_before = now + self.config().retry_delay(job.attempts);
            fleet::retry_job(&tx, who.tenant, job.id, outcome, detail, not_before, now).await?;
        } else {
            fleet::finish_job(&tx, who.tenant, job.id, state::DEAD, outcome, detail, now).await?;
            self.defer_target(&tx, who, job, outcome, detail, now)
                .await?;
        }
        outbox::append(
            &tx,
            who.tenant,
            "fleet.job.failed",
            &job.id.to_string(),
            json!({"agent_id": who.agent.to_string(), "binding_id": job.binding_id.to_string(),
                   "attempt": job.attempts, "outcome": outcome, "detail": detail, "will_retry": retry}),
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(job = %job.id, agent = %who.agent, %outcome, will_retry = retry, "Agent job attempt failed.");
        Ok(retry)
    }

    /// After a dead job the target is not tried again before `dead_backoff`.
    async fn defer_target<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        who: AgentIdentity,
        job: &JobRecord,
        outcome: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), FleetError> {
        let existing = fleet::list_deployments(
            c,
            who.tenant,
            &fleet::DeploymentFilter {
                agent_id: Some(who.agent),
                binding_id: Some(job.binding_id),
                serial: None,
            },
        )
        .await?
        .into_iter()
        .next();
        let mut rec = existing.unwrap_or(DeploymentRecord {
            tenant_id: who.tenant,
            binding_id: job.binding_id,
            agent_id: who.agent,
            serial: String::new(),
            certificate_sha256: String::new(),
            not_after: now,
            renew_at: now,
            outcome: String::new(),
            detail: String::new(),
            served_sha256: String::new(),
            updated_at: now,
        });
        rec.renew_at = now + self.config().dead_backoff;
        rec.outcome = outcome.to_owned();
        rec.detail = detail.to_owned();
        rec.updated_at = now;
        fleet::upsert_deployment(c, &rec).await?;
        Ok(())
    }

    /// Records the agent's report on a job.
    pub(crate) async fn record_result(&self, who: AgentIdentity, result: pb::JobResult) {
        if let Err(e) = self.try_record_result(who, result).await {
            tracing::warn!(agent = %who.agent, error = %e, "Recording a job result failed.");
        }
    }

    async fn try_record_result(
        &self,
        who: AgentIdentity,
        r: pb::JobResult,
    ) -> Result<(), FleetError> {
        let Some(job) = self.own_open_job(who, &r.job_id).await? else {
            return Ok(());
        };
        let outcome = if OUTCOMES.contains(&r.outcome.as_str()) {
            r.outcome.as_str()
        } else {
            "failed"
        };
        let detail: String = r
            .detail
            .chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .take(2048)
            .collect();
        let mut served: String = r
            .served_sha256
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(64)
            .collect::<String>()
            .to_ascii_lowercase();
        if served.is_empty() && outcome == "verified" {
            // Verified means the endpoint served exactly the certificate of this attempt.
            served = job.cert_sha256.clone();
        }
        let now = self.now();
        let installed = SUCCESS.contains(&outcome) || outcome == "unreachable";
        if installed && !job.serial.is_empty() {
            let tx = self.store().begin_tenant(who.tenant).await?;
            fleet::upsert_deployment(
                &tx,
                &DeploymentRecord {
                    tenant_id: who.tenant,
                    binding_id: job.binding_id,
                    agent_id: who.agent,
                    serial: job.serial.clone(),
                    certificate_sha256: job.cert_sha256.clone(),
                    not_after: job.cert_not_after.unwrap_or(now),
                    renew_at: job.cert_renew_at.unwrap_or(now),
                    outcome: outcome.to_owned(),
                    detail: detail.clone(),
                    served_sha256: served.clone(),
                    updated_at: now,
                },
            )
            .await?;
            outbox::append(
                &tx,
                who.tenant,
                "fleet.deployment.reported",
                &job.binding_id.to_string(),
                json!({"agent_id": who.agent.to_string(), "serial": job.serial, "outcome": outcome,
                       "served_sha256": served, "job_id": job.id.to_string()}),
                now,
            )
            .await?;
            if SUCCESS.contains(&outcome) {
                fleet::finish_job(
                    &tx,
                    who.tenant,
                    job.id,
                    state::SUCCEEDED,
                    outcome,
                    &detail,
                    now,
                )
                .await?;
            }
            tx.commit().await.map_err(StoreError::from)?;
            tracing::info!(job = %job.id, agent = %who.agent, serial = %job.serial, %outcome, "Agent reported a deployment.");
            if SUCCESS.contains(&outcome) {
                return Ok(());
            }
        } else if !installed {
            let tx = self.store().begin_tenant(who.tenant).await?;
            fleet::record_report(
                &tx,
                who.tenant,
                job.binding_id,
                who.agent,
                outcome,
                &detail,
                &served,
                now,
            )
            .await?;
            tx.commit().await.map_err(StoreError::from)?;
        }
        self.end_attempt(who, &job, outcome, &detail, true).await?;
        Ok(())
    }
}

/// What a deploy job installs: its certificate and chain (PEM); empty for other kinds.
pub(crate) async fn deploy_material<C: sea_orm::ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    job: &JobRecord,
) -> Result<(String, String), FleetError> {
    if job.kind != "deploy" {
        return Ok((String::new(), String::new()));
    }
    let cert = certificates::get(c, tenant, &job.serial)
        .await?
        .ok_or_else(|| {
            FleetError::Corrupt(format!("deploy job {} without its certificate", job.id))
        })?;
    Ok((pem_from_der(&cert.certificate_der), cert.chain_pem))
}

fn job_failed(job_id: &str, reason: &str, message: &str, will_retry: bool) -> Out {
    Out::JobFailed(pb::JobFailed {
        job_id: job_id.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        will_retry,
    })
}

/// The agent's CSR must ask for exactly the binding's names (the profile then decides whether
/// they may be issued at all).
fn check_csr(spec: &BindingSpec, pem: &str) -> Result<(), ServerFailure> {
    let refuse = |message: String| ServerFailure {
        reason: "REQUEST_INVALID".to_owned(),
        message,
        retry: false,
    };
    let csr = Csr::from_pem(pem).map_err(|e| refuse(format!("csr: {e}")))?;
    let mut asked: Vec<String> = csr
        .dns_names()
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    asked.sort();
    asked.dedup();
    let mut bound = spec.dns_names.clone();
    bound.sort();
    bound.dedup();
    let mut asked_ips = csr.ip_addresses().to_vec();
    asked_ips.sort();
    let mut bound_ips = spec.ip_addresses.clone();
    bound_ips.sort();
    if asked != bound || asked_ips != bound_ips {
        return Err(refuse(format!(
            "the CSR names {asked:?} {asked_ips:?}, the binding {bound:?} {bound_ips:?}"
        )));
    }
    if !spec.common_name.is_empty() && csr.common_name() != Some(spec.common_name.as_str()) {
        return Err(refuse(
            "the CSR's commonName is not the binding's".to_owned(),
        ));
    }
    Ok(())
}
