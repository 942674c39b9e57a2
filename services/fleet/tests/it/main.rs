//! The fleet role against a real store, on SQLite and PostgreSQL (row-level security): the
//! enrollment transaction, the scheduler's planning, retirement and renew-now. The streams and
//! the deploy contract are driven end to end in `e2e/tests/it/fleet.rs`.

use std::convert::Infallible;
use std::sync::Arc;

use certmesh_crypto::keys::{Kek, KeyBackend, SealedFileBackend};
use certmesh_crypto::tls::host_key_and_csr;
use certmesh_fleet::{
    Config, Deps, Fleet, FleetError, enroll::EnrollRequest, identity::IdentityCa,
};
use certmesh_kit::{
    auth::AuthContext,
    clock::{Clock, TestClock},
    metrics::Metrics,
    rbac::Role,
};
use certmesh_proto::fleet as pb;
use certmesh_store::{
    TenantId,
    fleet::{self, DeploymentRecord, HostFacts},
    testing::{TestDb, each_backend},
};
use chrono::{DateTime, Duration, Utc};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

/// An issuance role that is never reached in these tests.
fn no_issuance() -> certmesh_fleet::IssuanceChannel {
    BoxCloneSyncService::new(tower::service_fn(|_: http::Request<Body>| async {
        Ok::<_, Infallible>(tonic::Status::unavailable("no issuance role in this test").into_http())
    }))
}

struct World {
    db: TestDb,
    fleet: Fleet,
    clock: TestClock,
    metrics: Arc<Metrics>,
    _keys: tempfile::TempDir,
}

