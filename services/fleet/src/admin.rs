//! The operators' side: bootstrap tokens, agents, bindings, jobs, deployments and renew-now.
//! Every change writes its audit entry and event in the transaction that makes it.

use certmesh_kit::{audit, auth::AuthContext, duration};
use certmesh_proto::fleet as pb;
use certmesh_store::audit::{AuditEntry, Outcome};
use certmesh_store::fleet::{
    self, AgentRecord, BindingRecord, BootstrapToken, DeploymentFilter, DeploymentRecord,
    JobFilter, JobRecord,
};
use certmesh_store::{StoreError, outbox};
use chrono::Duration;
use serde_json::json;

use crate::session::timestamp;
use crate::{Fleet, FleetError, model::BindingSpec, model::Health};

/// Default and longest life of a bootstrap token.
const TOKEN_DEFAULT: Duration = Duration::hours(24);
const TOKEN_MAX: Duration = Duration::hours(720);
/// Longest group or binding name.
const MAX_NAME: usize = 128;

fn name(field: &'static str, value: &str, default: Option<&str>) -> Result<String, FleetError> {
    let value = value.trim();
    let value = if value.is_empty() {
        default.ok_or_else(|| FleetError::InvalidField {
            field,
            problem: "is required".to_owned(),
        })?
    } else {
        value
    };
    let ok = value.len() <= MAX_NAME
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(FleetError::InvalidField {
            field,
            problem: format!("{value:?} must be 1 to {MAX_NAME} of [A-Za-z0-9._-]"),
        })
    }
}

/// A UUID given by a caller.
pub fn parse_id(field: &'static str, raw: &str) -> Result<uuid::Uuid, FleetError> {
    raw.trim().parse().map_err(|_| FleetError::InvalidField {
        field,
        problem: format!("{raw:?} is not a UUID"),
    })
}

/// The wire form of a binding.
pub fn binding_message(b: &BindingRecord, spec: &BindingSpec) -> pb::Binding {
    pb::Binding {
        id: b.id.to_string(),
        name: b.name.clone(),
        agent_id: b.agent_id.map(|a| a.to_string()).unwrap_or_default(),
        group: b.group.clone().unwrap_or_default(),
        certificate: Some(spec.certificate()),
        target: Some(spec.target()),
        created_at: Some(timestamp(b.created_at)),
    }
}

/// What a new binding says.
#[derive(Debug)]
pub struct NewBinding {
    pub name: String,
    pub agent_id: String,
    pub group: String,
    pub certificate: Option<pb::CertificateSpec>,
    pub target: Option<pb::DeployTarget>,
}

