//! One agent stream. The client certificate names the agent (never a message); the agent must
//! be active and present its current (or previous, during renewal) identity certificate. The
//! agent says Hello, gets Welcome and its open jobs, then sends heartbeats, acks, CSRs, results
//! and identity renewals until the stream ends. A stream silent for six heartbeat intervals is
//! closed.

use certmesh_crypto::csr::Csr;
use certmesh_kit::metrics::GaugeGuard;
use certmesh_proto::fleet::{
    self as pb, agent_message::Message as In, server_message::Message as Out,
};
use certmesh_store::fleet::{self, AgentRecord, HostFacts};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::registry::Outbox;
use crate::{Fleet, FleetError, model::AgentIdentity};

/// Server messages buffered per stream.
const STREAM_BUFFER: usize = 16;
/// How long a new stream may take to say Hello.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The server half of a stream.
pub type SessionStream = ReceiverStream<Result<pb::ServerMessage, Status>>;

pub(crate) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn facts(host: Option<pb::HostFacts>) -> HostFacts {
    let h = host.unwrap_or_default();
    crate::enroll::clean_facts(HostFacts {
        hostname: h.hostname,
        os: h.os,
        arch: h.arch,
        version: h.version,
    })
}

pub(crate) async fn send(tx: &Outbox, message: Out) -> bool {
    tx.send(Ok(pb::ServerMessage {
        message: Some(message),
    }))
    .await
    .is_ok()
}

impl Fleet {
    /// The agent behind a stream's client certificate (leaf DER), if it may open one.
    pub async fn authenticate(&self, leaf: Option<&[u8]>) -> Result<AgentRecord, FleetError> {
        let leaf = leaf.ok_or_else(|| {
            FleetError::IdentityInvalid("no client certificate; enroll first".to_owned())
        })?;
        let (who, serial) = self.deps.identity.identify(leaf)?;
        let tx = self.store().begin_tenant(who.tenant).await?;
        let agent = fleet::get_agent(&tx, who.tenant, who.agent).await?;
        drop(tx);
        let agent = agent.ok_or_else(|| FleetError::IdentityInvalid("unknown agent".to_owned()))?;
        if agent.status == fleet::AGENT_RETIRED {
            return Err(FleetError::Retired(agent.id));
        }
        if agent.identity_serial != serial
            && agent.previous_identity_serial.as_deref() != Some(serial.as_str())
        {
            return Err(FleetError::IdentityInvalid(
                "a superseded identity certificate".to_owned(),
            ));
        }
        Ok(agent)
    }

