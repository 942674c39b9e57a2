//! A ready revocation role over one store: a tenant, a sealed-file key backend in a temp dir, a
//! root and an issuing intermediate recorded as the CA role records them (so each has its
//! generation-1 primary `ca_certificates` row, whose id is the CA id), leaves signed with the
//! OCSP and CRL pointers the issuance role writes, and the role itself: [`Revocations`] wired
//! to a [`Responders`] (over a loaded [`Directory`]) and a [`Publisher`].

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use certmesh_crypto::{
    cert::{CaTemplate, Certificate, IssuingCa, LeafTemplate, pem_bundle},
    csr::ExtendedKeyUsage,
    keys::{Kek, KeyBackend, KeySpec, SealedFileBackend},
    serial::Serial,
    tls::server_identity,
};
use certmesh_kit::{
    SharedClock,
    clock::{Clock as _, TestClock},
    metrics::Metrics,
    pki::{LeafPointers, PkiUrls, crl_shard},
};
use certmesh_revocation::{
    Config, Deps, Revocations, crl::Publisher, directory::Directory, ocsp::Responders,
    revoke::Actor,
};
use certmesh_store::{
    CaId, Store, TenantId,
    audit::{self, AuditFilter, AuditRecord},
    ca_certificates,
    cas::{self, Rotation},
    certificates::{self, CertificateRecord},
    crls::{self, CrlRecord},
    outbox, revocations,
    revocations::RevocationRecord,
    tenants,
    testing::TestDb,
};
use chrono::{DateTime, Duration, Utc};

mod authorities;

pub use authorities::{Ca, unrecorded_root};
use authorities::{ca_template, intermediate_from, new_intermediate, new_key, new_root};

/// Where every test's clock starts (2027-01-15T08:00:00Z).
pub fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
}

/// The public base URL of the PKI listener in every test.
pub const BASE_URL: &str = "http://pki.test.example:8080";

/// The role's settings in tests: defaults, with this base URL and `shards` CRL shards.
pub fn config(shards: u32) -> Config {
    let mut config = Config::new(PkiUrls::new(BASE_URL).expect("valid base URL"));
    config.crl_shards = shards;
    config.replica = "replica-a".to_owned();
    config
}

/// A leaf as stored.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub record: CertificateRecord,
    pub cert: Certificate,
    /// The CRL URL written into its cRLDistributionPoints.
    pub crl_url: String,
}

impl Leaf {
    /// The canonical serial (lower-case hex).
    pub fn serial(&self) -> &str {
        &self.record.serial
    }

    pub fn serial_bytes(&self) -> Vec<u8> {
        self.cert.serial().as_bytes().to_vec()
    }

    pub fn shard(&self) -> u32 {
        self.record.crl_shard
    }
}

/// How to make a leaf; [`LeafSpec::default`] is a 90-day `web` leaf of any shard.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub profile: &'static str,
    pub validity: Duration,
    /// A serial is drawn until its shard is this one.
    pub shard: Option<u32>,
}

impl Default for LeafSpec {
    fn default() -> Self {
        LeafSpec {
            profile: "web",
            validity: Duration::days(90),
            shard: None,
        }
    }
}

/// One replica of the role: its own OCSP cache and directory and its own publisher, over the
/// shared store.
pub struct Replica {
    pub revocations: Revocations,
    pub responders: Arc<Responders>,
    pub publisher: Arc<Publisher>,
    /// The replica's metrics (its publisher counts CRLs here).
    pub metrics: Arc<Metrics>,
}

pub struct Fixture {
    pub store: Store,
    pub clock: TestClock,
    pub keys: Arc<dyn KeyBackend>,
    pub config: Config,
    pub tenant: TenantId,
    pub root: Ca,
    pub issuing: Ca,
    pub actor: Actor,
    pub revocations: Revocations,
    pub responders: Arc<Responders>,
    pub publisher: Arc<Publisher>,
    /// The metrics of the fixture's replica.
    pub metrics: Arc<Metrics>,
    /// The backend, for assertion messages.
    pub backend: String,
    _keys_dir: tempfile::TempDir,
    _db: Option<TestDb>,
}

/// A fixture with one CRL shard per backend: `[sqlite, postgres]`.
pub async fn each_backend() -> Vec<Fixture> {
    each_backend_with(config(1)).await
}

/// A fixture with `config` per backend.
pub async fn each_backend_with(config: Config) -> Vec<Fixture> {
    let mut all = Vec::new();
    for db in certmesh_store::testing::each_backend().await {
        all.push(Fixture::on_test_db(db, config.clone()).await);
    }
    all
}

impl Fixture {
    pub async fn on_test_db(db: TestDb, config: Config) -> Fixture {
        let store = db.store.clone();
        let backend = format!("{:?}", db.backend());
        Fixture::on_store(store, Some(db), backend, config).await
    }

