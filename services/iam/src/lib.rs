//! The IAM role: principals, their roles and the public keys custodians sign ceremony approvals
//! with, API tokens (minted once, stored hashed, expiring, revocable, rotatable), and read
//! access to the tamper-evident audit trail.
//!
//! Every handler takes the tenant from the caller's auth context and checks the permission
//! matrix (`certmesh_kit::rbac`) itself; every change and every refusal is audited.

pub mod error;
mod grpc;
mod model;

use std::sync::Arc;

use certmesh_kit::SharedClock;
use certmesh_proto::iam::{
    audit_service_server::AuditServiceServer, principal_service_server::PrincipalServiceServer,
    token_service_server::TokenServiceServer,
};
use certmesh_store::Store;

pub use crate::error::IamError;

/// What the IAM role needs.
#[derive(Debug)]
pub struct Deps {
    /// The store.
    pub store: Store,
    /// The clock token expiry and audit times come from.
    pub clock: SharedClock,
}

/// The IAM role's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Iam {
    deps: Arc<Deps>,
}

impl Iam {
    /// The role over `deps`.
    pub fn new(deps: Deps) -> Self {
        Self {
            deps: Arc::new(deps),
        }
    }
}

/// The role's gRPC services.
pub fn services(
    iam: Iam,
) -> (
    PrincipalServiceServer<Iam>,
    TokenServiceServer<Iam>,
    AuditServiceServer<Iam>,
) {
    (
        PrincipalServiceServer::new(iam.clone()),
        TokenServiceServer::new(iam.clone()),
        AuditServiceServer::new(iam),
    )
}
