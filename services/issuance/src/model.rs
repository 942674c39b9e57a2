//! Domain types of the issuance role, each made once from its wire form and valid thereafter.

use certmesh_crypto::{csr::Csr, digest};
use certmesh_proto::issuance as pb;
use chrono::Duration;

use crate::error::IssuanceError;

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Longest lifetime anything may ask for (profile maximum or request): ten years.
pub const MAX_LIFETIME: Duration = Duration::days(3650);

/// Parse a Go-style duration: one or more `<integer><unit>` with unit `d`, `h`, `m` or `s`
/// ("2160h", "90d", "1h30m"). Must be positive and at most [`MAX_LIFETIME`].
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, IssuanceError> {
    let invalid = |problem: &str| IssuanceError::ValidityInvalid {
        field,
        problem: format!("{text:?} {problem}"),
    };
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Err(invalid("is empty"));
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for ch in text_trimmed.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let n: i64 = digits
            .parse()
            .map_err(|_| invalid("is not a duration like \"2160h\" or \"90d\""))?;
        digits.clear();
        let part = match ch {
            'd' => Duration::try_days(n),
            'h' => Duration::try_hours(n),
            'm' => Duration::try_minutes(n),
            's' => Duration::try_seconds(n),
            _ => None,
        }
        .ok_or_else(|| invalid("is not a duration like \"2160h\" or \"90d\""))?;
        total = total
            .checked_add(&part)
            .ok_or_else(|| invalid("is too long"))?;
    }
    if !digits.is_empty() {
        return Err(invalid("has a number without a unit (d, h, m, s)"));
    }
    if total <= Duration::zero() {
        return Err(invalid("must be positive"));
    }
    if total > MAX_LIFETIME {
        return Err(invalid("is longer than ten years"));
    }
    Ok(total)
}

/// Render a duration the way the API accepts it: whole hours when possible, else seconds.
pub fn format_duration(d: Duration) -> String {
    let secs = d.num_seconds();
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// A validated Issue request.
#[derive(Debug, Clone)]
pub struct IssueCommand {
    /// The parsed CSR; its self-signature verified.
    pub csr: Csr,
    /// Profile name.
    pub profile: String,
    /// Requested lifetime, `None` for the profile's maximum.
    pub validity: Option<Duration>,
    /// Idempotency key, if the caller sent one.
    pub idempotency_key: Option<String>,
}

impl IssueCommand {
    /// Validate a wire request; `metadata_key` is the `idempotency-key` header, used when the
    /// body carries none.
    pub fn parse(req: pb::IssueRequest, metadata_key: Option<&str>) -> Result<Self, IssuanceError> {
        if req.csr.trim().is_empty() {
            return Err(required("csr"));
        }
        let csr = Csr::from_pem(&req.csr)?;
        let profile = req.profile.trim().to_string();
        if profile.is_empty() {
            return Err(required("profile"));
        }
        let validity = match req.validity.trim() {
            "" => None,
            text => Some(parse_duration("validity", text)?),
        };
        let key = match (req.idempotency_key.as_str(), metadata_key) {
            ("", None) => None,
            ("", Some(k)) => Some(k.to_string()),
            (body, Some(k)) if body != k => {
                return Err(IssuanceError::InvalidField {
                    field: "idempotency_key",
                    problem: "differs from the Idempotency-Key header".into(),
                });
            }
            (body, _) => Some(body.to_string()),
        };
        if let Some(k) = &key {
            validate_key(k)?;
        }
        Ok(Self {
            csr,
            profile,
            validity,
            idempotency_key: key,
        })
    }

    /// What makes two requests "the same" under one idempotency key: the CSR's DER, the profile
    /// name and the requested validity.
    pub fn request_hash(&self) -> String {
        let validity = self.validity.map(|d| d.num_seconds()).unwrap_or(0);
        let mut material = Vec::with_capacity(self.csr.der().len() + 64);
        material.extend_from_slice(self.csr.der());
        material.push(0);
        material.extend_from_slice(self.profile.as_bytes());
        material.push(0);
        material.extend_from_slice(&validity.to_be_bytes());
        digest::sha256_hex(&material)
    }
}

fn required(field: &'static str) -> IssuanceError {
    IssuanceError::InvalidField {
        field,
        problem: "is required".into(),
    }
}

fn validate_key(key: &str) -> Result<(), IssuanceError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY
        && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(IssuanceError::InvalidField {
            field: "idempotency_key",
            problem: format!("must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(
            parse_duration("v", "2160h").expect("ok"),
            Duration::hours(2160)
        );
        assert_eq!(
            parse_duration("v", "1h30m").expect("ok"),
            Duration::minutes(90)
        );
        assert_eq!(parse_duration("v", "90d").expect("ok"), Duration::days(90));
        assert_eq!(
            parse_duration("v", "45s").expect("ok"),
            Duration::seconds(45)
        );
        for bad in [
            "", "10", "h", "1x", "-5h", "0h", "1h2", "99999d", "1.5h", "abc",
        ] {
            let err = parse_duration("validity", bad).expect_err(bad);
            assert!(
                matches!(
                    err,
                    IssuanceError::ValidityInvalid {
                        field: "validity",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_format_back() {
        assert_eq!(format_duration(Duration::hours(2160)), "2160h");
        assert_eq!(format_duration(Duration::seconds(61)), "61s");
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(validate_key("order-42").is_ok());
        assert!(validate_key("with space").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
    }
}
