//! Domain rules: event-type patterns, and how an outbox event reads as a notice.

use certmesh_store::outbox::Event;

use crate::NotifyError;
use crate::channel::{Notice, Severity};

/// The longest pattern.
const PATTERN_MAX: usize = 128;

/// Validates a rule's event-type pattern: an exact type (`certificate.expiring`), a prefix
/// (`ca.*`) or `*`. Types are lower-case dotted words.
pub fn check_pattern(p: &str) -> Result<String, NotifyError> {
    let p = p.trim();
    let bad = |why: &str| NotifyError::RuleInvalid(format!("event type {p:?}: {why}"));
    if p == "*" {
        return Ok(p.to_owned());
    }
    if p.is_empty() || p.len() > PATTERN_MAX {
        return Err(bad("must be 1 to 128 characters"));
    }
    let stem = p.strip_suffix(".*").unwrap_or(p);
    let word_ok = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
    };
    if !stem.split('.').all(word_ok) {
        return Err(bad("use lower-case dotted words, `prefix.*` or `*`"));
    }
    Ok(p.to_owned())
}

/// Whether `pattern` (already checked) matches `event_type`.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == event_type,
    }
}

fn text<'a>(e: &'a Event, key: &str) -> &'a str {
    e.payload
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// How loud an event is.
pub fn severity(e: &Event) -> Severity {
    match e.event_type.as_str() {
        "certificate.expiring" => match e.payload.get("threshold_days").and_then(|v| v.as_u64()) {
            Some(0 | 1) => Severity::Critical,
            Some(2..=7) => Severity::Warning,
            _ => Severity::Info,
        },
        t if t.ends_with(".revoked") || t.ends_with(".failed") || t.contains("revok") => {
            Severity::Warning
        }
        _ => Severity::Info,
    }
}

/// One sentence about `e`.
pub fn summary(e: &Event) -> String {
    match e.event_type.as_str() {
        "certificate.expiring" => {
            let days = e
                .payload
                .get("days_left")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let when = match days {
                d if d < 0 => format!("expired {} day(s) ago", -d),
                0 => "expires within a day".to_owned(),
                d => format!("expires in {d} day(s)"),
            };
            let name = match text(e, "subject") {
                "" => text(e, "fingerprint_sha256").to_owned(),
                s => s.to_owned(),
            };
            format!(
                "Certificate {name} ({}) {when}, on {}.",
                text(e, "location"),
                text(e, "not_after")
            )
        }
        "discovery.certificate.found" => format!(
            "Found certificate {} at {} ({}).",
            text(e, "subject"),
            text(e, "location"),
            text(e, "status")
        ),
        "notification.test" => "A test notification from certmesh.".to_owned(),
        other => format!("{other} on {}.", e.aggregate_id),
    }
}

/// The notice for `e` of tenant `tenant`.
pub fn notice(e: &Event, tenant: &str) -> Notice {
    Notice {
        event_id: e.id,
        event_type: e.event_type.clone(),
        tenant: tenant.to_owned(),
        aggregate_id: e.aggregate_id.clone(),
        occurred_at: e.created_at,
        severity: severity(e),
        summary: summary(e),
        payload: e.payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use certmesh_store::TenantId;
    use serde_json::json;

    use super::*;

    #[test]
    fn patterns_are_checked_and_match() {
        for good in [
            "*",
            "ca.*",
            "certificate.expiring",
            "fleet.deployment.reported",
        ] {
            assert!(check_pattern(good).is_ok(), "{good}");
        }
        for bad in ["", "CA.*", "ca.", "ca..x", "ca*", "*.issue", "a b"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
        assert!(matches("*", "ca.issue"));
        assert!(matches("ca.*", "ca.issue"));
        assert!(matches("ca.*", "ca.crl.published"));
        assert!(!matches("ca.*", "cache.hit"));
        assert!(!matches("ca.*", "ca"));
        assert!(matches("ca.issue", "ca.issue"));
        assert!(!matches("ca.issue", "ca.issued"));
    }

    #[test]
    fn expiry_events_read_as_sentences_with_a_severity() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let event = |threshold: u64, days: i64| Event {
            id: uuid::Uuid::nil(),
            tenant_id: TenantId(uuid::Uuid::nil()),
            event_type: "certificate.expiring".into(),
            aggregate_id: "certificate:0a".into(),
            payload: json!({"subject": "CN=web", "location": "tls://10.0.0.5:443",
                            "not_after": "2027-01-01T00:00:00Z", "threshold_days": threshold,
                            "days_left": days}),
            created_at: at,
            published_at: None,
        };
        assert_eq!(severity(&event(30, 29)), Severity::Info);
        assert_eq!(severity(&event(7, 6)), Severity::Warning);
        assert_eq!(severity(&event(0, -2)), Severity::Critical);
        assert_eq!(
            summary(&event(7, 6)),
            "Certificate CN=web (tls://10.0.0.5:443) expires in 6 day(s), on 2027-01-01T00:00:00Z."
        );
        assert!(summary(&event(0, -2)).contains("expired 2 day(s) ago"));
    }
}
