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
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use certmesh_ca::{Actor, Hierarchy};
use certmesh_crypto::{
    ceremony::{generate_ed25519, sign_with_private_key_pem},
    csr::ExtendedKeyUsage,
    keys::{Kek, KeyBackend, SealedFileBackend},
    serial::Serial,
    tls::server_identity,
};
use certmesh_gateway::GatewayState;
use certmesh_issuance::{
    BuiltinCa,
    issuer::{ISSUING_NAME, Issuer, ROOT_NAME, SignRequest},
};
use certmesh_kit::{
    SharedClock,
    metrics::Metrics,
    serve::{serve, shutdown_signal},
    tls::server_config,
};
use certmesh_proto::ca as pb;
use certmesh_store::principals;
use certmesh_store::{
    Store, StoreError, TenantId, cas, principal_keys, principals::PrincipalRecord, tenants, tokens,
};
use chrono::Duration;
use tokio::net::TcpListener;

use crate::{
    cli::ServerArgs,
    roles,
    server::{
        ca_backends, fleet_backends, iam_backends, issuance_backends, issuance_channel,
        leaf_pointers, rate_limit, revocation_backends, store_ready,
    },
};

/// Files --dev keeps under `<data-dir>/dev`.
struct DevPaths {
    db: PathBuf,
    keys: PathBuf,
    kek: PathBuf,
    token: PathBuf,
    bundle: PathBuf,
    custodian: PathBuf,
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
            custodian: dev.join("custodian.key"),
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
    let database_url = format!("sqlite://{}", paths.db.display());
    let store = Store::connect(&database_url)
        .await
        .context("opening the SQLite database")?;
    store.migrate().await.context("applying migrations")?;
    let tenant = tenants::ensure(store.conn(), "default", clock.now()).await?;
    let admin = admin_token(&store, tenant, &paths.token, clock.as_ref()).await?;

    let kek =
        Kek::load_or_create(&paths.kek).context("loading the development key-encryption key")?;
    let keys: Arc<dyn KeyBackend> = Arc::new(
        SealedFileBackend::new(paths.keys.clone(), kek).context("opening the key directory")?,
    );
    let hierarchy = Hierarchy::new(certmesh_ca::Deps {
        store: store.clone(),
        clock: clock.clone(),
        keys: keys.clone(),
    });
    ceremony_bootstrap(
        &hierarchy,
        &store,
        tenant,
        &admin,
        &paths.custodian,
        clock.now(),
    )
    .await
    .context("bootstrapping the dev CA through its key ceremonies")?;
    let builtin =
        Arc::new(BuiltinCa::new(store.clone(), keys.clone()).with_pointers(leaf_pointers(args)?));
    let root = builtin
        .bootstrap(tenant, "certmesh dev", clock.now())
        .await
        .context("bootstrapping the dev CA")?;
    write_file(&paths.bundle, root.to_pem().as_bytes(), 0o644)?;

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let (chain, key) = serving_identity(&builtin, tenant, addr.ip(), clock.as_ref()).await?;
    let tls = server_config(chain.as_bytes(), key.as_bytes())?;
    let mut backends = issuance_backends(&store, builtin, clock.clone(), metrics.clone());
    backends.extend(iam_backends(&store, clock.clone()));
    backends.extend(ca_backends(&store, keys.clone(), clock.clone()));
    let (revocation, revocation_role) = revocation_backends(
        args,
        &store,
        &database_url,
        keys.clone(),
        clock.clone(),
        metrics.clone(),
    )?;
    backends.extend(revocation);
    let local = crate::mesh::Dialer {
        bundle: None,
        mesh: None,
    };
    let issuance = issuance_channel(&backends, None, &local)?;
    let (fleet, fleet_role) = fleet_backends(
        args,
        &store,
        keys,
        clock.clone(),
        issuance,
        (chain.as_bytes(), key.as_bytes()),
        metrics.clone(),
    )
    .await?;
    backends.extend(fleet);
    let fleet_channel = roles::fleet_channel(&backends, None, &local)?;
    let (discovery, discovery_role) =
        roles::discovery_backends(args, &store, clock.clone(), fleet_channel)?;
    backends.extend(discovery);
    let kek = Kek::from_file(&paths.kek).context("loading the development key-encryption key")?;
    let (notification, notification_role) =
        roles::notification_backends(args, &store, clock.clone(), kek, metrics.clone())?;
    backends.extend(notification);
    let state = GatewayState {
        backends,
        metrics,
        ready: store_ready(Some(store)),
        rest: true,
        rate_limit: rate_limit(args)?,
    };
    let router = certmesh_gateway::router(state).await;
    banner(addr, &paths, &revocation_role.pki_url(), fleet_role.addr());
    serve(listener, router, Some(tls), shutdown_signal()).await?;
    notification_role.stop().await;
    discovery_role.stop().await;
    fleet_role.stop().await;
    revocation_role.stop().await;
    tracing::info!("certmesh stopped.");
    Ok(())
}