async fn world(db: TestDb) -> World {
    let dir = tempfile::tempdir().expect("key dir");
    let keys: Arc<dyn KeyBackend> = Arc::new(
        SealedFileBackend::new(dir.path().to_path_buf(), Kek::generate().expect("kek"))
            .expect("backend"),
    );
    let clock = TestClock::at(t0());
    let identity = IdentityCa::ensure(&db.store, &keys, "certmesh.test", t0())
        .await
        .expect("identity CA");
    let again = IdentityCa::ensure(&db.store, &keys, "certmesh.test", t0())
        .await
        .expect("loaded");
    assert_eq!(identity.certificate(), again.certificate(), "made once");
    let metrics = Metrics::new();
    let fleet = Fleet::new(Deps {
        store: db.store.clone(),
        clock: Arc::new(clock.clone()),
        identity: Arc::new(identity),
        issuance: no_issuance(),
        config: Config::new(),
        metrics: metrics.clone(),
    });
    World {
        db,
        fleet,
        clock,
        metrics,
        _keys: dir,
    }
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

fn csr() -> String {
    host_key_and_csr(
        certmesh_crypto::keys::KeySpec::EcdsaP256,
        Some("host"),
        &[],
        &[],
    )
    .expect("csr")
    .1
    .to_pem()
}

async fn enroll(w: &World, auth: &AuthContext, group: &str) -> uuid::Uuid {
    let (_, secret) = w
        .fleet
        .create_bootstrap_token(auth, group, "1h", "")
        .await
        .expect("token");
    w.fleet
        .enroll(EnrollRequest {
            token: secret,
            csr: csr(),
            host: HostFacts::default(),
        })
        .await
        .expect("enroll")
        .agent
        .id
}

fn binding(name: &str, group: &str) -> certmesh_fleet::admin::NewBinding {
    certmesh_fleet::admin::NewBinding {
        name: name.into(),
        agent_id: String::new(),
        group: group.into(),
        certificate: Some(pb::CertificateSpec {
            dns_names: vec!["www.example.com".into()],
            profile: "web".into(),
            ..pb::CertificateSpec::default()
        }),
        target: Some(pb::DeployTarget {
            cert_path: "/etc/tls/web.pem".into(),
            key_path: "/etc/tls/web.key".into(),
            ..pb::DeployTarget::default()
        }),
    }
}

#[tokio::test]
async fn enrollment_consumes_the_token_once_and_a_bad_csr_burns_nothing() {
    for db in each_backend().await {
        let b = db.backend();
        let w = world(db).await;
        let acme = tenant(&w.db, "acme").await;
        let auth = admin(acme);
        let (token, secret) = w
            .fleet
            .create_bootstrap_token(&auth, "web", "1h", "rack 1")
            .await
            .expect("token");
        let garbage = w
            .fleet
            .enroll(EnrollRequest {
                token: secret.clone(),
                csr: "not a csr".into(),
                host: HostFacts::default(),
            })
            .await;
        assert!(
            matches!(garbage, Err(FleetError::Csr(_))),
            "{b:?}: {garbage:?}"
        );
        let enrolled = w
            .fleet
            .enroll(EnrollRequest {
                token: secret.clone(),
                csr: csr(),
                host: HostFacts {
                    hostname: "web-1\u{7}".into(),
                    ..HostFacts::default()
                },
            })
            .await
            .expect("the token still works after the bad CSR");
        assert_eq!(enrolled.agent.group, "web");
        assert_eq!(
            enrolled.agent.host.hostname, "web-1",
            "control characters dropped"
        );
        let spiffe = format!(
            "spiffe://certmesh.test/tenant/{acme}/agent/{}",
            enrolled.agent.id
        );
        assert_eq!(enrolled.spiffe_id, spiffe);
        assert_eq!(
            enrolled.certificate.uris().collect::<Vec<_>>(),
            [spiffe.as_str()]
        );
        let again = w
            .fleet
            .enroll(EnrollRequest {
                token: secret,
                csr: csr(),
                host: HostFacts::default(),
            })
            .await;
        assert!(
            matches!(again, Err(FleetError::BootstrapTokenInvalid)),
            "{b:?}: {again:?}"
        );
        let listed = w.fleet.list_bootstrap_tokens(&auth).await.expect("list");
        assert_eq!(listed[0].id, token.id);
        assert_eq!(listed[0].agent_id, Some(enrolled.agent.id), "{b:?}");
        // The agent's certificate opens its stream; after retirement it does not.
        let leaf = enrolled.certificate.der().to_vec();
        let agent = w
            .fleet
            .authenticate(Some(&leaf))
            .await
            .expect("current identity");
        assert_eq!(agent.id, enrolled.agent.id);
        w.fleet
            .retire_agent(&auth, &agent.id.to_string())
            .await
            .expect("retire");
        assert!(matches!(
            w.fleet.authenticate(Some(&leaf)).await,
            Err(FleetError::Retired(_))
        ));
        assert!(matches!(
            w.fleet.authenticate(None).await,
            Err(FleetError::IdentityInvalid(_))
        ));
    }
}

#[tokio::test]
async fn the_scheduler_makes_issue_then_renew_jobs_for_each_target_once() {
    for db in each_backend().await {
        let b = db.backend();
        let w = world(db).await;
        let acme = tenant(&w.db, "acme").await;
        let auth = admin(acme);
        let a1 = enroll(&w, &auth, "web").await;
        let a2 = enroll(&w, &auth, "web").await;
        let other = enroll(&w, &auth, "db").await;
        let (web, _) = w
            .fleet
            .create_binding(&auth, binding("web", "web"))
            .await
            .expect("binding");
        // create_binding plans at once: an issue job per agent of the group.
        let jobs = w.fleet.list_jobs(&auth, "", "", "", 0).await.expect("jobs");
        let mut targets: Vec<_> = jobs.iter().map(|j| (j.agent_id, j.kind.as_str())).collect();
        targets.sort();
        let mut want = vec![(a1, "issue"), (a2, "issue")];
        want.sort();
        assert_eq!(targets, want, "{b:?}");
        assert!(jobs.iter().all(|j| j.agent_id != other));
        assert_eq!(
            w.fleet.plan().await.expect("plan"),
            0,
            "{b:?}: one open job per target"
        );

        // a1's job succeeded and its certificate is due at +10 days.
        let j1 = jobs.iter().find(|j| j.agent_id == a1).expect("a1's job");
        let tx = w.db.store.begin_tenant(acme).await.expect("tx");
        fleet::finish_job(
            &tx,
            acme,
            j1.id,
            fleet::state::SUCCEEDED,
            "verified",
            "",
            t0(),
        )
        .await
        .expect("finish");
        fleet::upsert_deployment(
            &tx,
            &DeploymentRecord {
                tenant_id: acme,
                binding_id: web.id,
                agent_id: a1,
                serial: "0a".into(),
                certificate_sha256: "ab".repeat(32),
                not_after: t0() + Duration::days(30),
                renew_at: t0() + Duration::days(10),
                outcome: "verified".into(),
                detail: String::new(),
                served_sha256: "ab".repeat(32),
                updated_at: t0(),
            },
        )
        .await
        .expect("deployment");
        tx.commit().await.expect("commit");
        assert_eq!(w.fleet.plan().await.expect("plan"), 0, "{b:?}: not due yet");
        w.clock.advance(Duration::days(10));
        assert_eq!(w.fleet.plan().await.expect("plan"), 1, "{b:?}: due now");
        let renew = w
            .fleet
            .list_jobs(&auth, &a1.to_string(), "", "pending", 0)
            .await
            .expect("jobs");
        assert_eq!(renew.len(), 1);
        assert_eq!(renew[0].kind, "renew", "{b:?}");

        // renew-now of a certificate no agent deploys is refused; of a deployed one it moves
        // the renewal (the open renew job stays the one job).
        assert!(matches!(
            w.fleet.renew_now(&auth, "ff").await,
            Err(FleetError::NotDeployed(_))
        ));
        assert_eq!(
            w.fleet.renew_now(&auth, "0A").await.expect("renew now"),
            (1, 0)
        );

        // A retired agent is no target, and its jobs are cancelled.
        w.fleet
            .retire_agent(&auth, &a2.to_string())
            .await
            .expect("retire");
        let a2_jobs = w
            .fleet
            .list_jobs(&auth, &a2.to_string(), "", "", 0)
            .await
            .expect("jobs");
        assert!(
            a2_jobs.iter().all(|j| j.state == fleet::state::CANCELLED),
            "{b:?}"
        );
        assert_eq!(w.fleet.plan().await.expect("plan"), 0, "{b:?}");

        // The jobs gauge, sampled from the store: a1's job succeeded and its renewal is
        // pending, a2's job was cancelled; every state has a series.
        let jobs = |state: &str| w.metrics.sample("certmesh_fleet_jobs", &[("state", state)]);
        assert_eq!(jobs("pending"), 0.0, "not sampled yet");
        w.fleet.sample_jobs().await.expect("sample");
        for (state, n) in [
            ("pending", 1.0),
            ("succeeded", 1.0),
            ("cancelled", 1.0),
            ("dead", 0.0),
        ] {
            assert_eq!(jobs(state), n, "{b:?} {state}: {}", w.metrics.render());
        }
        let series = w.metrics.render().matches("certmesh_fleet_jobs{").count();
        assert_eq!(series, fleet::state::ALL.len(), "{b:?}");

        // Another tenant sees none of it and cannot bind acme's agent.
        let globex = tenant(&w.db, "globex").await;
        let gina = admin(globex);
        assert!(
            w.fleet
                .list_agents(&gina, "")
                .await
                .expect("agents")
                .is_empty()
        );
        let mut theirs = binding("steal", "");
        theirs.agent_id = a1.to_string();
        assert!(matches!(
            w.fleet.create_binding(&gina, theirs).await,
            Err(FleetError::AgentNotFound(_))
        ));
        let _ = w.clock.now();
    }
}
