//! The CA role: an operator's own PKI tree (roots, intermediates, rotation, cross-signing),
//! where every operation that extends trust is gated by an m-of-n key ceremony whose approvals
//! custodians sign with their own keys. Design: docs/rfcs/0003.
//!
//! [`ceremony`] opens ceremonies, verifies and counts signed approvals, and gates operations;
//! [`tree`] runs the operations themselves, each with its RFC 5280 checks, in one transaction
//! with the ceremony's completion, its events and its audit entry. The gRPC handlers
//! (`grpc`) only authorize and translate, so the dev bootstrap drives the same code.

pub mod ceremony;
pub mod error;
mod grpc;
mod model;
pub mod params;
pub mod tree;

use std::sync::Arc;

use certmesh_crypto::keys::KeyBackend;
use certmesh_kit::{SharedClock, auth::AuthContext};
use certmesh_proto::ca::ca_service_server::CaServiceServer;
use certmesh_store::{
    Store, TenantId,
    audit::{AuditEntry, Outcome},
};
use chrono::{DateTime, Utc};

pub use crate::error::CaError;

/// What the CA role needs.
#[derive(Debug)]
pub struct Deps {
    /// The store.
    pub store: Store,
    /// The clock validity windows and ceremony expiry come from.
    pub clock: SharedClock,
    /// Where CA keys are generated and opened (the same backend the issuance role signs with).
    pub keys: Arc<dyn KeyBackend>,
}

/// The CA role's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    deps: Arc<Deps>,
}

impl Hierarchy {
    /// The role over `deps`.
    pub fn new(deps: Deps) -> Self {
        Self {
            deps: Arc::new(deps),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.deps.clock.now()
    }
}

/// Who acts: the authenticated caller of an RPC, or the server itself at bootstrap.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The tenant acted in.
    pub tenant: TenantId,
    /// The principal's id.
    pub principal_id: uuid::Uuid,
    /// The principal's name, as audited.
    pub principal: String,
    /// Whether the principal holds the `custodian` role now.
    pub custodian: bool,
    /// The request id, joining audit entries with logs.
    pub request_id: String,
}

impl Actor {
    /// The caller of an RPC.
    pub fn of(auth: &AuthContext) -> Actor {
        Actor {
            tenant: auth.tenant_id,
            principal_id: auth.principal_id,
            principal: auth.principal.clone(),
            custodian: auth.roles.contains(&certmesh_kit::rbac::Role::Custodian),
            request_id: auth.request_id.clone(),
        }
    }

    fn audit(
        &self,
        action: &str,
        resource: String,
        outcome: Outcome,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.principal.clone(),
            action: action.to_owned(),
            resource,
            request_id: self.request_id.clone(),
            outcome,
            details,
            at,
        }
    }
}

/// Largest gRPC message the role accepts: an imported root or a parameter set is a few KB.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The role's gRPC service.
pub fn service(hierarchy: Hierarchy) -> CaServiceServer<Hierarchy> {
    CaServiceServer::new(hierarchy).max_decoding_message_size(MAX_MESSAGE_BYTES)
}
