//! Stable, machine-readable error reasons, registered in one place.
//!
//! Every error a certmesh API returns carries one of these as a `google.rpc.ErrorInfo` detail
//! (domain [`DOMAIN`]). Clients branch on the reason, never on the message. Each crate's error
//! enum maps every variant to a gRPC code and one reason; `docs/reference/errors.md` lists them.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every certmesh error.
pub const DOMAIN: &str = "certmesh.io";

macro_rules! reasons {
    ($($variant:ident => $text:literal, $doc:literal;)*) => {
        /// A stable error reason.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $(#[doc = $doc] $variant,)*
        }

        impl Reason {
            /// Every reason, in registration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The wire form, UPPER_SNAKE.
            pub const fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $text,)* }
            }

            /// One line saying when the reason is returned.
            pub const fn description(self) -> &'static str {
                match self { $(Reason::$variant => $doc,)* }
            }
        }
    };
}

reasons! {
    Unauthenticated => "UNAUTHENTICATED", "The request carried no bearer token, or one that is unknown or revoked.";
    PermissionMissing => "PERMISSION_MISSING", "The caller's roles do not grant the permission the RPC needs; the message names it.";
    RequestInvalid => "REQUEST_INVALID", "A required field is missing or a field is malformed.";
    BodyInvalid => "BODY_INVALID", "The REST body is not JSON of the request's shape.";
    BodyTooLarge => "BODY_TOO_LARGE", "The REST body exceeds the gateway's limit.";
    RouteNotFound => "ROUTE_NOT_FOUND", "No REST route matches the method and path.";
    RateLimited => "RATE_LIMITED", "The caller exceeded its request rate; retry after the Retry-After seconds.";
    CsrMalformed => "CSR_MALFORMED", "The CSR is not PEM, or its DER is not a PKCS#10 request.";
    CsrSignatureInvalid => "CSR_SIGNATURE_INVALID", "The CSR's self-signature does not verify.";
    CsrUnsupported => "CSR_UNSUPPORTED", "The CSR uses a key type, curve or extension certmesh does not sign.";
    ValidityInvalid => "VALIDITY_INVALID", "A validity or duration field does not parse or is not positive.";
    ProfileDenied => "PROFILE_DENIED", "The profile's rules refuse the request; the message names the rule.";
    ProfileNotFound => "PROFILE_NOT_FOUND", "No profile (or profile version) has that name.";
    ProfileInvalid => "PROFILE_INVALID", "A profile spec breaks a rule of its own (unknown EKU, weak floor, bad duration).";
    IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED", "The idempotency key was already used for a different request.";
    CertificateNotFound => "CERTIFICATE_NOT_FOUND", "No certificate has that serial in this tenant.";
    SerialInvalid => "SERIAL_INVALID", "A serial is not 1 to 20 bytes of hex.";
    PageTokenInvalid => "PAGE_TOKEN_INVALID", "The page token was not issued by this API.";
    PrincipalNotFound => "PRINCIPAL_NOT_FOUND", "No principal has that name in this tenant.";
    PrincipalExists => "PRINCIPAL_EXISTS", "The tenant already has a principal with that name.";
    TokenNotFound => "TOKEN_NOT_FOUND", "No API token has that id in this tenant.";
    ApprovalNotFound => "APPROVAL_NOT_FOUND", "No approval has that id in this tenant.";
    ApprovalNotPending => "APPROVAL_NOT_PENDING", "The approval was already approved or rejected, or it expired.";
    SelfApprovalForbidden => "SELF_APPROVAL_FORBIDDEN", "The approver is the principal who made the request; a second person must approve.";
    CaNotReady => "CA_NOT_READY", "No active issuing CA exists yet, or its key cannot be opened.";
    CaNotFound => "CA_NOT_FOUND", "No CA has that id in this tenant.";
    CaExists => "CA_EXISTS", "The tenant already has a CA with that name.";
    CaNotActive => "CA_NOT_ACTIVE", "The parent or issuing CA is retiring or retired, or its key is offline.";
    CaNotRetiring => "CA_NOT_RETIRING", "Retirement is confirmed only for a CA that is retiring (drain first).";
    CaHasActiveChildren => "CA_HAS_ACTIVE_CHILDREN", "The CA still has active or retiring children; retire them first.";
    CaNotSelfSigned => "CA_NOT_SELF_SIGNED", "An imported root's subject differs from its issuer or its self-signature does not verify (RFC 5280 3.2).";
    CaKeyMismatch => "CA_KEY_MISMATCH", "The referenced key is not the certificate's key.";
    PathLenExceeded => "PATH_LEN_EXCEEDED", "The child's path length is not below the parent's, or the parent (path length 0) may have no CA children (RFC 5280 4.2.1.9).";
    NameConstraintExceeded => "NAME_CONSTRAINT_EXCEEDED", "The child's name constraints are wider than the parent's, or a name is outside its CA's constraints (RFC 5280 4.2.1.10).";
    CeremonyNotFound => "CEREMONY_NOT_FOUND", "No key ceremony has that id in this tenant.";
    CeremonyExpired => "CEREMONY_EXPIRED", "The key ceremony expired before it was completed.";
    CeremonyAlreadyUsed => "CEREMONY_ALREADY_USED", "The key ceremony was completed by an earlier operation and cannot be used again.";
    CeremonyParamsMismatch => "CEREMONY_PARAMS_MISMATCH", "The operation or its parameters differ from what the ceremony's custodians approved.";
    CeremonySignatureInvalid => "CEREMONY_SIGNATURE_INVALID", "The approval's signature does not verify with any active key of the custodian.";
    QuorumNotMet => "QUORUM_NOT_MET", "The ceremony has fewer approvals than its threshold; the message says k of m.";
    NotACustodian => "NOT_A_CUSTODIAN", "The caller is not one of the ceremony's custodians.";
    PublicKeyInvalid => "PUBLIC_KEY_INVALID", "The public key is not an Ed25519 or ECDSA P-256 SubjectPublicKeyInfo PEM.";
    PrincipalKeyExists => "PRINCIPAL_KEY_EXISTS", "That public key is already registered in this tenant.";
    RevocationReasonInvalid => "REVOCATION_REASON_INVALID", "The revocation reason is not one of RFC 5280's; the message lists them.";
    ExternalCa => "EXTERNAL_CA", "The certificate was issued by a CA certmesh does not run; revoke it at that CA.";
    CertificateNotOnHold => "CERTIFICATE_NOT_ON_HOLD", "removeFromCRL lifts a certificateHold; the certificate is not on hold.";
    BulkFilterEmpty => "BULK_FILTER_EMPTY", "A bulk revocation names no CA and no profile; it would match every certificate.";
    BootstrapTokenInvalid => "BOOTSTRAP_TOKEN_INVALID", "The bootstrap token is unknown, expired or already used; ask an operator for a new one.";
    AgentIdentityInvalid => "AGENT_IDENTITY_INVALID", "The agent stream has no client certificate, or one certmesh did not issue to a current agent.";
    AgentRetired => "AGENT_RETIRED", "The agent was retired; its certificate no longer opens a stream.";
    AgentNotFound => "AGENT_NOT_FOUND", "No agent has that id in this tenant.";
    BindingInvalid => "BINDING_INVALID", "A deployment binding names no target, both an agent and a group, a relative path or a bad key type.";
    BindingExists => "BINDING_EXISTS", "The tenant already has a binding with that name.";
    BindingNotFound => "BINDING_NOT_FOUND", "No live binding has that id in this tenant.";
    JobNotFound => "JOB_NOT_FOUND", "No job has that id in this tenant.";
    ScanTargetInvalid => "SCAN_TARGET_INVALID", "A scan target field is malformed (host, CIDR over the size limit, port, SNI name or interval).";
    ScanTargetRefused => "SCAN_TARGET_REFUSED", "The SSRF guard refuses the address (loopback, link-local, cloud metadata) unless the server allows it.";
    ScanTargetExists => "SCAN_TARGET_EXISTS", "The tenant already has a scan target with that name.";
    ScanTargetNotFound => "SCAN_TARGET_NOT_FOUND", "No scan target has that id in this tenant.";
    ScanNotFound => "SCAN_NOT_FOUND", "No scan has that id in this tenant.";
    DiscoveredNotFound => "DISCOVERED_NOT_FOUND", "No discovered certificate has that id in this tenant.";
    ClaimInvalid => "CLAIM_INVALID", "The find cannot be claimed as asked (no agent to deploy on, no names, or a bad path).";
    ChannelInvalid => "CHANNEL_INVALID", "A channel's kind, settings or secrets are missing or malformed.";
    ChannelExists => "CHANNEL_EXISTS", "The tenant already has a channel with that name.";
    ChannelNotFound => "CHANNEL_NOT_FOUND", "No channel has that id in this tenant.";
    RuleInvalid => "RULE_INVALID", "A rule names no event types, a malformed pattern, or a channel that does not exist.";
    RuleExists => "RULE_EXISTS", "The tenant already has a rule with that name.";
    RuleNotFound => "RULE_NOT_FOUND", "No rule has that id in this tenant.";
    DeliveryNotFound => "DELIVERY_NOT_FOUND", "No delivery has that id in this tenant.";
    DeliveryNotDead => "DELIVERY_NOT_DEAD", "Only a dead delivery can be requeued.";
    BackendUnavailable => "BACKEND_UNAVAILABLE", "The gateway could not reach the role that serves the request.";
    Internal => "INTERNAL", "An internal error; details are in the server log under the request's trace id.";
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `Status` with `code`, `message` and `reason` as a `google.rpc.ErrorInfo` detail.
pub fn status(code: Code, reason: Reason, message: impl Into<String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason.as_str(), DOMAIN, HashMap::new()),
    )
}