    /// A fixture over a migrated `store`; `db` (if any) is kept alive with it.
    pub async fn on_store(
        store: Store,
        db: Option<TestDb>,
        backend: String,
        config: Config,
    ) -> Fixture {
        let clock = TestClock::at(start());
        let keys_dir = tempfile::tempdir().expect("tempdir");
        let kek = Kek::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("kek");
        let keys: Arc<dyn KeyBackend> =
            Arc::new(SealedFileBackend::new(keys_dir.path().to_path_buf(), kek).expect("keys"));
        let tenant = tenants::ensure(store.conn(), "acme", start())
            .await
            .expect("tenant");
        let root = new_root(&store, &keys, tenant, "corp-root", "Corp Root CA").await;
        let issuing =
            new_intermediate(&store, &keys, tenant, &root, "issuing", "Corp Issuing CA").await;
        let shared: SharedClock = Arc::new(clock.clone());
        let replica = replica(&store, &keys, &shared, &config).await;
        Fixture {
            actor: Actor {
                tenant,
                principal: "alice".into(),
                request_id: "req-alice".into(),
            },
            revocations: replica.revocations,
            responders: replica.responders,
            publisher: replica.publisher,
            metrics: replica.metrics,
            store,
            clock,
            keys,
            config,
            tenant,
            root,
            issuing,
            backend,
            _keys_dir: keys_dir,
            _db: db,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn shared_clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    /// Another replica of the role over the same store, named `name` in leases.
    pub async fn replica(&self, name: &str) -> Replica {
        let mut config = self.config.clone();
        config.replica = name.to_owned();
        replica(&self.store, &self.keys, &self.shared_clock(), &config).await
    }

    /// A leaf of `ca`, stored now.
    pub async fn leaf(&self, ca: &Ca) -> Leaf {
        self.leaf_with(ca, &LeafSpec::default()).await
    }

    /// A leaf of `ca` made to `spec`, stored now (its `created_at` is the clock's time).
    pub async fn leaf_with(&self, ca: &Ca, spec: &LeafSpec) -> Leaf {
        let leaf = self.sign_leaf(ca, ca, spec);
        self.store_leaf(&leaf.record).await;
        leaf
    }

    /// A leaf signed by `signer` but recorded as issued by `recorded` (not stored).
    pub fn sign_leaf(&self, signer: &Ca, recorded: &Ca, spec: &LeafSpec) -> Leaf {
        let pointers = LeafPointers {
            urls: self.config.urls.clone(),
            crl_shards: self.config.crl_shards,
        };
        let serial = loop {
            let s = Serial::random();
            match spec.shard {
                Some(want) if crl_shard(s.as_bytes(), self.config.crl_shards) != want => {}
                _ => break s,
            }
        };
        let urls = pointers.for_leaf(signer.key_id, serial.as_bytes());
        let name = format!("host-{}.example.com", &serial.to_hex()[..8]);
        let (_key, csr) = server_identity(&[name], &[]).expect("csr");
        let now = self.now();
        let cert = signer
            .issuer
            .sign_leaf(
                &csr,
                &LeafTemplate {
                    serial: serial.clone(),
                    not_before: now - Duration::minutes(5),
                    not_after: now + spec.validity,
                    ekus: vec![ExtendedKeyUsage::ServerAuth],
                    ocsp_url: Some(urls.ocsp.clone()),
                    crl_url: Some(urls.crl.clone()),
                },
            )
            .expect("leaf signed");
        let record = CertificateRecord {
            tenant_id: self.tenant,
            serial: serial.to_hex(),
            issuer_ca_id: recorded.id(),
            profile_name: spec.profile.to_owned(),
            profile_version: 1,
            subject: cert.subject().to_owned(),
            sans: cert.sans().to_vec(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            fingerprint_sha256: cert.fingerprint_sha256(),
            certificate_der: cert.der().to_vec(),
            chain_pem: pem_bundle(&[signer.certificate().clone()]),
            created_at: now,
            crl_shard: urls.shard,
        };
        Leaf {
            record,
            cert,
            crl_url: urls.crl,
        }
    }

    pub async fn store_leaf(&self, record: &CertificateRecord) {
        let tenant = self.tenant;
        self.store
            .in_tenant(tenant, async |tx| certificates::insert(tx, record).await)
            .await
            .expect("certificate stored");
    }

    /// Another intermediate under `parent`, recorded now.
    pub async fn intermediate(&self, parent: &Ca, name: &str) -> Ca {
        new_intermediate(&self.store, &self.keys, self.tenant, parent, name, name).await
    }

    /// Another intermediate under `parent` whose certificate ends at `not_after`.
    pub async fn intermediate_until(
        &self,
        parent: &Ca,
        name: &str,
        not_after: DateTime<Utc>,
    ) -> Ca {
        let template = CaTemplate {
            not_after,
            ..ca_template(name, Some(0))
        };
        intermediate_from(
            &self.store,
            &self.keys,
            self.tenant,
            parent,
            name,
            &template,
        )
        .await
    }

    /// Rotates `ca` to a new key (same name), as the CA role does; the new generation.
    pub async fn rotate(&self, ca: &Ca, parent: &Ca) -> Ca {
        let (key_ref, signer) = new_key(&self.keys).await;
        let cert = parent
            .issuer
            .sign_intermediate(
                signer.public_key_spki_der(),
                &ca_template(
                    &ca.certificate().subject_common_name().expect("CN"),
                    Some(0),
                ),
            )
            .expect("rotated certificate");
        let tenant = self.tenant;
        let now = self.now();
        let record = self
            .store
            .in_tenant(tenant, async |tx| {
                cas::rotate(
                    tx,
                    tenant,
                    ca.id(),
                    Rotation {
                        from_generation: ca.generation,
                        key_ref: key_ref.to_string(),
                        certificate_der: cert.der().to_vec(),
                        subject: cert.subject().to_owned(),
                        key_spec: KeySpec::EcdsaP256.as_str().to_owned(),
                        not_before: cert.not_before(),
                        not_after: cert.not_after(),
                    },
                    now,
                )
                .await
            })
            .await
            .expect("rotated");
        let key_id = self.key_id(ca.id(), record.generation).await;
        Ca {
            generation: record.generation,
            record,
            issuer: Arc::new(IssuingCa::new(cert, signer).expect("issuing CA")),
            key_id,
        }
    }

    /// The id of the primary `ca_certificates` row of the CA's `generation`.
    pub async fn key_id(&self, ca: CaId, generation: u32) -> uuid::Uuid {
        let tenant = self.tenant;
        self.store
            .in_tenant(tenant, async |tx| {
                ca_certificates::list(tx, tenant, ca).await
            })
            .await
            .expect("CA certificates")
            .into_iter()
            .find(|r| r.generation == generation && r.relation == ca_certificates::RELATION_PRIMARY)
            .expect("primary row")
            .id
    }

    /// A second tenant (with no CAs) and an actor in it.
    pub async fn other_tenant(&self) -> Actor {
        let tenant = tenants::ensure(self.store.conn(), "globex", start())
            .await
            .expect("tenant");
        Actor {
            tenant,
            principal: "mallory".into(),
            request_id: "req-mallory".into(),
        }
    }

    /// The revocation row of `serial`, in any status.
    pub async fn revocation(&self, serial: &str) -> Option<RevocationRecord> {
        let tenant = self.tenant;
        self.store
            .in_tenant(tenant, async |tx| {
                revocations::get(tx, tenant, serial).await
            })
            .await
            .expect("revocation read")
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

    /// The tenant's audit entries with this action.
    pub async fn audit(&self, action: &str) -> Vec<AuditRecord> {
        let tenant = self.tenant;
        let filter = AuditFilter {
            action: Some(action.to_owned()),
            ..AuditFilter::default()
        };
        self.store
            .in_tenant(tenant, async |tx| {
                audit::query(tx, tenant, &filter, 0, 1000).await
            })
            .await
            .expect("audit")
    }

    /// The stored CRL of a CA key and shard.
    pub async fn crl(&self, ca: &Ca, shard: u32) -> Option<CrlRecord> {
        let tenant = self.tenant;
        self.store
            .in_tenant(tenant, async |tx| {
                crls::get(tx, tenant, ca.id(), ca.generation, shard).await
            })
            .await
            .expect("CRL read")
    }

    /// `root.pem`, `ca.pem` (the issuing CA) and `chain.pem` (both) in `dir`.
    pub fn write_cas(&self, dir: &Path) {
        std::fs::write(dir.join("root.pem"), self.root.certificate().to_pem()).expect("write");
        std::fs::write(dir.join("ca.pem"), self.issuing.certificate().to_pem()).expect("write");
        std::fs::write(
            dir.join("chain.pem"),
            pem_bundle(&[
                self.root.certificate().clone(),
                self.issuing.certificate().clone(),
            ]),
        )
        .expect("write");
    }
}

async fn replica(
    store: &Store,
    keys: &Arc<dyn KeyBackend>,
    clock: &SharedClock,
    config: &Config,
) -> Replica {
    let directory = Arc::new(Directory::new(
        store.clone(),
        keys.clone(),
        clock.clone(),
        config.responder_validity,
    ));
    directory.refresh().await.expect("directory loaded");
    let responders = Arc::new(Responders::new(
        directory,
        store.clone(),
        clock.clone(),
        config.ocsp_validity,
        config.ocsp_cache_entries,
    ));
    let metrics = Metrics::new();
    let publisher = Publisher::new(
        store.clone(),
        keys.clone(),
        clock.clone(),
        config.clone(),
        metrics.clone(),
    );
    let revocations = Revocations::new(
        Deps {
            store: store.clone(),
            clock: clock.clone(),
            keys: keys.clone(),
            config: config.clone(),
        },
        responders.clone(),
        publisher.clone(),
    );
    Replica {
        revocations,
        responders,
        publisher,
        metrics,
    }
}

/// Runs openssl in `dir`; its exit success and stdout followed by stderr.
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (it is required)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
