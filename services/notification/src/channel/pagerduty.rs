//! PagerDuty Events API v2: a `trigger` per event, deduplicated on the event id so that a retried
//! delivery opens no second incident.

use certmesh_kit::secret::Secret;
use serde_json::{Value, json};

use super::error::{ChannelError, DeliveryError, Part, truncate};
use super::fields::Fields;
use super::http::{Endpoint, HttpClient};
use super::{Notice, rfc3339};

/// The public Events API v2 endpoint.
pub(super) const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Integration (routing) keys are 32 characters.
const ROUTING_KEY_LEN: usize = 32;
/// PagerDuty cuts `payload.summary` at 1024 characters.
const MAX_SUMMARY: usize = 1000;

/// A validated PagerDuty Events v2 integration.
#[derive(Clone, Debug)]
pub struct PagerDutySettings {
    url: Endpoint,
    routing_key: Secret<String>,
}

impl PagerDutySettings {
    pub(super) fn parse(
        config: &Value,
        secrets: &Value,
    ) -> Result<PagerDutySettings, ChannelError> {
        let mut config = Fields::new(Part::Config, config)?;
        let url = config.opt_str("url")?.unwrap_or(DEFAULT_URL);
        // The routing key travels in the body: never over plain HTTP off the host.
        let url = Endpoint::parse_confidential(url).map_err(|why| config.invalid("url", why))?;
        config.finish()?;

        let mut secrets = Fields::new(Part::Secrets, secrets)?;
        let key = secrets.str("routing_key")?;
        if key.len() != ROUTING_KEY_LEN || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(secrets.invalid(
                "routing_key",
                format!("must be {ROUTING_KEY_LEN} letters and digits"),
            ));
        }
        let routing_key = Secret::new(key.to_owned());
        secrets.finish()?;
        Ok(PagerDutySettings { url, routing_key })
    }

    pub(super) fn public_config(&self) -> Value {
        json!({ "url": self.url.to_string() })
    }

    pub(super) async fn deliver(&self, http: &HttpClient, n: &Notice) -> Result<(), DeliveryError> {
        let body = body(self.routing_key.expose(), n).to_string().into_bytes();
        let secrets = [self.routing_key.expose().as_str()];
        http.post_json(&self.url, &[], body, &secrets).await
    }
}

fn body(routing_key: &str, n: &Notice) -> Value {
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": format!("certmesh-{}", n.event_id),
        "payload": {
            "summary": truncate(&n.summary, MAX_SUMMARY),
            "source": "certmesh",
            "severity": n.severity.as_str(),
            "timestamp": rfc3339(n.occurred_at),
            "component": n.aggregate_id,
            "custom_details": n.payload,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::tests::notice;

    const KEY: &str = "R0UT1NGKEYplanted0123456789abcde";

    #[test]
    fn defaults_the_url_and_hides_the_key() {
        let s = PagerDutySettings::parse(&json!({}), &json!({ "routing_key": KEY })).expect("ok");
        assert_eq!(s.public_config(), json!({ "url": DEFAULT_URL }));
        assert!(!format!("{s:?}").contains("planted"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let key = json!({ "routing_key": KEY });
        let cases = [
            (json!({}), json!({}), Part::Secrets, "routing_key"),
            (
                json!({}),
                json!({"routing_key": "short"}),
                Part::Secrets,
                "routing_key",
            ),
            (
                json!({}),
                json!({"routing_key": format!("{}!", &KEY[..31])}),
                Part::Secrets,
                "routing_key",
            ),
            (
                json!({"url": "http://events.example/v2"}),
                key.clone(),
                Part::Config,
                "url",
            ),
            (json!({"url": true}), key.clone(), Part::Config, "url"),
            (
                json!({"severity": "x"}),
                key.clone(),
                Part::Config,
                "severity",
            ),
        ];
        for (config, secrets, part, field) in cases {
            let err = PagerDutySettings::parse(&config, &secrets).expect_err("invalid");
            assert_eq!(err.field(), Some((part, field)), "{err}");
        }
    }

    #[test]
    fn body_is_an_events_v2_trigger() {
        let n = notice();
        let v = body(KEY, &n);
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], format!("certmesh-{}", n.event_id));
        assert_eq!(v["payload"]["severity"], "warning");
        assert_eq!(v["payload"]["component"], n.aggregate_id);
        assert_eq!(v["payload"]["custom_details"], n.payload);
    }
}
