//! Enroll and run against a scripted fleet server over real TLS and mTLS: the error format,
//! the state files, a job from CSR to result (with a retry reusing the key), identity renewal
//! and the next connection presenting it, retirement and shutdown, discovery reports.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use certmesh_agent::AgentError;
use certmesh_agent::clock::SystemClock;
use certmesh_agent::config::DiscoverySettings;
use certmesh_agent::enroll::enroll;
use certmesh_agent::session::{RunEnd, run};
use certmesh_agent::state::{SafeId, StateDir};
use certmesh_crypto::cert::Certificate;
use certmesh_crypto::csr::Csr;
use certmesh_crypto::digest::sha256_hex;
use certmesh_proto::fleet::{
    Binding, CertificateSpec, DeployTarget, IdentityRenewed, Job, JobCertificate, Retired, Welcome,
    agent_message::Message as Up, server_message::Message as Down,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fleet::{Fleet, SPIFFE, TOKEN};
use crate::support::{eventually, install_provider, mode, not_after};

fn start(fleet: &Fleet) -> (JoinHandle<Result<RunEnd, AgentError>>, watch::Sender<bool>) {
    let settings = fleet.settings(TOKEN);
    let (stop, shutdown) = watch::channel(false);
    let handle = tokio::spawn(async move { run(&settings, Arc::new(SystemClock), shutdown).await });
    (handle, stop)
}

#[tokio::test]
async fn enroll_reports_the_servers_reason_then_stores_a_private_identity() {
    install_provider();
    let fleet = Fleet::start().await;
    let mut settings = fleet.settings("cmb_wrong");
    settings.server_name = Some("fleet.test".into());
    let err = enroll(&settings, false).await.expect_err("bad token");
    assert_eq!(
        err.to_string(),
        "UNAUTHENTICATED (BOOTSTRAP_TOKEN_INVALID): the bootstrap token is unknown, expired or already used"
    );

    let mut settings = fleet.settings(TOKEN);
    settings.server_name = Some("fleet.test".into());
    let record = enroll(&settings, false).await.expect("enrolls");
    assert_eq!(record.agent_id, "ag-1");
    assert_eq!(record.spiffe_id, SPIFFE);
    assert_eq!(record.group, "web");
    let state = StateDir::new(&settings.state_dir);
    assert_eq!(mode(state.root()), 0o700);
    assert_eq!(mode(&state.identity_key()), 0o600);
    assert!(state.identity_ca().is_file());
    assert_eq!(state.load_agent().expect("agent.json"), record);

    let again = enroll(&settings, false)
        .await
        .expect_err("already enrolled");
    assert!(
        matches!(again, AgentError::AlreadyEnrolled { .. }),
        "{again}"
    );
    let old_key = std::fs::read(state.identity_key()).expect("key");
    enroll(&settings, true)
        .await
        .expect("--force enrolls again");
    assert_ne!(std::fs::read(state.identity_key()).expect("key"), old_key);
}

fn issue_job(job_id: &str, fleet: &Fleet) -> Job {
    let etc = fleet.dir.path().join("etc");
    Job {
        job_id: job_id.into(),
        kind: "issue".into(),
        attempt: 1,
        binding: Some(Binding {
            id: "bd-1".into(),
            name: "web".into(),
            certificate: Some(CertificateSpec {
                dns_names: vec!["www.example.test".into()],
                ip_addresses: vec!["127.0.0.1".into()],
                ..CertificateSpec::default()
            }),
            target: Some(DeployTarget {
                cert_path: etc.join("www.pem").display().to_string(),
                key_path: etc.join("www.key").display().to_string(),
                reload_command: "true".into(),
                ..DeployTarget::default()
            }),
            ..Binding::default()
        }),
        ..Job::default()
    }
}

#[tokio::test]
async fn a_job_goes_from_csr_to_result_and_a_retry_reuses_the_key() {
    install_provider();
    let mut fleet = Fleet::start().await;
    enroll(&fleet.settings(TOKEN), false)
        .await
        .expect("enrolls");
    let state = StateDir::new(fleet.settings(TOKEN).state_dir);
    let (agent, _stop) = start(&fleet);

    let mut stream = fleet.next_session().await;
    let identity =
        Certificate::from_pem(&std::fs::read_to_string(state.identity_pem()).expect("identity"))
            .expect("parses");
    assert_eq!(stream.client_cert_sha256, identity.fingerprint_sha256());
    let Up::Hello(hello) = stream.next().await else {
        panic!("Hello first")
    };
    assert!(!hello.host.expect("host facts").hostname.is_empty());
    stream
        .send(Down::Welcome(Welcome {
            agent_id: "ag-1".into(),
            heartbeat_seconds: 1,
            renew_identity_after: None,
        }))
        .await;
    // The heartbeat period from the Welcome is used.
    let heartbeat = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.from_agent.message(),
    )
    .await
    .expect("a heartbeat within 5 s")
    .expect("ok")
    .expect("open");
    assert!(matches!(heartbeat.message, Some(Up::Heartbeat(_))));

    let job = issue_job("jb-1", &fleet);
    stream.send(Down::Job(job.clone())).await;
    let Up::Ack(ack) = stream.next().await else {
        panic!("ack")
    };
    assert_eq!(ack.job_id, "jb-1");
    let Up::Csr(first) = stream.next().await else {
        panic!("csr")
    };
    let pending = state.pending_key(&SafeId::parse("job", "jb-1").expect("id"));
    assert_eq!(mode(&pending), 0o600);

    // The server offers the job again: same key, so the idempotent issue stays consistent.
    stream.send(Down::Job(job)).await;
    let Up::Ack(_) = stream.next().await else {
        panic!("ack")
    };
    let Up::Csr(second) = stream.next().await else {
        panic!("csr")
    };
    let first = Csr::from_pem(&first.csr).expect("csr");
    let second = Csr::from_pem(&second.csr).expect("csr");
    assert_eq!(first.public_key_spki_der(), second.public_key_spki_der());
    assert_eq!(first.dns_names(), ["www.example.test".to_string()]);
    assert_eq!(first.common_name(), Some("www.example.test"));

    let issuer = crate::support::Pki::new("Issuing CA");
    let leaf = issuer.sign(&first);
    stream
        .send(Down::Certificate(JobCertificate {
            job_id: "jb-1".into(),
            certificate_pem: leaf.to_pem(),
            chain_pem: issuer.root_pem(),
            serial: leaf.serial().to_hex(),
        }))
        .await;
    let Up::Result(result) = stream.next().await else {
        panic!("result")
    };
    assert_eq!(result.job_id, "jb-1");
    assert_eq!(result.outcome, "installed", "{}", result.detail);
    assert_eq!(result.certificate_sha256, leaf.fingerprint_sha256());
    let installed = std::fs::read_to_string(fleet.dir.path().join("etc/www.pem")).expect("cert");
    assert!(installed.starts_with(&leaf.to_pem()));
    eventually("the pending key is removed", || !pending.exists()).await;
    let status = state.load_status().expect("status");
    assert!(status.connected);
    assert_eq!(status.results["bd-1"].serial, leaf.serial().to_hex());
    assert_eq!(status.results["bd-1"].outcome, "installed");

    stream
        .send(Down::Retired(Retired {
            message: "decommissioned".into(),
        }))
        .await;
    let end = agent.await.expect("joins").expect("runs");
    assert_eq!(end, RunEnd::Retired);
    assert!(!state.load_status().expect("status").connected);
}

