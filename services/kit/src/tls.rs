//! TLS settings for certmesh listeners and clients. Listeners speak TLS 1.3 only; ALPN offers
//! HTTP/2 (gRPC) and HTTP/1.1 (REST) on the same port.

use std::sync::Arc;

use rustls::{ServerConfig, crypto::CryptoProvider};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// Errors building TLS settings.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate PEM held no certificate or did not parse.
    #[error("TLS certificate: {0}")]
    Certificate(String),
    /// The key PEM held no private key or did not parse. The key itself is never shown.
    #[error("TLS private key does not parse")]
    PrivateKey,
    /// The peer-certificate verifier could not be built (for example no usable root).
    #[error("TLS verifier: {0}")]
    Verifier(String),
    /// rustls refused the combination (for example a key that does not match the certificate).
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Install ring as the process-wide rustls provider. Every binary and test harness calls this
/// first: with two providers in the tree rustls cannot pick one on its own.
pub fn install_crypto_provider() {
    // An Err means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server settings from a PEM certificate chain (leaf first) and a PEM private key.
pub fn server_config(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no certificate in PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::PrivateKey)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_without_echoing_the_key() {
        let err = server_config(b"not pem", b"-----BEGIN PRIVATE KEY-----\nsecret\n")
            .expect_err("garbage");
        assert!(matches!(err, TlsError::Certificate(_)));
        assert!(!err.to_string().contains("secret"));
    }
}
