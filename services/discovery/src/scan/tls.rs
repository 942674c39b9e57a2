//! Dialing endpoints and recording the chain each one serves.
//!
//! The handshake accepts any certificate chain: a scan records what is out there (expired,
//! self-signed, issued by a CA nobody trusts: those are exactly the findings), it does not
//! trust it, and it sends no data over the connection. The handshake signature is still
//! verified against the served leaf's key (ring's TLS 1.2 and 1.3 verifiers), so a chain is
//! only recorded from a server that holds the leaf's private key, not from one replaying a
//! copied certificate. Resumption is off so every handshake shows the chain served now.
//!
//! The address dialed is the one the guard checked; names are never resolved again here, so
//! DNS rebinding between the check and the dial cannot redirect a scan.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::{Endpoint, ScanResult, Served};

/// Dials endpoints, a bounded number at a time, each within its own timeouts.
#[derive(Clone, Debug)]
pub struct Scanner {
    concurrency: usize,
    connect_timeout: Duration,
    handshake_timeout: Duration,
}

impl Default for Scanner {
    /// 32 at a time, 3 s to connect, 5 s to complete the handshake.
    fn default() -> Self {
        Scanner::new(32, Duration::from_secs(3), Duration::from_secs(5))
    }
}

impl Scanner {
    /// At most `concurrency` endpoints (at least 1) in flight; each gets `connect_timeout` for
    /// the TCP connection and then `handshake_timeout` for the TLS handshake.
    pub fn new(concurrency: usize, connect_timeout: Duration, handshake_timeout: Duration) -> Self {
        Scanner {
            concurrency: concurrency.max(1),
            connect_timeout,
            handshake_timeout,
        }
    }

    /// Dials every endpoint; one result per endpoint, in the order given.
    pub async fn scan(&self, endpoints: Vec<Endpoint>) -> Vec<ScanResult> {
        let connector = match connector() {
            Ok(connector) => connector,
            Err(detail) => {
                return endpoints
                    .into_iter()
                    .map(|endpoint| ScanResult {
                        endpoint,
                        outcome: Err(detail.clone()),
                    })
                    .collect();
            }
        };
        let mut results: Vec<(usize, ScanResult)> = stream::iter(endpoints.into_iter().enumerate())
            .map(|(index, endpoint)| {
                let connector = connector.clone();
                async move {
                    let outcome = self.dial(&connector, &endpoint).await;
                    (index, ScanResult { endpoint, outcome })
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.sort_unstable_by_key(|(index, _)| *index);
        results.into_iter().map(|(_, result)| result).collect()
    }

    /// One connection and handshake; the error is a short detail for the operator.
    async fn dial(&self, connector: &TlsConnector, endpoint: &Endpoint) -> Result<Served, String> {
        let addr = SocketAddr::new(endpoint.ip, endpoint.port);
        let tcp = timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("timed out after {}", human(self.connect_timeout)))?
            .map_err(|e| connect_error(&e))?;
        let name = match &endpoint.sni {
            Some(sni) => ServerName::try_from(sni.clone())
                .map_err(|_| format!("SNI {sni:?} is not a DNS name"))?,
            // An IP address as the server name sends no SNI (RFC 6066 §3).
            None => ServerName::IpAddress(endpoint.ip.into()),
        };
        let tls = timeout(self.handshake_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                format!(
                    "TLS handshake timed out after {}",
                    human(self.handshake_timeout)
                )
            })?
            .map_err(|e| format!("TLS: {e}"))?;
        let (_, conn) = tls.get_ref();
        let chain: Vec<Vec<u8>> = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|cert| cert.as_ref().to_vec())
            .collect();
        if chain.is_empty() {
            return Err("TLS: the server sent no certificate".to_owned());
        }
        Ok(Served {
            tls_version: conn
                .protocol_version()
                .map_or_else(|| "unknown".to_owned(), version_name),
            chain,
        })
    }
}

fn connect_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::TimedOut => "connection timed out".to_owned(),
        ErrorKind::HostUnreachable => "host unreachable".to_owned(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_owned(),
        _ => format!("connect: {e}"),
    }
}

/// `3s`, or `250ms` below whole seconds.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The IANA-style name: `"TLSv1.3"`.
fn version_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A client for TLS 1.2 and 1.3 on ring, built without touching the process-wide provider.
fn connector() -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(RecordOnly {
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS settings: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Accepts any chain (see the module docs for why a scan must) but verifies the handshake
/// signature with the served leaf's key.
#[derive(Debug)]
struct RecordOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for RecordOnly {
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
    fn details_read_well() {
        assert_eq!(human(Duration::from_secs(3)), "3s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(version_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
        assert_eq!(version_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(connect_error(&refused), "connection refused");
        assert!(connector().is_ok());
    }

    #[test]
    fn concurrency_is_at_least_one() {
        let scanner = Scanner::new(0, Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(scanner.concurrency, 1);
    }
}