    /// Opens `agent`'s stream: the messages it sends arrive on `inbound`.
    pub fn open_session(
        &self,
        agent: AgentRecord,
        inbound: Streaming<pb::AgentMessage>,
    ) -> SessionStream {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().run_session(agent, inbound, tx));
        ReceiverStream::new(rx)
    }

    async fn run_session(
        self,
        agent: AgentRecord,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: Outbox,
    ) {
        let who = AgentIdentity {
            tenant: agent.tenant_id,
            agent: agent.id,
        };
        let host = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::AgentMessage {
                message: Some(In::Hello(hello)),
            }))) => facts(hello.host),
            _ => {
                tracing::debug!(agent = %who.agent, "Stream closed before Hello.");
                return;
            }
        };
        if let Err(e) = self.hello(&agent, &host).await {
            tracing::warn!(agent = %who.agent, error = %e, "Recording Hello failed.");
            let _ = tx.send(Err(e.into())).await;
            return;
        }
        let conn = self.registry.register(who, tx.clone());
        // Counted down when this task ends, however it ends (an aborted task drops it too).
        let _open = GaugeGuard::hold(&self.deps.metrics.agent_streams);
        tracing::info!(agent = %who.agent, tenant = %who.tenant, hostname = %host.hostname, "Agent connected.");
        if self.welcome(&agent, &tx).await {
            self.offer(who, &tx).await;
            self.serve(who, &mut inbound, &tx).await;
        }
        self.registry.unregister(who.agent, conn);
        tracing::info!(agent = %who.agent, "Agent disconnected.");
    }

    async fn hello(&self, agent: &AgentRecord, host: &HostFacts) -> Result<(), FleetError> {
        let tx = self.store().begin_tenant(agent.tenant_id).await?;
        fleet::update_host(&tx, agent.tenant_id, agent.id, host, self.now()).await?;
        tx.commit()
            .await
            .map_err(certmesh_store::StoreError::from)?;
        Ok(())
    }

    async fn welcome(&self, agent: &AgentRecord, tx: &Outbox) -> bool {
        let renew_after = agent.identity_not_after - self.config().identity_validity / 3;
        send(
            tx,
            Out::Welcome(pb::Welcome {
                agent_id: agent.id.to_string(),
                heartbeat_seconds: u32::try_from(self.config().heartbeat.num_seconds())
                    .unwrap_or(15),
                renew_identity_after: Some(timestamp(renew_after)),
            }),
        )
        .await
    }

    async fn serve(
        &self,
        who: AgentIdentity,
        inbound: &mut Streaming<pb::AgentMessage>,
        tx: &Outbox,
    ) {
        let silence = (self.config().heartbeat * 6)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(90));
        loop {
            let message = match tokio::time::timeout(silence, inbound.message()).await {
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(agent = %who.agent, error = %e, "Stream failed.");
                    return;
                }
                Err(_) => {
                    tracing::info!(agent = %who.agent, "Stream silent too long; closing it.");
                    return;
                }
            };
            self.registry.touch(who.agent);
            let reply = match message.message {
                Some(In::Heartbeat(_)) | Some(In::Hello(_)) | None => None,
                Some(In::Ack(ack)) => {
                    self.ack(who, &ack.job_id).await;
                    None
                }
                Some(In::Csr(csr)) => Some(self.issue_for(who, &csr.job_id, &csr.csr).await),
                Some(In::Result(result)) => {
                    self.record_result(who, result).await;
                    None
                }
                Some(In::Discovery(report)) => {
                    self.record_discovery(who, report).await;
                    None
                }
                Some(In::RenewIdentity(renew)) => {
                    match self.renew_identity(who, &renew.csr).await {
                        Ok(message) => Some(message),
                        Err(e) => {
                            tracing::warn!(agent = %who.agent, error = %e, "Identity renewal refused.");
                            None
                        }
                    }
                }
            };
            if let Some(reply) = reply
                && !send(tx, reply).await
            {
                return;
            }
        }
    }

    /// Hands the certificates an agent found on its disk to the discovery inventory.
    async fn record_discovery(&self, who: AgentIdentity, report: pb::DiscoveryReport) {
        let now = self.now();
        match certmesh_discovery::inventory::record_filesystem(
            self.store(),
            who.tenant,
            who.agent,
            &report.files,
            now,
        )
        .await
        {
            Ok(n) => {
                tracing::info!(agent = %who.agent, files = report.files.len(), certificates = n, "Agent discovery report recorded.")
            }
            Err(e) => {
                tracing::warn!(agent = %who.agent, error = %e, "Recording an agent discovery report failed.")
            }
        }
    }

    /// A new client certificate for the key in `csr_pem`; the current one stays valid until
    /// it expires.
    async fn renew_identity(&self, who: AgentIdentity, csr_pem: &str) -> Result<Out, FleetError> {
        let csr = Csr::from_pem(csr_pem).map_err(FleetError::Csr)?;
        let now = self.now();
        let cert = self
            .deps
            .identity
            .sign(who, &csr, self.config().identity_validity, now)?;
        let tx = self.store().begin_tenant(who.tenant).await?;
        fleet::rotate_identity(
            &tx,
            who.tenant,
            who.agent,
            &cert.serial().to_hex(),
            cert.not_after(),
        )
        .await?;
        certmesh_store::outbox::append(
            &tx,
            who.tenant,
            "fleet.agent.identity_renewed",
            &who.agent.to_string(),
            serde_json::json!({"serial": cert.serial().to_hex(), "not_after": cert.not_after()}),
            now,
        )
        .await?;
        tx.commit()
            .await
            .map_err(certmesh_store::StoreError::from)?;
        tracing::info!(agent = %who.agent, serial = %cert.serial().to_hex(), "Agent identity renewed.");
        Ok(Out::IdentityRenewed(pb::IdentityRenewed {
            certificate_pem: cert.to_pem(),
            not_after: Some(timestamp(cert.not_after())),
        }))
    }
}
