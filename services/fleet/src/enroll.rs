//! Enrollment: a one-time bootstrap token and a CSR for the agent's identity key in; an agent
//! row, its principal (role `agent`, for the audit trail of what it issues) and its client
//! certificate out, all in one transaction. The token is consumed by a conditional update, so
//! two agents racing with one token cannot both enroll.

use certmesh_crypto::{cert::Certificate, csr::Csr};
use certmesh_kit::rbac::Role;
use certmesh_store::{
    audit::{self, AuditEntry, Outcome},
    fleet::{self, AgentRecord, HostFacts},
    outbox, principals,
};
use serde_json::json;

use crate::{Fleet, FleetError, model::AgentIdentity};

/// Longest host fact accepted.
const MAX_FACT: usize = 256;

/// What an agent sends to enroll.
#[derive(Debug)]
pub struct EnrollRequest {
    /// The bootstrap token's secret.
    pub token: String,
    /// PEM CSR for the identity key.
    pub csr: String,
    /// About the host.
    pub host: HostFacts,
}

/// What enrollment gives back.
#[derive(Debug)]
pub struct Enrolled {
    pub agent: AgentRecord,
    pub certificate: Certificate,
    pub spiffe_id: String,
}

/// Host facts cut to size and stripped of control characters.
pub fn clean_facts(host: HostFacts) -> HostFacts {
    let clean = |s: String| -> String {
        s.chars()
            .filter(|c| !c.is_control())
            .take(MAX_FACT)
            .collect()
    };
    HostFacts {
        hostname: clean(host.hostname),
        os: clean(host.os),
        arch: clean(host.arch),
        version: clean(host.version),
    }
}

impl Fleet {
    /// Enrolls an agent. A bad CSR is refused before the token is looked at, so a typo does
    /// not burn the token.
    pub async fn enroll(&self, req: EnrollRequest) -> Result<Enrolled, FleetError> {
        let csr = Csr::from_pem(&req.csr).map_err(FleetError::Csr)?;
        let now = self.now();
        let agent_id = uuid::Uuid::new_v4();
        let tx = self.store().begin().await?;
        // Reads the token, then writes: take SQLite's write lock first.
        certmesh_store::write_lock(&tx).await?;
        let token = fleet::claim_bootstrap_token(&tx, req.token.trim(), agent_id, now)
            .await?
            .ok_or(FleetError::BootstrapTokenInvalid)?;
        let tenant = token.tenant_id;
        let who = AgentIdentity {
            tenant,
            agent: agent_id,
        };
        let cert = self
            .deps
            .identity
            .sign(who, &csr, self.config().identity_validity, now)?;
        let principal = principals::create(
            &tx,
            tenant,
            &format!("agent-{agent_id}"),
            "agent",
            &[Role::Agent.as_str().to_owned()],
            now,
        )
        .await?;
        let agent = AgentRecord {
            id: agent_id,
            tenant_id: tenant,
            group: token.group.clone(),
            host: clean_facts(req.host),
            status: fleet::AGENT_ACTIVE.to_owned(),
            identity_serial: cert.serial().to_hex(),
            previous_identity_serial: None,
            identity_not_after: cert.not_after(),
            principal_id: principal.id,
            enrolled_at: now,
            last_seen_at: None,
            retired_at: None,
        };
        fleet::insert_agent(&tx, &agent).await?;
        let spiffe_id = who.spiffe_id(self.deps.identity.trust_domain());
        let details = json!({
            "agent_id": agent_id.to_string(),
            "group": token.group,
            "bootstrap_token_id": token.id.to_string(),
            "hostname": agent.host.hostname,
            "spiffe_id": spiffe_id,
            "identity_serial": agent.identity_serial,
        });
        outbox::append(
            &tx,
            tenant,
            "fleet.agent.enrolled",
            &agent_id.to_string(),
            details.clone(),
            now,
        )
        .await?;
        audit::append(
            &tx,
            tenant,
            &[AuditEntry {
                actor: format!("bootstrap-token:{}", token.id),
                action: "fleet.agent.enroll".to_owned(),
                resource: format!("agent:{agent_id}"),
                request_id: String::new(),
                outcome: Outcome::Allowed,
                details,
                at: now,
            }],
        )
        .await?;
        tx.commit()
            .await
            .map_err(certmesh_store::StoreError::from)?;
        tracing::info!(%agent_id, tenant = %tenant, group = %agent.group, "Agent enrolled.");
        Ok(Enrolled {
            agent,
            certificate: cert,
            spiffe_id,
        })
    }
}
