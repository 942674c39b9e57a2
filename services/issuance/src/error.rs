//! The issuance role's one error enum, and its mapping to gRPC codes and stable reasons.

use std::collections::HashMap;

use certmesh_crypto::CryptoError;
use certmesh_kit::{Reason, reason::DOMAIN};
use certmesh_store::{CaId, StoreError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Everything that can go wrong on the issuance path.
#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    /// A required field is empty or malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// The CSR could not be parsed.
    #[error("csr: {0}")]
    CsrMalformed(String),
    /// The CSR's self-signature does not verify.
    #[error("csr: signature does not verify")]
    CsrSignatureInvalid,
    /// The CSR uses a key or extension we do not sign.
    #[error("csr: {0}")]
    CsrUnsupported(String),
    /// A duration field does not parse.
    #[error("{field}: {problem}")]
    ValidityInvalid {
        field: &'static str,
        problem: String,
    },
    /// The profile refused the request under `rule`.
    #[error("profile {profile} v{version} denies the request: rule {rule}: {detail}")]
    ProfileDenied {
        profile: String,
        version: u32,
        rule: &'static str,
        detail: String,
    },
    /// No such profile or profile version.
    #[error("profile {name:?}{} not found", version.map(|v| format!(" version {v}")).unwrap_or_default())]
    ProfileNotFound { name: String, version: Option<u32> },
    /// A profile spec breaks one of its own rules.
    #[error("profile spec: {field}: {problem}")]
    ProfileInvalid {
        field: &'static str,
        problem: String,
    },
    /// The idempotency key was used before with a different request.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyKeyReused { key: String },
    /// A request with this idempotency key is still in flight.
    #[error("a request with idempotency key {key:?} is in progress; retry")]
    IdempotencyKeyInFlight { key: String },
    /// No certificate with that serial in this tenant.
    #[error("certificate {serial} not found")]
    CertificateNotFound { serial: String },
    /// A serial that is not 1-20 bytes of hex.
    #[error("serial {serial:?} is not 1 to 20 bytes of hex")]
    SerialInvalid { serial: String },
    /// A page token we did not issue.
    #[error("page_token is not valid")]
    PageTokenInvalid,
    /// No approval with that id in this tenant.
    #[error("approval {id} not found")]
    ApprovalNotFound { id: String },
    /// The approval was decided already, or expired.
    #[error("approval {id} is {status}, not pending")]
    ApprovalNotPending { id: String, status: &'static str },
    /// The approver made the request.
    #[error("approval {id} was requested by {principal}; a second person must approve it")]
    SelfApprovalForbidden { id: String, principal: String },
    /// No issuing CA exists, or its key cannot be opened.
    #[error("no usable issuing CA: {0}")]
    CaNotReady(String),
    /// A profile names a CA the tenant does not have.
    #[error("CA {id} not found")]
    CaNotFound { id: CaId },
    /// The profile's CA cannot sign now: `why` says it is retiring or retired, or that its key
    /// is offline.
    #[error("CA {id} issues nothing: {why}")]
    CaNotActive { id: CaId, why: String },
    /// A DNS name of the request lies outside the name constraints of the issuing CA or of a
    /// CA above it (RFC 5280 §4.2.1.10).
    #[error("DNS name {name:?} is outside the name constraints of CA {ca_id} or of a CA above it")]
    NameConstraintExceeded { ca_id: CaId, name: String },
    /// Signing or another crypto operation failed unexpectedly.
    #[error("crypto: {0}")]
    Crypto(CryptoError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl IssuanceError {
    /// The gRPC code and stable reason. One arm per variant and no wildcard, so a new variant
    /// cannot go unmapped.
    pub fn code_and_reason(&self) -> (Code, Reason) {
        match self {
            Self::InvalidField { .. } => (Code::InvalidArgument, Reason::RequestInvalid),
            Self::CsrMalformed(_) => (Code::InvalidArgument, Reason::CsrMalformed),
            Self::CsrSignatureInvalid => (Code::InvalidArgument, Reason::CsrSignatureInvalid),
            Self::CsrUnsupported(_) => (Code::InvalidArgument, Reason::CsrUnsupported),
            Self::ValidityInvalid { .. } => (Code::InvalidArgument, Reason::ValidityInvalid),
            Self::ProfileDenied { .. } => (Code::PermissionDenied, Reason::ProfileDenied),
            Self::ProfileNotFound { .. } => (Code::NotFound, Reason::ProfileNotFound),
            Self::ProfileInvalid { .. } => (Code::InvalidArgument, Reason::ProfileInvalid),
            Self::IdempotencyKeyReused { .. } => {
                (Code::AlreadyExists, Reason::IdempotencyKeyReused)
            }
            Self::IdempotencyKeyInFlight { .. } => (Code::Aborted, Reason::IdempotencyKeyReused),
            Self::CertificateNotFound { .. } => (Code::NotFound, Reason::CertificateNotFound),
            Self::SerialInvalid { .. } => (Code::InvalidArgument, Reason::SerialInvalid),
            Self::PageTokenInvalid => (Code::InvalidArgument, Reason::PageTokenInvalid),
            Self::ApprovalNotFound { .. } => (Code::NotFound, Reason::ApprovalNotFound),
            Self::ApprovalNotPending { .. } => {
                (Code::FailedPrecondition, Reason::ApprovalNotPending)
            }
            Self::SelfApprovalForbidden { .. } => {
                (Code::PermissionDenied, Reason::SelfApprovalForbidden)
            }
            Self::CaNotReady(_) => (Code::FailedPrecondition, Reason::CaNotReady),
            Self::CaNotFound { .. } => (Code::NotFound, Reason::CaNotFound),
            Self::CaNotActive { .. } => (Code::FailedPrecondition, Reason::CaNotActive),
            Self::NameConstraintExceeded { .. } => {
                (Code::FailedPrecondition, Reason::NameConstraintExceeded)
            }
            Self::Crypto(_) => (Code::Internal, Reason::Internal),
            Self::Store(StoreError::Invalid { .. }) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::Store(_) => (Code::Internal, Reason::Internal),
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        match self {
            Self::ProfileDenied {
                rule,
                profile,
                version,
                ..
            } => HashMap::from([
                ("rule".to_string(), rule.to_string()),
                ("profile".to_string(), profile.clone()),
                ("profile_version".to_string(), version.to_string()),
            ]),
            Self::NameConstraintExceeded { ca_id, name } => HashMap::from([
                ("ca_id".to_string(), ca_id.to_string()),
                ("name".to_string(), name.clone()),
            ]),
            _ => HashMap::new(),
        }
    }
}

impl From<CryptoError> for IssuanceError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::MalformedPem { .. } | CryptoError::MalformedCsr { .. } => {
                Self::CsrMalformed(e.to_string())
            }
            CryptoError::CsrSignatureInvalid => Self::CsrSignatureInvalid,
            CryptoError::UnsupportedKey { .. } | CryptoError::UnsupportedExtension { .. } => {
                Self::CsrUnsupported(e.to_string())
            }
            other => Self::Crypto(other),
        }
    }
}

impl From<IssuanceError> for Status {
    fn from(e: IssuanceError) -> Status {
        let (code, reason) = e.code_and_reason();
        let message = if code == Code::Internal {
            // Log once, here, where it is handled; the client gets no internals.
            tracing::error!(error = %e, "Issuance failed.");
            "internal error".to_string()
        } else {
            e.to_string()
        };
        Status::with_error_details(
            code,
            message,
            ErrorDetails::with_error_info(reason.as_str(), DOMAIN, e.metadata()),
        )
    }
}

#[cfg(test)]
mod tests {
    use certmesh_kit::reason::reason_of;

    use super::*;

    fn ca() -> CaId {
        CaId(uuid::Uuid::nil())
    }

    #[test]
    fn each_variant_maps_to_its_code_and_reason() {
        let table: Vec<(IssuanceError, Code, &str)> = vec![
            (
                IssuanceError::InvalidField {
                    field: "csr",
                    problem: "required".into(),
                },
                Code::InvalidArgument,
                "REQUEST_INVALID",
            ),
            (
                IssuanceError::CsrMalformed("x".into()),
                Code::InvalidArgument,
                "CSR_MALFORMED",
            ),
            (
                IssuanceError::CsrSignatureInvalid,
                Code::InvalidArgument,
                "CSR_SIGNATURE_INVALID",
            ),
            (
                IssuanceError::CsrUnsupported("x".into()),
                Code::InvalidArgument,
                "CSR_UNSUPPORTED",
            ),
            (
                IssuanceError::ValidityInvalid {
                    field: "validity",
                    problem: "x".into(),
                },
                Code::InvalidArgument,
                "VALIDITY_INVALID",
            ),
            (
                IssuanceError::ProfileDenied {
                    profile: "p".into(),
                    version: 1,
                    rule: "allowed_ekus",
                    detail: "x".into(),
                },
                Code::PermissionDenied,
                "PROFILE_DENIED",
            ),
            (
                IssuanceError::ProfileNotFound {
                    name: "p".into(),
                    version: None,
                },
                Code::NotFound,
                "PROFILE_NOT_FOUND",
            ),
            (
                IssuanceError::ProfileInvalid {
                    field: "max_validity",
                    problem: "x".into(),
                },
                Code::InvalidArgument,
                "PROFILE_INVALID",
            ),
            (
                IssuanceError::IdempotencyKeyReused { key: "k".into() },
                Code::AlreadyExists,
                "IDEMPOTENCY_KEY_REUSED",
            ),
            (
                IssuanceError::IdempotencyKeyInFlight { key: "k".into() },
                Code::Aborted,
                "IDEMPOTENCY_KEY_REUSED",
            ),
            (
                IssuanceError::CertificateNotFound {
                    serial: "01".into(),
                },
                Code::NotFound,
                "CERTIFICATE_NOT_FOUND",
            ),
            (
                IssuanceError::SerialInvalid {
                    serial: "zz".into(),
                },
                Code::InvalidArgument,
                "SERIAL_INVALID",
            ),
            (
                IssuanceError::PageTokenInvalid,
                Code::InvalidArgument,
                "PAGE_TOKEN_INVALID",
            ),
            (
                IssuanceError::ApprovalNotFound { id: "a".into() },
                Code::NotFound,
                "APPROVAL_NOT_FOUND",
            ),
            (
                IssuanceError::ApprovalNotPending {
                    id: "a".into(),
                    status: "expired",
                },
                Code::FailedPrecondition,
                "APPROVAL_NOT_PENDING",
            ),
            (
                IssuanceError::SelfApprovalForbidden {
                    id: "a".into(),
                    principal: "alice".into(),
                },
                Code::PermissionDenied,
                "SELF_APPROVAL_FORBIDDEN",
            ),
            (
                IssuanceError::CaNotReady("x".into()),
                Code::FailedPrecondition,
                "CA_NOT_READY",
            ),
            (
                IssuanceError::CaNotFound { id: ca() },
                Code::NotFound,
                "CA_NOT_FOUND",
            ),
            (
                IssuanceError::CaNotActive {
                    id: ca(),
                    why: "it is retiring".into(),
                },
                Code::FailedPrecondition,
                "CA_NOT_ACTIVE",
            ),
            (
                IssuanceError::NameConstraintExceeded {
                    ca_id: ca(),
                    name: "evil.org".into(),
                },
                Code::FailedPrecondition,
                "NAME_CONSTRAINT_EXCEEDED",
            ),
            (
                IssuanceError::Crypto(CryptoError::Unseal),
                Code::Internal,
                "INTERNAL",
            ),
            (
                IssuanceError::Store(StoreError::NotFound { what: "x" }),
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

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status = Status::from(IssuanceError::Crypto(CryptoError::Signing {
            detail: "hsm slot 3 said no".into(),
        }));
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn denial_names_the_rule_in_metadata() {
        let status = Status::from(IssuanceError::ProfileDenied {
            profile: "web".into(),
            version: 2,
            rule: "min_ecdsa_bits",
            detail: "ECDSA 256 < 384".into(),
        });
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(
            info.metadata.get("rule").map(String::as_str),
            Some("min_ecdsa_bits")
        );
        assert!(status.message().contains("min_ecdsa_bits"));
    }

    #[test]
    fn a_name_constraint_refusal_names_the_name() {
        let status = Status::from(IssuanceError::NameConstraintExceeded {
            ca_id: ca(),
            name: "evil.org".into(),
        });
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(
            info.metadata.get("name").map(String::as_str),
            Some("evil.org")
        );
        assert!(status.message().contains("evil.org"));
    }
}
