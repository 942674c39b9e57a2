//! A ready CA role per backend: a migrated store, a tenant, a sealed-file key backend in a
//! temp dir, five custodians (Ed25519 and ECDSA P-256 keys, registered on their principals),
//! an operator and a viewer; and the helpers that run ceremonies and take snapshots.

use std::{fs, sync::Arc};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use certmesh_ca::{
    Actor, CaError, Deps, Hierarchy,
    ceremony::{Approval, CeremonyView},
    tree::Operated,
};
use certmesh_crypto::{
    ceremony::{ApproverKey, generate_ed25519, sign_with_private_key_pem, signing_message},
    cert::Certificate,
    keys::{Kek, KeyBackend, SealedFileBackend},
};
use certmesh_kit::{
    auth::AuthContext,
    clock::{Clock as _, TestClock},
    rbac::Role,
    reason::reason_of,
};
use certmesh_proto::ca as pb;
use certmesh_store::{
    Store, TenantId,
    audit::{self, AuditFilter, AuditRecord},
    cas::CaRecord,
    outbox, principal_keys, principals, tenants,
    testing::TestDb,
};
use chrono::{DateTime, Utc};
use tonic::{Code, Request, Status};

use crate::tools::openssl_stdin;

/// Where every test's clock starts (2027-01-15).
pub fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

/// A custodian: a principal holding the `custodian` role with one registered key.
pub struct Custodian {
    pub name: String,
    pub auth: AuthContext,
    /// The private key, PEM, as the custodian keeps it on their own machine.
    pub private_pem: String,
    pub key: ApproverKey,
}

impl Custodian {
    pub fn actor(&self) -> Actor {
        Actor::of(&self.auth)
    }

    /// The custodian's base64 signature over the ceremony's signing message.
    pub fn sign(&self, ceremony: &CeremonyView) -> String {
        sign_b64(&self.private_pem, &ceremony.record.digest)
    }
}

/// A base64 signature by `private_pem` over the signing message of `digest`.
pub fn sign_b64(private_pem: &str, digest: &str) -> String {
    let signature =
        sign_with_private_key_pem(private_pem, &signing_message(digest)).expect("signs");
    B64.encode(signature)
}

pub struct Harness {
    pub ca: Hierarchy,
    pub store: Store,
    pub clock: TestClock,
    pub keys: Arc<dyn KeyBackend>,
    pub tenant: TenantId,
    /// Holds `operator` (cas:manage, cas:read).
    pub operator: AuthContext,
    /// Holds `viewer`.
    pub viewer: AuthContext,
    /// c1 … c5; c2 and c4 hold ECDSA P-256 keys made by openssl, the others Ed25519.
    pub custodians: Vec<Custodian>,
    /// The backend, for assertion messages.
    pub backend: String,
    keys_dir: tempfile::TempDir,
    _db: TestDb,
}

pub async fn each_backend() -> Vec<Harness> {
    let mut all = Vec::new();
    for db in certmesh_store::testing::each_backend().await {
        all.push(harness(db).await);
    }
    all
}

