//! gRPC client plumbing: channels to the gateway or to another role, and the bearer token.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::{
    metadata::AsciiMetadataValue,
    service::Interceptor,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::Secret;

/// Errors building a client channel.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint URL does not parse.
    #[error("endpoint {url:?} is not a valid URL")]
    Endpoint { url: String },
    /// Mutual TLS between roles needs an `https://` endpoint.
    #[error("endpoint {url:?} must be https:// when roles use mutual TLS")]
    MeshNeedsTls { url: String },
    /// TLS settings or the connection failed.
    #[error("connecting to {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// An endpoint for `url` (`https://…` uses TLS trusting `ca_bundle_pem`, or the system has no
/// roots here so a bundle is required; `http://…` is cleartext h2c).
pub fn endpoint(url: &str, ca_bundle_pem: Option<&[u8]>) -> Result<Endpoint, ClientError> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|_| ClientError::Endpoint { url: url.into() })?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(5));
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new();
    if let Some(pem) = ca_bundle_pem {
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    endpoint
        .tls_config(tls)
        .map_err(|source| ClientError::Transport {
            url: url.into(),
            source,
        })
}

/// A channel that connects on first use and reconnects as needed.
pub fn lazy_channel(url: &str, ca_bundle_pem: Option<&[u8]>) -> Result<Channel, ClientError> {
    Ok(endpoint(url, ca_bundle_pem)?.connect_lazy())
}

/// A lazy channel to a role at `url` (`https://host:port`) over mutual TLS with `tls`
/// (a [`crate::mesh::MeshTls::client_config`]), checking the server's certificate for
/// `server_name` (the role's mesh name) or, when `None`, for the URL's host.
///
/// tonic dials an `http://` URI here and the connector does the TLS itself, so the client
/// certificate can rotate under a channel that lives for the whole process.
pub fn mesh_channel(
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
) -> Result<Channel, ClientError> {
    let bad = || ClientError::Endpoint { url: url.into() };
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(ClientError::MeshNeedsTls { url: url.into() });
    }
    let host = uri.host().ok_or_else(bad)?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let name = server_name.unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned());
    let name = ServerName::try_from(name).map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?.as_str();
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|_| bad())?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(5));
    let connector = TlsConnector::from(tls);
    let dial = tower::service_fn(move |_: http::Uri| {
        let (connector, name, host) = (connector.clone(), name.clone(), host.clone());
        async move {
            let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(dial))
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone, Debug)]
pub struct BearerToken(Secret<AsciiMetadataValue>);

impl BearerToken {
    /// `None` if the token has characters that cannot go in a header.
    pub fn new(token: &str) -> Option<Self> {
        AsciiMetadataValue::try_from(format!("Bearer {}", token.trim()))
            .ok()
            .map(|v| Self(Secret::new(v)))
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.expose().clone());
        Ok(request)
    }
}
