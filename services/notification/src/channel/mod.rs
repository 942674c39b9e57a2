//! Delivery channels: where a notice goes (a signed webhook, email, Slack, Teams, PagerDuty)
//! and how it is said there.
//!
//! An operator describes a channel with its kind, a non-secret `config` object and a `secrets`
//! object; [`ChannelSettings::parse`] validates both once, into settings that cannot be invalid
//! and whose `Debug` never shows a secret. [`Sender::deliver`] then sends one [`Notice`] and
//! says, on failure, whether trying again may help. Retries, backoff and dead letters belong to
//! the relay, not here.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

mod chat;
mod email;
mod error;
mod fields;
mod http;
mod pagerduty;
mod webhook;

pub use self::http::Endpoint;
pub use chat::{SlackSettings, TeamsSettings};
pub use email::EmailSettings;
pub use error::{ChannelError, DeliveryError, Part};
pub use pagerduty::PagerDutySettings;
pub use webhook::{WebhookSettings, webhook_signature};

/// The kinds of channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// A signed JSON POST to any URL.
    Webhook,
    /// SMTP submission.
    Email,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams Workflows webhook.
    Teams,
    /// PagerDuty Events API v2.
    PagerDuty,
}

impl ChannelKind {
    /// Every kind, in a stable order.
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::Webhook,
        ChannelKind::Email,
        ChannelKind::Slack,
        ChannelKind::Teams,
        ChannelKind::PagerDuty,
    ];

    /// The stable name: `"webhook"`, `"email"`, `"slack"`, `"teams"` or `"pagerduty"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
            ChannelKind::PagerDuty => "pagerduty",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = ChannelError;

    /// The exact inverse of [`ChannelKind::as_str`].
    fn from_str(s: &str) -> Result<ChannelKind, ChannelError> {
        ChannelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ChannelError::UnknownKind {
                kind: s.chars().take(32).collect(),
            })
    }
}

/// Validated settings of one channel; build them with [`ChannelSettings::parse`].
#[derive(Clone, Debug)]
pub enum ChannelSettings {
    /// See [`WebhookSettings`].
    Webhook(WebhookSettings),
    /// See [`EmailSettings`].
    Email(EmailSettings),
    /// See [`SlackSettings`].
    Slack(SlackSettings),
    /// See [`TeamsSettings`].
    Teams(TeamsSettings),
    /// See [`PagerDutySettings`].
    PagerDuty(PagerDutySettings),
}

impl ChannelSettings {
    /// Validates the operator's `config` and `secrets` objects for a channel of `kind`.
    ///
    /// Unknown fields are refused, in either object; `null` stands for an empty object.
    pub fn parse(
        kind: ChannelKind,
        config: &serde_json::Value,
        secrets: &serde_json::Value,
    ) -> Result<ChannelSettings, ChannelError> {
        Ok(match kind {
            ChannelKind::Webhook => Self::Webhook(WebhookSettings::parse(config, secrets)?),
            ChannelKind::Email => Self::Email(EmailSettings::parse(config, secrets)?),
            ChannelKind::Slack => Self::Slack(SlackSettings::parse(config, secrets)?),
            ChannelKind::Teams => Self::Teams(TeamsSettings::parse(config, secrets)?),
            ChannelKind::PagerDuty => Self::PagerDuty(PagerDutySettings::parse(config, secrets)?),
        })
    }

    /// The channel's kind.
    pub fn kind(&self) -> ChannelKind {
        match self {
            ChannelSettings::Webhook(_) => ChannelKind::Webhook,
            ChannelSettings::Email(_) => ChannelKind::Email,
            ChannelSettings::Slack(_) => ChannelKind::Slack,
            ChannelSettings::Teams(_) => ChannelKind::Teams,
            ChannelSettings::PagerDuty(_) => ChannelKind::PagerDuty,
        }
    }

    /// The settings with no secret in them, for API responses: the webhook or PagerDuty URL,
    /// the SMTP fields, and only the host of a chat URL (the rest of it is a token).
    pub fn public_config(&self) -> serde_json::Value {
        match self {
            ChannelSettings::Webhook(s) => s.public_config(),
            ChannelSettings::Email(s) => s.public_config(),
            ChannelSettings::Slack(s) => s.public_config(),
            ChannelSettings::Teams(s) => s.public_config(),
            ChannelSettings::PagerDuty(s) => s.public_config(),
        }
    }
}

/// How loud a notice is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// `"info"`, `"warning"` or `"critical"` (PagerDuty's names too).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to say: one outbox event, made readable.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// The outbox event id; receivers deduplicate on it.
    pub event_id: Uuid,
    /// e.g. `"certificate.expiring"`.
    pub event_type: String,
    /// The tenant the event belongs to.
    pub tenant: String,
    /// What the event is about (a certificate serial, a CA id…).
    pub aggregate_id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// How loud.
    pub severity: Severity,
    /// One human sentence.
    pub summary: String,
    /// The event's own data.
    pub payload: serde_json::Value,
}

/// Sends notices; one per process, cheap to clone (the HTTP connection pool is shared).
#[derive(Clone, Debug)]
pub struct Sender {
    http: http::HttpClient,
    timeout: Duration,
}

