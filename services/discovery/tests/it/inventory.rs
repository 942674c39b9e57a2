//! The discovery role against a real store, on SQLite and PostgreSQL (row-level security): a
//! scan of a real TLS server on loopback lands in the inventory, agents' filesystem reports do
//! too, filters find weak, self-signed and expiring certificates, dismissed finds stay
//! dismissed, and the scheduler scans a due target once.

use std::process::Command;
use std::sync::Arc;

use certmesh_crypto::cert::Certificate;
use certmesh_discovery::model::NewTarget;
use certmesh_discovery::run::Trigger;
use certmesh_discovery::scan::Guard;
use certmesh_discovery::{Config, Deps, Discovery, DiscoveryError};
use certmesh_kit::{auth::AuthContext, clock::TestClock, rbac::Role};
use certmesh_proto::discovery as pb;
use certmesh_proto::fleet::DiscoveredFile;
use certmesh_store::testing::{TestDb, each_backend};
use certmesh_store::{TenantId, outbox};
use chrono::{DateTime, Duration, Utc};

use crate::scan::{chain, tls_server};

/// The wall clock, once: `openssl req` stamps the weak certificate with it, so the expiry
/// filter must be measured from it too.
#[allow(clippy::disallowed_methods)]
fn t0() -> DateTime<Utc> {
    Utc::now()
}

fn admin(tenant: TenantId) -> AuthContext {
    AuthContext {
        tenant_id: tenant,
        principal: "alice".into(),
        principal_id: uuid::Uuid::new_v4(),
        token_id: uuid::Uuid::new_v4(),
        roles: vec![Role::Admin],
        expires_at: None,
        request_id: "test".into(),
    }
}

async fn tenant(db: &TestDb, name: &str) -> TenantId {
    certmesh_store::tenants::ensure(db.owner(), name, t0())
        .await
        .expect("tenant")
}

fn discovery(db: &TestDb, clock: &TestClock, allow_loopback: bool) -> Discovery {
    let mut config = Config::new();
    config.guard = Guard {
        allow_loopback,
        ..Guard::default()
    };
    config.connect_timeout = std::time::Duration::from_secs(2);
    config.handshake_timeout = std::time::Duration::from_secs(2);
    Discovery::new(Deps {
        store: db.store.clone(),
        clock: Arc::new(clock.clone()),
        config,
        fleet: None,
    })
}

fn target(name: &str, hosts: &[&str], ports: &[u16], sni: &[&str], interval: &str) -> NewTarget {
    NewTarget::parse(
        &pb::CreateScanTargetRequest {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ports: ports.iter().map(|p| u32::from(*p)).collect(),
            sni: sni.iter().map(|s| s.to_string()).collect(),
            interval: interval.into(),
        },
        4096,
    )
    .expect("target")
}

async fn events(db: &TestDb, t: TenantId, kind: &str) -> usize {
    let tx = db.store.begin_tenant(t).await.expect("tx");
    outbox::list(&tx, t, Some(kind), 1000)
        .await
        .expect("outbox")
        .len()
}

#[tokio::test]
async fn a_scan_of_a_real_tls_server_records_its_chain_once() {
    let (leaf, root, key) = chain();
    let (port, _names) = tls_server(&rustls::version::TLS13, &leaf, &root, &key).await;
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let clock = TestClock::at(t0());
        let d = discovery(&db, &clock, true);
        let auth = admin(acme);
        let t = d
            .create_target(
                &auth,
                target("lab", &["127.0.0.1"], &[port], &["www.scan.test"], ""),
            )
            .await
            .expect("create");
        let scan = d.run_scan(&t, Trigger::Manual).await.expect("scan");
        assert_eq!(scan.state, "done", "{b:?}: {}", scan.detail);
        assert_eq!(
            (
                scan.endpoints,
                scan.reachable,
                scan.refused,
                scan.certificates
            ),
            (1, 1, 0, 2),
            "{b:?}"
        );

        let found = d
            .list_found(&auth, &pb::ListDiscoveredRequest::default())
            .await
            .expect("list");
        assert_eq!(found.len(), 2, "{b:?}: leaf and root");
        let location = format!("tls://127.0.0.1:{port}#www.scan.test");
        let l = found
            .iter()
            .find(|f| f.sighting.fingerprint_sha256 == leaf.fingerprint_sha256())
            .expect("the leaf");
        assert_eq!(l.sighting.location, location, "{b:?}");
        assert_eq!(l.sighting.sans, vec!["www.scan.test".to_owned()], "{b:?}");
        assert_eq!(l.sighting.key_type, "ecdsa", "{b:?}");
        assert_eq!(l.sighting.tls_version, "TLSv1.3", "{b:?}");
        assert_eq!(l.sighting.status, "unmanaged", "{b:?}");
        assert!(!l.sighting.self_signed && !l.sighting.is_ca, "{b:?}");
        assert_eq!(l.sighting.source, "network", "{b:?}");
        let r = found.iter().find(|f| f.sighting.is_ca).expect("the root");
        assert!(r.sighting.self_signed, "{b:?}");
        assert_eq!(
            events(&db, acme, "discovery.certificate.found").await,
            2,
            "{b:?}"
        );

        clock.advance(Duration::minutes(5));
        let again = d.run_scan(&t, Trigger::Manual).await.expect("scan again");
        assert_eq!(again.certificates, 2, "{b:?}");
        let found = d
            .list_found(&auth, &pb::ListDiscoveredRequest::default())
            .await
            .expect("list");
        assert_eq!(
            found.len(),
            2,
            "{b:?}: de-duplicated by fingerprint and location"
        );
        assert!(
            found.iter().all(|f| f.last_seen_at > f.first_seen_at),
            "{b:?}"
        );
        assert_eq!(
            events(&db, acme, "discovery.certificate.found").await,
            2,
            "{b:?}: no new finds"
        );
        assert_eq!(
            events(&db, acme, "discovery.scan.finished").await,
            2,
            "{b:?}"
        );

        let other = tenant(&db, "globex").await;
        let theirs = d
            .list_found(&admin(other), &pb::ListDiscoveredRequest::default())
            .await
            .expect("list");
        assert!(theirs.is_empty(), "{b:?}: another tenant sees nothing");
    }
}

