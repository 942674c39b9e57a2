//! The issuance role: the one path every certificate takes, whatever authority signs it.
//!
//! `Issue` parses and checks the CSR, answers a replayed idempotency key from the store,
//! evaluates the profile's active version, signs through an [`issuer::Issuer`] (the tenant's
//! built-in CA, or the CA of the operator's tree the profile names), and stores the
//! certificate and its events in one transaction. Profiles are versioned; each version is
//! immutable and every certificate records the version it was issued under. A request whose
//! profile requires approval, or whose caller may only request, is held until a second
//! principal approves it ([`approval`]), and then takes the same path.

pub mod approval;
pub mod ari;
mod commit;
pub mod error;
mod grpc;
pub mod issue;
pub mod issuer;
pub mod model;
pub mod profile;
mod profile_admin;
mod query;
mod telemetry;
mod tree;

use std::sync::Arc;

use certmesh_kit::{SharedClock, metrics::Metrics};
use certmesh_proto::issuance::{
    approval_service_server::ApprovalServiceServer, issuance_service_server::IssuanceServiceServer,
    profile_service_server::ProfileServiceServer,
};
use certmesh_store::Store;

pub use crate::{error::IssuanceError, grpc::IDEMPOTENCY_METADATA, issuer::BuiltinCa};

/// What the issuance role needs.
#[derive(Debug)]
pub struct Deps {
    /// The store.
    pub store: Store,
    /// The clock every validity window is computed from.
    pub clock: SharedClock,
    /// The built-in CA.
    pub builtin: Arc<BuiltinCa>,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
}

/// The issuance role's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Issuance {
    deps: Arc<Deps>,
    committer: commit::Committer,
    profiles: Arc<profile::VersionCache>,
    tree: Arc<tree::TreeCa>,
}

impl Issuance {
    /// The role over `deps`. Starts the group-commit workers, so call it inside a Tokio
    /// runtime.
    pub fn new(deps: Deps) -> Self {
        let committer = commit::Committer::spawn(deps.store.clone(), deps.builtin.clone());
        // The tree CAs' keys live in the same backend as the built-in CA's.
        let tree = tree::TreeCa::new(
            deps.store.clone(),
            deps.builtin.keys(),
            deps.builtin.pointers().cloned(),
        );
        Self {
            deps: Arc::new(deps),
            committer,
            profiles: Arc::default(),
            tree: Arc::new(tree),
        }
    }
}

/// Largest gRPC message the role accepts: a CSR is a few KB, a page of certificates a few MB.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The role's gRPC services.
pub fn services(
    issuance: Issuance,
) -> (
    IssuanceServiceServer<Issuance>,
    ProfileServiceServer<Issuance>,
    ApprovalServiceServer<Issuance>,
) {
    (
        IssuanceServiceServer::new(issuance.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
        ProfileServiceServer::new(issuance.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
        ApprovalServiceServer::new(issuance).max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}