impl Fleet {
    async fn commit_with(
        &self,
        auth: &AuthContext,
        tx: sea_orm::DatabaseTransaction,
        event: (&str, String, serde_json::Value),
        action: &str,
    ) -> Result<(), FleetError> {
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
            audit::entry(auth, action, resource, Outcome::Allowed, details, now);
        certmesh_store::audit::append(&tx, auth.tenant_id, std::slice::from_ref(&entry)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// A one-time bootstrap token for `group`; returns it with its secret.
    pub async fn create_bootstrap_token(
        &self,
        auth: &AuthContext,
        group: &str,
        expires_in: &str,
        description: &str,
    ) -> Result<(BootstrapToken, String), FleetError> {
        let group = name("group", group, Some("default"))?;
        let life = if expires_in.trim().is_empty() {
            TOKEN_DEFAULT
        } else {
            duration::parse(expires_in.trim()).map_err(|e| FleetError::InvalidField {
                field: "expires_in",
                problem: e.to_string(),
            })?
        };
        if life <= Duration::zero() || life > TOKEN_MAX {
            return Err(FleetError::InvalidField {
                field: "expires_in",
                problem: "must be positive and at most 720h".to_owned(),
            });
        }
        let description: String = description
            .chars()
            .filter(|c| !c.is_control())
            .take(256)
            .collect();
        let now = self.now();
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let (token, secret) = fleet::create_bootstrap_token(
            &tx,
            auth.tenant_id,
            &group,
            &description,
            &auth.principal,
            now + life,
            now,
        )
        .await?;
        let details =
            json!({"group": group, "expires_at": token.expires_at, "description": description});
        self.commit_with(
            auth,
            tx,
            (
                "fleet.bootstrap_token.created",
                format!("bootstrap-token:{}", token.id),
                details,
            ),
            "fleet.bootstrap_token.create",
        )
        .await?;
        Ok((token, secret))
    }

    pub async fn list_bootstrap_tokens(
        &self,
        auth: &AuthContext,
    ) -> Result<Vec<BootstrapToken>, FleetError> {
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(fleet::list_bootstrap_tokens(&tx, auth.tenant_id).await?)
    }

    /// The agent's health now.
    pub fn health(&self, agent: &AgentRecord) -> Health {
        let seen = if self.registry.is_connected(agent.id) {
            Some(self.now())
        } else {
            agent.last_seen_at
        };
        Health::of(
            agent.status == fleet::AGENT_RETIRED,
            seen,
            self.config().heartbeat,
            self.now(),
        )
    }

    pub async fn list_agents(
        &self,
        auth: &AuthContext,
        group: &str,
    ) -> Result<Vec<AgentRecord>, FleetError> {
        let group = group.trim();
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(fleet::list_agents(&tx, auth.tenant_id, (!group.is_empty()).then_some(group)).await?)
    }

    pub async fn get_agent(
        &self,
        auth: &AuthContext,
        raw: &str,
    ) -> Result<AgentRecord, FleetError> {
        let id = parse_id("agent_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        fleet::get_agent(&tx, auth.tenant_id, id)
            .await?
            .ok_or_else(|| FleetError::AgentNotFound(raw.to_owned()))
    }

    /// Retires an agent: its certificate stops opening streams, its jobs are cancelled, an
    /// open stream on this replica is told at once (others within a heartbeat flush).
    pub async fn retire_agent(
        &self,
        auth: &AuthContext,
        raw: &str,
    ) -> Result<AgentRecord, FleetError> {
        let id = parse_id("agent_id", raw)?;
        let now = self.now();
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let agent = fleet::retire_agent(&tx, auth.tenant_id, id, now)
            .await?
            .ok_or_else(|| FleetError::AgentNotFound(raw.to_owned()))?;
        let cancelled = fleet::cancel_agent_jobs(&tx, auth.tenant_id, id, now).await?;
        self.commit_with(
            auth,
            tx,
            (
                "fleet.agent.retired",
                format!("agent:{id}"),
                json!({"cancelled_jobs": cancelled}),
            ),
            "fleet.agent.retire",
        )
        .await?;
        self.tell_retired(id).await;
        Ok(agent)
    }

    pub async fn create_binding(
        &self,
        auth: &AuthContext,
        new: NewBinding,
    ) -> Result<(BindingRecord, BindingSpec), FleetError> {
        let binding_name = name("name", &new.name, None)?;
        let spec = BindingSpec::new(new.certificate.as_ref(), new.target.as_ref())?;
        let (agent_raw, group_raw) = (new.agent_id.trim(), new.group.trim());
        let (agent_id, group) = match (agent_raw.is_empty(), group_raw.is_empty()) {
            (true, true) => {
                return Err(FleetError::BindingInvalid(
                    "name an agent_id or a group".to_owned(),
                ));
            }
            (false, false) => {
                return Err(FleetError::BindingInvalid(
                    "name an agent_id or a group, not both".to_owned(),
                ));
            }
            (false, true) => (Some(parse_id("agent_id", agent_raw)?), None),
            (true, false) => (None, Some(name("group", group_raw, None)?)),
        };
        let now = self.now();
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        certmesh_store::write_lock(&tx).await?;
        if let Some(agent) = agent_id {
            fleet::get_agent(&tx, auth.tenant_id, agent)
                .await?
                .ok_or_else(|| FleetError::AgentNotFound(agent.to_string()))?;
        }
        let record = BindingRecord {
            id: uuid::Uuid::new_v4(),
            tenant_id: auth.tenant_id,
            name: binding_name.clone(),
            agent_id,
            group,
            spec: spec.to_json(),
            created_by: auth.principal.clone(),
            created_at: now,
            deleted_at: None,
        };
        fleet::insert_binding(&tx, &record)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => FleetError::BindingExists(binding_name.clone()),
                other => other.into(),
            })?;
        let details = json!({"name": binding_name, "agent_id": agent_id.map(|a| a.to_string()),
            "group": record.group, "spec": serde_json::to_value(&spec).unwrap_or_default()});
        self.commit_with(
            auth,
            tx,
            (
                "fleet.binding.created",
                format!("binding:{}", record.id),
                details,
            ),
            "fleet.binding.create",
        )
        .await?;
        // New work: plan it now rather than at the next pass.
        if let Err(e) = self.plan().await {
            tracing::warn!(error = %e, "Planning after a new binding failed.");
        }
        Ok((record, spec))
    }

    pub async fn list_bindings(
        &self,
        auth: &AuthContext,
    ) -> Result<Vec<(BindingRecord, BindingSpec)>, FleetError> {
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        fleet::list_bindings(&tx, auth.tenant_id)
            .await?
            .into_iter()
            .map(|b| BindingSpec::from_json(&b.spec).map(|s| (b, s)))
            .collect()
    }

    pub async fn delete_binding(&self, auth: &AuthContext, raw: &str) -> Result<u64, FleetError> {
        let id = parse_id("binding_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let cancelled = fleet::delete_binding(&tx, auth.tenant_id, id, self.now())
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => FleetError::BindingNotFound(raw.to_owned()),
                other => other.into(),
            })?;
        self.commit_with(
            auth,
            tx,
            (
                "fleet.binding.deleted",
                format!("binding:{id}"),
                json!({"cancelled_jobs": cancelled}),
            ),
            "fleet.binding.delete",
        )
        .await?;
        Ok(cancelled)
    }

