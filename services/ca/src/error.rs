//! The CA role's one error enum, and its mapping to gRPC codes and stable reasons.

use certmesh_crypto::CryptoError;
use certmesh_kit::{Reason, reason::status};
use certmesh_store::StoreError;
use tonic::{Code, Status};

/// Everything that can go wrong in the CA hierarchy and its ceremonies.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A required field is empty or malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// No CA with that id in this tenant.
    #[error("CA {id} not found")]
    CaNotFound { id: String },
    /// The tenant already has a CA with that name.
    #[error("a CA named {name:?} already exists")]
    CaExists { name: String },
    /// The CA cannot act as a parent or issuer now.
    #[error("CA {id} is not usable: {why}")]
    CaNotActive { id: String, why: String },
    /// Confirming retirement of a CA that is not retiring.
    #[error("CA {id} is {status}: retire it without confirm first, so it drains")]
    CaNotRetiring { id: String, status: String },
    /// Retirement with children still active or retiring.
    #[error("CA {id} has {count} active or retiring children; retire them first")]
    CaHasActiveChildren { id: String, count: usize },
    /// RFC 5280 §3.2 check of an imported root failed.
    #[error("not a self-signed root: {0}")]
    CaNotSelfSigned(String),
    /// The key reference does not hold the certificate's key.
    #[error("the referenced key is not the certificate's key")]
    CaKeyMismatch,
    /// RFC 5280 §4.2.1.9.
    #[error("path length: {0}")]
    PathLenExceeded(String),
    /// RFC 5280 §4.2.1.10.
    #[error("name constraints: {0}")]
    NameConstraintExceeded(String),
    /// No ceremony with that id in this tenant.
    #[error("ceremony {id} not found")]
    CeremonyNotFound { id: String },
    /// The ceremony expired.
    #[error("ceremony {id} expired at {expired_at}")]
    CeremonyExpired { id: String, expired_at: String },
    /// The ceremony was completed already.
    #[error("ceremony {id} was already used")]
    CeremonyAlreadyUsed { id: String },
    /// The operation is not what the ceremony approved.
    #[error("ceremony {id} approved something else: {detail}")]
    CeremonyParamsMismatch { id: String, detail: String },
    /// No active key of the custodian verifies the signature.
    #[error("the signature does not verify with any active key of {principal}")]
    CeremonySignatureInvalid { principal: String },
    /// Fewer approvals than the threshold.
    #[error("ceremony {id} has {have} of {need} approvals")]
    QuorumNotMet { id: String, have: u32, need: u32 },
    /// The caller is not listed on the ceremony.
    #[error("{principal} is not a custodian of ceremony {id}")]
    NotACustodian { id: String, principal: String },
    /// A custodian named at start does not exist or lacks the custodian role.
    #[error("custodians: {0}")]
    CustodianInvalid(String),
    /// A stored row could not be read back.
    #[error("corrupt {0}")]
    Corrupt(String),
    /// A crypto operation failed unexpectedly.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl CaError {
    /// The gRPC code and stable reason. One arm per variant and no wildcard, so a new variant
    /// cannot go unmapped.
    pub fn code_and_reason(&self) -> (Code, Reason) {
        match self {
            Self::InvalidField { .. } | Self::CustodianInvalid(_) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::CaNotFound { .. } => (Code::NotFound, Reason::CaNotFound),
            Self::CaExists { .. } => (Code::AlreadyExists, Reason::CaExists),
            Self::CaNotActive { .. } => (Code::FailedPrecondition, Reason::CaNotActive),
            Self::CaNotRetiring { .. } => (Code::FailedPrecondition, Reason::CaNotRetiring),
            Self::CaHasActiveChildren { .. } => (Code::Aborted, Reason::CaHasActiveChildren),
            Self::CaNotSelfSigned(_) => (Code::InvalidArgument, Reason::CaNotSelfSigned),
            Self::CaKeyMismatch => (Code::InvalidArgument, Reason::CaKeyMismatch),
            Self::PathLenExceeded(_) => (Code::FailedPrecondition, Reason::PathLenExceeded),
            Self::NameConstraintExceeded(_) => {
                (Code::FailedPrecondition, Reason::NameConstraintExceeded)
            }
            Self::CeremonyNotFound { .. } => (Code::NotFound, Reason::CeremonyNotFound),
            Self::CeremonyExpired { .. } => (Code::FailedPrecondition, Reason::CeremonyExpired),
            Self::CeremonyAlreadyUsed { .. } => {
                (Code::FailedPrecondition, Reason::CeremonyAlreadyUsed)
            }
            Self::CeremonyParamsMismatch { .. } => {
                (Code::FailedPrecondition, Reason::CeremonyParamsMismatch)
            }
            Self::CeremonySignatureInvalid { .. } => {
                (Code::PermissionDenied, Reason::CeremonySignatureInvalid)
            }
            Self::QuorumNotMet { .. } => (Code::FailedPrecondition, Reason::QuorumNotMet),
            Self::NotACustodian { .. } => (Code::PermissionDenied, Reason::NotACustodian),
            Self::Store(StoreError::Invalid { .. }) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::Corrupt(_) | Self::Crypto(_) | Self::Store(_) => {
                (Code::Internal, Reason::Internal)
            }
        }
    }
}

impl From<CaError> for Status {
    fn from(e: CaError) -> Status {
        let (code, reason) = e.code_and_reason();
        if code == Code::Internal {
            // Log once, here, where it is handled; the client gets no internals.
            tracing::error!(error = %e, "CA operation failed.");
            return status(code, reason, "internal error");
        }
        status(code, reason, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use certmesh_kit::reason::reason_of;

    use super::*;

    #[test]
    fn refusals_carry_their_code_and_reason() {
        let table = [
            (
                CaError::QuorumNotMet {
                    id: "c".into(),
                    have: 2,
                    need: 3,
                },
                Code::FailedPrecondition,
                "QUORUM_NOT_MET",
            ),
            (
                CaError::CaHasActiveChildren {
                    id: "c".into(),
                    count: 1,
                },
                Code::Aborted,
                "CA_HAS_ACTIVE_CHILDREN",
            ),
            (
                CaError::NotACustodian {
                    id: "c".into(),
                    principal: "p".into(),
                },
                Code::PermissionDenied,
                "NOT_A_CUSTODIAN",
            ),
            (
                CaError::CeremonyAlreadyUsed { id: "c".into() },
                Code::FailedPrecondition,
                "CEREMONY_ALREADY_USED",
            ),
        ];
        for (e, code, reason) in table {
            let text = e.to_string();
            let s = Status::from(e);
            assert_eq!(s.code(), code, "{text}");
            assert_eq!(reason_of(&s).as_deref(), Some(reason), "{text}");
        }
        let quorum = Status::from(CaError::QuorumNotMet {
            id: "c".into(),
            have: 2,
            need: 3,
        });
        assert!(quorum.message().contains("2 of 3"), "{}", quorum.message());
    }
}
