//! `certmesh-agent enroll`: trade the one-time bootstrap token for the agent's identity.
//!
//! The identity key is made here on the host and never leaves it; the server sees only the
//! CSR. The call goes over server-authenticated TLS (the agent has no client certificate yet).
//! Once the server answers, the key (0600), the client certificate, the identity CA and
//! `agent.json` are written to the state directory (0700), `agent.json` last, since its
//! presence is what "enrolled" means.

use certmesh_crypto::cert::Certificate;
use certmesh_crypto::tls::host_key_and_csr;
use certmesh_proto::fleet::agent_service_client::AgentServiceClient;
use certmesh_proto::fleet::{EnrollRequest, EnrollResponse};
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::channel::{self, ServerTls};
use crate::config::Settings;
use crate::error::{AgentError, Result};
use crate::host;
use crate::identity::check_pair;
use crate::state::{AgentRecord, StateDir};

/// Enrolls this host; refuses when already enrolled unless `force`.
pub async fn enroll(settings: &Settings, force: bool) -> Result<AgentRecord> {
    let state = StateDir::new(&settings.state_dir);
    if state.is_enrolled() && !force {
        return Err(AgentError::AlreadyEnrolled {
            state_dir: state.root().to_path_buf(),
        });
    }
    let server = settings.server.clone().ok_or_else(|| {
        AgentError::config("server is required to enroll (CERTMESH_AGENT_SERVER, --server)")
    })?;
    let tls = ServerTls {
        server: server.clone(),
        ca_bundle_pem: settings.ca_bundle_pem()?,
        server_name: settings.server_name.clone(),
    };
    let token = settings.bootstrap_token()?;
    state.create()?;
    let facts = host::facts();
    let (key, csr) = host_key_and_csr(settings.key_type, Some(&facts.hostname), &[], &[])
        .map_err(|e| AgentError::crypto("making the identity key", e))?;
    let channel = channel::connect(&tls, None).await?;
    let request = EnrollRequest {
        bootstrap_token: token.expose().to_owned(),
        csr: csr.to_pem(),
        host: Some(facts),
    };
    let response = AgentServiceClient::new(channel)
        .enroll(request)
        .await?
        .into_inner();
    let cert = Certificate::from_pem(&response.certificate_pem)
        .map_err(|e| AgentError::crypto("reading the identity certificate", e))?;
    check_pair(&cert, &key).map_err(|_| {
        AgentError::protocol("the server returned an identity certificate for another key")
    })?;
    if !response.spiffe_id.is_empty() && !cert.uris().any(|u| u == response.spiffe_id) {
        return Err(AgentError::protocol(format!(
            "the identity certificate does not name {}",
            response.spiffe_id
        )));
    }
    if let Some(expected) = &settings.group
        && *expected != response.group
    {
        warn!(expected = %expected, group = %response.group, "The bootstrap token put this agent in another group than configured.");
    }
    let not_after = response
        .not_after
        .and_then(|t| DateTime::<Utc>::try_from(t).ok())
        .unwrap_or_else(|| cert.not_after());
    let record = store(&state, &key, response, not_after, server)?;
    info!(agent_id = %record.agent_id, tenant_id = %record.tenant_id, group = %record.group, "Enrolled.");
    Ok(record)
}

/// Writes the identity, `agent.json` last.
fn store(
    state: &StateDir,
    key: &str,
    response: EnrollResponse,
    not_after: DateTime<Utc>,
    server: String,
) -> Result<AgentRecord> {
    state.write_private(&state.identity_key(), key.as_bytes())?;
    state.write_private(&state.identity_pem(), response.certificate_pem.as_bytes())?;
    state.write_private(&state.identity_ca(), response.identity_ca_pem.as_bytes())?;
    // A re-enrollment starts without the old identity's half-done renewal.
    state.remove(&state.identity_key_next())?;
    state.remove(&state.identity_pem_next())?;
    let record = AgentRecord {
        agent_id: response.agent_id,
        tenant_id: response.tenant_id,
        spiffe_id: response.spiffe_id,
        group: response.group,
        not_after,
        server,
    };
    state.save_agent(&record)?;
    Ok(record)
}