    pub async fn list_jobs(
        &self,
        auth: &AuthContext,
        agent: &str,
        binding: &str,
        job_state: &str,
        limit: u32,
    ) -> Result<Vec<JobRecord>, FleetError> {
        let opt = |field, raw: &str| {
            (!raw.trim().is_empty())
                .then(|| parse_id(field, raw))
                .transpose()
        };
        let job_state = job_state.trim();
        if !job_state.is_empty()
            && !fleet::state::OPEN.contains(&job_state)
            && ![
                fleet::state::SUCCEEDED,
                fleet::state::DEAD,
                fleet::state::CANCELLED,
            ]
            .contains(&job_state)
        {
            return Err(FleetError::InvalidField {
                field: "state",
                problem: format!("{job_state:?} is not a job state"),
            });
        }
        let filter = JobFilter {
            agent_id: opt("agent_id", agent)?,
            binding_id: opt("binding_id", binding)?,
            state: (!job_state.is_empty()).then(|| job_state.to_owned()),
            limit: match limit {
                0 => 100,
                n => u64::from(n.min(1000)),
            },
        };
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(fleet::list_jobs(&tx, auth.tenant_id, &filter).await?)
    }

    pub async fn get_job(&self, auth: &AuthContext, raw: &str) -> Result<JobRecord, FleetError> {
        let id = parse_id("job_id", raw)?;
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        fleet::get_job(&tx, auth.tenant_id, id)
            .await?
            .ok_or_else(|| FleetError::JobNotFound(raw.to_owned()))
    }

