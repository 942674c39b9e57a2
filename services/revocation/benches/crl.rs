//! CRL generation from the store, end to end: [`Publisher::publish`] reads a CA key's revoked
//! entries, takes the next cRLNumber, signs, stores the CRL and appends its event, for 100,000
//! and then 1,000,000 revoked certificates.
//!
//! Backends: a SQLite file in a temp dir, and, when `CERTMESH_TEST_DATABASE_URL` is set, a fresh
//! PostgreSQL database (the store's test helpers make and drop it). Each gets a root and an
//! issuing CA whose keys sit in a sealed-file backend in a temp dir. The revocations are bulk
//! inserted with fake random serials (CRLs do not read `certificates`); seeding is timed apart
//! from the figure. Prints entries, seconds and bytes per size, a breakdown of where the time
//! went, and the machine. `cargo bench -p certmesh-revocation --bench crl` (`make bench`).

use std::{
    env, fs,
    sync::Arc,
    time::{Duration as StdDuration, Instant},
};

use certmesh_crypto::{
    cert::{CaTemplate, Certificate, IssuingCa, self_signed_root},
    crl::{CrlEntry, CrlTemplate},
    digest::sha256_hex,
    keys::{Kek, KeyBackend, KeySpec, SealedFileBackend},
    revocation::RevocationReason,
    serial::Serial,
};
use certmesh_kit::{
    clock::{Clock, SystemClock},
    pki::PkiUrls,
};
use certmesh_revocation::{
    Config,
    crl::{CrlScope, Publisher},
};
use certmesh_store::{
    CaId, Store, TenantId,
    cas::{self, CaRecord, NewCa},
    crls::{self, CrlRecord},
    revocations::{self, NewRevocation},
    tenants,
    testing::{self, DATABASE_URL_ENV},
};
use chrono::{DateTime, Duration, Utc};

/// CRL sizes measured, in order; each run adds revocations up to the next size.
const SIZES: [usize; 2] = [100_000, 1_000_000];
/// Revocations per seeding transaction.
const SEED_BATCH: usize = 50_000;
/// Reasons cycled through the entries (`unspecified` is written without a reasonCode).
const REASONS: [&str; 4] = [
    "keyCompromise",
    "superseded",
    "unspecified",
    "cessationOfOperation",
];

