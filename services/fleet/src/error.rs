//! The fleet role's one error enum, and its mapping to gRPC codes and stable reasons.

use certmesh_crypto::CryptoError;
use certmesh_kit::{Reason, reason::status};
use certmesh_store::StoreError;
use tonic::{Code, Status};

/// Everything that can go wrong enrolling, streaming or managing agents.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// The CSR does not parse or its signature does not verify.
    #[error("csr: {0}")]
    Csr(CryptoError),
    /// The bootstrap token is unknown, expired or used.
    #[error("the bootstrap token is unknown, expired or already used")]
    BootstrapTokenInvalid,
    /// The stream's client certificate is missing or not a current agent's.
    #[error("agent identity refused: {0}")]
    IdentityInvalid(String),
    /// The agent is retired.
    #[error("agent {0} is retired")]
    Retired(uuid::Uuid),
    /// No such agent in this tenant.
    #[error("agent {0} not found")]
    AgentNotFound(String),
    /// A binding breaks a rule.
    #[error("binding: {0}")]
    BindingInvalid(String),
    /// The tenant has a binding of that name.
    #[error("a binding named {0:?} exists")]
    BindingExists(String),
    /// No such live binding.
    #[error("binding {0} not found")]
    BindingNotFound(String),
    /// No deployment of that certificate in this tenant.
    #[error("certificate {0} is not deployed by any agent of this tenant")]
    NotDeployed(String),
    /// No such job.
    #[error("job {0} not found")]
    JobNotFound(String),
    /// A stored row is inconsistent.
    #[error("corrupt {0}")]
    Corrupt(String),
    /// A crypto operation failed unexpectedly.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl FleetError {
    /// The gRPC code and stable reason. One arm per variant and no wildcard, so a new variant
    /// cannot go unmapped.
    pub fn code_and_reason(&self) -> (Code, Reason) {
        match self {
            Self::InvalidField { .. } => (Code::InvalidArgument, Reason::RequestInvalid),
            Self::Csr(_) => (Code::InvalidArgument, Reason::CsrMalformed),
            Self::BootstrapTokenInvalid => (Code::Unauthenticated, Reason::BootstrapTokenInvalid),
            Self::IdentityInvalid(_) => (Code::Unauthenticated, Reason::AgentIdentityInvalid),
            Self::Retired(_) => (Code::Unauthenticated, Reason::AgentRetired),
            Self::AgentNotFound(_) => (Code::NotFound, Reason::AgentNotFound),
            Self::BindingInvalid(_) => (Code::InvalidArgument, Reason::BindingInvalid),
            Self::BindingExists(_) => (Code::AlreadyExists, Reason::BindingExists),
            Self::BindingNotFound(_) => (Code::NotFound, Reason::BindingNotFound),
            Self::JobNotFound(_) => (Code::NotFound, Reason::JobNotFound),
            Self::NotDeployed(_) => (Code::NotFound, Reason::CertificateNotFound),
            Self::Store(StoreError::Invalid { .. }) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::Corrupt(_) | Self::Crypto(_) | Self::Store(_) => {
                (Code::Internal, Reason::Internal)
            }
        }
    }
}

impl From<FleetError> for Status {
    fn from(e: FleetError) -> Status {
        let (code, reason) = e.code_and_reason();
        if code == Code::Internal {
            tracing::error!(error = %e, "Fleet request failed.");
            status(code, reason, "internal error")
        } else {
            status(code, reason, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_maps_to_its_code_and_reason() {
        let id = uuid::Uuid::nil();
        for (e, code, reason) in [
            (
                FleetError::BootstrapTokenInvalid,
                Code::Unauthenticated,
                Reason::BootstrapTokenInvalid,
            ),
            (
                FleetError::IdentityInvalid("x".into()),
                Code::Unauthenticated,
                Reason::AgentIdentityInvalid,
            ),
            (
                FleetError::Retired(id),
                Code::Unauthenticated,
                Reason::AgentRetired,
            ),
            (
                FleetError::BindingExists("web".into()),
                Code::AlreadyExists,
                Reason::BindingExists,
            ),
            (
                FleetError::Corrupt("row".into()),
                Code::Internal,
                Reason::Internal,
            ),
        ] {
            assert_eq!(e.code_and_reason(), (code, reason), "{e}");
        }
        let internal = Status::from(FleetError::Corrupt("secret detail".into()));
        assert!(!internal.message().contains("secret detail"));
    }
}
