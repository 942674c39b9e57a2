//! `certmesh server`: validate flags into settings, start the requested roles, serve them on
//! one listener, and drain on SIGINT/SIGTERM.

use std::{collections::BTreeMap, fs, path::Path, sync::Arc};

use anyhow::{Context, bail};
use certmesh_ca::Hierarchy;
use certmesh_crypto::keys::{KeyBackend, SealedFileBackend};
use certmesh_fleet::{Fleet, IssuanceChannel, identity::IdentityCa, listener::AgentListener};
use certmesh_gateway::{Backend, GatewayState};
use certmesh_iam::Iam;
use certmesh_issuance::{BuiltinCa, Deps, Issuance};
use certmesh_kit::pki::{LeafPointers, MAX_CRL_SHARDS, PkiUrls};
use certmesh_kit::{
    SharedClock, SystemClock,
    auth::{AuthLayer, TokenVerifier},
    limit::RateLimit,
    metrics::Metrics,
    serve::{serve, shutdown_signal},
    tls::server_config,
};
use certmesh_proto::ca::ca_service_server::CaServiceServer;
use certmesh_proto::fleet::fleet_service_server::FleetServiceServer;
use certmesh_proto::iam::{
    audit_service_server::AuditServiceServer, principal_service_server::PrincipalServiceServer,
    token_service_server::TokenServiceServer,
};
use certmesh_proto::issuance::{
    approval_service_server::ApprovalServiceServer, issuance_service_server::IssuanceServiceServer,
    profile_service_server::ProfileServiceServer,
};
use certmesh_proto::revocation::revocation_service_server::RevocationServiceServer;
use certmesh_revocation::{
    Revocations,
    crl::Publisher,
    pki::{PkiHandle, PkiOptions},
};
use certmesh_store::{Store, tenants};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tower::Layer;

use crate::{
    cli::ServerArgs,
    dev,
    mesh::{Dialer, Mesh},
    roles,
};

/// Roles this build can run.
const ROLES: &[&str] = &[
    "issuance",
    "iam",
    "ca",
    "revocation",
    "fleet",
    "discovery",
    "notification",
    "gateway",
];
/// gRPC services of the issuance role.
const ISSUANCE_SERVICES: [&str; 3] = [
    IssuanceServiceServer::<Issuance>::NAME,
    ProfileServiceServer::<Issuance>::NAME,
    ApprovalServiceServer::<Issuance>::NAME,
];
/// gRPC services of the iam role.
const IAM_SERVICES: [&str; 3] = [
    PrincipalServiceServer::<Iam>::NAME,
    TokenServiceServer::<Iam>::NAME,
    AuditServiceServer::<Iam>::NAME,
];

/// gRPC service of the ca role.
const CA_SERVICE: &str = CaServiceServer::<Hierarchy>::NAME;
/// gRPC service of the revocation role.
const REVOCATION_SERVICE: &str = RevocationServiceServer::<Revocations>::NAME;
/// The operators' gRPC service of the fleet role (agents use the fleet's own listener).
const FLEET_SERVICE: &str = FleetServiceServer::<Fleet>::NAME;