/// A store with a tenant and an issuing CA under a root, its key backend and its temp dir.
struct Fixture {
    store: Store,
    keys: Arc<dyn KeyBackend>,
    tenant: TenantId,
    issuing: CaRecord,
    _keys_dir: tempfile::TempDir,
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{cpus} CPU(s), {model}, Linux {kernel}")
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews the figures.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn ca_template(name: &str, now: DateTime<Utc>, path_len: u8) -> CaTemplate {
    CaTemplate {
        common_name: name.into(),
        organization: Some("certmesh bench".into()),
        serial: Serial::random(),
        not_before: now - Duration::hours(1),
        not_after: now + Duration::days(3650),
        path_len: Some(path_len),
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
    }
}

/// Makes a CA key in `keys`, its certificate (self-signed, or by `parent`), and its row.
async fn create_ca(
    f: (&Store, &dyn KeyBackend, TenantId),
    name: &str,
    parent: Option<(CaId, &IssuingCa)>,
    now: DateTime<Utc>,
) -> CaRecord {
    let (store, keys, tenant) = f;
    let key_ref = keys.generate(KeySpec::EcdsaP256).await.expect("a CA key");
    let signer = keys.signer(&key_ref).await.expect("the CA key opens");
    let template = ca_template(name, now, u8::from(parent.is_none()));
    let cert = match parent {
        None => self_signed_root(signer, &template),
        Some((_, issuer)) => issuer.sign_intermediate(signer.public_key_spki_der(), &template),
    }
    .expect("the CA certificate is signed");
    let new = NewCa {
        tenant_id: tenant,
        name: name.into(),
        parent_id: parent.map(|(id, _)| id),
        kind: if parent.is_some() {
            cas::KIND_INTERMEDIATE
        } else {
            cas::KIND_ROOT
        }
        .into(),
        path_len: template.path_len,
        key_spec: KeySpec::EcdsaP256.as_str().into(),
        permitted_dns: Vec::new(),
        excluded_dns: Vec::new(),
        key_offline: false,
        key_ref: key_ref.to_string(),
        certificate_der: cert.der().to_vec(),
        subject: cert.subject().into(),
        not_before: cert.not_before(),
        not_after: cert.not_after(),
    };
    store
        .in_tenant(tenant, async |tx| cas::insert(tx, new, now).await)
        .await
        .expect("the CA row is written")
}

async fn fixture(store: Store, now: DateTime<Utc>) -> Fixture {
    let keys_dir = tempfile::tempdir().expect("a temp dir for CA keys");
    let kek = Kek::generate().expect("a key-encryption key");
    let keys: Arc<dyn KeyBackend> = Arc::new(
        SealedFileBackend::new(keys_dir.path().to_path_buf(), kek).expect("a sealed-file backend"),
    );
    let tenant = tenants::ensure(store.conn(), "bench", now)
        .await
        .expect("the tenant");
    let parts = (&store, keys.as_ref(), tenant);
    let root = create_ca(parts, "bench-root", None, now).await;
    let root_ca = issuing_ca(keys.as_ref(), &root).await;
    let issuing = create_ca(parts, "bench-issuing", Some((root.id, &root_ca)), now).await;
    Fixture {
        store,
        keys,
        tenant,
        issuing,
        _keys_dir: keys_dir,
    }
}

async fn issuing_ca(keys: &dyn KeyBackend, ca: &CaRecord) -> IssuingCa {
    let key_ref = ca.key_ref.parse().expect("a key reference");
    let signer = keys.signer(&key_ref).await.expect("the CA key opens");
    let cert = Certificate::from_der(ca.certificate_der.clone()).expect("the CA certificate");
    IssuingCa::new(cert, signer).expect("an issuing CA")
}

/// Adds `count` revocations of fake certificates of the issuing CA (generation 1, shard 0).
async fn seed(f: &Fixture, count: usize, now: DateTime<Utc>) {
    let mut left = count;
    while left > 0 {
        let n = left.min(SEED_BATCH);
        let rows: Vec<NewRevocation> = (0..n)
            .map(|i| NewRevocation {
                tenant_id: f.tenant,
                serial: Serial::random().to_hex(),
                issuer_ca_id: f.issuing.id,
                ca_generation: 1,
                crl_shard: 0,
                reason: REASONS[i % REASONS.len()].into(),
                reason_text: String::new(),
                revoked_at: now - Duration::seconds(i as i64),
                revoked_by: "bench".into(),
                cert_not_after: now + Duration::days(365),
            })
            .collect();
        f.store
            .in_tenant(f.tenant, async |tx| {
                revocations::insert_many(tx, &rows).await
            })
            .await
            .expect("revocations are written");
        left -= n;
    }
}

/// Where the time of one publication goes, measured by repeating its steps apart.
async fn breakdown(f: &Fixture, now: DateTime<Utc>) -> String {
    let (tenant, ca) = (f.tenant, f.issuing.id);
    let started = Instant::now();
    let rows = f
        .store
        .in_tenant(tenant, async |tx| {
            revocations::for_crl(tx, tenant, ca, 1, 0, now).await
        })
        .await
        .expect("CRL rows are read");
    let read = started.elapsed();
    let started = Instant::now();
    let entries: Vec<CrlEntry> = rows
        .into_iter()
        .map(|r| CrlEntry {
            serial: Serial::from_hex(&r.serial).expect("a serial"),
            revoked_at: r.revoked_at,
            reason: RevocationReason::parse(&r.reason).expect("a reason"),
        })
        .collect();
    let convert = started.elapsed();
    let signer = issuing_ca(f.keys.as_ref(), &f.issuing).await;
    let started = Instant::now();
    let der = signer
        .sign_crl(&CrlTemplate {
            number: 1,
            this_update: now,
            next_update: now + Duration::hours(24),
            distribution_point: Some("http://pki.example.com/.well-known/pki/crl/x/0"),
            entries: &entries,
        })
        .expect("the CRL is signed");
    let sign = started.elapsed();
    // Storing: the upsert of the DER, in a transaction that is rolled back so the published CRL
    // stays as it was.
    let started = Instant::now();
    let record = CrlRecord {
        tenant_id: tenant,
        ca_id: ca,
        generation: 1,
        shard: 0,
        number: u64::MAX >> 2,
        this_update: now,
        next_update: now + Duration::hours(24),
        sha256: sha256_hex(&der),
        entries: entries.len() as u64,
        created_at: now,
        der,
    };
    let tx = f.store.begin_tenant(tenant).await.expect("a transaction");
    crls::upsert(&tx, &record).await.expect("the CRL is stored");
    tx.rollback().await.expect("rolled back");
    let store = started.elapsed();
    format!(
        "read {} rows {:.2} s, to entries {:.2} s, build+sign {:.2} s, hash+store {:.2} s",
        entries.len(),
        read.as_secs_f64(),
        convert.as_secs_f64(),
        sign.as_secs_f64(),
        store.as_secs_f64(),
    )
}

async fn bench(name: &str, store: Store) {
    println!("{name}");
    let now = SystemClock.now();
    let f = fixture(store, now).await;
    let urls = PkiUrls::new("http://pki.example.com").expect("a PKI base URL");
    let publisher = Publisher::new(
        f.store.clone(),
        f.keys.clone(),
        Arc::new(SystemClock),
        Config::new(urls),
        certmesh_kit::metrics::Metrics::new(),
    );
    let scope = CrlScope {
        tenant: f.tenant,
        ca_id: f.issuing.id,
        generation: 1,
        key_id: f.issuing.id.0,
        shard: 0,
    };
    let mut seeded = 0;
    for size in SIZES {
        let started = Instant::now();
        seed(&f, size - seeded, now).await;
        seeded = size;
        let seeding = started.elapsed();
        let started = Instant::now();
        let published = publisher
            .publish(&scope)
            .await
            .expect("the CRL is published");
        let took = started.elapsed();
        assert_eq!(published.entries, size as u64, "every revocation is listed");
        println!(
            "  {size} entries: publish {:.2} s, {} bytes ({:.1} MB), cRLNumber {} (seeding {:.1} s, not counted)",
            took.as_secs_f64(),
            published.bytes,
            published.bytes as f64 / 1e6,
            published.number,
            seeding.as_secs_f64(),
        );
        println!("    breakdown: {}", breakdown(&f, SystemClock.now()).await);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `--list` asks for the names of tests, of which we have none.
    if env::args().skip(1).any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!("certmesh CRL generation benchmark (Publisher::publish, end to end)");
    println!("machine: {}", machine());
    println!("load average at start: {}", load_average());
    runtime.block_on(async {
        let started = Instant::now();
        let sqlite = testing::sqlite().await;
        bench("sqlite (file in a temp dir)", sqlite.store.clone()).await;
        drop(sqlite);
        match env::var(DATABASE_URL_ENV) {
            Ok(_) => {
                let pg = testing::postgres().await;
                bench("postgresql (fresh database)", pg.store.clone()).await;
                drop(pg);
            }
            Err(_) => println!("postgresql: skipped ({DATABASE_URL_ENV} is unset)"),
        }
        let total: StdDuration = started.elapsed();
        println!("total {:.0} s", total.as_secs_f64());
    });
}
