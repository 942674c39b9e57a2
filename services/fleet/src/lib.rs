//! The fleet role: pull-based agents that enroll once, hold one mTLS stream, make their keys on
//! the host, install certificates and report what the live endpoint serves. Design:
//! docs/rfcs/0005-fleet.md.
//!
//! - [`identity`]: the agent-identity CA and the agents' SPIFFE-named client certificates.
//! - [`enroll`]: a one-time bootstrap token and a CSR in, an agent and its certificate out.
//! - [`registry`]: the streams open on this replica.
//! - [`session`]: one agent stream: hello, heartbeats, acks, CSRs, results, identity renewal.
//! - [`jobs`]: jobs offered down streams, CSRs issued through the issuance role (over its gRPC
//!   client, with an idempotency key per job attempt), results recorded, retries.
//! - [`schedule`]: the periodic work: jobs for new targets and for certificates due for
//!   renewal (one replica at a time, by lease), offering jobs to this replica's streams, and
//!   batched heartbeats.
//! - [`admin`]: the operators' API (bootstrap tokens, agents, bindings, jobs, deployments,
//!   renew-now).
//! - [`listener`]: the agent listener: TLS with optional client certificates (Enroll needs
//!   none, Session needs one from the identity CA).

pub mod admin;
pub mod enroll;
pub mod error;
mod grpc;
pub mod identity;
pub mod jobs;
pub mod listener;
pub mod model;
pub mod registry;
pub mod schedule;
pub mod session;

use std::convert::Infallible;
use std::sync::Arc;

use certmesh_kit::{SharedClock, metrics::Metrics};
use certmesh_proto::fleet::{
    agent_service_server::AgentServiceServer, fleet_service_server::FleetServiceServer,
};
use certmesh_store::Store;
use chrono::{DateTime, Duration, Utc};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

pub use crate::error::FleetError;

/// A gRPC channel to the issuance role: in this process or remote.
pub type IssuanceChannel =
    BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// Settings of the fleet role.
#[derive(Clone, Debug)]
pub struct Config {
    /// The trust domain of agents' SPIFFE ids.
    pub trust_domain: String,
    /// Lifetime of an agent's client certificate; the agent renews it after two thirds.
    pub identity_validity: Duration,
    /// How often agents send heartbeats.
    pub heartbeat: Duration,
    /// Attempts per job before it is dead.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled per attempt, at most `retry_cap`.
    pub retry_base: Duration,
    /// Longest wait between attempts.
    pub retry_cap: Duration,
    /// How long a target whose job died waits before the scheduler tries again.
    pub dead_backoff: Duration,
    /// Most jobs the scheduler makes per tenant per pass (bounded renewal concurrency).
    pub schedule_batch: u64,
    /// This replica's name in leases.
    pub replica: String,
}

impl Config {
    /// Defaults: trust domain `certmesh.local`, 24 h identities, 15 s heartbeats, 3 attempts
    /// from 10 s apart up to 10 min, dead targets retried after an hour, 5000 jobs per pass.
    pub fn new() -> Config {
        Config {
            trust_domain: "certmesh.local".to_owned(),
            identity_validity: Duration::hours(24),
            heartbeat: Duration::seconds(15),
            max_attempts: 3,
            retry_base: Duration::seconds(10),
            retry_cap: Duration::minutes(10),
            dead_backoff: Duration::hours(1),
            schedule_batch: 5000,
            replica: format!("replica-{}", uuid::Uuid::new_v4()),
        }
    }

    /// When attempt `attempt` (1-based) failed, the next is offered after this.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 1i32 << attempt.saturating_sub(1).min(16);
        std::cmp::min(self.retry_base * factor, self.retry_cap)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// What the fleet role needs.
pub struct Deps {
    /// The store.
    pub store: Store,
    /// The clock.
    pub clock: SharedClock,
    /// The agent-identity CA, loaded ([`identity::IdentityCa::ensure`]).
    pub identity: Arc<identity::IdentityCa>,
    /// The issuance role's gRPC services.
    pub issuance: IssuanceChannel,
    /// Settings.
    pub config: Config,
    /// The process's metrics (open streams, jobs by state, the agent listener's requests).
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("identity", &self.identity)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The role's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Fleet {
    deps: Arc<Deps>,
    registry: Arc<registry::Registry>,
    /// Wakes the offer loop when jobs were made on this replica.
    wake: Arc<tokio::sync::Notify>,
    tokens: Arc<jobs::AgentTokens>,
}

impl Fleet {
    /// The role over `deps`.
    pub fn new(deps: Deps) -> Fleet {
        Fleet {
            deps: Arc::new(deps),
            registry: Arc::default(),
            wake: Arc::default(),
            tokens: Arc::default(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.deps.clock.now()
    }

    fn store(&self) -> &Store {
        &self.deps.store
    }

    fn config(&self) -> &Config {
        &self.deps.config
    }

    /// The streams open on this replica.
    pub fn registry(&self) -> &registry::Registry {
        &self.registry
    }
}

/// Largest gRPC message the role accepts.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The agents' gRPC service (served on the agent listener).
pub fn agent_service(fleet: Fleet) -> AgentServiceServer<Fleet> {
    AgentServiceServer::new(fleet).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

/// The operators' gRPC service (served behind the gateway).
pub fn fleet_service(fleet: Fleet) -> FleetServiceServer<Fleet> {
    FleetServiceServer::new(fleet).max_decoding_message_size(MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let c = Config::new();
        assert_eq!(c.retry_delay(1), Duration::seconds(10));
        assert_eq!(c.retry_delay(2), Duration::seconds(20));
        assert_eq!(c.retry_delay(4), Duration::seconds(80));
        assert_eq!(c.retry_delay(30), Duration::minutes(10));
    }
}
