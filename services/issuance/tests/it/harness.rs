//! A ready issuance role per backend: migrated store, a tenant, a bootstrapped built-in CA.

use std::{net::IpAddr, sync::Arc};

use certmesh_crypto::{
    csr::Csr,
    keys::{Kek, KeyBackend, SealedFileBackend},
    tls::server_identity,
};
use certmesh_issuance::{BuiltinCa, Deps, Issuance, model::IssueCommand};
use certmesh_kit::{auth::AuthContext, clock::TestClock, metrics::Metrics};
use certmesh_proto::issuance as pb;
use certmesh_store::{Store, tenants, testing::TestDb};
use chrono::{DateTime, Utc};

pub struct Harness {
    pub issuance: Issuance,
    pub store: Store,
    pub clock: TestClock,
    pub auth: AuthContext,
    /// The key backend of the built-in CA, where tests put the keys of the CAs they build.
    pub keys: Arc<dyn KeyBackend>,
    /// The role's metrics.
    pub metrics: Arc<Metrics>,
    pub _db: TestDb,
    pub _keys: tempfile::TempDir,
}

pub fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

pub async fn each_backend() -> Vec<Harness> {
    let mut all = Vec::new();
    for db in certmesh_store::testing::each_backend().await {
        all.push(harness(db).await);
    }
    all
}

pub async fn harness(db: TestDb) -> Harness {
    let store = db.store.clone();
    let clock = TestClock::at(start());
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let kek = Kek::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("kek");
    let keys: Arc<dyn KeyBackend> =
        Arc::new(SealedFileBackend::new(keys_dir.path().to_path_buf(), kek).expect("keys"));
    let builtin = Arc::new(BuiltinCa::new(store.clone(), keys.clone()));
    let tenant = tenants::ensure(store.conn(), "acme", start())
        .await
        .expect("tenant");
    builtin
        .bootstrap(tenant, "test", start())
        .await
        .expect("bootstrap");
    let metrics = Metrics::new();
    let issuance = Issuance::new(Deps {
        store: store.clone(),
        clock: Arc::new(clock.clone()),
        builtin,
        metrics: metrics.clone(),
    });
    let auth = AuthContext {
        tenant_id: tenant,
        principal: "tester".into(),
        principal_id: uuid::Uuid::nil(),
        token_id: uuid::Uuid::nil(),
        roles: vec![certmesh_kit::rbac::Role::Admin],
        expires_at: None,
        request_id: "test-request".into(),
    };
    Harness {
        issuance,
        store,
        clock,
        auth,
        keys,
        metrics,
        _db: db,
        _keys: keys_dir,
    }
}

pub fn csr(names: &[&str]) -> Csr {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let (_key, csr) = server_identity(&names, &[]).expect("csr");
    csr
}

pub fn csr_with_ip(name: &str, ip: IpAddr) -> Csr {
    let (_key, csr) = server_identity(&[name.to_string()], &[ip]).expect("csr");
    csr
}

pub fn web_spec() -> pb::ProfileSpec {
    pb::ProfileSpec {
        allowed_key_algorithms: vec!["ECDSA".into()],
        min_ecdsa_bits: 256,
        min_rsa_bits: 2048,
        allowed_ekus: vec!["serverAuth".into()],
        max_validity: "2160h".into(),
        permitted_dns_suffixes: vec!["example.com".into()],
        require_sans: true,
        allow_ip_sans: false,
        requires_approval: false,
        issuer_ca_id: String::new(),
    }
}

impl Harness {
    /// `certmesh_issuance_total` summed over the series with these labels.
    pub fn issuance_total(&self, labels: &[(&str, &str)]) -> f64 {
        self.metrics.sample("certmesh_issuance_total", labels)
    }

    pub async fn profile(&self, name: &str, spec: pb::ProfileSpec) -> u32 {
        self.issuance
            .create_profile(&self.auth, name, Some(spec))
            .await
            .expect("profile")
            .version
    }

    pub fn command(&self, csr: Csr, profile: &str) -> IssueCommand {
        IssueCommand {
            csr,
            profile: profile.into(),
            validity: None,
            idempotency_key: None,
        }
    }

    pub async fn certificate_count(&self) -> u64 {
        self.store
            .in_tenant(self.auth.tenant_id, async |tx| {
                certmesh_store::certificates::count(tx, self.auth.tenant_id).await
            })
            .await
            .expect("count")
    }

    pub async fn events(&self, event_type: &str) -> Vec<serde_json::Value> {
        self.store
            .in_tenant(self.auth.tenant_id, async |tx| {
                certmesh_store::outbox::list(tx, self.auth.tenant_id, Some(event_type), 1000).await
            })
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| e.payload)
            .collect()
    }
}
