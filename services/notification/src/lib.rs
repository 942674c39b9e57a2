//! certmesh notification: tells people and systems what changed and what is about to expire.
//!
//! The relay reads the transactional outbox and fans each event out to the channels whose rules
//! match it, once per event and channel; the expiry watcher turns certificates near their
//! notAfter into events; deliveries are retried with capped exponential backoff, then
//! dead-lettered until an operator requeues them. Design:
//! docs/rfcs/0006-discovery-and-notification.md.
//!
//! - [`channel`]: the channel kinds and how each one sends (no store).
//! - [`admin`]: channels (secrets sealed at rest), rules, the delivery log and requeue.
//! - [`relay`]: outbox → deliveries, one replica at a time by lease.
//! - [`send`]: due deliveries → channels, with retries and dead letters.
//! - [`expiry`]: `certificate.expiring` events at each threshold, once per certificate.

pub mod admin;
pub mod channel;
pub mod error;
pub mod expiry;
mod grpc;
pub mod model;
pub mod relay;
pub mod send;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use certmesh_crypto::keys::Kek;
use certmesh_kit::{SharedClock, metrics::Metrics};
use certmesh_proto::notification::notification_service_server::NotificationServiceServer;
use certmesh_store::Store;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::Notify;

use crate::channel::Sender;
pub use crate::error::NotifyError;

/// Settings of the notification role.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often the relay and the sender run (and at once when woken).
    pub every: StdDuration,
    /// How often the expiry watcher runs.
    pub expiry_every: StdDuration,
    /// Events relayed, and deliveries claimed, per tenant per pass.
    pub batch: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long a claimed delivery is ours before another pass may take it again.
    pub claim_hold: Duration,
    /// Wait after the first failed attempt; doubled per attempt, at most `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Attempts before a delivery is dead.
    pub max_attempts: u32,
    /// Expiry alert thresholds in days, raised once each per certificate.
    pub thresholds: Vec<u32>,
    /// Time allowed for one delivery (connect, TLS, request, answer).
    pub timeout: StdDuration,
    /// This replica's name in leases.
    pub replica: String,
}

impl Config {
    /// Defaults: a pass every 2 s, expiry checks every minute, 500 per pass, 16 in flight,
    /// retries from 30 s doubling to 1 h, 5 attempts, alerts at 30, 14, 7, 1 and 0 days, 10 s
    /// per delivery.
    pub fn new() -> Config {
        Config {
            every: StdDuration::from_secs(2),
            expiry_every: StdDuration::from_secs(60),
            batch: 500,
            concurrency: 16,
            claim_hold: Duration::minutes(2),
            retry_base: Duration::seconds(30),
            retry_cap: Duration::hours(1),
            max_attempts: 5,
            thresholds: vec![30, 14, 7, 1, 0],
            timeout: StdDuration::from_secs(10),
            replica: format!("notification-{}", uuid::Uuid::new_v4()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// What the notification role needs.
pub struct Deps {
    pub store: Store,
    pub clock: SharedClock,
    /// Seals channel secrets at rest.
    pub kek: Arc<Kek>,
    pub config: Config,
    /// The process's metrics (outbox lag, deliveries).
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The notification role; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    inner: Arc<Deps>,
    sender: Sender,
    wake: Arc<Notify>,
    /// Until when this replica holds the relay lease, as far as it knows.
    lease_until: Arc<std::sync::Mutex<Option<DateTime<Utc>>>>,
}

impl Notifier {
    pub fn new(deps: Deps) -> Notifier {
        let sender = Sender::new(deps.config.timeout);
        Notifier {
            inner: Arc::new(deps),
            sender,
            wake: Arc::new(Notify::new()),
            lease_until: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn kek(&self) -> &Kek {
        &self.inner.kek
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}

/// The gRPC service.
pub fn service(n: Notifier) -> NotificationServiceServer<Notifier> {
    NotificationServiceServer::new(n)
}
