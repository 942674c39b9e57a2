//! The agent's one error type, and how a gRPC status from the server is shown: `CODE (REASON):
//! message`, the reason read from the `google.rpc.ErrorInfo` detail the server attaches.

use std::io;
use std::path::PathBuf;

use certmesh_crypto::CryptoError;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The reason the server gives a retired agent; the agent exits 0 on it.
pub const REASON_AGENT_RETIRED: &str = "AGENT_RETIRED";

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting is missing or malformed.
    #[error("configuration: {detail}")]
    Config {
        /// What is wrong, naming the key.
        detail: String,
    },
    /// `run` or `status` before `enroll`.
    #[error("not enrolled: {} holds no agent.json; run `certmesh-agent enroll` first", state_dir.display())]
    NotEnrolled {
        /// The state directory looked in.
        state_dir: PathBuf,
    },
    /// `enroll` on an enrolled host without `--force`.
    #[error("already enrolled (see {}); pass --force to enroll again", state_dir.display())]
    AlreadyEnrolled {
        /// The state directory holding the identity.
        state_dir: PathBuf,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A key, CSR or certificate could not be made or read.
    #[error("{context}: {source}")]
    Crypto {
        /// What was being done.
        context: String,
        /// The crypto boundary's error (never shows key material).
        #[source]
        source: CryptoError,
    },
    /// A state file does not parse or cannot be written as JSON.
    #[error("{context}: {source}")]
    Json {
        /// Which file.
        context: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The channel to the server could not be set up or connected.
    #[error("connecting to {server}: {}", chain(source))]
    Transport {
        /// The server URL.
        server: String,
        /// tonic's transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The server answered with an error status.
    #[error("{}", describe_status(.0))]
    Rpc(Box<Status>),
    /// The job worker ended while the agent was not shutting down (a bug); `run` exits
    /// non-zero so that systemd restarts it.
    #[error("the job worker stopped unexpectedly")]
    WorkerStopped,
    /// The server sent something the agent cannot act on.
    #[error("protocol: {detail}")]
    Protocol {
        /// What was wrong with the message.
        detail: String,
    },
}

/// The agent's result type.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        AgentError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn crypto(context: impl Into<String>, source: CryptoError) -> Self {
        AgentError::Crypto {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn config(detail: impl Into<String>) -> Self {
        AgentError::Config {
            detail: detail.into(),
        }
    }

    pub(crate) fn protocol(detail: impl Into<String>) -> Self {
        AgentError::Protocol {
            detail: detail.into(),
        }
    }

    /// Whether the server refused this agent because it was retired.
    pub fn is_retired(&self) -> bool {
        match self {
            AgentError::Rpc(status) => is_retired(status),
            _ => false,
        }
    }
}

impl From<Status> for AgentError {
    fn from(status: Status) -> Self {
        AgentError::Rpc(Box::new(status))
    }
}

/// An error and its causes, `outer: inner: innermost` (tonic's transport errors say only
/// "transport error" on their own).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// The stable reason in a status's `google.rpc.ErrorInfo`, if it carries one.
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .filter(|r| !r.is_empty())
}

/// UNAUTHENTICATED with reason AGENT_RETIRED.
pub fn is_retired(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        && reason_of(status).as_deref() == Some(REASON_AGENT_RETIRED)
}

/// `UNAUTHENTICATED (BOOTSTRAP_TOKEN_INVALID): the token is …`, or `CODE: message` without a
/// reason.
pub fn describe_status(status: &Status) -> String {
    let code = code_name(status.code());
    match reason_of(status) {
        Some(reason) => format!("{code} ({reason}): {}", status.message()),
        None => format!("{code}: {}", status.message()),
    }
}

/// The canonical upper-case name of a gRPC code.
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
    use std::collections::HashMap;

    use tonic_types::ErrorDetails;

    use super::*;

    fn with_reason(code: Code, reason: &str, message: &str) -> Status {
        Status::with_error_details(
            code,
            message,
            ErrorDetails::with_error_info(reason, "certmesh.dev", HashMap::new()),
        )
    }

    #[test]
    fn status_shows_code_reason_and_message() {
        let status = with_reason(
            Code::Unauthenticated,
            "BOOTSTRAP_TOKEN_INVALID",
            "the token was already used",
        );
        assert_eq!(
            AgentError::from(status).to_string(),
            "UNAUTHENTICATED (BOOTSTRAP_TOKEN_INVALID): the token was already used"
        );
        let plain = Status::unavailable("connection refused");
        assert_eq!(describe_status(&plain), "UNAVAILABLE: connection refused");
    }

    #[test]
    fn only_unauthenticated_agent_retired_is_retirement() {
        assert!(is_retired(&with_reason(
            Code::Unauthenticated,
            REASON_AGENT_RETIRED,
            "retired"
        )));
        assert!(!is_retired(&with_reason(
            Code::PermissionDenied,
            REASON_AGENT_RETIRED,
            "retired"
        )));
        assert!(!is_retired(&with_reason(
            Code::Unauthenticated,
            "AGENT_IDENTITY_INVALID",
            "no cert"
        )));
        assert!(!AgentError::config("x").is_retired());
    }
}
