//! Wiring of the discovery and notification roles: their settings from flags, their gRPC
//! services as gateway backends, and their background loops.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{Context, bail};
use certmesh_crypto::keys::Kek;
use certmesh_discovery::scan::{Cidr, Guard};
use certmesh_discovery::{Discovery, FleetChannel};
use certmesh_gateway::Backend;
use certmesh_kit::SharedClock;
use certmesh_kit::auth::{AuthLayer, TokenVerifier};
use certmesh_kit::metrics::Metrics;
use certmesh_notification::Notifier;
use certmesh_proto::discovery::discovery_service_server::DiscoveryServiceServer;

use crate::mesh::Dialer;
use certmesh_proto::fleet::fleet_service_server::FleetServiceServer;
use certmesh_proto::notification::notification_service_server::NotificationServiceServer;
use certmesh_store::Store;
use tonic::server::NamedService;
use tower::Layer;

use crate::cli::ServerArgs;

/// gRPC service of the discovery role.
pub const DISCOVERY_SERVICE: &str = DiscoveryServiceServer::<Discovery>::NAME;
/// gRPC service of the notification role.
pub const NOTIFICATION_SERVICE: &str = NotificationServiceServer::<Notifier>::NAME;

fn std_duration(flag: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    certmesh_kit::duration::parse(text)
        .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?
        .to_std()
        .with_context(|| format!("{flag} must be positive"))
}

/// The key-encryption key from `--kek-file` or `CERTMESH_KEK`.
pub fn load_kek(args: &ServerArgs, who: &str) -> anyhow::Result<Kek> {
    match &args.kek_file {
        Some(path) => Kek::from_file(path).context("reading --kek-file"),
        None => Kek::from_env("CERTMESH_KEK")
            .with_context(|| format!("{who} needs --kek-file or CERTMESH_KEK")),
    }
}

/// A role's background loop, stopped (and its lease released) by [`Background::stop`].
#[derive(Debug)]
pub struct Background {
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    fn spawn<F>(run: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F) -> Background
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        Background {
            shutdown,
            task: tokio::spawn(run(rx)),
        }
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// The discovery role's settings from flags.
pub fn discovery_config(args: &ServerArgs) -> anyhow::Result<certmesh_discovery::Config> {
    let mut c = certmesh_discovery::Config::new();
    if args.scan_max_addresses == 0 || args.scan_max_addresses > 1 << 20 {
        bail!("--scan-max-addresses must be between 1 and 1048576");
    }
    if args.scan_concurrency == 0 || args.scan_concurrency > 4096 {
        bail!("--scan-concurrency must be between 1 and 4096");
    }
    c.max_cidr_addresses = args.scan_max_addresses;
    c.concurrency = args.scan_concurrency;
    let timeout = std_duration("--scan-timeout", &args.scan_timeout)?;
    c.connect_timeout = timeout;
    c.handshake_timeout = timeout;
    c.tick = std_duration("--scan-tick", &args.scan_tick)?;
    let allowed = args
        .scan_allow
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("--scan-allow {s:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    c.guard = Guard {
        allow_loopback: args.dangerous_scan_loopback,
        allow_private: !args.scan_deny_private,
        allow_link_local: args.dangerous_scan_link_local,
        allowed,
    };
    Ok(c)
}

/// The discovery role: its service (authenticated) as a gateway backend and its scheduler.
/// Claims create bindings through `fleet`.
pub fn discovery_backends(
    args: &ServerArgs,
    store: &Store,
    clock: SharedClock,
    fleet: Option<FleetChannel>,
) -> anyhow::Result<(BTreeMap<String, Backend>, Background)> {
    let discovery = Discovery::new(certmesh_discovery::Deps {
        store: store.clone(),
        clock: clock.clone(),
        config: discovery_config(args)?,
        fleet,
    });
    let background = Background::spawn(|rx| discovery.clone().run(rx));
    let auth = AuthLayer::new(TokenVerifier::new(store.clone(), clock));
    let service = certmesh_discovery::service(discovery);
    Ok((
        BTreeMap::from([(
            DISCOVERY_SERVICE.to_string(),
            Backend::local(auth.layer(service)),
        )]),
        background,
    ))
}

/// The fleet role as the discovery role calls it (claims): the backend in `backends` when the
/// role runs here, else a channel to `endpoint`, else none (claims are refused).
pub fn fleet_channel(
    backends: &BTreeMap<String, Backend>,
    endpoint: Option<&str>,
    dial: &Dialer<'_>,
) -> anyhow::Result<Option<FleetChannel>> {
    let name = FleetServiceServer::<certmesh_fleet::Fleet>::NAME;
    let backend = match (backends.get(name), endpoint) {
        (Some(local), _) => local.clone(),
        (None, Some(url)) => Backend::remote(dial.channel(url, "fleet")?),
        (None, None) => return Ok(None),
    };
    Ok(Some(tower::util::BoxCloneSyncService::new(backend)))
}

/// The notification role's settings from flags.
pub fn notification_config(args: &ServerArgs) -> anyhow::Result<certmesh_notification::Config> {
    let mut c = certmesh_notification::Config::new();
    c.every = std_duration("--notify-every", &args.notify_every)?;
    c.expiry_every = std_duration("--notify-expiry-every", &args.notify_expiry_every)?;
    c.timeout = std_duration("--notify-timeout", &args.notify_timeout)?;
    c.retry_base = certmesh_kit::duration::parse(&args.notify_retry_base)
        .map_err(|e| anyhow::anyhow!("--notify-retry-base: {e}"))?;
    if c.retry_base <= chrono::Duration::zero() || c.retry_base > c.retry_cap {
        bail!("--notify-retry-base must be between 1s and 1h");
    }
    if args.notify_max_attempts == 0 || args.notify_max_attempts > 100 {
        bail!("--notify-max-attempts must be between 1 and 100");
    }
    c.max_attempts = args.notify_max_attempts;
    if args.notify_thresholds.is_empty() || args.notify_thresholds.iter().any(|t| *t > 365) {
        bail!("--notify-thresholds must list days between 0 and 365");
    }
    c.thresholds = args.notify_thresholds.clone();
    Ok(c)
}

/// The notification role: its service (authenticated) as a gateway backend and its relay,
/// sender and expiry watcher. Channel secrets are sealed with `kek`.
pub fn notification_backends(
    args: &ServerArgs,
    store: &Store,
    clock: SharedClock,
    kek: Kek,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(BTreeMap<String, Backend>, Background)> {
    let notifier = Notifier::new(certmesh_notification::Deps {
        store: store.clone(),
        clock: clock.clone(),
        kek: Arc::new(kek),
        config: notification_config(args)?,
        metrics,
    });
    let background = Background::spawn(|rx| notifier.clone().run(rx));
    let auth = AuthLayer::new(TokenVerifier::new(store.clone(), clock));
    let service = certmesh_notification::service(notifier);
    Ok((
        BTreeMap::from([(
            NOTIFICATION_SERVICE.to_string(),
            Backend::local(auth.layer(service)),
        )]),
        background,
    ))
}
