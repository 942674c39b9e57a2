//! The scanner against real TLS servers on 127.0.0.1, and target expansion through the guard.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use certmesh_crypto::cert::{CaTemplate, Certificate, IssuingCa, LeafTemplate, self_signed_root};
use certmesh_crypto::csr::ExtendedKeyUsage;
use certmesh_crypto::keys::{KeySpec, SoftwareSigner};
use certmesh_crypto::serial::Serial;
use certmesh_crypto::tls::server_identity;
use certmesh_discovery::scan::{
    Endpoint, Guard, Planned, Refusal, ScanError, Scanner, TargetSpec, expand,
};
use chrono::{TimeZone, Utc};
use rustls::ServerConfig;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// A leaf for `www.scan.test` under a fresh root: (leaf, root, leaf key PEM).
pub(crate) fn chain() -> (Certificate, Certificate, String) {
    let at = |year| {
        Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
            .single()
            .expect("t")
    };
    let signer = Arc::new(SoftwareSigner::generate_ephemeral(KeySpec::EcdsaP256).expect("key"));
    let root = self_signed_root(
        signer.clone(),
        &CaTemplate {
            common_name: "Scan Test Root".into(),
            organization: None,
            serial: Serial::random(),
            not_before: at(2020),
            not_after: at(2049),
            path_len: None,
            permitted_dns: Vec::new(),
            excluded_dns: Vec::new(),
        },
    )
    .expect("root");
    let ca = IssuingCa::new(root.clone(), signer).expect("issuing CA");
    let (key, csr) = server_identity(&["www.scan.test".into()], &[]).expect("csr");
    let leaf = ca
        .sign_leaf(
            &csr,
            &LeafTemplate {
                serial: Serial::random(),
                not_before: at(2020),
                not_after: at(2049),
                ekus: vec![ExtendedKeyUsage::ServerAuth],
                ocsp_url: None,
                crl_url: None,
            },
        )
        .expect("leaf");
    (leaf, root, key.to_string())
}

/// A TLS server speaking only `version`, serving leaf and root; reports the SNI of each
/// completed handshake. Returns its port.
pub(crate) async fn tls_server(
    version: &'static rustls::SupportedProtocolVersion,
    leaf: &Certificate,
    root: &Certificate,
    key_pem: &str,
) -> (u16, mpsc::UnboundedReceiver<Option<String>>) {
    let certs = vec![
        CertificateDer::from(leaf.der().to_vec()),
        CertificateDer::from(root.der().to_vec()),
    ];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (names, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, names) = (acceptor.clone(), names.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = names.send(tls.get_ref().1.server_name().map(str::to_owned));
                }
            });
        }
    });
    (port, seen)
}

fn localhost(port: u16, sni: Option<&str>) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        ip: IpAddr::from([127, 0, 0, 1]),
        port,
        sni: sni.map(str::to_owned),
    }
}

fn quick() -> Scanner {
    Scanner::new(4, Duration::from_secs(2), Duration::from_millis(500))
}

fn spec(hosts: &[&str], ports: &[u16], sni: &[&str]) -> TargetSpec {
    TargetSpec {
        hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
        ports: ports.to_vec(),
        sni: sni.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn loopback_ok() -> Guard {
    Guard {
        allow_loopback: true,
        ..Guard::default()
    }
}

#[tokio::test]
async fn the_served_chain_and_version_are_recorded() {
    let (leaf, root, key) = chain();
    let (v13, mut names13) = tls_server(&TLS13, &leaf, &root, &key).await;
    let (v12, mut names12) = tls_server(&TLS12, &leaf, &root, &key).await;
    let results = quick()
        .scan(vec![
            localhost(v13, Some("www.scan.test")),
            localhost(v12, None),
        ])
        .await;
    assert_eq!(results.len(), 2);
    let served13 = results[0].outcome.as_ref().expect("TLS 1.3 served");
    assert_eq!(served13.tls_version, "TLSv1.3");
    assert_eq!(served13.chain, [leaf.der().to_vec(), root.der().to_vec()]);
    assert_eq!(results[0].endpoint.port, v13);
    let served12 = results[1].outcome.as_ref().expect("TLS 1.2 served");
    assert_eq!(served12.tls_version, "TLSv1.2");
    assert_eq!(served12.chain[0], leaf.der());
    // The SNI name went out; an IP endpoint sends none.
    assert_eq!(names13.recv().await, Some(Some("www.scan.test".into())));
    assert_eq!(names12.recv().await, Some(None));
}

#[tokio::test]
async fn a_closed_port_fails_with_a_detail() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let results = quick().scan(vec![localhost(port, None)]).await;
    assert_eq!(results[0].outcome, Err("connection refused".to_owned()));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_in_the_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = tcp.read_to_end(&mut sink).await;
            });
        }
    });
    let scanner = Scanner::new(1, Duration::from_secs(2), Duration::from_millis(200));
    let results = scanner.scan(vec![localhost(port, None)]).await;
    assert_eq!(
        results[0].outcome,
        Err("TLS handshake timed out after 200ms".to_owned())
    );
}

#[tokio::test]
async fn no_more_than_the_concurrency_bound_is_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (current, peak, total) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let counters = (current.clone(), peak.clone(), total.clone());
    tokio::spawn(async move {
        let (current, peak, total) = counters;
        while let Ok((tcp, _)) = listener.accept().await {
            let now = current.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            total.fetch_add(1, Ordering::SeqCst);
            let current = current.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                // Counted out before the close the client waits for, so a new dial never
                // overlaps in the count with one that has finished.
                current.fetch_sub(1, Ordering::SeqCst);
                drop(tcp);
            });
        }
    });
    let scanner = Scanner::new(3, Duration::from_secs(2), Duration::from_secs(5));
    let endpoints = (0..9).map(|_| localhost(port, None)).collect();
    let results = scanner.scan(endpoints).await;
    assert_eq!(results.len(), 9);
    assert!(results.iter().all(|r| r.outcome.is_err()), "nothing served");
    assert_eq!(total.load(Ordering::SeqCst), 9);
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=3).contains(&peak), "peak {peak}");
}