async fn harness(db: TestDb) -> Harness {
    let store = db.store.clone();
    let clock = TestClock::at(start());
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let kek = Kek::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("kek");
    let keys: Arc<dyn KeyBackend> =
        Arc::new(SealedFileBackend::new(keys_dir.path().to_path_buf(), kek).expect("keys"));
    let tenant = tenants::ensure(store.conn(), "acme", start())
        .await
        .expect("tenant");
    let ca = Hierarchy::new(Deps {
        store: store.clone(),
        clock: Arc::new(clock.clone()),
        keys: keys.clone(),
    });
    let backend = format!("{:?}", db.backend());
    let mut h = Harness {
        ca,
        store,
        clock,
        keys,
        tenant,
        operator: AuthContext {
            tenant_id: tenant,
            principal: String::new(),
            principal_id: uuid::Uuid::nil(),
            token_id: uuid::Uuid::nil(),
            roles: Vec::new(),
            expires_at: None,
            request_id: "test-request".into(),
        },
        viewer: AuthContext {
            tenant_id: tenant,
            principal: String::new(),
            principal_id: uuid::Uuid::nil(),
            token_id: uuid::Uuid::nil(),
            roles: Vec::new(),
            expires_at: None,
            request_id: "test-request".into(),
        },
        custodians: Vec::new(),
        backend,
        keys_dir,
        _db: db,
    };
    h.operator = h.principal("olga", &[Role::Operator]).await;
    h.viewer = h.principal("vera", &[Role::Viewer]).await;
    for (i, name) in ["c1", "c2", "c3", "c4", "c5"].into_iter().enumerate() {
        let (private_pem, key) = if i % 2 == 1 {
            p256_custodian_key()
        } else {
            let (pem, key) = generate_ed25519().expect("ed25519");
            (pem.to_string(), key)
        };
        let auth = h.principal(name, &[Role::Custodian]).await;
        h.register_key(&auth, &key).await;
        h.custodians.push(Custodian {
            name: name.into(),
            auth,
            private_pem,
            key,
        });
    }
    h
}

/// An ECDSA P-256 custodian key as a custodian makes one: `openssl ecparam -genkey`, then
/// `openssl pkey -pubout` for the public half.
fn p256_custodian_key() -> (String, ApproverKey) {
    let private = openssl_stdin(&["ecparam", "-genkey", "-name", "prime256v1", "-noout"], "");
    let public = openssl_stdin(&["pkey", "-pubout"], &private);
    let key = ApproverKey::from_pem(&public).expect("P-256 public key parses");
    (private, key)
}

impl Harness {
    /// A principal `name` holding `roles` (created), as the auth layer would present it.
    pub async fn principal(&self, name: &str, roles: &[Role]) -> AuthContext {
        let names: Vec<String> = roles.iter().map(|r| r.as_str().to_string()).collect();
        let tenant = self.tenant;
        let p = self
            .store
            .in_tenant(tenant, async |tx| {
                principals::ensure(tx, tenant, name, "user", &names, start()).await
            })
            .await
            .expect("principal");
        AuthContext {
            tenant_id: tenant,
            principal: name.into(),
            principal_id: p.id,
            token_id: uuid::Uuid::nil(),
            roles: roles.to_vec(),
            expires_at: None,
            request_id: format!("req-{name}"),
        }
    }

    /// Registers `key` on the principal of `auth`.
    pub async fn register_key(&self, auth: &AuthContext, key: &ApproverKey) {
        let tenant = self.tenant;
        self.store
            .in_tenant(tenant, async |tx| {
                principal_keys::add(
                    tx,
                    tenant,
                    auth.principal_id,
                    key.algorithm().as_str(),
                    key.spki_der(),
                    &key.fingerprint(),
                    start(),
                )
                .await
            })
            .await
            .expect("key registered");
    }