fn duration_flag(flag: &str, text: &str) -> anyhow::Result<chrono::Duration> {
    certmesh_kit::duration::parse(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// Where leaves point relying parties (the OCSP URL and their shard's CRL URL), from flags.
pub fn leaf_pointers(args: &ServerArgs) -> anyhow::Result<LeafPointers> {
    let base = match &args.pki_public_url {
        Some(url) => url.clone(),
        None => {
            if args.pki_listen.ip().is_unspecified() {
                bail!(
                    "--pki-listen {} binds every address: set --pki-public-url to the URL relying parties use",
                    args.pki_listen
                );
            }
            format!("http://{}", args.pki_listen)
        }
    };
    if args.crl_shards == 0 || args.crl_shards > MAX_CRL_SHARDS {
        bail!("--crl-shards must be between 1 and {MAX_CRL_SHARDS}");
    }
    Ok(LeafPointers {
        urls: PkiUrls::new(&base).context("--pki-public-url")?,
        crl_shards: args.crl_shards,
    })
}

/// The revocation role's settings from flags.
pub fn revocation_config(args: &ServerArgs) -> anyhow::Result<certmesh_revocation::Config> {
    let pointers = leaf_pointers(args)?;
    let mut config = certmesh_revocation::Config::new(pointers.urls);
    config.crl_shards = pointers.crl_shards;
    config.crl_validity = duration_flag("--crl-validity", &args.crl_validity)?;
    config.crl_refresh = duration_flag("--crl-refresh", &args.crl_refresh)?;
    config.ocsp_validity = duration_flag("--ocsp-validity", &args.ocsp_validity)?;
    config.responder_validity =
        duration_flag("--ocsp-responder-validity", &args.ocsp_responder_validity)?;
    if config.crl_refresh >= config.crl_validity {
        bail!("--crl-refresh must be shorter than --crl-validity");
    }
    if config.ocsp_validity >= config.responder_validity {
        bail!("--ocsp-validity must be shorter than --ocsp-responder-validity");
    }
    Ok(config)
}

/// The revocation role running in this process: its PKI listener (own runtime) and its CRL
/// publisher, stopped by [`RevocationRole::stop`].
#[derive(Debug)]
pub struct RevocationRole {
    pki: PkiHandle,
    shutdown: tokio::sync::watch::Sender<bool>,
    publisher: tokio::task::JoinHandle<()>,
}

impl RevocationRole {
    /// The PKI listener's bound address, as an http:// URL.
    pub fn pki_url(&self) -> String {
        format!("http://{}", self.pki.addr)
    }

    /// Stops the publisher (releasing its lease) and the PKI listener.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.publisher.await;
        let pki = self.pki;
        let _ = tokio::task::spawn_blocking(move || pki.stop()).await;
    }
}

/// Starts the revocation role: the PKI listener on `args.pki_listen` with `args.pki_workers`
/// threads of its own and its own pool on `database_url`, the CRL publisher, and the gRPC
/// service (authenticated) as a gateway backend.
pub fn revocation_backends(
    args: &ServerArgs,
    store: &Store,
    database_url: &str,
    keys: Arc<dyn KeyBackend>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(BTreeMap<String, Backend>, RevocationRole)> {
    let config = revocation_config(args)?;
    let pki = certmesh_revocation::pki::start(PkiOptions {
        listen: args.pki_listen,
        workers: args.pki_workers,
        database_url: database_url.to_owned(),
        keys: keys.clone(),
        clock: clock.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
    })
    .with_context(|| format!("starting the PKI listener on {}", args.pki_listen))?;
    let publisher = Publisher::new(
        store.clone(),
        keys.clone(),
        clock.clone(),
        config.clone(),
        metrics,
    );
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(publisher.clone().run(shutdown_rx));
    let revocations = Revocations::new(
        certmesh_revocation::Deps {
            store: store.clone(),
            clock: clock.clone(),
            keys,
            config,
        },
        pki.responders.clone(),
        publisher,
    );
    let auth = AuthLayer::new(TokenVerifier::new(store.clone(), clock));
    let service = certmesh_revocation::service(revocations);
    Ok((
        BTreeMap::from([(
            REVOCATION_SERVICE.to_string(),
            Backend::local(auth.layer(service)),
        )]),
        RevocationRole {
            pki,
            shutdown,
            publisher: task,
        },
    ))
}

/// The fleet role's settings from flags.
pub fn fleet_config(args: &ServerArgs) -> anyhow::Result<certmesh_fleet::Config> {
    let mut config = certmesh_fleet::Config::new();
    let domain = args.trust_domain.trim();
    if domain.is_empty()
        || !domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
    {
        bail!("--trust-domain must be a lower-case DNS-like name, e.g. certmesh.local");
    }
    config.trust_domain = domain.to_owned();
    config.identity_validity =
        duration_flag("--agent-identity-validity", &args.agent_identity_validity)?;
    config.heartbeat = duration_flag("--agent-heartbeat", &args.agent_heartbeat)?;
    config.retry_base = duration_flag("--fleet-retry-base", &args.fleet_retry_base)?;
    if config.identity_validity < chrono::Duration::seconds(30) {
        bail!("--agent-identity-validity must be at least 30s");
    }
    if config.heartbeat < chrono::Duration::seconds(1)
        || config.heartbeat > chrono::Duration::minutes(10)
    {
        bail!("--agent-heartbeat must be between 1s and 10m");
    }
    if args.fleet_max_attempts == 0 || args.fleet_max_attempts > 100 {
        bail!("--fleet-max-attempts must be between 1 and 100");
    }
    config.max_attempts = args.fleet_max_attempts;
    Ok(config)
}

/// The fleet role running in this process: its agent listener and its periodic work.
#[derive(Debug)]
pub struct FleetRole {
    listener: AgentListener,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FleetRole {
    /// The agent listener's bound address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.listener.addr
    }

    /// Stops the periodic work (releasing its lease) and the agent listener.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.listener.stop().await;
    }
}

/// Starts the fleet role: the agent-identity CA (made on first start), the agent listener on
/// `args.fleet_listen` serving `tls_chain`/`tls_key`, the periodic work, and the operators'
/// service (authenticated) as a gateway backend. It issues through `issuance`.
pub async fn fleet_backends(
    args: &ServerArgs,
    store: &Store,
    keys: Arc<dyn KeyBackend>,
    clock: SharedClock,
    issuance: IssuanceChannel,
    tls: (&[u8], &[u8]),
    metrics: Arc<Metrics>,
) -> anyhow::Result<(BTreeMap<String, Backend>, FleetRole)> {
    let config = fleet_config(args)?;
    let identity = IdentityCa::ensure(store, &keys, &config.trust_domain, clock.now())
        .await
        .context("loading the agent identity CA")?;
    let fleet = Fleet::new(certmesh_fleet::Deps {
        store: store.clone(),
        clock: clock.clone(),
        identity: Arc::new(identity),
        issuance,
        config,
        metrics,
    });
    let listener = certmesh_fleet::listener::start(args.fleet_listen, fleet.clone(), tls.0, tls.1)
        .await
        .context("starting the agent listener")?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(fleet.clone().run(shutdown_rx));
    let auth = AuthLayer::new(TokenVerifier::new(store.clone(), clock));
    let service = certmesh_fleet::fleet_service(fleet);
    Ok((
        BTreeMap::from([(
            FLEET_SERVICE.to_string(),
            Backend::local(auth.layer(service)),
        )]),
        FleetRole {
            listener,
            shutdown,
            task,
        },
    ))
}

/// The issuance role as the fleet role calls it: the backend in `backends` when the role runs
/// here, else a channel to `endpoint`.
pub fn issuance_channel(
    backends: &BTreeMap<String, Backend>,
    endpoint: Option<&str>,
    dial: &Dialer<'_>,
) -> anyhow::Result<IssuanceChannel> {
    let name = IssuanceServiceServer::<Issuance>::NAME;
    let backend = match (backends.get(name), endpoint) {
        (Some(local), _) => local.clone(),
        (None, Some(url)) => Backend::remote(dial.channel(url, "issuance")?),
        (None, None) => bail!(
            "the fleet role needs the issuance role in this process or --fleet-issuance-endpoint / --issuance-endpoint"
        ),
    };
    Ok(tower::util::BoxCloneSyncService::new(backend))
}

/// The ca role's gRPC service, authenticated, as a gateway backend.
pub fn ca_backends(
    store: &Store,
    keys: Arc<dyn KeyBackend>,
    clock: SharedClock,
) -> BTreeMap<String, Backend> {
    let auth = AuthLayer::new(TokenVerifier::new(store.clone(), clock.clone()));
    let service = certmesh_ca::service(Hierarchy::new(certmesh_ca::Deps {
        store: store.clone(),
        clock,
        keys,
    }));
    BTreeMap::from([(CA_SERVICE.to_string(), Backend::local(auth.layer(service)))])
}

/// The iam role's gRPC services, authenticated, as gateway backends.
pub fn iam_backends(store: &Store, clock: SharedClock) -> BTreeMap<String, Backend> {
    let auth = AuthLayer::new(TokenVerifier::new(store.clone(), clock.clone()));
    let (principals, tokens, audit) = certmesh_iam::services(Iam::new(certmesh_iam::Deps {
        store: store.clone(),
        clock,
    }));
    BTreeMap::from([
        (
            IAM_SERVICES[0].to_string(),
            Backend::local(auth.layer(principals)),
        ),
        (
            IAM_SERVICES[1].to_string(),
            Backend::local(auth.layer(tokens)),
        ),
        (
            IAM_SERVICES[2].to_string(),
            Backend::local(auth.layer(audit)),
        ),
    ])
}

/// The issuance role's gRPC services, authenticated, as gateway backends.
pub fn issuance_backends(
    store: &Store,
    builtin: Arc<BuiltinCa>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) -> BTreeMap<String, Backend> {
    let verifier_clock = clock.clone();
    let issuance = Issuance::new(Deps {
        store: store.clone(),
        clock,
        builtin,
        metrics,
    });
    let (issue, profiles, approvals) = certmesh_issuance::services(issuance);
    let auth = AuthLayer::new(TokenVerifier::new(store.clone(), verifier_clock));
    BTreeMap::from([
        (
            IssuanceServiceServer::<Issuance>::NAME.to_string(),
            Backend::local(auth.layer(issue)),
        ),
        (
            ProfileServiceServer::<Issuance>::NAME.to_string(),
            Backend::local(auth.layer(profiles)),
        ),
        (
            ApprovalServiceServer::<Issuance>::NAME.to_string(),
            Backend::local(auth.layer(approvals)),
        ),
    ])
}

/// Readiness: the store answers.
pub fn store_ready(store: Option<Store>) -> certmesh_gateway::ReadinessCheck {
    Arc::new(move || {
        let store = store.clone();
        Box::pin(async move {
            match store {
                Some(store) => store.conn().ping().await.is_ok(),
                None => true,
            }
        })
    })
}

/// The per-credential rate limit from flags; `None` when the rate is 0.
pub fn rate_limit(args: &ServerArgs) -> anyhow::Result<Option<RateLimit>> {
    if args.rate_limit_per_second == 0.0 {
        return Ok(None);
    }
    let limit = RateLimit {
        per_second: args.rate_limit_per_second,
        burst: args.rate_limit_burst,
    };
    Ok(Some(
        limit
            .validate()
            .context("--rate-limit-per-second / --rate-limit-burst")?,
    ))
}

/// Open the sealed-key backend from flags or `CERTMESH_KEK`.
fn key_backend(args: &ServerArgs) -> anyhow::Result<Arc<dyn KeyBackend>> {
    let dir = args
        .key_dir
        .clone()
        .context("--key-dir is required for the issuance and ca roles")?;
    let kek = roles::load_kek(args, "the issuance and ca roles")?;
    Ok(Arc::new(
        SealedFileBackend::new(dir, kek).context("opening the key directory")?,
    ))
}

/// Routes `service` to the role at `endpoint`, or warns that its API is off.
fn remote_backend(
    backends: &mut BTreeMap<String, Backend>,
    service: &str,
    endpoint: Option<&str>,
    dial: &Dialer<'_>,
    role: &str,
) -> anyhow::Result<()> {
    match endpoint {
        Some(url) => {
            let channel = dial.channel(url, role)?;
            backends.insert(service.to_string(), Backend::remote(channel));
        }
        None => tracing::warn!(
            role,
            "No such role here and no --{role}-endpoint: its API is off."
        ),
    }
    Ok(())
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// The listener's TLS. A gateway serves the public API with `--tls-cert` and asks no client
/// certificate; with a mesh, any other role demands a mesh certificate of every peer;
/// without one, `--tls-cert` or (loopback only) `--dangerous-plaintext`.
fn listener_tls(
    args: &ServerArgs,
    tls_pem: Option<&(Vec<u8>, Vec<u8>)>,
    mesh: Option<&Mesh>,
    gateway: bool,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if let (Some(mesh), false) = (mesh, gateway) {
        if args.dangerous_plaintext {
            bail!("--dangerous-plaintext and --mesh exclude each other");
        }
        return Ok(Some(mesh.server_config()?));
    }
    if !gateway && !args.dangerous_plaintext {
        tracing::warn!(
            "--mesh off: this role's listener accepts peers without a client certificate (tokens still apply)."
        );
    }
    Ok(match (tls_pem, args.dangerous_plaintext) {
        (Some((cert, key)), false) => Some(server_config(cert, key)?),
        (None, true) if args.tls_cert.is_none() && args.tls_key.is_none() => {
            tracing::warn!("Serving cleartext HTTP/2: --dangerous-plaintext is set.");
            None
        }
        (_, true) => bail!("--dangerous-plaintext and --tls-cert/--tls-key exclude each other"),
        _ => bail!("set --tls-cert and --tls-key (or --dangerous-plaintext for a loopback hop)"),
    })
}

/// Serves `/healthz`, `/readyz` and `/metrics` in plain HTTP on `addr` until told to stop.
async fn ops_listener(
    addr: std::net::SocketAddr,
    state: &GatewayState,
    store: Option<Store>,
) -> anyhow::Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --ops-listen {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "Operations listener (health, readiness, metrics) up.");
    let router = certmesh_gateway::ops_router(state.metrics.clone(), store_ready(store));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router, None, async move {
        let _ = stopped.await;
    }));
    Ok((stop, task))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let roles: &[String] = if args.dev { &[] } else { &args.services };
    let telemetry = crate::telemetry::init(args.log_json, roles)?;
    let result = run_roles(args).await;
    // After the drain, so the last requests' spans are exported too.
    telemetry.shutdown().await;
    result
}

