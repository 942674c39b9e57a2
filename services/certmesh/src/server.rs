//! `certmesh server`: validate flags into settings, start the requested roles, serve them on
//! one listener, and drain on SIGINT/SIGTERM.

use std::{collections::BTreeMap, fs, path::Path, sync::Arc};

use anyhow::{Context, bail};
use certmesh_ca::Hierarchy;
use certmesh_crypto::keys::{Kek, KeyBackend, SealedFileBackend};
use certmesh_gateway::{Backend, GatewayState};
use certmesh_iam::Iam;
use certmesh_issuance::{BuiltinCa, Deps, Issuance};
use certmesh_kit::{
    SharedClock, SystemClock,
    auth::{AuthLayer, TokenVerifier},
    limit::RateLimit,
    metrics::Metrics,
    serve::{serve, shutdown_signal},
    tls::server_config,
};
use certmesh_proto::ca::ca_service_server::CaServiceServer;
use certmesh_proto::iam::{
    audit_service_server::AuditServiceServer, principal_service_server::PrincipalServiceServer,
    token_service_server::TokenServiceServer,
};
use certmesh_proto::issuance::{
    approval_service_server::ApprovalServiceServer, issuance_service_server::IssuanceServiceServer,
    profile_service_server::ProfileServiceServer,
};
use certmesh_store::{Store, tenants};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tower::Layer;

use crate::{cli::ServerArgs, dev};

/// Roles this build can run.
const ROLES: &[&str] = &["issuance", "iam", "ca", "gateway"];
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
    let kek = match &args.kek_file {
        Some(path) => Kek::from_file(path).context("reading --kek-file")?,
        None => Kek::from_env("CERTMESH_KEK")
            .context("the issuance and ca roles need --kek-file or CERTMESH_KEK")?,
    };
    Ok(Arc::new(
        SealedFileBackend::new(dir, kek).context("opening the key directory")?,
    ))
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    certmesh_kit::telemetry::init(args.log_json);
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
        bail!("name the roles to run with --services (issuance, iam, ca, gateway), or use --dev");
    }
    let tls = match (&args.tls_cert, &args.tls_key, args.dangerous_plaintext) {
        (Some(cert), Some(key), false) => Some(server_config(
            &read(cert, "--tls-cert")?,
            &read(key, "--tls-key")?,
        )?),
        (None, None, true) => {
            tracing::warn!("Serving cleartext HTTP/2: --dangerous-plaintext is set.");
            None
        }
        (_, _, true) => bail!("--dangerous-plaintext and --tls-cert/--tls-key exclude each other"),
        _ => bail!("set --tls-cert and --tls-key (or --dangerous-plaintext for a loopback hop)"),
    };

    let mut backends = BTreeMap::new();
    let store = if has("issuance") || has("iam") || has("ca") {
        let url = args
            .database_url
            .as_deref()
            .context("--database-url is required for the issuance, iam and ca roles")?;
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
    let keys = if has("issuance") || has("ca") {
        Some(key_backend(&args)?)
    } else {
        None
    };
    if let (true, Some(s), Some(keys)) = (has("issuance"), &store, &keys) {
        let builtin = Arc::new(BuiltinCa::new(s.clone(), keys.clone()));
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
        let channel = certmesh_kit::grpc::lazy_channel(url, bundle.as_deref())?;
        for name in ISSUANCE_SERVICES {
            backends.insert(name.to_string(), Backend::remote(channel.clone()));
        }
    }
    if let (true, Some(s), Some(keys)) = (has("ca"), &store, &keys) {
        backends.extend(ca_backends(s, keys.clone(), clock.clone()));
    } else if has("gateway") {
        match args.ca_endpoint.as_deref() {
            Some(url) => {
                let channel = certmesh_kit::grpc::lazy_channel(url, bundle.as_deref())?;
                backends.insert(CA_SERVICE.to_string(), Backend::remote(channel));
            }
            None => tracing::warn!(
                "No ca role here and no --ca-endpoint: the CA hierarchy and ceremony APIs are off."
            ),
        }
    }
    if let (true, Some(s)) = (has("iam"), &store) {
        backends.extend(iam_backends(s, clock.clone()));
    } else if has("gateway") {
        match args.iam_endpoint.as_deref() {
            Some(url) => {
                let channel = certmesh_kit::grpc::lazy_channel(url, bundle.as_deref())?;
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
        ready: store_ready(store),
        rest: has("gateway"),
        rate_limit: rate_limit(&args)?,
    };
    let router = certmesh_gateway::router(state).await;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, roles = %args.services.join(","), tls = tls.is_some(), "certmesh listening.");
    serve(listener, router, tls, shutdown_signal()).await?;
    tracing::info!("certmesh stopped.");
    Ok(())
}
