//! `certmesh server --dev`: every role in one process on SQLite under the data directory, with
//! a development CA bootstrapped on first start and reused after, an admin token, and a gateway
//! certificate issued by that CA.

use std::{
    fs,
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context;
use certmesh_crypto::{
    csr::ExtendedKeyUsage,
    keys::{Kek, SealedFileBackend},
    serial::Serial,
    tls::server_identity,
};
use certmesh_gateway::GatewayState;
use certmesh_issuance::{
    BuiltinCa,
    issuer::{Issuer, SignRequest},
};
use certmesh_kit::{
    SharedClock,
    metrics::Metrics,
    serve::{serve, shutdown_signal},
    tls::server_config,
};
use certmesh_store::{Store, TenantId, principals, tenants, tokens};
use chrono::Duration;
use tokio::net::TcpListener;

use crate::{
    cli::ServerArgs,
    server::{iam_backends, issuance_backends, rate_limit, store_ready},
};

/// Files --dev keeps under `<data-dir>/dev`.
struct DevPaths {
    db: PathBuf,
    keys: PathBuf,
    kek: PathBuf,
    token: PathBuf,
    bundle: PathBuf,
}

impl DevPaths {
    fn new(dir: &Path) -> Self {
        let dev = dir.join("dev");
        Self {
            db: dir.join("certmesh.db"),
            keys: dir.join("keys"),
            kek: dev.join("kek"),
            token: dev.join("admin.token"),
            bundle: dev.join("ca-bundle.pem"),
        }
    }
}

pub async fn run(
    args: &ServerArgs,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> anyhow::Result<()> {
    let paths = DevPaths::new(&args.data_dir);
    create_private_dir(&args.data_dir.join("dev"))?;
    let store = Store::connect(&format!("sqlite://{}", paths.db.display()))
        .await
        .context("opening the SQLite database")?;
    store.migrate().await.context("applying migrations")?;
    let tenant = tenants::ensure(store.conn(), "default", clock.now()).await?;
    admin_token(&store, tenant, &paths.token, clock.as_ref()).await?;

    let kek =
        Kek::load_or_create(&paths.kek).context("loading the development key-encryption key")?;
    let keys =
        SealedFileBackend::new(paths.keys.clone(), kek).context("opening the key directory")?;
    let builtin = Arc::new(BuiltinCa::new(store.clone(), Arc::new(keys)));
    let root = builtin
        .bootstrap(tenant, "certmesh dev", clock.now())
        .await
        .context("bootstrapping the dev CA")?;
    write_file(&paths.bundle, root.to_pem().as_bytes(), 0o644)?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let tls = gateway_tls(&builtin, tenant, addr.ip(), clock.as_ref()).await?;
    let mut backends = issuance_backends(&store, builtin, clock.clone(), metrics.clone());
    backends.extend(iam_backends(&store, clock.clone()));
    let state = GatewayState {
        backends,
        metrics,
        ready: store_ready(Some(store)),
        rest: true,
        rate_limit: rate_limit(args)?,
    };
    let router = certmesh_gateway::router(state).await;
    banner(addr, &paths);
    serve(listener, router, Some(tls), shutdown_signal()).await?;
    tracing::info!("certmesh stopped.");
    Ok(())
}

/// Reuse the token in `path` if it still verifies; otherwise mint one and write it (0600).
async fn admin_token(
    store: &Store,
    tenant: TenantId,
    path: &Path,
    clock: &dyn certmesh_kit::Clock,
) -> anyhow::Result<()> {
    if let Ok(existing) = fs::read_to_string(path)
        && tokens::verify(store, existing.trim(), clock.now())
            .await?
            .is_some()
    {
        return Ok(());
    }
    let now = clock.now();
    let (_, token) = store
        .in_tenant(tenant, async |tx| {
            let admin =
                principals::ensure(tx, tenant, "admin", "user", &["admin".to_string()], now)
                    .await?;
            tokens::create(tx, tenant, admin.id, "dev-admin", None, now).await
        })
        .await?;
    write_file(path, format!("{token}\n").as_bytes(), 0o600)
}

/// A fresh key and a 30-day serverAuth certificate for the gateway, from the dev issuing CA.
async fn gateway_tls(
    builtin: &BuiltinCa,
    tenant: TenantId,
    ip: IpAddr,
    clock: &dyn certmesh_kit::Clock,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !ip.is_unspecified() && !ips.contains(&ip) {
        ips.push(ip);
    }
    let (key_pem, csr) = server_identity(&["localhost".to_string()], &ips)?;
    let now = clock.now();
    let issued = builtin
        .issue(SignRequest {
            tenant_id: tenant,
            csr: &csr,
            serial: Serial::random(),
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(30),
            ekus: &[ExtendedKeyUsage::ServerAuth],
        })
        .await?;
    let chain = format!("{}{}", issued.certificate.to_pem(), issued.chain_pem);
    Ok(server_config(chain.as_bytes(), key_pem.as_bytes())?)
}

fn banner(addr: std::net::SocketAddr, paths: &DevPaths) {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let url = format!("https://{host}:{}", addr.port());
    println!(
        "certmesh is running in dev mode: every role in one process, SQLite at {}",
        paths.db.display()
    );
    println!("  URL:        {url}");
    println!("  admin token {}", paths.token.display());
    println!("  CA bundle   {}", paths.bundle.display());
    println!("Try:");
    println!(
        "  curl --cacert {} -H \"Authorization: Bearer $(cat {})\" {url}/api/v1/profiles",
        paths.bundle.display(),
        paths.token.display()
    );
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
