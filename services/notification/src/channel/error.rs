//! The two ways a channel fails: its settings are invalid ([`ChannelError`], the operator's to
//! fix) or a delivery did not go through ([`DeliveryError`], retried by the relay when it says
//! so).
//!
//! Neither ever carries a secret: settings errors name the field but not its value, and delivery
//! details are scrubbed of every secret the channel holds before they leave this module.

use std::fmt;

/// Which of the operator's two JSON objects a field belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The non-secret `config` object, shown back in API responses.
    Config,
    /// The `secrets` object, sealed at rest and never shown.
    Secrets,
}

impl Part {
    /// `"config"` or `"secrets"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Config => "config",
            Part::Secrets => "secrets",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Channel settings that cannot be used; each variant says which field and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The channel kind is none of the supported ones.
    #[error("unknown channel kind {kind:?} (expected webhook, email, slack, teams or pagerduty)")]
    UnknownKind {
        /// The kind as given, cut to 32 characters.
        kind: String,
    },
    /// `config` or `secrets` is not a JSON object.
    #[error("{part} must be a JSON object")]
    NotAnObject {
        /// Which object.
        part: Part,
    },
    /// A required field is absent (or null).
    #[error("{part}.{field} is required")]
    MissingField {
        /// Where the field belongs.
        part: Part,
        /// The field name.
        field: &'static str,
    },
    /// A field this kind of channel does not know (a typo would otherwise pass silently).
    #[error("{part}.{field} is not a known field for this channel kind")]
    UnknownField {
        /// Where the field was found.
        part: Part,
        /// The field name as given, cut to 64 characters.
        field: String,
    },
    /// A field is present but its value is unusable.
    #[error("{part}.{field} {why}")]
    InvalidField {
        /// Where the field belongs.
        part: Part,
        /// The field name.
        field: &'static str,
        /// Why, as the end of a sentence ("must be at least 16 bytes"); never the secret value.
        why: String,
    },
}

impl ChannelError {
    /// The stable reason sent to API clients.
    pub fn reason(&self) -> &'static str {
        match self {
            ChannelError::UnknownKind { .. }
            | ChannelError::NotAnObject { .. }
            | ChannelError::MissingField { .. }
            | ChannelError::UnknownField { .. }
            | ChannelError::InvalidField { .. } => "CHANNEL_INVALID",
        }
    }

    /// The field at fault, if the error is about one field.
    pub fn field(&self) -> Option<(Part, &str)> {
        match self {
            ChannelError::UnknownKind { .. } | ChannelError::NotAnObject { .. } => None,
            ChannelError::MissingField { part, field }
            | ChannelError::InvalidField { part, field, .. } => Some((*part, field)),
            ChannelError::UnknownField { part, field } => Some((*part, field)),
        }
    }
}

/// A delivery that did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DeliveryError {
    /// Whether trying again later may succeed (timeouts, connection errors, 408, 425, 429,
    /// 5xx, transient SMTP replies), as opposed to a refusal that will repeat.
    pub retryable: bool,
    /// One short line for the operator: the status and a cleaned snippet of the answer. It
    /// never contains a secret of the channel (token-bearing URL, password, routing key).
    pub detail: String,
}

/// Longest detail kept, in characters.
const MAX_DETAIL: usize = 300;

impl DeliveryError {
    pub(super) fn retryable(detail: impl Into<String>) -> DeliveryError {
        DeliveryError {
            retryable: true,
            detail: detail.into(),
        }
    }

    pub(super) fn permanent(detail: impl Into<String>) -> DeliveryError {
        DeliveryError {
            retryable: false,
            detail: detail.into(),
        }
    }

    /// Cleans the detail: every secret is replaced (before and after control characters become
    /// spaces, so neither form slips through), and the result is cut to [`MAX_DETAIL`]
    /// characters, after replacing, so that no partial secret is left at the cut.
    pub(super) fn scrubbed(mut self, secrets: &[&str]) -> DeliveryError {
        let cleaned = one_line(&redact(&self.detail, secrets));
        self.detail = truncate(&redact(&cleaned, secrets), MAX_DETAIL);
        self
    }
}

/// Replaces every occurrence of every secret (of 4 bytes or more) with `REDACTED`.
pub(super) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(secret) {
            out = out.replace(secret, "REDACTED");
        }
    }
    out
}

/// Control characters (newlines included) become single spaces; runs of whitespace collapse.
pub(super) fn one_line(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first `max` characters of `text`, with an ellipsis if anything was cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_redacts_before_cutting() {
        let secret = "T0KEN-abcdefgh";
        let long = format!(
            "{}\r\nsaw {secret}\x07 in\tpath /x/{secret}",
            "a".repeat(10)
        );
        let e = DeliveryError::permanent(long).scrubbed(&[secret, ""]);
        assert_eq!(e.detail, "aaaaaaaaaa saw REDACTED in path /x/REDACTED");
        assert!(!e.retryable);
        let cut =
            DeliveryError::retryable(format!("{}{secret}", "b".repeat(295))).scrubbed(&[secret]);
        assert!(!cut.detail.contains("T0KEN"), "{}", cut.detail);
        assert!(cut.detail.ends_with('…'));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("héllo", 5), "héllo");
    }

    #[test]
    fn every_channel_error_has_the_same_reason_and_names_its_field() {
        let errors = [
            ChannelError::UnknownKind { kind: "sms".into() },
            ChannelError::NotAnObject { part: Part::Config },
            ChannelError::MissingField {
                part: Part::Secrets,
                field: "hmac_secret",
            },
            ChannelError::UnknownField {
                part: Part::Config,
                field: "urll".into(),
            },
            ChannelError::InvalidField {
                part: Part::Config,
                field: "url",
                why: "is not a valid URL".into(),
            },
        ];
        for e in &errors {
            assert_eq!(e.reason(), "CHANNEL_INVALID");
        }
        assert_eq!(errors[2].to_string(), "secrets.hmac_secret is required");
        assert_eq!(errors[3].field(), Some((Part::Config, "urll")));
        assert_eq!(errors[4].to_string(), "config.url is not a valid URL");
    }
}