impl Sender {
    /// A sender whose every delivery (connect, TLS, request, answer) must finish in `timeout`.
    pub fn new(timeout: Duration) -> Sender {
        Sender {
            http: http::HttpClient::new(timeout),
            timeout,
        }
    }

    /// Delivers `n` on channel `ch`; `now` stamps the webhook signature and the email `Date`.
    pub async fn deliver(
        &self,
        ch: &ChannelSettings,
        n: &Notice,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        match ch {
            ChannelSettings::Webhook(s) => s.deliver(&self.http, n, now).await,
            ChannelSettings::Email(s) => s.deliver(self.timeout, n, now).await,
            ChannelSettings::Slack(s) => s.deliver(&self.http, n).await,
            ChannelSettings::Teams(s) => s.deliver(&self.http, n).await,
            ChannelSettings::PagerDuty(s) => s.deliver(&self.http, n).await,
        }
    }
}

/// RFC 3339 in UTC with milliseconds, `2025-03-01T12:00:00.000Z`, everywhere a time is sent.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    pub(crate) fn notice() -> Notice {
        Notice {
            event_id: Uuid::from_u128(0x0193_1c00_0000_7000_8000_0000_0000_0001),
            event_type: "certificate.expiring".to_owned(),
            tenant: "acme".to_owned(),
            aggregate_id: "serial:4f2a".to_owned(),
            occurred_at: Utc
                .with_ymd_and_hms(2025, 3, 1, 12, 0, 0)
                .single()
                .expect("time"),
            severity: Severity::Warning,
            summary: "Certificate www.example.com expires in 7 days.".to_owned(),
            payload: json!({"days_left": 7, "names": ["www.example.com"]}),
        }
    }

    const PLANTED: &str = "planted0secret0value0123456789ab";

    fn every_kind() -> Vec<ChannelSettings> {
        let inputs = [
            (
                ChannelKind::Webhook,
                json!({"url": "https://h.example/x"}),
                json!({"hmac_secret": PLANTED}),
            ),
            (
                ChannelKind::Email,
                json!({"smtp_host": "smtp.example", "from": "a@example.com", "to": ["b@example.com"], "username": "u"}),
                json!({"password": PLANTED}),
            ),
            (
                ChannelKind::Slack,
                json!({}),
                json!({"url": format!("https://hooks.slack.com/services/T/B/{PLANTED}")}),
            ),
            (
                ChannelKind::Teams,
                json!({}),
                json!({"url": format!("https://x.logic.azure.com/wf/{PLANTED}?sig={PLANTED}")}),
            ),
            (
                ChannelKind::PagerDuty,
                json!({}),
                json!({"routing_key": PLANTED}),
            ),
        ];
        inputs
            .into_iter()
            .map(|(kind, config, secrets)| {
                let s = ChannelSettings::parse(kind, &config, &secrets).expect("valid");
                assert_eq!(s.kind(), kind);
                s
            })
            .collect()
    }

    #[test]
    fn debug_and_public_config_never_show_a_secret() {
        let all = every_kind();
        assert_eq!(all.len(), ChannelKind::ALL.len());
        for s in &all {
            let debug = format!("{s:?} {s:#?}");
            assert!(!debug.contains(PLANTED), "{debug}");
            assert!(!debug.contains("planted"), "{debug}");
            assert!(
                !s.public_config().to_string().contains("planted"),
                "{:?}",
                s.kind()
            );
        }
        assert_eq!(all[2].public_config(), json!({"host": "hooks.slack.com"}));
        assert_eq!(all[3].public_config(), json!({"host": "x.logic.azure.com"}));
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in ChannelKind::ALL {
            assert_eq!(kind.to_string().parse::<ChannelKind>(), Ok(kind));
        }
        let err = "Slack".parse::<ChannelKind>().expect_err("case matters");
        assert_eq!(err.reason(), "CHANNEL_INVALID");
        assert!(matches!(err, ChannelError::UnknownKind { .. }));
    }

    #[test]
    fn config_and_secrets_must_be_objects() {
        for kind in ChannelKind::ALL {
            let err = ChannelSettings::parse(kind, &json!("x"), &json!({})).expect_err("string");
            assert_eq!(err, ChannelError::NotAnObject { part: Part::Config });
        }
        let err =
            ChannelSettings::parse(ChannelKind::Slack, &json!({}), &json!([1])).expect_err("array");
        assert_eq!(
            err,
            ChannelError::NotAnObject {
                part: Part::Secrets
            }
        );
    }

    #[test]
    fn sender_and_its_future_can_cross_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
        fn sendable<T: Send>(_: &T) {}
        let sender = Sender::new(Duration::from_secs(1));
        shareable(&sender);
        shareable(&every_kind()[0]);
        let n = notice();
        let channel = &every_kind()[1];
        let delivery = sender.deliver(channel, &n, n.occurred_at);
        sendable(&delivery);
    }

    #[test]
    fn severities_order_and_name() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!(Severity::Critical.to_string(), "critical");
        assert_eq!(rfc3339(notice().occurred_at), "2025-03-01T12:00:00.000Z");
    }
}
