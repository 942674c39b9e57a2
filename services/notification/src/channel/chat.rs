//! Chat channels: Slack incoming webhooks and Microsoft Teams Workflows webhooks.
//!
//! Both are a POST of JSON to a URL that embeds its own credential, so the URL is a secret:
//! only its host is ever shown, and it must be `https://` (plain `http://` only to loopback).

use certmesh_kit::secret::Secret;
use serde_json::{Value, json};

use super::error::{ChannelError, DeliveryError, Part, truncate};
use super::fields::Fields;
use super::http::{Endpoint, HttpClient};
use super::{Notice, Severity};

/// Slack's section text limit is 3000 characters; leave room for the severity prefix.
const MAX_SUMMARY: usize = 2500;
/// Teams cards have no hard per-block limit; keep them readable.
const MAX_CONTEXT: usize = 500;

/// A validated Slack incoming webhook.
#[derive(Clone, Debug)]
pub struct SlackSettings {
    url: Secret<Endpoint>,
}

/// A validated Teams (Workflows / Power Automate) incoming webhook.
#[derive(Clone, Debug)]
pub struct TeamsSettings {
    url: Secret<Endpoint>,
}

/// Both chat kinds take `{}` (or null) as config and `{"url": …}` as secrets.
fn parse_url(config: &Value, secrets: &Value) -> Result<Secret<Endpoint>, ChannelError> {
    Fields::new(Part::Config, config)?.finish()?;
    let mut secrets = Fields::new(Part::Secrets, secrets)?;
    let url = secrets.str("url")?;
    let url = Endpoint::parse_confidential(url).map_err(|why| secrets.invalid("url", why))?;
    secrets.finish()?;
    Ok(Secret::new(url))
}

async fn post(
    http: &HttpClient,
    url: &Secret<Endpoint>,
    body: &Value,
) -> Result<(), DeliveryError> {
    let parts = url.expose().secret_parts();
    let secrets: Vec<&str> = parts.iter().map(String::as_str).collect();
    http.post_json(url.expose(), &[], body.to_string().into_bytes(), &secrets)
        .await
}

impl SlackSettings {
    pub(super) fn parse(config: &Value, secrets: &Value) -> Result<SlackSettings, ChannelError> {
        parse_url(config, secrets).map(|url| SlackSettings { url })
    }

    pub(super) fn public_config(&self) -> Value {
        json!({ "host": self.url.expose().host() })
    }

    pub(super) async fn deliver(&self, http: &HttpClient, n: &Notice) -> Result<(), DeliveryError> {
        post(http, &self.url, &slack_body(n)).await
    }
}

impl TeamsSettings {
    pub(super) fn parse(config: &Value, secrets: &Value) -> Result<TeamsSettings, ChannelError> {
        parse_url(config, secrets).map(|url| TeamsSettings { url })
    }

    pub(super) fn public_config(&self) -> Value {
        json!({ "host": self.url.expose().host() })
    }

    pub(super) async fn deliver(&self, http: &HttpClient, n: &Notice) -> Result<(), DeliveryError> {
        post(http, &self.url, &teams_body(n)).await
    }
}

/// Slack mrkdwn needs only `&`, `<` and `>` escaped (they would start entities and links).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn title(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "Info",
        Severity::Warning => "Warning",
        Severity::Critical => "Critical",
    }
}

/// `certificate.expiring · tenant acme · <aggregate> · event <id>`, plain text.
fn context_line(n: &Notice) -> String {
    let line = format!(
        "{} · tenant {} · {} · event {}",
        n.event_type, n.tenant, n.aggregate_id, n.event_id
    );
    truncate(&line, MAX_CONTEXT)
}

fn slack_body(n: &Notice) -> Value {
    let summary = slack_escape(&truncate(&n.summary, MAX_SUMMARY));
    let headline = format!("*{}* {summary}", title(n.severity));
    json!({
        "text": format!("[certmesh] {}: {summary}", title(n.severity)),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": headline } },
            {
                "type": "context",
                "elements": [ { "type": "plain_text", "text": context_line(n), "emoji": false } ]
            }
        ]
    })
}

fn teams_body(n: &Notice) -> Value {
    let color = match n.severity {
        Severity::Info => "Default",
        Severity::Warning => "Warning",
        Severity::Critical => "Attention",
    };
    let card = json!({
        "type": "AdaptiveCard",
        "version": "1.4",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "body": [
            {
                "type": "TextBlock", "text": format!("certmesh · {}", title(n.severity)),
                "weight": "Bolder", "size": "Medium", "color": color, "wrap": true
            },
            { "type": "TextBlock", "text": truncate(&n.summary, MAX_SUMMARY), "wrap": true },
            {
                "type": "TextBlock", "text": context_line(n),
                "isSubtle": true, "size": "Small", "wrap": true
            }
        ]
    });
    json!({
        "type": "message",
        "attachments": [
            { "contentType": "application/vnd.microsoft.card.adaptive", "content": card }
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::tests::notice;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/planted-token-xyz";

    #[test]
    fn url_is_secret_and_must_be_https() {
        let s = SlackSettings::parse(&json!({}), &json!({ "url": URL })).expect("valid");
        assert_eq!(s.public_config(), json!({"host": "hooks.slack.com"}));
        assert!(!format!("{s:?}").contains("planted"));
        let t = TeamsSettings::parse(&Value::Null, &json!({ "url": URL })).expect("valid");
        assert!(!format!("{t:?}").contains("planted"));

        let cases = [
            (json!({}), json!({}), Part::Secrets, "url"),
            (
                json!({}),
                json!({"url": "http://hooks.example/x"}),
                Part::Secrets,
                "url",
            ),
            (json!({}), json!({"url": "hooks"}), Part::Secrets, "url"),
            (
                json!({"url": URL}),
                json!({"url": URL}),
                Part::Config,
                "url",
            ),
            (
                json!({}),
                json!({"url": URL, "channel": "#x"}),
                Part::Secrets,
                "channel",
            ),
        ];
        for (config, secrets, part, field) in cases {
            let err = SlackSettings::parse(&config, &secrets).expect_err("invalid");
            assert_eq!(err.field(), Some((part, field)), "{err}");
            let err = TeamsSettings::parse(&config, &secrets).expect_err("invalid");
            assert_eq!(err.field(), Some((part, field)), "{err}");
            assert!(!err.to_string().contains("planted"));
        }
    }

    #[test]
    fn slack_body_escapes_and_has_blocks() {
        let mut n = notice();
        n.summary = "a <b> & c".to_owned();
        let body = slack_body(&n);
        assert_eq!(
            body["blocks"][0]["text"]["text"],
            "*Warning* a &lt;b&gt; &amp; c"
        );
        assert_eq!(body["blocks"][1]["type"], "context");
        assert!(body["text"].as_str().expect("text").contains("&lt;b&gt;"));
    }

    #[test]
    fn teams_body_is_an_adaptive_card() {
        let body = teams_body(&notice());
        let card = &body["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][0]["color"], "Warning");
        assert_eq!(card["body"][1]["text"], notice().summary);
    }
}
