//! Shared fixtures: a test PKI made with certmesh-crypto, a TLS server that serves whatever
//! certificate files are on disk at each handshake (as nginx does after a reload), and a
//! polling helper instead of sleeps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certmesh_crypto::cert::{
    CaTemplate, Certificate, IdentityTemplate, IssuingCa, LeafTemplate, self_signed_root,
};
use certmesh_crypto::csr::{Csr, ExtendedKeyUsage};
use certmesh_crypto::keys::{KeySpec, SoftwareSigner};
use certmesh_crypto::serial::Serial;
use certmesh_crypto::tls::host_key_and_csr;
use chrono::{DateTime, TimeZone, Utc};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Fixed validity: tests never read the clock.
pub fn not_before() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .expect("valid")
}

pub fn not_after() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2049, 1, 1, 0, 0, 0)
        .single()
        .expect("valid")
}

/// A root CA that signs leaves and client identities.
pub struct Pki {
    ca: IssuingCa,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let signer = Arc::new(SoftwareSigner::generate_ephemeral(KeySpec::EcdsaP256).expect("key"));
        let template = CaTemplate {
            common_name: name.to_owned(),
            organization: None,
            serial: Serial::random(),
            not_before: not_before(),
            not_after: not_after(),
            path_len: None,
            permitted_dns: Vec::new(),
            excluded_dns: Vec::new(),
        };
        let root = self_signed_root(signer.clone(), &template).expect("root");
        Pki {
            ca: IssuingCa::new(root, signer).expect("issuing CA"),
        }
    }

    pub fn root_pem(&self) -> String {
        self.ca.certificate().to_pem()
    }

    /// A server leaf for the CSR's names and key.
    pub fn sign(&self, csr: &Csr) -> Certificate {
        let template = LeafTemplate {
            serial: Serial::random(),
            not_before: not_before(),
            not_after: not_after(),
            ekus: vec![ExtendedKeyUsage::ServerAuth],
            ocsp_url: None,
            crl_url: None,
        };
        self.ca.sign_leaf(csr, &template).expect("leaf")
    }

    /// A fresh key and a leaf for `dns` (and `ips`): (key PEM, certificate).
    pub fn leaf(&self, dns: &[&str], ips: &[&str]) -> (String, Certificate) {
        let dns: Vec<String> = dns.iter().map(|s| (*s).to_owned()).collect();
        let ips: Vec<_> = ips.iter().map(|s| s.parse().expect("ip")).collect();
        let (key, csr) = host_key_and_csr(KeySpec::EcdsaP256, None, &dns, &ips).expect("csr");
        (key.to_string(), self.sign(&csr))
    }

    /// A client identity for the CSR's key.
    pub fn identity(&self, csr: &Csr, uri: &str, not_after: DateTime<Utc>) -> Certificate {
        let template = IdentityTemplate {
            serial: Serial::random(),
            not_before: not_before(),
            not_after,
            common_name: "agent".into(),
            uri: uri.into(),
        };
        self.ca
            .sign_client_identity(csr, &template)
            .expect("identity")
    }
}

/// Serves, at every handshake, the certificate chain and key in `cert` and `key`.
#[derive(Debug)]
struct FromDisk {
    cert: PathBuf,
    key: PathBuf,
}

impl ResolvesServerCert for FromDisk {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        let key = PrivateKeyDer::from_pem_file(&self.key).ok()?;
        let provider = rustls::crypto::ring::default_provider();
        let key = provider.key_provider.load_private_key(key).ok()?;
        Some(Arc::new(CertifiedKey::new(chain, key)))
    }
}

/// A TLS server on 127.0.0.1 serving the files at `cert` and `key`; returns `host:port`.
pub async fn tls_server(cert: &Path, key: &Path) -> String {
    let resolver = Arc::new(FromDisk {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    });
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver);
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    addr
}

/// Polls `check` every 50 ms for up to 10 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
