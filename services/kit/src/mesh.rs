//! mTLS between certmesh roles: the identity a process presents (swappable while it runs, so
//! a rotated certificate reaches every new handshake) and the roots it accepts peers under.
//!
//! A role's listener built from [`MeshTls::server_config`] completes a handshake only with a
//! client whose certificate chains to the mesh roots; [`MeshTls::client_config`] presents the
//! same identity when a process calls another role and accepts only a server under those
//! roots. Where the identity comes from (certmesh's own mesh CA, or files an operator mounts)
//! is the binary's business.

use std::{
    fmt,
    sync::{Arc, RwLock},
};

use rustls::{
    ClientConfig, RootCertStore, ServerConfig, SignatureScheme,
    client::{ResolvesClientCert, WebPkiServerVerifier},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::tls::{TlsError, provider};

/// The process's mesh identity and the roots it trusts peers under.
pub struct MeshTls {
    identity: RwLock<Arc<CertifiedKey>>,
    roots: Arc<RootCertStore>,
}

impl fmt::Debug for MeshTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshTls")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl MeshTls {
    /// An identity from a PEM chain (leaf first) and PEM key, trusting the certificates in
    /// `roots_pem`. The key must belong to the leaf.
    pub fn new(chain_pem: &[u8], key_pem: &[u8], roots_pem: &[u8]) -> Result<Arc<Self>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(roots_pem)? {
            roots.add(cert)?;
        }
        Ok(Arc::new(Self {
            identity: RwLock::new(certified_key(chain_pem, key_pem)?),
            roots: Arc::new(roots),
        }))
    }

    /// Swaps in a new identity; handshakes already done keep the old one.
    pub fn replace(&self, chain_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let key = certified_key(chain_pem, key_pem)?;
        *self.identity.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    /// The leaf certificate (DER) handshakes present now.
    pub fn leaf(&self) -> Vec<u8> {
        self.current()
            .cert
            .first()
            .map(|c| c.to_vec())
            .unwrap_or_default()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Listener settings for a role: TLS 1.3, the mesh identity, and a client certificate
    /// under the mesh roots required.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Settings for calling another role: TLS 1.3 over HTTP/2, the mesh identity as the
    /// client certificate, and the server's certificate checked against the mesh roots.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier = WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_webpki_verifier(verifier)
            .with_client_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Hands the current identity to each handshake, server side and client side.
#[derive(Debug)]
struct Resolver(Arc<MeshTls>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate("no certificate in PEM".into()));
    }
    Ok(certs)
}

fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(chain_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::PrivateKey)?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

#[cfg(test)]
mod tests {
    use certmesh_crypto::mesh::{MeshCa, role_dns_name};
    use chrono::Duration;
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;

    const DOMAIN: &str = "certmesh.local";

    fn identity(secret: u8, role: &str) -> Arc<MeshTls> {
        crate::tls::install_crypto_provider();
        let ca = MeshCa::derive(&[secret; 32], DOMAIN).expect("derive");
        let leaf = ca
            .issue(
                &[role.to_string()],
                crate::Clock::now(&crate::SystemClock),
                Duration::hours(1),
            )
            .expect("issue");
        MeshTls::new(
            leaf.cert_pem.as_bytes(),
            leaf.key_pem.as_bytes(),
            ca.certificate().to_pem().as_bytes(),
        )
        .expect("mesh tls")
    }

