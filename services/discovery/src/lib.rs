//! certmesh discovery: finds the certificates already out there.
//!
//! Network scans dial TLS endpoints (hosts, CIDRs, ports, SNI names) behind an SSRF guard and
//! record the chain each one serves; agents report the certificates they find on disk; the
//! inventory de-duplicates both by fingerprint and location and says which ones certmesh
//! manages. Design: docs/rfcs/0006-discovery-and-notification.md.
//!
//! - [`scan`]: target expansion, the SSRF guard and the TLS scanner (no store).
//! - [`targets`]: scan targets (create, list, delete).
//! - [`run`]: one scan of one target, recorded in the inventory.
//! - [`inventory`]: sightings in (network and agent filesystem), listing, dismiss and claim.
//! - [`schedule`]: scheduled scans, one replica at a time by lease.

pub mod error;
mod grpc;
pub mod inventory;
pub mod model;
pub mod run;
pub mod scan;
pub mod schedule;
pub mod targets;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use certmesh_kit::SharedClock;
use certmesh_proto::discovery::discovery_service_server::DiscoveryServiceServer;
use certmesh_store::Store;
use chrono::{DateTime, Utc};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

pub use crate::error::DiscoveryError;
use crate::scan::{Guard, Scanner};

/// A gRPC channel to the fleet role (claims create bindings there): in this process or remote.
pub type FleetChannel = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// Settings of the discovery role.
#[derive(Clone, Debug)]
pub struct Config {
    /// The largest CIDR a target may name, in addresses.
    pub max_cidr_addresses: u64,
    /// Which addresses scans may dial.
    pub guard: Guard,
    /// Handshakes in flight per scan.
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// How often the scheduler looks for due targets.
    pub tick: Duration,
    /// A scan still running after this long is marked failed (its replica died).
    pub stale_after: chrono::Duration,
    /// This replica's name in leases.
    pub replica: String,
}

impl Config {
    /// Defaults: CIDRs up to 4096 addresses, loopback and link-local refused, 64 handshakes in
    /// flight, 3 s to connect and 5 s to handshake, a scheduler tick of 30 s.
    pub fn new() -> Config {
        Config {
            max_cidr_addresses: 4096,
            guard: Guard::default(),
            concurrency: 64,
            connect_timeout: Duration::from_secs(3),
            handshake_timeout: Duration::from_secs(5),
            tick: Duration::from_secs(30),
            stale_after: chrono::Duration::hours(1),
            replica: format!("discovery-{}", uuid::Uuid::new_v4()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// What the discovery role needs.
pub struct Deps {
    pub store: Store,
    pub clock: SharedClock,
    pub config: Config,
    /// The fleet role, for claims; `None` turns claims off.
    pub fleet: Option<FleetChannel>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("config", &self.config)
            .field("fleet", &self.fleet.is_some())
            .finish_non_exhaustive()
    }
}

/// The discovery role; cheap to clone.
#[derive(Clone, Debug)]
pub struct Discovery {
    inner: Arc<Deps>,
    scanner: Arc<Scanner>,
}

impl Discovery {
    pub fn new(deps: Deps) -> Discovery {
        let c = &deps.config;
        let scanner = Scanner::new(c.concurrency, c.connect_timeout, c.handshake_timeout);
        Discovery {
            inner: Arc::new(deps),
            scanner: Arc::new(scanner),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn fleet(&self) -> Option<FleetChannel> {
        self.inner.fleet.clone()
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}

/// The gRPC service.
pub fn service(d: Discovery) -> DiscoveryServiceServer<Discovery> {
    DiscoveryServiceServer::new(d)
}