#[tokio::test]
async fn the_identity_is_renewed_and_the_next_connection_presents_it() {
    install_provider();
    let mut fleet = Fleet::start().await;
    enroll(&fleet.settings(TOKEN), false)
        .await
        .expect("enrolls");
    let state = StateDir::new(fleet.settings(TOKEN).state_dir);
    let (agent, stop) = start(&fleet);

    let mut stream = fleet.next_session().await;
    let Up::Hello(_) = stream.next().await else {
        panic!("Hello first")
    };
    stream
        .send(Down::Welcome(Welcome {
            agent_id: "ag-1".into(),
            heartbeat_seconds: 15,
            renew_identity_after: Some(pbjson_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
        }))
        .await;
    let Up::RenewIdentity(renew) = stream.next().await else {
        panic!("renewal right after Welcome")
    };
    let csr = Csr::from_pem(&renew.csr).expect("csr");
    let next_key = std::fs::read_to_string(state.identity_key_next()).expect("next key");
    assert_eq!(mode(&state.identity_key_next()), 0o600);
    let later = not_after() - chrono::Duration::days(1);
    let renewed = fleet.identity_ca.identity(&csr, SPIFFE, later);
    stream
        .send(Down::IdentityRenewed(IdentityRenewed {
            certificate_pem: renewed.to_pem(),
            not_after: Some(later.into()),
        }))
        .await;
    eventually("identity.pem is replaced", || {
        std::fs::read_to_string(state.identity_pem()).is_ok_and(|pem| pem == renewed.to_pem())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(state.identity_key()).expect("key"),
        next_key
    );
    assert!(!state.identity_key_next().exists());
    assert_eq!(state.load_agent().expect("agent").not_after, later);

    // The server drops the stream; the agent comes back with the renewed certificate.
    drop(stream);
    let mut again = fleet.next_session().await;
    assert_eq!(again.client_cert_sha256, sha256_hex(renewed.der()));
    let Up::Hello(_) = again.next().await else {
        panic!("Hello first")
    };

    stop.send(true).expect("agent running");
    let end = agent.await.expect("joins").expect("runs");
    assert_eq!(end, RunEnd::Shutdown);
}

#[tokio::test]
async fn a_retired_agent_refused_at_connect_exits_cleanly() {
    install_provider();
    let fleet = Fleet::start().await;
    enroll(&fleet.settings(TOKEN), false)
        .await
        .expect("enrolls");
    fleet.retired.store(true, Ordering::SeqCst);
    let (agent, _stop) = start(&fleet);
    let end = tokio::time::timeout(std::time::Duration::from_secs(15), agent)
        .await
        .expect("stops within 15 s")
        .expect("joins")
        .expect("runs");
    assert_eq!(end, RunEnd::Retired);
}

#[tokio::test]
async fn run_before_enroll_is_not_enrolled() {
    install_provider();
    let fleet = Fleet::start().await;
    let (agent, _stop) = start(&fleet);
    let err = agent.await.expect("joins").expect_err("not enrolled");
    assert!(matches!(err, AgentError::NotEnrolled { .. }), "{err}");
}

#[tokio::test]
async fn discovery_reports_the_certificates_on_disk_after_the_hello() {
    install_provider();
    let mut fleet = Fleet::start().await;
    enroll(&fleet.settings(TOKEN), false)
        .await
        .expect("enrolls");
    let found = fleet.dir.path().join("found");
    std::fs::create_dir_all(&found).expect("mkdir");
    let (key, leaf) = crate::support::Pki::new("Found CA").leaf(&["found.example.test"], &[]);
    std::fs::write(found.join("site.pem"), format!("{key}{}", leaf.to_pem())).expect("write");
    let mut settings = fleet.settings(TOKEN);
    settings.discovery = DiscoverySettings {
        paths: vec![found.clone()],
        interval: std::time::Duration::from_secs(3600),
    };
    let (stop, shutdown) = watch::channel(false);
    let agent = tokio::spawn(async move { run(&settings, Arc::new(SystemClock), shutdown).await });

    let mut stream = fleet.next_session().await;
    let Up::Hello(_) = stream.next().await else {
        panic!("Hello first")
    };
    let Up::Discovery(report) = stream.next().await else {
        panic!("a discovery report right after the Hello")
    };
    assert_eq!(report.files.len(), 1);
    assert_eq!(
        report.files[0].path,
        found.join("site.pem").display().to_string()
    );
    assert_eq!(report.files[0].certificates, [leaf.der().to_vec()]);

    stop.send(true).expect("agent running");
    let end = agent.await.expect("joins").expect("runs");
    assert_eq!(end, RunEnd::Shutdown);
}
