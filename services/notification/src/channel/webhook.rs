//! Generic webhooks: a signed JSON POST to the operator's URL.
//!
//! The receiver checks `X-Certmesh-Signature` (`v1=` and the lower-hex HMAC-SHA256, under the
//! shared secret, of the `X-Certmesh-Timestamp` value, a dot and the raw body) with a
//! constant-time comparison, and refuses timestamps far from its clock to stop replays.

use certmesh_kit::secret::Secret;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::error::{ChannelError, DeliveryError, Part};
use super::fields::Fields;
use super::http::{Endpoint, HttpClient};
use super::{Notice, rfc3339};

/// Shortest shared secret accepted, in bytes.
const MIN_SECRET: usize = 16;
/// Longest shared secret accepted, in bytes.
const MAX_SECRET: usize = 1024;

/// A validated webhook: where to POST and the HMAC secret to sign with.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    url: Endpoint,
    hmac_secret: Secret<String>,
}

impl WebhookSettings {
    pub(super) fn parse(config: &Value, secrets: &Value) -> Result<WebhookSettings, ChannelError> {
        let mut config = Fields::new(Part::Config, config)?;
        let url = config.str("url")?;
        let url = Endpoint::parse(url).map_err(|why| config.invalid("url", why))?;
        config.finish()?;

        let mut secrets = Fields::new(Part::Secrets, secrets)?;
        let hmac_secret = secrets.str("hmac_secret")?;
        if !(MIN_SECRET..=MAX_SECRET).contains(&hmac_secret.len()) {
            return Err(secrets.invalid(
                "hmac_secret",
                format!("must be {MIN_SECRET} to {MAX_SECRET} bytes long"),
            ));
        }
        let hmac_secret = Secret::new(hmac_secret.to_owned());
        secrets.finish()?;
        Ok(WebhookSettings { url, hmac_secret })
    }

    pub(super) fn public_config(&self) -> Value {
        json!({ "url": self.url.to_string() })
    }

    pub(super) async fn deliver(
        &self,
        http: &HttpClient,
        n: &Notice,
        now: DateTime<Utc>,
    ) -> Result<(), DeliveryError> {
        let body = body(n);
        let timestamp = now.timestamp();
        let signature = webhook_signature(self.hmac_secret.expose().as_bytes(), timestamp, &body);
        let headers = [
            ("x-certmesh-event-id", n.event_id.to_string()),
            ("x-certmesh-event-type", n.event_type.clone()),
            ("x-certmesh-timestamp", timestamp.to_string()),
            ("x-certmesh-signature", signature),
        ];
        let secrets = [self.hmac_secret.expose().as_str()];
        http.post_json(&self.url, &headers, body, &secrets).await
    }
}

/// The JSON body, serialized once: the signature covers exactly these bytes.
fn body(n: &Notice) -> Vec<u8> {
    json!({
        "id": n.event_id,
        "type": n.event_type,
        "tenant": n.tenant,
        "aggregate_id": n.aggregate_id,
        "occurred_at": rfc3339(n.occurred_at),
        "severity": n.severity.as_str(),
        "summary": n.summary,
        "data": n.payload,
    })
    .to_string()
    .into_bytes()
}

/// `"v1="` and the lower-hex HMAC-SHA256 under `secret` of `"{timestamp}."` followed by `body`.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = certmesh_crypto::digest::hmac_sha256(secret, &signed);
    format!("v1={}", hex::encode(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::tests::notice;

    const SECRET: &str = "whsec-0123456789abcdef";

    #[test]
    fn parses_and_shows_only_the_url() {
        let s = WebhookSettings::parse(
            &json!({"url": "https://hooks.example/x"}),
            &json!({"hmac_secret": SECRET}),
        )
        .expect("valid");
        assert_eq!(s.public_config(), json!({"url": "https://hooks.example/x"}));
        assert!(!format!("{s:?}").contains(SECRET));
    }

    #[test]
    fn each_bad_field_is_named() {
        let url = json!({"url": "https://hooks.example/x"});
        let secret = json!({"hmac_secret": SECRET});
        let cases = [
            (json!({}), secret.clone(), Part::Config, "url"),
            (
                json!({"url": "ftp://x/"}),
                secret.clone(),
                Part::Config,
                "url",
            ),
            (json!({"url": 3}), secret.clone(), Part::Config, "url"),
            (
                json!({"url": "https://h/", "urll": 1}),
                secret.clone(),
                Part::Config,
                "urll",
            ),
            (url.clone(), json!({}), Part::Secrets, "hmac_secret"),
            (
                url.clone(),
                json!({"hmac_secret": "short"}),
                Part::Secrets,
                "hmac_secret",
            ),
            (
                url.clone(),
                json!({"hmac_secret": SECRET, "x": 1}),
                Part::Secrets,
                "x",
            ),
        ];
        for (config, secrets, part, field) in cases {
            let err = WebhookSettings::parse(&config, &secrets).expect_err("invalid");
            assert_eq!(err.field(), Some((part, field)), "{err}");
            assert!(!err.to_string().contains("short"), "{err}");
        }
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        // HMAC-SHA256("key", "1700000000.{}"), computed independently with openssl dgst.
        assert_eq!(
            webhook_signature(b"key", 1_700_000_000, b"{}"),
            "v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(
            webhook_signature(b"key", 1_700_000_001, b"{}"),
            webhook_signature(b"key", 1_700_000_000, b"{}")
        );
    }

    #[test]
    fn body_carries_every_field() {
        let v: Value = serde_json::from_slice(&body(&notice())).expect("json");
        assert_eq!(v["type"], "certificate.expiring");
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["occurred_at"], "2025-03-01T12:00:00.000Z");
        assert_eq!(v["data"]["days_left"], 7);
        for key in ["id", "tenant", "aggregate_id", "summary"] {
            assert!(v[key].is_string(), "{key}");
        }
    }
}