#[tokio::test]
async fn the_guard_refuses_loopback_and_closed_ports_are_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let clock = TestClock::at(t0());
        let auth = admin(acme);
        let guarded = discovery(&db, &clock, false);
        let t = guarded
            .create_target(&auth, target("local", &["localhost"], &[port], &[], ""))
            .await
            .expect("a hostname is checked when scanned");
        let scan = guarded.run_scan(&t, Trigger::Manual).await.expect("scan");
        assert_eq!(scan.state, "done", "{b:?}");
        assert!(scan.refused >= 1 && scan.reachable == 0, "{b:?}: {scan:?}");
        let literal = target("lit", &["127.0.0.1"], &[443], &[], "");
        assert!(
            matches!(
                refused_at_create(&guarded, &auth, literal).await,
                Some(DiscoveryError::Target(_))
            ),
            "{b:?}: a literal loopback address is refused up front"
        );

        let open = discovery(&db, &clock, true);
        let t = open
            .create_target(&auth, target("closed", &["127.0.0.1"], &[port], &[], ""))
            .await
            .expect("create");
        let scan = open.run_scan(&t, Trigger::Manual).await.expect("scan");
        assert_eq!(
            (scan.endpoints, scan.reachable, scan.certificates),
            (1, 0, 0),
            "{b:?}"
        );
        let dup = open
            .create_target(&auth, target("closed", &["127.0.0.1"], &[443], &[], ""))
            .await;
        assert!(matches!(dup, Err(DiscoveryError::TargetExists(_))), "{b:?}");
    }
}

/// What creating `new` through the gRPC-facing checks refuses, if anything.
async fn refused_at_create(
    d: &Discovery,
    auth: &AuthContext,
    new: NewTarget,
) -> Option<DiscoveryError> {
    use certmesh_proto::discovery::discovery_service_server::DiscoveryService;
    let mut request = tonic::Request::new(pb::CreateScanTargetRequest {
        name: new.name,
        hosts: new.spec.hosts,
        ports: new.spec.ports.into_iter().map(u32::from).collect(),
        sni: new.spec.sni,
        interval: String::new(),
    });
    request.extensions_mut().insert(auth.clone());
    match d.create_scan_target(request).await {
        Ok(_) => None,
        Err(status) => {
            let reason = tonic_types::StatusExt::get_error_details(&status)
                .error_info()
                .map(|i| i.reason.clone())
                .unwrap_or_default();
            assert_eq!(reason, "SCAN_TARGET_REFUSED", "{status:?}");
            Some(DiscoveryError::Target(
                certmesh_discovery::scan::ScanError::InvalidTarget {
                    field: "hosts",
                    detail: status.message().to_owned(),
                },
            ))
        }
    }
}

/// A self-signed RSA-1024 certificate signed with SHA-1, made by openssl.
fn weak_certificate(dir: &std::path::Path) -> Certificate {
    let out = dir.join("weak.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:1024", "-sha1", "-nodes", "-days", "5",
        ])
        .args([
            "-subj",
            "/CN=legacy.internal",
            "-addext",
            "subjectAltName=DNS:legacy.internal",
        ])
        .arg("-keyout")
        .arg(dir.join("weak.key"))
        .arg("-out")
        .arg(&out)
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    Certificate::from_pem(&std::fs::read_to_string(out).expect("pem")).expect("parses")
}

