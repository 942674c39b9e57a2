//! gRPC client plumbing: channels to the gateway or to another role, and the bearer token.

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
