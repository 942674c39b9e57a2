//! Reading the leaf certificate a live TLS endpoint serves, to confirm a deploy took effect.
//!
//! The handshake uses a verifier that accepts any certificate chain. That is safe here because
//! nothing is trusted on its strength: the agent only compares the SHA-256 of the served leaf
//! with the leaf it just installed, an equality check on bytes it already holds, and sends no
//! data over the connection. The handshake signature is still checked against the served
//! leaf's key, so a match also shows the endpoint holds the new private key, not just a copy
//! of the certificate.
//!
//! Reloads are asynchronous (nginx starts new workers and lets the old ones drain), so
//! [`wait_for`] dials again every [`Schedule::interval`] until the leaf matches or
//! [`Schedule::window`] has passed.

use std::sync::Arc;
use std::time::Duration;

use certmesh_crypto::digest::sha256_hex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_rustls::TlsConnector;

use crate::error::{AgentError, Result};

/// How long and how often to dial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Give up after this long.
    pub window: Duration,
    /// Wait this long between attempts.
    pub interval: Duration,
    /// Bound on one connect and handshake.
    pub attempt_timeout: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            window: Duration::from_secs(10),
            interval: Duration::from_millis(250),
            attempt_timeout: Duration::from_secs(3),
        }
    }
}

/// What the endpoint served within the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Served {
    /// The expected leaf.
    Match,
    /// Another leaf, the last one seen.
    Mismatch {
        /// SHA-256 of the served leaf, lower-case hex.
        served_sha256: String,
    },
    /// No handshake completed.
    Unreachable {
        /// The last error.
        error: String,
    },
}

/// The SNI to send: `verify_sni`, else the leaf's first DNS name (a wildcard filled in with a
/// label), else the endpoint's host.
pub fn default_sni(verify_sni: Option<&str>, leaf_dns_names: &[String], endpoint: &str) -> String {
    if let Some(sni) = verify_sni.filter(|s| !s.is_empty()) {
        return sni.to_owned();
    }
    if let Some(name) = leaf_dns_names.iter().find(|n| !n.starts_with("*.")) {
        return name.clone();
    }
    // Only wildcards: any label under one selects the same virtual host.
    if let Some(wildcard) = leaf_dns_names.first() {
        return wildcard.replacen('*', "certmesh-verify", 1);
    }
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(host, _)| host);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// Dials `endpoint` until it serves the leaf with SHA-256 `expected` or the window closes.
pub async fn wait_for(endpoint: &str, sni: &str, expected: &str, schedule: Schedule) -> Served {
    let deadline = Instant::now() + schedule.window;
    let mut last_served = None;
    let mut last_error = String::from("no attempt completed");
    loop {
        match served_leaf_sha256(endpoint, sni, schedule.attempt_timeout).await {
            Ok(served) if served.eq_ignore_ascii_case(expected) => return Served::Match,
            Ok(served) => last_served = Some(served),
            Err(e) => last_error = e.to_string(),
        }
        if Instant::now() + schedule.interval >= deadline {
            break;
        }
        sleep(schedule.interval).await;
    }
    match last_served {
        Some(served_sha256) => Served::Mismatch { served_sha256 },
        None => Served::Unreachable { error: last_error },
    }
}

/// One TLS handshake with `endpoint` (`host:port`) sending `sni`; the SHA-256 of the leaf it
/// served. An IP address as `sni` is sent as no SNI, as TLS requires, and still works.
pub async fn served_leaf_sha256(endpoint: &str, sni: &str, limit: Duration) -> Result<String> {
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|_| AgentError::protocol(format!("verify SNI {sni:?} is not a DNS name or IP")))?;
    let connector = TlsConnector::from(Arc::new(client_config()?));
    let handshake = async {
        let tcp = TcpStream::connect(endpoint)
            .await
            .map_err(|e| AgentError::io(format!("connecting to {endpoint}"), e))?;
        connector
            .connect(name, tcp)
            .await
            .map_err(|e| AgentError::io(format!("TLS handshake with {endpoint}"), e))
    };
    let tls = timeout(limit, handshake).await.map_err(|_| {
        AgentError::protocol(format!("no TLS handshake with {endpoint} within {limit:?}"))
    })??;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| sha256_hex(leaf.as_ref()))
        .ok_or_else(|| AgentError::protocol(format!("{endpoint} served no certificate")))
}

fn client_config() -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(FingerprintOnly {
        provider: provider.clone(),
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::protocol(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts any chain (see the module docs for why that is safe for a fingerprint comparison)
/// but checks the handshake signature with the served leaf's key.
#[derive(Debug)]
struct FingerprintOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for FingerprintOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_prefers_the_setting_then_the_first_dns_name_then_the_host() {
        let dns = ["www.example.com".to_string(), "example.com".to_string()];
        assert_eq!(
            default_sni(Some("api.example.com"), &dns, "10.0.0.1:443"),
            "api.example.com"
        );
        assert_eq!(
            default_sni(Some(""), &dns, "10.0.0.1:443"),
            "www.example.com"
        );
        let wild = ["*.example.com".to_string(), "example.com".to_string()];
        assert_eq!(default_sni(None, &wild, "h:1"), "example.com");
        assert_eq!(
            default_sni(None, &wild[..1], "h:1"),
            "certmesh-verify.example.com"
        );
        assert_eq!(default_sni(None, &[], "10.0.0.1:443"), "10.0.0.1");
        assert_eq!(default_sni(None, &[], "[::1]:8443"), "::1");
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let schedule = Schedule {
            window: Duration::from_millis(600),
            interval: Duration::from_millis(100),
            attempt_timeout: Duration::from_millis(200),
        };
        let served = wait_for(&endpoint, "localhost", "00", schedule).await;
        assert!(
            matches!(&served, Served::Unreachable { error } if error.contains("connecting")),
            "{served:?}"
        );
    }
}