#[tokio::test]
async fn agent_reports_land_in_the_inventory_and_filters_find_them() {
    let dir = tempfile::tempdir().expect("dir");
    let weak = weak_certificate(dir.path());
    let (leaf, root, _) = chain();
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let clock = TestClock::at(t0());
        let d = discovery(&db, &clock, true);
        let auth = admin(acme);
        let agent = uuid::Uuid::new_v4();
        let files = vec![
            DiscoveredFile {
                path: "/etc/ssl/legacy.pem".into(),
                certificates: vec![weak.der().to_vec()],
            },
            DiscoveredFile {
                path: "/etc/nginx/site.crt".into(),
                certificates: vec![leaf.der().to_vec(), root.der().to_vec()],
            },
            DiscoveredFile {
                path: "relative/ignored.pem".into(),
                certificates: vec![leaf.der().to_vec()],
            },
            DiscoveredFile {
                path: "/etc/ssl/garbage.pem".into(),
                certificates: vec![b"not a certificate".to_vec()],
            },
        ];
        let n =
            certmesh_discovery::inventory::record_filesystem(&db.store, acme, agent, &files, t0())
                .await
                .expect("record");
        assert_eq!(n, 3, "{b:?}: relative paths and garbage are skipped");

        let list = |r: pb::ListDiscoveredRequest| {
            let d = d.clone();
            let auth = auth.clone();
            async move { d.list_found(&auth, &r).await.expect("list") }
        };
        let all = list(pb::ListDiscoveredRequest::default()).await;
        assert_eq!(all.len(), 3, "{b:?}");
        let legacy = all
            .iter()
            .find(|f| f.sighting.location == format!("file://{agent}/etc/ssl/legacy.pem"))
            .expect("the legacy find");
        assert_eq!(legacy.sighting.agent_id, Some(agent), "{b:?}");
        assert_eq!(legacy.sighting.source, "filesystem", "{b:?}");
        let mut weaknesses = legacy.sighting.weaknesses.clone();
        weaknesses.sort();
        assert_eq!(
            weaknesses,
            vec!["rsa-under-2048", "sha1-signature"],
            "{b:?}"
        );

        let weak_only = list(pb::ListDiscoveredRequest {
            weak: true,
            ..Default::default()
        })
        .await;
        assert_eq!(weak_only.len(), 1, "{b:?}");
        let self_signed = list(pb::ListDiscoveredRequest {
            self_signed: true,
            ..Default::default()
        })
        .await;
        assert_eq!(self_signed.len(), 2, "{b:?}: the legacy cert and the root");
        let by_issuer = list(pb::ListDiscoveredRequest {
            issuer: "SCAN TEST root".into(),
            ..Default::default()
        })
        .await;
        assert_eq!(
            by_issuer.len(),
            2,
            "{b:?}: the leaf and the root, case-insensitively"
        );
        let expiring = list(pb::ListDiscoveredRequest {
            expiring_within_days: 10,
            ..Default::default()
        })
        .await;
        assert_eq!(expiring.len(), 1, "{b:?}: only the 5-day legacy cert");
        let unknown = d
            .list_found(
                &auth,
                &pb::ListDiscoveredRequest {
                    status: "lost".into(),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(
                unknown,
                Err(DiscoveryError::InvalidField {
                    field: "status",
                    ..
                })
            ),
            "{b:?}"
        );

        let dismissed = d
            .dismiss(&auth, &legacy.id.to_string())
            .await
            .expect("dismiss");
        assert_eq!(dismissed.sighting.status, "dismissed", "{b:?}");
        assert_eq!(
            list(pb::ListDiscoveredRequest::default()).await.len(),
            2,
            "{b:?}: hidden"
        );
        certmesh_discovery::inventory::record_filesystem(&db.store, acme, agent, &files[..1], t0())
            .await
            .expect("seen again");
        let shown = list(pb::ListDiscoveredRequest {
            status: "dismissed".into(),
            ..Default::default()
        })
        .await;
        assert_eq!(
            shown.len(),
            1,
            "{b:?}: a dismissed find stays dismissed when seen again"
        );
        let missing = d.dismiss(&auth, &uuid::Uuid::new_v4().to_string()).await;
        assert!(
            matches!(missing, Err(DiscoveryError::FoundNotFound(_))),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn the_scheduler_scans_a_due_target_once_per_interval() {
    let (leaf, root, key) = chain();
    let (port, _names) = tls_server(&rustls::version::TLS12, &leaf, &root, &key).await;
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let clock = TestClock::at(t0());
        let d = discovery(&db, &clock, true);
        let auth = admin(acme);
        d.create_target(&auth, target("hourly", &["127.0.0.1"], &[port], &[], "1h"))
            .await
            .expect("create");
        d.create_target(&auth, target("manual", &["127.0.0.1"], &[port], &[], ""))
            .await
            .expect("create");
        let first = d.scan_due().await.expect("pass");
        assert_eq!(first.len(), 1, "{b:?}: only the scheduled target");
        assert_eq!(first[0].trigger, "schedule", "{b:?}");
        assert_eq!(first[0].reachable, 1, "{b:?}");
        assert!(
            d.scan_due().await.expect("pass").is_empty(),
            "{b:?}: not due again yet"
        );
        clock.advance(Duration::minutes(61));
        assert_eq!(
            d.scan_due().await.expect("pass").len(),
            1,
            "{b:?}: due after the interval"
        );
        let found = d
            .list_found(&auth, &pb::ListDiscoveredRequest::default())
            .await
            .expect("list");
        assert!(
            found.iter().all(|f| f.sighting.tls_version == "TLSv1.2"),
            "{b:?}"
        );
    }
}