    fn name(role: &str) -> ServerName<'static> {
        ServerName::try_from(role_dns_name(role, DOMAIN)).expect("name")
    }

    /// Runs one handshake and a byte each way; the server's result, and the certificate the
    /// client saw.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        role: &str,
    ) -> (Result<(), String>, Option<Vec<u8>>) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server_side = tokio::spawn(async move {
            let mut tls = TlsAcceptor::from(server)
                .accept(a)
                .await
                .map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            tls.write_all(&byte).await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())
        });
        let mut seen = None;
        if let Ok(mut tls) = TlsConnector::from(client).connect(name(role), b).await {
            seen = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.to_vec());
            let _ = tls.write_all(b"x").await;
            let mut byte = [0u8; 1];
            let _ = tls.read_exact(&mut byte).await;
        }
        (server_side.await.expect("join"), seen)
    }

    #[tokio::test]
    async fn peers_under_the_same_secret_complete_mutual_tls() {
        let server = identity(1, "issuance");
        let client = identity(1, "gateway");
        let (result, seen) = handshake(
            server.server_config().expect("server"),
            client.client_config().expect("client"),
            "issuance",
        )
        .await;
        assert_eq!(result, Ok(()));
        assert!(seen.is_some());
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_refused() {
        let server = identity(1, "issuance");
        let mut roots = RootCertStore::empty();
        for cert in server.roots.roots.iter() {
            roots.roots.push(cert.clone());
        }
        let anonymous = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (result, _) = handshake(
            server.server_config().expect("server"),
            Arc::new(anonymous),
            "issuance",
        )
        .await;
        let err = result.expect_err("refused");
        assert!(err.contains("certificate"), "{err}");
    }

    #[tokio::test]
    async fn a_client_from_another_mesh_is_refused_and_refuses() {
        let server = identity(1, "issuance");
        let stranger = identity(2, "gateway");
        let (result, seen) = handshake(
            server.server_config().expect("server"),
            stranger.client_config().expect("client"),
            "issuance",
        )
        .await;
        assert!(result.is_err());
        assert!(
            seen.is_none(),
            "the stranger does not trust our server either"
        );
    }

    #[tokio::test]
    async fn a_client_checks_the_role_it_dialled() {
        let server = identity(1, "ca");
        let client = identity(1, "gateway");
        let (result, seen) = handshake(
            server.server_config().expect("server"),
            client.client_config().expect("client"),
            "issuance",
        )
        .await;
        assert!(result.is_err());
        assert!(seen.is_none(), "a ca identity does not pass for issuance");
    }

    #[tokio::test]
    async fn a_replaced_identity_serves_the_next_handshake() {
        let server = identity(1, "issuance");
        let client = identity(1, "gateway");
        let config = server.server_config().expect("server");
        let (_, first) = handshake(
            config.clone(),
            client.client_config().expect("c"),
            "issuance",
        )
        .await;
        let ca = MeshCa::derive(&[1; 32], DOMAIN).expect("derive");
        let next = ca
            .issue(
                &["issuance".to_string()],
                crate::Clock::now(&crate::SystemClock),
                Duration::hours(1),
            )
            .expect("issue");
        server
            .replace(next.cert_pem.as_bytes(), next.key_pem.as_bytes())
            .expect("replace");
        let (result, second) =
            handshake(config, client.client_config().expect("c"), "issuance").await;
        assert_eq!(result, Ok(()));
        assert_ne!(first, second);
        let der = CertificateDer::from_pem_slice(next.cert_pem.as_bytes()).expect("der");
        assert_eq!(second.as_deref(), Some(der.as_ref()));
    }

    #[test]
    fn a_key_that_is_not_the_leafs_is_refused() {
        crate::tls::install_crypto_provider();
        let ca = MeshCa::derive(&[1; 32], DOMAIN).expect("derive");
        let a = ca
            .issue(
                &["iam".into()],
                crate::Clock::now(&crate::SystemClock),
                Duration::hours(1),
            )
            .expect("a");
        let b = ca
            .issue(
                &["iam".into()],
                crate::Clock::now(&crate::SystemClock),
                Duration::hours(1),
            )
            .expect("b");
        let tls = MeshTls::new(
            a.cert_pem.as_bytes(),
            a.key_pem.as_bytes(),
            ca.certificate().to_pem().as_bytes(),
        )
        .expect("tls");
        assert!(
            tls.replace(a.cert_pem.as_bytes(), b.key_pem.as_bytes())
                .is_err()
        );
    }
}
