//! The discovery role's one error enum, and its mapping to gRPC codes and stable reasons.

use certmesh_kit::{Reason, reason::status};
use certmesh_store::StoreError;
use tonic::{Code, Status};

use crate::scan::ScanError;

/// Everything that can go wrong managing targets, scanning and keeping the inventory.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A request field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// A target's hosts, ports or SNI names are malformed, or the guard refuses an address.
    #[error("{0}")]
    Target(#[from] ScanError),
    /// The tenant has a target of that name.
    #[error("a scan target named {0:?} exists")]
    TargetExists(String),
    /// No such target.
    #[error("scan target {0} not found")]
    TargetNotFound(String),
    /// No such scan.
    #[error("scan {0} not found")]
    ScanNotFound(String),
    /// No such find.
    #[error("discovered certificate {0} not found")]
    FoundNotFound(String),
    /// The find cannot be claimed as asked.
    #[error("claim: {0}")]
    ClaimInvalid(String),
    /// The fleet role refused or failed the binding a claim asked for; passed through as is.
    #[error("fleet: {}", .0.message())]
    Fleet(Status),
    /// A stored row is inconsistent.
    #[error("corrupt {0}")]
    Corrupt(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl DiscoveryError {
    /// The gRPC code and stable reason. One arm per variant and no wildcard, so a new variant
    /// cannot go unmapped.
    pub fn code_and_reason(&self) -> (Code, Reason) {
        match self {
            Self::InvalidField { .. } => (Code::InvalidArgument, Reason::RequestInvalid),
            Self::Target(e) if e.reason() == Reason::ScanTargetRefused.as_str() => {
                (Code::InvalidArgument, Reason::ScanTargetRefused)
            }
            Self::Target(_) => (Code::InvalidArgument, Reason::ScanTargetInvalid),
            Self::TargetExists(_) => (Code::AlreadyExists, Reason::ScanTargetExists),
            Self::TargetNotFound(_) => (Code::NotFound, Reason::ScanTargetNotFound),
            Self::ScanNotFound(_) => (Code::NotFound, Reason::ScanNotFound),
            Self::FoundNotFound(_) => (Code::NotFound, Reason::DiscoveredNotFound),
            Self::ClaimInvalid(_) => (Code::FailedPrecondition, Reason::ClaimInvalid),
            Self::Fleet(_) => (Code::Unavailable, Reason::BackendUnavailable),
            Self::Store(StoreError::Invalid { .. }) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::Corrupt(_) | Self::Store(_) => (Code::Internal, Reason::Internal),
        }
    }
}

impl From<DiscoveryError> for Status {
    fn from(e: DiscoveryError) -> Status {
        if let DiscoveryError::Fleet(status) = e {
            // The fleet role's own code and reason tell the caller what to fix.
            return status;
        }
        let (code, reason) = e.code_and_reason();
        if code == Code::Internal {
            tracing::error!(error = %e, "Discovery request failed.");
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
        for (e, code, reason) in [
            (
                DiscoveryError::TargetExists("lab".into()),
                Code::AlreadyExists,
                Reason::ScanTargetExists,
            ),
            (
                DiscoveryError::TargetNotFound("x".into()),
                Code::NotFound,
                Reason::ScanTargetNotFound,
            ),
            (
                DiscoveryError::ScanNotFound("x".into()),
                Code::NotFound,
                Reason::ScanNotFound,
            ),
            (
                DiscoveryError::FoundNotFound("x".into()),
                Code::NotFound,
                Reason::DiscoveredNotFound,
            ),
            (
                DiscoveryError::ClaimInvalid("no agent".into()),
                Code::FailedPrecondition,
                Reason::ClaimInvalid,
            ),
            (
                DiscoveryError::Corrupt("row".into()),
                Code::Internal,
                Reason::Internal,
            ),
        ] {
            assert_eq!(e.code_and_reason(), (code, reason), "{e}");
        }
        let internal = Status::from(DiscoveryError::Corrupt("secret detail".into()));
        assert!(!internal.message().contains("secret detail"));
        let passed = Status::from(DiscoveryError::Fleet(Status::already_exists("binding")));
        assert_eq!(passed.code(), Code::AlreadyExists);
    }
}
