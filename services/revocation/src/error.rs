//! The revocation role's one error enum, and its mapping to gRPC codes and stable reasons.

use certmesh_crypto::CryptoError;
use certmesh_kit::{Reason, reason::status};
use certmesh_store::StoreError;
use tonic::{Code, Status};

/// Everything that can go wrong revoking or reading a revocation.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// A field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// The serial is not 1 to 20 bytes of hex.
    #[error("serial {0:?} is not 1 to 20 bytes of hex")]
    SerialInvalid(String),
    /// The reason is not an RFC 5280 CRLReason.
    #[error("revocation reason {given:?} is not one of: {valid}")]
    ReasonInvalid { given: String, valid: String },
    /// No certificate with that serial in this tenant.
    #[error("certificate {serial} not found")]
    CertificateNotFound { serial: String },
    /// The certificate's issuer is not a CA of this tenant's tree.
    #[error(
        "certificate {serial} was issued by CA {issuer}, which certmesh does not run; revoke it at that CA"
    )]
    ExternalCa { serial: String, issuer: String },
    /// removeFromCRL for a certificate that is not on hold.
    #[error(
        "certificate {serial} is not on hold ({state}); removeFromCRL only lifts a certificateHold"
    )]
    NotOnHold { serial: String, state: String },
    /// A bulk revocation without a CA or profile filter.
    #[error(
        "name issuer_ca_id or profile: a bulk revocation without either would match every certificate"
    )]
    BulkFilterEmpty,
    /// No CA with that id in this tenant (bulk filter).
    #[error("CA {id} not found")]
    CaNotFound { id: String },
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

impl RevocationError {
    /// The gRPC code and stable reason. One arm per variant and no wildcard, so a new variant
    /// cannot go unmapped.
    pub fn code_and_reason(&self) -> (Code, Reason) {
        match self {
            Self::InvalidField { .. } => (Code::InvalidArgument, Reason::RequestInvalid),
            Self::SerialInvalid(_) => (Code::InvalidArgument, Reason::SerialInvalid),
            Self::ReasonInvalid { .. } => (Code::InvalidArgument, Reason::RevocationReasonInvalid),
            Self::CertificateNotFound { .. } => (Code::NotFound, Reason::CertificateNotFound),
            Self::ExternalCa { .. } => (Code::FailedPrecondition, Reason::ExternalCa),
            Self::NotOnHold { .. } => (Code::FailedPrecondition, Reason::CertificateNotOnHold),
            Self::BulkFilterEmpty => (Code::InvalidArgument, Reason::BulkFilterEmpty),
            Self::CaNotFound { .. } => (Code::NotFound, Reason::CaNotFound),
            Self::Store(StoreError::Invalid { .. }) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::Corrupt(_) | Self::Crypto(_) | Self::Store(_) => {
                (Code::Internal, Reason::Internal)
            }
        }
    }
}

impl From<RevocationError> for Status {
    fn from(e: RevocationError) -> Status {
        let (code, reason) = e.code_and_reason();
        if code == Code::Internal {
            // Log once, here, where it is handled; the client gets no internals.
            tracing::error!(error = %e, "Revocation failed.");
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
        let cases = [
            (
                RevocationError::ReasonInvalid {
                    given: "bad".into(),
                    valid: "keyCompromise".into(),
                },
                Code::InvalidArgument,
                "REVOCATION_REASON_INVALID",
            ),
            (
                RevocationError::ExternalCa {
                    serial: "01".into(),
                    issuer: "x".into(),
                },
                Code::FailedPrecondition,
                "EXTERNAL_CA",
            ),
            (
                RevocationError::NotOnHold {
                    serial: "01".into(),
                    state: "good".into(),
                },
                Code::FailedPrecondition,
                "CERTIFICATE_NOT_ON_HOLD",
            ),
            (
                RevocationError::BulkFilterEmpty,
                Code::InvalidArgument,
                "BULK_FILTER_EMPTY",
            ),
            (
                RevocationError::CertificateNotFound {
                    serial: "01".into(),
                },
                Code::NotFound,
                "CERTIFICATE_NOT_FOUND",
            ),
        ];
        for (e, code, reason) in cases {
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            assert_eq!(reason_of(&s).as_deref(), Some(reason));
        }
        let internal = Status::from(RevocationError::Corrupt("row".into()));
        assert_eq!(internal.message(), "internal error");
    }
}
