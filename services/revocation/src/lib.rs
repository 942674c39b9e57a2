//! The revocation role: a compromised certificate stops being trusted, and relying parties can
//! tell. Design: docs/rfcs/0004.
//!
//! - [`revoke`]: revoke with an RFC 5280 reason (idempotent; a `certificateHold` can be made
//!   permanent or lifted with `removeFromCRL`), in bulk by filter, and status reads. Each change
//!   writes its record, its `ca.certificate.*` event and its audit entry in one transaction,
//!   then replaces this replica's cached OCSP answers at once and wakes the CRL publisher.
//! - [`crl`]: one CRL per CA key (generation) and shard, numbered from one counter per CA,
//!   regenerated hourly and soon after a revocation, by one replica at a time (a lease).
//! - [`directory`]: every CA key of every tenant, found by its OCSP CertID hashes or its public
//!   key id, each with a delegated OCSP responder certificate made in memory and renewed
//!   before it expires.
//! - [`ocsp`]: answers OCSP requests from pre-signed, cached responses; a miss reads the
//!   store once, signs, and caches.
//! - [`pki`]: the plain-HTTP PKI listener (CRLs and OCSP), on its own runtime and worker
//!   threads with its own database pool, so a flood of API traffic cannot starve it.

pub mod crl;
pub mod directory;
pub mod error;
mod grpc;
pub mod ocsp;
pub mod pki;
pub mod revoke;

use std::sync::Arc;

use certmesh_crypto::keys::KeyBackend;
use certmesh_kit::{SharedClock, pki::PkiUrls};
use certmesh_proto::revocation::revocation_service_server::RevocationServiceServer;
use certmesh_store::Store;
use chrono::{DateTime, Duration, Utc};

pub use crate::error::RevocationError;

/// Settings of the revocation role.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where relying parties reach the PKI listener (written into CRLs' issuing distribution
    /// points; the issuance role writes the same URLs into leaves).
    pub urls: PkiUrls,
    /// CRL shards per CA key for new certificates (at least 1).
    pub crl_shards: u32,
    /// nextUpdate − thisUpdate of a CRL.
    pub crl_validity: Duration,
    /// A CRL is regenerated at least this often.
    pub crl_refresh: Duration,
    /// nextUpdate − thisUpdate of an OCSP response; it is re-signed at half of that.
    pub ocsp_validity: Duration,
    /// Lifetime of a delegated OCSP responder certificate; a new one is made at half of it.
    pub responder_validity: Duration,
    /// Most OCSP answers kept in memory.
    pub ocsp_cache_entries: usize,
    /// This replica's name in leases.
    pub replica: String,
}

impl Config {
    /// Defaults: one shard, CRLs valid 24 h and regenerated hourly, OCSP answers valid 4 h,
    /// responder certificates valid 3 days, up to a million cached answers.
    pub fn new(urls: PkiUrls) -> Config {
        Config {
            urls,
            crl_shards: 1,
            crl_validity: Duration::hours(24),
            crl_refresh: Duration::hours(1),
            ocsp_validity: Duration::hours(4),
            responder_validity: Duration::days(3),
            ocsp_cache_entries: 1_000_000,
            replica: format!("replica-{}", uuid::Uuid::new_v4()),
        }
    }
}

/// What the revocation role needs.
#[derive(Debug)]
pub struct Deps {
    /// The store the API side reads and writes.
    pub store: Store,
    /// The clock.
    pub clock: SharedClock,
    /// Where CA keys are opened (CRLs and responder certificates are signed with them).
    pub keys: Arc<dyn KeyBackend>,
    /// Settings.
    pub config: Config,
}

/// The role's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Revocations {
    deps: Arc<Deps>,
    /// This process's OCSP answers, replaced at once on a revocation.
    ocsp: Arc<ocsp::Responders>,
    /// Wakes the CRL publisher after a revocation.
    publisher: Arc<crl::Publisher>,
}

impl Revocations {
    /// The role over `deps`. `ocsp` is the responder the PKI listener serves from (see
    /// [`ocsp::Responders::new`]); `publisher` the CRL publisher ([`crl::Publisher::new`]).
    pub fn new(deps: Deps, ocsp: Arc<ocsp::Responders>, publisher: Arc<crl::Publisher>) -> Self {
        Self {
            deps: Arc::new(deps),
            ocsp,
            publisher,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.deps.clock.now()
    }
}

/// Largest gRPC message the role accepts.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The role's gRPC service.
pub fn service(revocations: Revocations) -> RevocationServiceServer<Revocations> {
    RevocationServiceServer::new(revocations).max_decoding_message_size(MAX_MESSAGE_BYTES)
}
