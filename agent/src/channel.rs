//! The TLS channel to the fleet listener: the server authenticated against the configured CA
//! bundle (optionally under another TLS name), and, once enrolled, the agent authenticated by
//! its identity certificate.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{AgentError, Result};

/// Bound on connecting (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// `https://host:port`.
    pub server: String,
    /// PEM bundle trusted for the server's certificate.
    pub ca_bundle_pem: Vec<u8>,
    /// TLS name to check instead of the URL's host.
    pub server_name: Option<String>,
}

/// Connects; `identity` is the client certificate and key (PEM) for mTLS.
pub async fn connect(tls: &ServerTls, identity: Option<(&str, &str)>) -> Result<Channel> {
    let transport = |source| AgentError::Transport {
        server: tls.server.clone(),
        source,
    };
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_bundle_pem));
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    if let Some((cert_pem, key_pem)) = identity {
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    let endpoint = Endpoint::from_shared(tls.server.clone())
        .map_err(|_| AgentError::config(format!("server {:?} is not a valid URL", tls.server)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        // HTTP/2 pings notice a dead peer on a quiet stream long before TCP would.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .tls_config(config)
        .map_err(transport)?;
    endpoint.connect().await.map_err(transport)
}
