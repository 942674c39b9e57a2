//! A scripted fleet server: the real `AgentService` over TLS on 127.0.0.1, optional client
//! certificates (Enroll has none, Session needs one), with each Session handed to the test to
//! drive message by message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use certmesh_agent::config::{Layer, Secret, Settings};
use certmesh_crypto::csr::Csr;
use certmesh_crypto::digest::sha256_hex;
use certmesh_proto::fleet::agent_service_server::{AgentService, AgentServiceServer};
use certmesh_proto::fleet::{
    AgentMessage, EnrollRequest, EnrollResponse, ServerMessage, agent_message,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate as TonicCert, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_types::{ErrorDetails, StatusExt};

use crate::support::{Pki, not_after};

pub const TOKEN: &str = "cmb_test_token_secret";
pub const SPIFFE: &str = "spiffe://certmesh.test/tenant/tn-1/agent/ag-1";

/// One open Session, seen from the server.
pub struct AgentStream {
    pub from_agent: Streaming<AgentMessage>,
    pub to_agent: mpsc::Sender<Result<ServerMessage, Status>>,
    /// SHA-256 of the client certificate the agent presented.
    pub client_cert_sha256: String,
}

impl AgentStream {
    /// The next message that is not a heartbeat.
    pub async fn next(&mut self) -> agent_message::Message {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.from_agent.message())
                .await
                .expect("the agent answers within 10 s")
                .expect("stream ok")
                .expect("stream open")
                .message
                .expect("a message");
            if !matches!(msg, agent_message::Message::Heartbeat(_)) {
                return msg;
            }
        }
    }

    pub async fn send(&self, msg: certmesh_proto::fleet::server_message::Message) {
        self.to_agent
            .send(Ok(ServerMessage { message: Some(msg) }))
            .await
            .expect("agent stream open");
    }
}

struct Fake {
    identity_ca: Arc<Pki>,
    sessions: mpsc::Sender<AgentStream>,
    retired: Arc<AtomicBool>,
}

fn status(code: Code, reason: &str, message: &str) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, "certmesh.dev", HashMap::new()),
    )
}

type ServerStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Fake {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let req = request.into_inner();
        if req.bootstrap_token != TOKEN {
            return Err(status(
                Code::Unauthenticated,
                "BOOTSTRAP_TOKEN_INVALID",
                "the bootstrap token is unknown, expired or already used",
            ));
        }
        let csr = Csr::from_pem(&req.csr).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let cert = self.identity_ca.identity(&csr, SPIFFE, not_after());
        Ok(Response::new(EnrollResponse {
            agent_id: "ag-1".into(),
            tenant_id: "tn-1".into(),
            certificate_pem: cert.to_pem(),
            identity_ca_pem: self.identity_ca.root_pem(),
            spiffe_id: SPIFFE.into(),
            not_after: Some(cert.not_after().into()),
            group: "web".into(),
        }))
    }

    type SessionStream = ServerStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let Some(certs) = request.peer_certs() else {
            return Err(status(
                Code::Unauthenticated,
                "AGENT_IDENTITY_INVALID",
                "no client certificate",
            ));
        };
        if self.retired.load(Ordering::SeqCst) {
            return Err(status(
                Code::Unauthenticated,
                "AGENT_RETIRED",
                "this agent was retired",
            ));
        }
        let client_cert_sha256 = certs
            .first()
            .map(|c| sha256_hex(c.as_ref()))
            .unwrap_or_default();
        let (tx, rx) = mpsc::channel(16);
        let stream = AgentStream {
            from_agent: request.into_inner(),
            to_agent: tx,
            client_cert_sha256,
        };
        self.sessions
            .send(stream)
            .await
            .map_err(|_| Status::unavailable("test gone"))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A running fake fleet server and the files an agent needs to reach it.
pub struct Fleet {
    pub url: String,
    pub ca_bundle: PathBuf,
    pub identity_ca: Arc<Pki>,
    pub sessions: mpsc::Receiver<AgentStream>,
    pub retired: Arc<AtomicBool>,
    pub dir: tempfile::TempDir,
}

impl Fleet {
    pub async fn start() -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let server_pki = Pki::new("Fleet Server CA");
        let identity_ca = Arc::new(Pki::new("Agent Identity CA"));
        let (key, cert) = server_pki.leaf(&["fleet.test"], &["127.0.0.1"]);
        let ca_bundle = dir.path().join("server-ca.pem");
        std::fs::write(&ca_bundle, server_pki.root_pem()).expect("write");
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert.to_pem(), key))
            .client_ca_root(TonicCert::from_pem(identity_ca.root_pem()))
            .client_auth_optional(true);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let (sessions_tx, sessions) = mpsc::channel(4);
        let retired = Arc::new(AtomicBool::new(false));
        let fake = Fake {
            identity_ca: identity_ca.clone(),
            sessions: sessions_tx,
            retired: retired.clone(),
        };
        let router = Server::builder()
            .tls_config(tls)
            .expect("server tls")
            .add_service(AgentServiceServer::new(fake));
        tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
        Fleet {
            url,
            ca_bundle,
            identity_ca,
            sessions,
            retired,
            dir,
        }
    }

    /// Settings for an agent with its state under this fleet's temporary directory.
    pub fn settings(&self, token: &str) -> Settings {
        Layer {
            server: Some(self.url.clone()),
            ca_bundle: Some(self.ca_bundle.clone()),
            state_dir: Some(self.dir.path().join("state")),
            bootstrap_token: Some(Secret::new(token)),
            ..Layer::default()
        }
        .validate()
        .expect("valid settings")
    }

    pub async fn next_session(&mut self) -> AgentStream {
        tokio::time::timeout(Duration::from_secs(15), self.sessions.recv())
            .await
            .expect("the agent connects within 15 s")
            .expect("server running")
    }
}