async fn run_roles(args: ServerArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let clock: SharedClock = Arc::new(SystemClock);
    if args.dev {
        return dev::run(&args, metrics, clock).await;
    }
    for role in &args.services {
        if !ROLES.contains(&role.as_str()) {
            bail!(
                "unknown role {role:?}; this build runs: {}",
                ROLES.join(", ")
            );
        }
    }
    let has = |r: &str| args.services.iter().any(|s| s == r);
    if args.services.is_empty() {
        bail!(
            "name the roles to run with --services (issuance, iam, ca, revocation, fleet, discovery, notification, gateway), or use --dev"
        );
    }
    let tls_pem = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((read(cert, "--tls-cert")?, read(key, "--tls-key")?)),
        _ => None,
    };

    let mut backends = BTreeMap::new();
    let needs_store = [
        "issuance",
        "iam",
        "ca",
        "revocation",
        "fleet",
        "discovery",
        "notification",
    ];
    let store = if needs_store.iter().any(|r| has(r)) {
        let url = args
            .database_url
            .as_deref()
            .context("--database-url is required for every role but the gateway")?;
        let s = Store::connect(url)
            .await
            .context("connecting to the database")?;
        s.migrate().await.context("applying migrations")?;
        s.ping().await.with_context(|| {
            format!(
                "connecting as the role {} (on PostgreSQL the login must be a superuser or a \
                 member of it; see docs/operations.md)",
                certmesh_store::APP_ROLE
            )
        })?;
        Some(s)
    } else {
        None
    };
    let bundle = args
        .ca_bundle
        .as_deref()
        .map(|p| read(p, "--ca-bundle"))
        .transpose()?;
    let mesh = Mesh::start(&args, clock.clone())?;
    let dial = Dialer {
        bundle: bundle.as_deref(),
        mesh: mesh.as_ref(),
    };
    let tls = listener_tls(&args, tls_pem.as_ref(), mesh.as_ref(), has("gateway"))?;
    let keys = if has("issuance") || has("ca") || has("revocation") || has("fleet") {
        Some(key_backend(&args)?)
    } else {
        None
    };
    let pointers = leaf_pointers(&args)?;
    if let (true, Some(s), Some(keys)) = (has("issuance"), &store, &keys) {
        let builtin = Arc::new(BuiltinCa::new(s.clone(), keys.clone()).with_pointers(pointers));
        let tenant = tenants::ensure(s.conn(), &args.tenant, clock.now()).await?;
        builtin
            .bootstrap(tenant, "certmesh", clock.now())
            .await
            .context("bootstrapping the built-in CA")?;
        backends.extend(issuance_backends(
            s,
            builtin,
            clock.clone(),
            metrics.clone(),
        ));
    } else if has("gateway") {
        let url = args
            .issuance_endpoint
            .as_deref()
            .context("--issuance-endpoint is required when the issuance role runs elsewhere")?;
        let channel = dial.channel(url, "issuance")?;
        for name in ISSUANCE_SERVICES {
            backends.insert(name.to_string(), Backend::remote(channel.clone()));
        }
    }
    if let (true, Some(s), Some(keys)) = (has("ca"), &store, &keys) {
        backends.extend(ca_backends(s, keys.clone(), clock.clone()));
    } else if has("gateway") {
        match args.ca_endpoint.as_deref() {
            Some(url) => {
                let channel = dial.channel(url, "ca")?;
                backends.insert(CA_SERVICE.to_string(), Backend::remote(channel));
            }
            None => tracing::warn!(
                "No ca role here and no --ca-endpoint: the CA hierarchy and ceremony APIs are off."
            ),
        }
    }
    let mut revocation_role = None;
    if let (true, Some(s), Some(keys), Some(url)) = (
        has("revocation"),
        &store,
        &keys,
        args.database_url.as_deref(),
    ) {
        let (b, role) =
            revocation_backends(&args, s, url, keys.clone(), clock.clone(), metrics.clone())?;
        backends.extend(b);
        revocation_role = Some(role);
    } else if has("gateway") {
        match args.revocation_endpoint.as_deref() {
            Some(url) => {
                let channel = dial.channel(url, "revocation")?;
                backends.insert(REVOCATION_SERVICE.to_string(), Backend::remote(channel));
            }
            None => tracing::warn!(
                "No revocation role here and no --revocation-endpoint: the revocation API is off."
            ),
        }
    }
    let mut fleet_role = None;
    if let (true, Some(s), Some(keys)) = (has("fleet"), &store, &keys) {
        let Some((chain, key)) = &tls_pem else {
            bail!("the fleet role's agent listener needs --tls-cert and --tls-key");
        };
        let endpoint = args
            .fleet_issuance_endpoint
            .as_deref()
            .or(args.issuance_endpoint.as_deref());
        let issuance = issuance_channel(&backends, endpoint, &dial)?;
        let (b, role) = fleet_backends(
            &args,
            s,
            keys.clone(),
            clock.clone(),
            issuance,
            (chain, key),
            metrics.clone(),
        )
        .await?;
        backends.extend(b);
        fleet_role = Some(role);
    } else if has("gateway") {
        match args.fleet_endpoint.as_deref() {
            Some(url) => {
                let channel = dial.channel(url, "fleet")?;
                backends.insert(FLEET_SERVICE.to_string(), Backend::remote(channel));
            }
            None => {
                tracing::warn!("No fleet role here and no --fleet-endpoint: the fleet API is off.")
            }
        }
    }
    let mut background = Vec::new();
    if let (true, Some(s)) = (has("discovery"), &store) {
        let fleet = roles::fleet_channel(&backends, args.fleet_endpoint.as_deref(), &dial)?;
        let (b, role) = roles::discovery_backends(&args, s, clock.clone(), fleet)?;
        backends.extend(b);
        background.push(role);
    } else if has("gateway") {
        remote_backend(
            &mut backends,
            roles::DISCOVERY_SERVICE,
            args.discovery_endpoint.as_deref(),
            &dial,
            "discovery",
        )?;
    }
    if let (true, Some(s)) = (has("notification"), &store) {
        let kek = roles::load_kek(&args, "the notification role (it seals channel secrets)")?;
        let (b, role) =
            roles::notification_backends(&args, s, clock.clone(), kek, metrics.clone())?;
        backends.extend(b);
        background.push(role);
    } else if has("gateway") {
        remote_backend(
            &mut backends,
            roles::NOTIFICATION_SERVICE,
            args.notification_endpoint.as_deref(),
            &dial,
            "notification",
        )?;
    }
    if let (true, Some(s)) = (has("iam"), &store) {
        backends.extend(iam_backends(s, clock.clone()));
    } else if has("gateway") {
        match args.iam_endpoint.as_deref() {
            Some(url) => {
                let channel = dial.channel(url, "iam")?;
                for name in IAM_SERVICES {
                    backends.insert(name.to_string(), Backend::remote(channel.clone()));
                }
            }
            None => tracing::warn!(
                "No iam role here and no --iam-endpoint: principal, token and audit APIs are off."
            ),
        }
    }
    let state = GatewayState {
        backends,
        metrics,
        ready: store_ready(store.clone()),
        rest: has("gateway"),
        rate_limit: rate_limit(&args)?,
    };
    let ops = match args.ops_listen {
        Some(addr) => Some(ops_listener(addr, &state, store).await?),
        None => None,
    };
    let router = certmesh_gateway::router(state).await;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, roles = %args.services.join(","), tls = tls.is_some(), mesh = mesh.is_some(), "certmesh listening.");
    serve(listener, router, tls, shutdown_signal()).await?;
    if let Some((stop, task)) = ops {
        let _ = stop.send(());
        let _ = task.await;
    }
    if let Some(mesh) = mesh {
        mesh.stop().await;
    }
    for role in background {
        role.stop().await;
    }
    if let Some(role) = fleet_role {
        role.stop().await;
    }
    if let Some(role) = revocation_role {
        role.stop().await;
    }
    tracing::info!("certmesh stopped.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> ServerArgs {
        let mut argv = vec!["certmesh", "server", "--services", "revocation"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Server(args) => *args,
            _ => panic!("server"),
        }
    }

    #[test]
    fn leaves_point_at_the_pki_listener_unless_a_public_url_is_given() {
        let p = leaf_pointers(&args(&["--pki-listen", "127.0.0.1:9090"])).expect("valid");
        assert_eq!(p.urls.ocsp(), "http://127.0.0.1:9090/.well-known/pki/ocsp");
        let p = leaf_pointers(&args(&[
            "--pki-public-url",
            "https://pki.example.com/",
            "--crl-shards",
            "16",
        ]))
        .expect("valid");
        assert_eq!(
            p.urls.ocsp(),
            "https://pki.example.com/.well-known/pki/ocsp"
        );
        assert_eq!(p.crl_shards, 16);
    }

    #[test]
    fn bad_revocation_settings_are_refused_at_start() {
        let refused = |extra: &[&str]| {
            let a = args(extra);
            leaf_pointers(&a)
                .and_then(|_| revocation_config(&a))
                .is_err()
        };
        assert!(refused(&["--pki-listen", "0.0.0.0:8080"]));
        assert!(refused(&["--crl-shards", "0"]));
        assert!(refused(&["--crl-shards", "1025"]));
        assert!(refused(&["--pki-public-url", "pki.example.com"]));
        assert!(refused(&["--crl-refresh", "48h"]));
        assert!(refused(&["--crl-validity", "soon"]));
        assert!(refused(&["--ocsp-validity", "100h"]));
        assert!(!refused(&[
            "--pki-listen",
            "0.0.0.0:8080",
            "--pki-public-url",
            "http://pki"
        ]));
        let config = revocation_config(&args(&["--ocsp-validity", "2h"])).expect("valid");
        assert_eq!(config.ocsp_validity, chrono::Duration::hours(2));
    }
}
