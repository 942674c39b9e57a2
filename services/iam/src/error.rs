//! The IAM role's one error enum and its mapping to gRPC codes and stable reasons.

use certmesh_kit::{Reason, reason::status};
use certmesh_store::StoreError;
use tonic::{Code, Status};

/// Everything that can go wrong managing principals, tokens and reading the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// A field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// No principal with that name in this tenant.
    #[error("principal {name:?} not found")]
    PrincipalNotFound { name: String },
    /// The tenant already has a principal with that name.
    #[error("principal {name:?} already exists")]
    PrincipalExists { name: String },
    /// The public key is not PEM, or not an Ed25519 or ECDSA P-256 SubjectPublicKeyInfo.
    #[error("public_key_pem: {detail}")]
    PublicKeyInvalid { detail: String },
    /// The tenant already has this public key (on this or another principal, revoked or not).
    #[error("a public key with fingerprint {fingerprint} is already registered")]
    PrincipalKeyExists { fingerprint: String },
    /// A stored public key no longer parses; the row was written by something other than
    /// `AddPrincipalKey`, which only stores keys that do.
    #[error("stored public key {id} does not parse: {detail}")]
    StoredKeyUnreadable { id: uuid::Uuid, detail: String },
    /// No token with that id in this tenant.
    #[error("token {id} not found")]
    TokenNotFound { id: String },
    /// A page token we did not issue.
    #[error("page_token is not valid")]
    PageTokenInvalid,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl IamError {
    /// The gRPC code and stable reason; one arm per variant, no wildcard.
    pub fn code_and_reason(&self) -> (Code, Reason) {
        match self {
            Self::InvalidField { .. } => (Code::InvalidArgument, Reason::RequestInvalid),
            Self::PrincipalNotFound { .. } => (Code::NotFound, Reason::PrincipalNotFound),
            Self::PrincipalExists { .. } => (Code::AlreadyExists, Reason::PrincipalExists),
            Self::PublicKeyInvalid { .. } => (Code::InvalidArgument, Reason::PublicKeyInvalid),
            Self::PrincipalKeyExists { .. } => (Code::AlreadyExists, Reason::PrincipalKeyExists),
            Self::StoredKeyUnreadable { .. } => (Code::Internal, Reason::Internal),
            Self::TokenNotFound { .. } => (Code::NotFound, Reason::TokenNotFound),
            Self::PageTokenInvalid => (Code::InvalidArgument, Reason::PageTokenInvalid),
            Self::Store(StoreError::Invalid { .. }) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::Store(_) => (Code::Internal, Reason::Internal),
        }
    }
}

impl From<IamError> for Status {
    fn from(e: IamError) -> Status {
        let (code, reason) = e.code_and_reason();
        if code == Code::Internal {
            tracing::error!(error = %e, "IAM request failed.");
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
    fn each_variant_maps_to_its_code_and_reason() {
        let table: Vec<(IamError, Code, &str)> = vec![
            (
                IamError::InvalidField {
                    field: "name",
                    problem: "x".into(),
                },
                Code::InvalidArgument,
                "REQUEST_INVALID",
            ),
            (
                IamError::PrincipalNotFound { name: "x".into() },
                Code::NotFound,
                "PRINCIPAL_NOT_FOUND",
            ),
            (
                IamError::PrincipalExists { name: "x".into() },
                Code::AlreadyExists,
                "PRINCIPAL_EXISTS",
            ),
            (
                IamError::PublicKeyInvalid { detail: "x".into() },
                Code::InvalidArgument,
                "PUBLIC_KEY_INVALID",
            ),
            (
                IamError::PrincipalKeyExists {
                    fingerprint: "ab".into(),
                },
                Code::AlreadyExists,
                "PRINCIPAL_KEY_EXISTS",
            ),
            (
                IamError::StoredKeyUnreadable {
                    id: uuid::Uuid::nil(),
                    detail: "x".into(),
                },
                Code::Internal,
                "INTERNAL",
            ),
            (
                IamError::TokenNotFound { id: "x".into() },
                Code::NotFound,
                "TOKEN_NOT_FOUND",
            ),
            (
                IamError::PageTokenInvalid,
                Code::InvalidArgument,
                "PAGE_TOKEN_INVALID",
            ),
            (
                IamError::Store(StoreError::Invalid { detail: "x".into() }),
                Code::InvalidArgument,
                "REQUEST_INVALID",
            ),
            (
                IamError::Store(StoreError::NotFound { what: "x" }),
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (err, code, reason) in table {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(reason_of(&status).as_deref(), Some(reason));
        }
    }
}