fn endpoints(plan: &[Planned]) -> Vec<&Endpoint> {
    plan.iter()
        .filter_map(|p| match p {
            Planned::Endpoint(e) => Some(e),
            Planned::Refused { .. } => None,
        })
        .collect()
}

fn refusals(plan: &[Planned]) -> Vec<(IpAddr, Refusal)> {
    plan.iter()
        .filter_map(|p| match p {
            Planned::Refused { ip, reason, .. } => Some((*ip, *reason)),
            Planned::Endpoint(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn the_guard_refuses_loopback_unless_allowed() {
    let target = spec(&["127.0.0.1", "::ffff:127.0.0.1", "localhost"], &[443], &[]);
    let plan = expand(&target, &Guard::default(), 1024)
        .await
        .expect("plans");
    assert!(endpoints(&plan).is_empty(), "{plan:?}");
    let refused = refusals(&plan);
    // localhost resolves to at least one loopback address, and each is refused, not dropped.
    assert!(refused.len() >= 3, "{refused:?}");
    assert!(refused.iter().all(|(_, r)| *r == Refusal::Loopback));
    assert!(refused.contains(&("::ffff:127.0.0.1".parse().expect("ip"), Refusal::Loopback)));

    let plan = expand(&target, &loopback_ok(), 1024).await.expect("plans");
    assert!(refusals(&plan).is_empty());
    let named = endpoints(&plan)
        .into_iter()
        .find(|e| e.host == "localhost")
        .expect("localhost planned");
    assert_eq!(named.sni.as_deref(), Some("localhost"));
    assert!(named.ip.is_loopback() || named.ip.to_string().starts_with("::ffff:127."));
}

#[tokio::test]
async fn metadata_is_refused_even_with_link_local_allowed() {
    let guard = Guard {
        allow_link_local: true,
        ..Guard::default()
    };
    let target = spec(
        &["169.254.169.254", "169.254.10.10", "fd00:ec2::254"],
        &[80],
        &[],
    );
    let plan = expand(&target, &guard, 1024).await.expect("plans");
    assert_eq!(
        refusals(&plan),
        [
            (
                "169.254.169.254".parse().expect("ip"),
                Refusal::CloudMetadata
            ),
            ("fd00:ec2::254".parse().expect("ip"), Refusal::CloudMetadata),
        ]
    );
    assert_eq!(endpoints(&plan).len(), 1);
    let err = guard
        .check("169.254.169.254".parse().expect("ip"))
        .expect_err("refused");
    assert_eq!(err.reason(), "SCAN_TARGET_REFUSED");
}

#[tokio::test]
async fn blocks_expand_and_pair_with_ports_and_sni_names() {
    let plan = expand(
        &spec(&["10.0.0.0/30"], &[443], &[]),
        &Guard::default(),
        1024,
    )
    .await
    .expect("plans");
    let ips: Vec<String> = endpoints(&plan).iter().map(|e| e.ip.to_string()).collect();
    assert_eq!(ips, ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert!(
        endpoints(&plan)
            .iter()
            .all(|e| e.sni.is_none() && e.host == "10.0.0.0/30")
    );

    let target = spec(
        &["192.0.2.1"],
        &[443, 8443, 443],
        &["a.example", "b.example"],
    );
    let plan = expand(&target, &Guard::default(), 1024)
        .await
        .expect("plans");
    let pairs: Vec<(u16, Option<&str>)> = endpoints(&plan)
        .iter()
        .map(|e| (e.port, e.sni.as_deref()))
        .collect();
    assert_eq!(
        pairs,
        [
            (443, Some("a.example")),
            (443, Some("b.example")),
            (8443, Some("a.example")),
            (8443, Some("b.example")),
        ]
    );

    let err = expand(
        &spec(&["10.0.0.0/16"], &[443], &[]),
        &Guard::default(),
        1024,
    )
    .await
    .expect_err("too large");
    assert_eq!(err.reason(), "SCAN_TARGET_INVALID");
    assert!(
        matches!(err, ScanError::InvalidTarget { field: "hosts", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_an_invalid_target() {
    // RFC 6761 §6.4: .invalid never resolves.
    let err = expand(
        &spec(&["nothing.invalid"], &[443], &[]),
        &Guard::default(),
        16,
    )
    .await
    .expect_err("unresolvable");
    assert!(
        matches!(&err, ScanError::Unresolved { host, .. } if host == "nothing.invalid"),
        "{err}"
    );
    assert_eq!(err.reason(), "SCAN_TARGET_INVALID");
}

#[tokio::test]
async fn a_plan_is_dialed_end_to_end() {
    let (leaf, root, key) = chain();
    let (port, _names) = tls_server(&TLS13, &leaf, &root, &key).await;
    let plan = expand(
        &spec(&["127.0.0.1"], &[port], &["www.scan.test"]),
        &loopback_ok(),
        16,
    )
    .await
    .expect("plans");
    let planned: Vec<Endpoint> = endpoints(&plan).into_iter().cloned().collect();
    assert_eq!(planned, [localhost(port, Some("www.scan.test"))]);
    let results = quick().scan(planned).await;
    let served = results[0].outcome.as_ref().expect("served");
    assert_eq!(
        Certificate::from_der(served.chain[0].clone())
            .expect("leaf parses")
            .dns_names(),
        ["www.scan.test".to_string()]
    );
}