    /// The test clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn op(&self) -> Actor {
        Actor::of(&self.operator)
    }

    pub fn custodian_names(&self) -> Vec<String> {
        self.custodians.iter().map(|c| c.name.clone()).collect()
    }

    /// Starts a 3-of-5 ceremony over all five custodians.
    pub async fn start(&self, purpose: &str, params: &pb::CaParams) -> CeremonyView {
        self.ca
            .start_ceremony(
                &self.op(),
                &start_request(purpose, 3, self.custodian_names(), params),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: start {purpose}: {e}", self.backend))
    }

    /// Custodian `i` approves `ceremony` with a good signature.
    pub async fn approve(&self, i: usize, ceremony: &CeremonyView) -> Approval {
        let c = &self.custodians[i];
        self.ca
            .approve(
                &c.actor(),
                &ceremony.record.id.to_string(),
                &c.sign(ceremony),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {} approves: {e}", self.backend, c.name))
    }

    /// A 3-of-5 ceremony for `params`, approved by c1, c2 (P-256) and c3, each approval
    /// counted once; its id.
    pub async fn approved(&self, purpose: &str, params: &pb::CaParams) -> String {
        let ceremony = self.start(purpose, params).await;
        assert_eq!(ceremony.record.status.as_str(), "open");
        for (n, i) in [0, 1, 2].into_iter().enumerate() {
            let a = self.approve(i, &ceremony).await;
            assert_eq!(
                (a.approvals, a.threshold),
                (n as u32 + 1, 3),
                "{}",
                self.backend
            );
            assert!(!a.already_approved);
        }
        ceremony.record.id.to_string()
    }

    /// The ceremony, which must be completed with `ca` as its result.
    pub async fn assert_completed(&self, ceremony_id: &str, ca: &CaRecord) {
        let c = self
            .ca
            .ceremony(&self.op(), ceremony_id)
            .await
            .expect("ceremony");
        assert_eq!(c.record.status.as_str(), "completed", "{}", self.backend);
        assert_eq!(c.record.result_ca_id, Some(ca.id), "{}", self.backend);
    }

    /// A root made through an approved ceremony; the ceremony is checked completed.
    pub async fn root(&self, params: &pb::CaParams) -> Operated {
        let id = self.approved("create_root", params).await;
        let op = self
            .ca
            .create_root(&self.op(), &id, params, None)
            .await
            .unwrap_or_else(|e| panic!("{}: create_root: {e}", self.backend));
        self.assert_completed(&id, &op.ca).await;
        op
    }

    /// An intermediate made through an approved ceremony; the ceremony is checked completed.
    pub async fn intermediate(&self, params: &pb::CaParams) -> Operated {
        let id = self.approved("create_intermediate", params).await;
        let op = self
            .ca
            .create_intermediate(&self.op(), &params.parent_ca_id, &id, params)
            .await
            .unwrap_or_else(|e| panic!("{}: create_intermediate: {e}", self.backend));
        self.assert_completed(&id, &op.ca).await;
        op
    }

    /// root (path length 3) → policy (permits example.com) → issuing A (default path
    /// length) → issuing B (path length 0).
    pub async fn tree(&self) -> Tree {
        let root = self
            .root(&root_params("corp-root", "Corp Root CA", Some(3)))
            .await
            .ca;
        let policy = self
            .intermediate(&child_params(
                "policy-ca",
                &root,
                "Corp Policy CA",
                None,
                &["example.com"],
            ))
            .await
            .ca;
        let a = self
            .intermediate(&child_params(
                "issuing-a",
                &policy,
                "Corp Issuing CA A",
                None,
                &["example.com"],
            ))
            .await
            .ca;
        let b = self
            .intermediate(&child_params(
                "issuing-b",
                &a,
                "Corp Issuing CA B",
                Some(0),
                &["web.example.com"],
            ))
            .await
            .ca;
        Tree { root, policy, a, b }
    }

    pub async fn cas(&self) -> Vec<CaRecord> {
        self.ca.list(&self.op()).await.expect("list CAs")
    }

    pub async fn get(&self, ca: &CaRecord) -> CaRecord {
        self.ca
            .get(&self.op(), &ca.id.to_string())
            .await
            .expect("get CA")
    }

    pub async fn ceremonies(&self) -> Vec<CeremonyView> {
        self.ca
            .ceremonies(&self.op(), "")
            .await
            .expect("ceremonies")
    }

    pub async fn ceremony(&self, id: &str) -> CeremonyView {
        self.ca.ceremony(&self.op(), id).await.expect("ceremony")
    }

    pub async fn chain(&self, ca: &CaRecord) -> Vec<Certificate> {
        self.ca
            .chain(&self.op(), &ca.id.to_string())
            .await
            .expect("chain")
    }

    /// The payloads of the tenant's `event_type` events, oldest first.
    pub async fn events(&self, event_type: &str) -> Vec<serde_json::Value> {
        let tenant = self.tenant;
        self.store
            .in_tenant(tenant, async |tx| {
                outbox::list(tx, tenant, Some(event_type), 1000).await
            })
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| e.payload)
            .collect()
    }

    /// Every event of the tenant.
    pub async fn event_count(&self) -> usize {
        let tenant = self.tenant;
        self.store
            .in_tenant(tenant, async |tx| {
                outbox::list(tx, tenant, None, 1000).await
            })
            .await
            .expect("outbox")
            .len()
    }

    /// The tenant's audit entries for `action`, oldest first.
    pub async fn audit(&self, action: &str) -> Vec<AuditRecord> {
        let tenant = self.tenant;
        let filter = AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        };
        self.store
            .in_tenant(tenant, async |tx| {
                audit::query(tx, tenant, &filter, 0, 1000).await
            })
            .await
            .expect("audit")
    }

    /// Keys in the backend (sealed files): a failed operation must leave none behind.
    pub fn key_count(&self) -> usize {
        fs::read_dir(self.keys_dir.path())
            .expect("key dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sealed"))
            })
            .count()
    }

    /// What a refusal must leave unchanged.
    pub async fn snapshot(&self) -> Snapshot {
        Snapshot {
            cas: self.cas().await,
            ceremonies: self
                .ceremonies()
                .await
                .into_iter()
                .map(|c| (c.record, c.approved_by))
                .collect(),
            events: self.event_count().await,
            keys: self.key_count(),
        }
    }
}

