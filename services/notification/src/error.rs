//! The notification role's one error enum, and its mapping to gRPC codes and stable reasons.

use certmesh_crypto::CryptoError;
use certmesh_kit::{Reason, reason::status};
use certmesh_store::StoreError;
use tonic::{Code, Status};

use crate::channel::ChannelError;

/// Everything that can go wrong managing channels, rules and deliveries.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A request field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    /// A channel's kind, settings or secrets are wrong.
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    /// The tenant has a channel of that name.
    #[error("a channel named {0:?} exists")]
    ChannelExists(String),
    /// No such channel.
    #[error("channel {0} not found")]
    ChannelNotFound(String),
    /// A rule breaks a rule.
    #[error("rule: {0}")]
    RuleInvalid(String),
    /// The tenant has a rule of that name.
    #[error("a rule named {0:?} exists")]
    RuleExists(String),
    /// No such rule.
    #[error("rule {0} not found")]
    RuleNotFound(String),
    /// No such delivery.
    #[error("delivery {0} not found")]
    DeliveryNotFound(String),
    /// Only dead deliveries are requeued.
    #[error("delivery {id} is {state}, not dead")]
    DeliveryNotDead { id: String, state: String },
    /// A stored row is inconsistent.
    #[error("corrupt {0}")]
    Corrupt(String),
    /// Sealing or opening channel secrets failed.
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl NotifyError {
    /// The gRPC code and stable reason. One arm per variant and no wildcard, so a new variant
    /// cannot go unmapped.
    pub fn code_and_reason(&self) -> (Code, Reason) {
        match self {
            Self::InvalidField { .. } => (Code::InvalidArgument, Reason::RequestInvalid),
            Self::Channel(_) => (Code::InvalidArgument, Reason::ChannelInvalid),
            Self::ChannelExists(_) => (Code::AlreadyExists, Reason::ChannelExists),
            Self::ChannelNotFound(_) => (Code::NotFound, Reason::ChannelNotFound),
            Self::RuleInvalid(_) => (Code::InvalidArgument, Reason::RuleInvalid),
            Self::RuleExists(_) => (Code::AlreadyExists, Reason::RuleExists),
            Self::RuleNotFound(_) => (Code::NotFound, Reason::RuleNotFound),
            Self::DeliveryNotFound(_) => (Code::NotFound, Reason::DeliveryNotFound),
            Self::DeliveryNotDead { .. } => (Code::FailedPrecondition, Reason::DeliveryNotDead),
            Self::Store(StoreError::Invalid { .. }) => {
                (Code::InvalidArgument, Reason::RequestInvalid)
            }
            Self::Corrupt(_) | Self::Crypto(_) | Self::Store(_) => {
                (Code::Internal, Reason::Internal)
            }
        }
    }
}

impl From<NotifyError> for Status {
    fn from(e: NotifyError) -> Status {
        let (code, reason) = e.code_and_reason();
        if code == Code::Internal {
            tracing::error!(error = %e, "Notification request failed.");
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
                NotifyError::ChannelExists("ops".into()),
                Code::AlreadyExists,
                Reason::ChannelExists,
            ),
            (
                NotifyError::ChannelNotFound("x".into()),
                Code::NotFound,
                Reason::ChannelNotFound,
            ),
            (
                NotifyError::RuleInvalid("x".into()),
                Code::InvalidArgument,
                Reason::RuleInvalid,
            ),
            (
                NotifyError::RuleExists("x".into()),
                Code::AlreadyExists,
                Reason::RuleExists,
            ),
            (
                NotifyError::RuleNotFound("x".into()),
                Code::NotFound,
                Reason::RuleNotFound,
            ),
            (
                NotifyError::DeliveryNotFound("x".into()),
                Code::NotFound,
                Reason::DeliveryNotFound,
            ),
            (
                NotifyError::DeliveryNotDead {
                    id: "x".into(),
                    state: "pending".into(),
                },
                Code::FailedPrecondition,
                Reason::DeliveryNotDead,
            ),
            (
                NotifyError::Corrupt("row".into()),
                Code::Internal,
                Reason::Internal,
            ),
        ] {
            assert_eq!(e.code_and_reason(), (code, reason), "{e}");
        }
        let internal = Status::from(NotifyError::Corrupt("secret detail".into()));
        assert!(!internal.message().contains("secret detail"));
    }
}
