//! The agent listener: the agents' gRPC service on its own port, over TLS whose client
//! authentication trusts only the agent-identity CA. A client certificate is optional at the
//! handshake (Enroll is how an agent gets one), but one that is presented must chain to that
//! CA and prove its key, or the handshake fails; Session then requires one.

use std::net::SocketAddr;

use certmesh_kit::rpc_metrics::{RpcCatalog, RpcMetricsLayer};
use certmesh_proto::fleet::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::Fleet;

/// How often the server pings an idle agent connection, so dead peers are noticed.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// The running listener.
#[derive(Debug)]
pub struct AgentListener {
    /// The bound address.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AgentListener {
    /// Stops accepting and closes the streams.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Errors starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("agent listener TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// The agent service, as the RPC metrics label it.
fn rpc_catalog() -> RpcCatalog {
    let mut catalog = RpcCatalog::new();
    let agents = AgentServiceServer::<Fleet>::NAME;
    if let Err(e) = catalog.add_descriptors(certmesh_proto::FILE_DESCRIPTOR_SET, |s| s == agents) {
        tracing::error!(error = %e, "The API descriptors do not decode; agent RPCs count as unknown.");
    }
    catalog
}

/// Serves `fleet`'s agent service on `listen` with the serving certificate `chain_pem` (leaf
/// first) and `key_pem`.
pub async fn start(
    listen: SocketAddr,
    fleet: Fleet,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<AgentListener, ListenError> {
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(chain_pem, key_pem))
        .client_ca_root(Certificate::from_pem(
            fleet.deps.identity.certificate().to_pem(),
        ))
        .client_auth_optional(true);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ListenError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ListenError::Bind {
        addr: listen,
        source,
    })?;
    let metrics = RpcMetricsLayer::new(fleet.deps.metrics.clone(), rpc_catalog());
    let router = Server::builder()
        .layer(certmesh_kit::trace::SpanLayer)
        .layer(metrics)
        .tls_config(tls)?
        .http2_keepalive_interval(Some(KEEPALIVE))
        .tcp_nodelay(true)
        .add_service(crate::agent_service(fleet));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let incoming = TcpListenerStream::new(listener);
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(error = %e, "Agent listener failed.");
        }
    });
    tracing::info!(%addr, "Agent listener started.");
    Ok(AgentListener { addr, stop, task })
}