/// The CAs, ceremonies (with their approvals), event count and key count at one moment.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub cas: Vec<CaRecord>,
    pub ceremonies: Vec<(certmesh_store::ceremonies::CeremonyRecord, Vec<String>)>,
    pub events: usize,
    pub keys: usize,
}

pub struct Tree {
    pub root: CaRecord,
    pub policy: CaRecord,
    pub a: CaRecord,
    pub b: CaRecord,
}

pub fn start_request(
    purpose: &str,
    threshold: u32,
    custodians: Vec<String>,
    params: &pb::CaParams,
) -> pb::StartCeremonyRequest {
    pb::StartCeremonyRequest {
        purpose: purpose.into(),
        threshold,
        custodians,
        params: Some(params.clone()),
        expires_in: String::new(),
    }
}

pub fn root_params(name: &str, cn: &str, path_len: Option<u32>) -> pb::CaParams {
    pb::CaParams {
        name: name.into(),
        subject_cn: cn.into(),
        subject_o: "Corp".into(),
        key_spec: "ecdsa-p256".into(),
        path_len,
        validity_days: 3650,
        ..Default::default()
    }
}

pub fn child_params(
    name: &str,
    parent: &CaRecord,
    cn: &str,
    path_len: Option<u32>,
    permitted_dns: &[&str],
) -> pb::CaParams {
    pb::CaParams {
        name: name.into(),
        parent_ca_id: parent.id.to_string(),
        subject_cn: cn.into(),
        subject_o: "Corp".into(),
        key_spec: "ecdsa-p256".into(),
        path_len,
        permitted_dns: permitted_dns.iter().map(|s| s.to_string()).collect(),
        validity_days: 1825,
        ..Default::default()
    }
}

pub fn cert(ca: &CaRecord) -> Certificate {
    Certificate::from_der(ca.certificate_der.clone()).expect("CA certificate parses")
}

/// A gRPC request from `auth`.
pub fn req<T>(auth: &AuthContext, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.extensions_mut().insert(auth.clone());
    r
}

/// The code and reason of a refused gRPC call.
pub fn refused<T: std::fmt::Debug>(result: Result<T, Status>) -> (Code, String) {
    let status = result.expect_err("refused");
    (status.code(), reason_of(&status).unwrap_or_default())
}

/// The code and reason a refused domain call answers over gRPC.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, CaError>) -> (Code, String) {
    refused(result.map_err(Status::from))
}