/// The reason carried by a status, if it carries one.
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// The canonical UPPER_SNAKE name of a gRPC code, as in `google.rpc.Code`: what JSON error
/// bodies and the `code` label of the RPC metrics carry. One arm per code, no wildcard.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_upper_snake_with_descriptions() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let text = reason.as_str();
            assert!(seen.insert(text), "duplicate reason {text}");
            assert!(
                text.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{text} is not UPPER_SNAKE"
            );
            assert!(reason.description().ends_with('.'));
        }
    }

    #[test]
    fn status_round_trips_the_reason() {
        let s = status(Code::InvalidArgument, Reason::CsrMalformed, "bad csr");
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "bad csr");
        assert_eq!(reason_of(&s).as_deref(), Some("CSR_MALFORMED"));
    }
}

#[cfg(test)]
mod docs_tests {
    use super::Reason;

    #[test]
    fn errors_reference_lists_every_reason() {
        let doc = include_str!("../../../docs/reference/errors.md");
        for reason in Reason::ALL {
            let row = format!("| `{}` |", reason.as_str());
            let line = doc.lines().find(|l| l.starts_with(&row));
            let line = line
                .unwrap_or_else(|| panic!("docs/reference/errors.md lacks {}", reason.as_str()));
            assert!(
                line.contains(reason.description()),
                "{} description differs from the registry",
                reason.as_str()
            );
        }
    }
}