    pub async fn list_deployments(
        &self,
        auth: &AuthContext,
        agent: &str,
        serial: &str,
        binding: &str,
    ) -> Result<Vec<DeploymentRecord>, FleetError> {
        let opt = |field, raw: &str| {
            (!raw.trim().is_empty())
                .then(|| parse_id(field, raw))
                .transpose()
        };
        let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
        let filter = DeploymentFilter {
            agent_id: opt("agent_id", agent)?,
            binding_id: opt("binding_id", binding)?,
            serial: (!serial.is_empty()).then_some(serial),
        };
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        Ok(fleet::list_deployments(&tx, auth.tenant_id, &filter).await?)
    }

    /// Moves the renewal of certificate `serial` to now wherever it is deployed and makes the
    /// renew jobs at once; returns (deployments, jobs made).
    pub async fn renew_now(
        &self,
        auth: &AuthContext,
        serial: &str,
    ) -> Result<(u32, u32), FleetError> {
        let serial = serial.trim().trim_start_matches("0x").to_ascii_lowercase();
        if serial.is_empty() || serial.len() > 40 || !serial.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(FleetError::InvalidField {
                field: "serial",
                problem: "must be 1 to 20 bytes of hex".to_owned(),
            });
        }
        let now = self.now();
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        let deployments = fleet::renew_now(&tx, auth.tenant_id, &serial, now).await?;
        if deployments.is_empty() {
            return Err(FleetError::NotDeployed(serial));
        }
        let mut jobs = 0u32;
        for d in &deployments {
            if fleet::insert_job(
                &tx,
                auth.tenant_id,
                d.binding_id,
                d.agent_id,
                "renew",
                self.config().max_attempts,
                now,
            )
            .await?
            .is_some()
            {
                jobs += 1;
            }
        }
        let count = u32::try_from(deployments.len()).unwrap_or(u32::MAX);
        self.commit_with(
            auth,
            tx,
            (
                "fleet.certificate.renew_now",
                format!("certificate:{serial}"),
                json!({"deployments": count, "jobs": jobs}),
            ),
            "fleet.certificate.renew_now",
        )
        .await?;
        self.wake.notify_one();
        Ok((count, jobs))
    }

    /// Makes a "deploy" job for each deployment of binding `binding` (on `agent` only, when
    /// given) that has a certificate and no open job; returns the jobs made.
    pub async fn redeploy(
        &self,
        auth: &AuthContext,
        binding: &str,
        agent: &str,
    ) -> Result<Vec<JobRecord>, FleetError> {
        let binding_id = parse_id("binding_id", binding)?;
        let agent_id = (!agent.trim().is_empty())
            .then(|| parse_id("agent_id", agent))
            .transpose()?;
        let now = self.now();
        let tx = self.store().begin_tenant(auth.tenant_id).await?;
        if fleet::get_binding(&tx, auth.tenant_id, binding_id)
            .await?
            .is_none()
        {
            return Err(FleetError::BindingNotFound(binding.trim().to_owned()));
        }
        let filter = DeploymentFilter {
            agent_id,
            binding_id: Some(binding_id),
            serial: None,
        };
        let deployments: Vec<DeploymentRecord> =
            fleet::list_deployments(&tx, auth.tenant_id, &filter)
                .await?
                .into_iter()
                .filter(|d| !d.serial.is_empty())
                .collect();
        if deployments.is_empty() {
            return Err(FleetError::NotDeployed(format!("binding {binding_id}")));
        }
        let mut jobs = Vec::new();
        for d in &deployments {
            if let Some(job) =
                fleet::insert_deploy_job(&tx, d, self.config().max_attempts, now).await?
            {
                jobs.push(job);
            }
        }
        self.commit_with(
            auth,
            tx,
            (
                "fleet.binding.redeploy",
                format!("binding:{binding_id}"),
                json!({"deployments": deployments.len(), "jobs": jobs.len()}),
            ),
            "fleet.binding.redeploy",
        )
        .await?;
        self.wake.notify_one();
        Ok(jobs)
    }
}