/// The dev admin (admin and custodian); reuses the token in `path` if it still verifies,
/// otherwise mints one and writes it (0600).
async fn admin_token(
    store: &Store,
    tenant: TenantId,
    path: &Path,
    clock: &dyn certmesh_kit::Clock,
) -> anyhow::Result<PrincipalRecord> {
    let now = clock.now();
    let roles = ["admin".to_string(), "custodian".to_string()];
    let admin = store
        .in_tenant(tenant, async |tx| {
            principals::ensure(tx, tenant, "admin", "user", &roles, now).await
        })
        .await?;
    if let Ok(existing) = fs::read_to_string(path)
        && tokens::verify(store, existing.trim(), now).await?.is_some()
    {
        return Ok(admin);
    }
    let (_, token) = store
        .in_tenant(tenant, async |tx| {
            tokens::create(tx, tenant, admin.id, "dev-admin", None, now).await
        })
        .await?;
    write_file(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(admin)
}

/// Creates the dev root and issuing CA, if missing, the way an operator would: each through a
/// 1-of-1 key ceremony with the dev admin as custodian, approved with the custodian key kept
/// in `key_path` (made and registered on first start). Recorded like any other ceremony.
async fn ceremony_bootstrap(
    hierarchy: &Hierarchy,
    store: &Store,
    tenant: TenantId,
    admin: &PrincipalRecord,
    key_path: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let existing = async |name: &str| {
        store
            .in_tenant(tenant, async |tx| cas::by_name(tx, tenant, name).await)
            .await
    };
    if existing(ISSUING_NAME).await?.is_some() {
        return Ok(());
    }
    let key_pem = match fs::read_to_string(key_path) {
        Ok(pem) => zeroize::Zeroizing::new(pem),
        Err(_) => {
            let (pem, public) = generate_ed25519()?;
            let added = store
                .in_tenant(tenant, async |tx| {
                    principal_keys::add(
                        tx,
                        tenant,
                        admin.id,
                        public.algorithm().as_str(),
                        public.spki_der(),
                        &public.fingerprint(),
                        now,
                    )
                    .await
                })
                .await;
            match added {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            write_file(key_path, pem.as_bytes(), 0o600)?;
            pem
        }
    };
    let actor = Actor {
        tenant,
        principal_id: admin.id,
        principal: admin.name.clone(),
        custodian: true,
        request_id: "dev-bootstrap".to_string(),
    };
    let root = match existing(ROOT_NAME).await? {
        Some(root) => root,
        None => {
            let params = pb::CaParams {
                name: ROOT_NAME.into(),
                subject_cn: "certmesh dev Root CA".into(),
                subject_o: "certmesh".into(),
                key_spec: "ecdsa-p256".into(),
                path_len: Some(1),
                validity_days: 3650,
                ..Default::default()
            };
            let id = approved(hierarchy, &actor, &key_pem, "create_root", &params).await?;
            hierarchy.create_root(&actor, &id, &params, None).await?.ca
        }
    };
    let params = pb::CaParams {
        name: ISSUING_NAME.into(),
        parent_ca_id: root.id.to_string(),
        subject_cn: "certmesh dev Issuing CA 1".into(),
        subject_o: "certmesh".into(),
        key_spec: "ecdsa-p256".into(),
        path_len: Some(0),
        validity_days: 1825,
        ..Default::default()
    };
    let id = approved(hierarchy, &actor, &key_pem, "create_intermediate", &params).await?;
    hierarchy
        .create_intermediate(&actor, &root.id.to_string(), &id, &params)
        .await?;
    tracing::info!("Dev CA created through 1-of-1 key ceremonies with the dev admin as custodian.");
    Ok(())
}

/// Starts a 1-of-1 ceremony for `params` and approves it with the custodian key; its id.
async fn approved(
    hierarchy: &Hierarchy,
    actor: &Actor,
    key_pem: &str,
    purpose: &str,
    params: &pb::CaParams,
) -> anyhow::Result<String> {
    let request = pb::StartCeremonyRequest {
        purpose: purpose.into(),
        threshold: 1,
        custodians: vec![actor.principal.clone()],
        params: Some(params.clone()),
        expires_in: "1h".into(),
    };
    let ceremony = hierarchy.start_ceremony(actor, &request).await?;
    let message = certmesh_crypto::ceremony::signing_message(&ceremony.record.digest);
    let signature = sign_with_private_key_pem(key_pem, &message)?;
    let id = ceremony.record.id.to_string();
    hierarchy
        .approve(actor, &id, &BASE64.encode(signature))
        .await?;
    Ok(id)
}

/// A fresh key and a 30-day serverAuth certificate for the gateway, from the dev issuing CA.
/// The dev serving certificate (chain PEM, key PEM) of the gateway and the agent listener,
/// issued by the dev CA for localhost, the loopback addresses and `ip`.
async fn serving_identity(
    builtin: &BuiltinCa,
    tenant: TenantId,
    ip: IpAddr,
    clock: &dyn certmesh_kit::Clock,
) -> anyhow::Result<(String, zeroize::Zeroizing<String>)> {
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
    Ok((chain, key_pem))
}

fn banner(addr: std::net::SocketAddr, paths: &DevPaths, pki: &str, agents: std::net::SocketAddr) {
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
    println!("  PKI (CRLs, OCSP) {pki}/.well-known/pki/");
    println!("  agents      https://{agents} (certmesh-agent enroll --server …)");
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

pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
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
