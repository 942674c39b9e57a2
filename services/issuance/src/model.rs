//! Domain types of the issuance role, each made once from its wire form and valid thereafter.

use certmesh_crypto::{csr::Csr, digest};
use certmesh_proto::issuance as pb;
use chrono::Duration;

use crate::error::IssuanceError;

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Parse a duration field ([`certmesh_kit::duration::parse`]) into a `VALIDITY_INVALID` error
/// naming `field`.
pub fn parse_duration(field: &'static str, text: &str) -> Result<Duration, IssuanceError> {
    certmesh_kit::duration::parse(text)
        .map_err(|problem| IssuanceError::ValidityInvalid { field, problem })
}

/// Render a duration the way the API accepts it.
pub fn format_duration(d: Duration) -> String {
    certmesh_kit::duration::format(d)
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
    fn a_bad_duration_is_validity_invalid_naming_the_field() {
        let err = parse_duration("validity", "forever").expect_err("bad");
        assert!(matches!(
            err,
            IssuanceError::ValidityInvalid {
                field: "validity",
                ..
            }
        ));
        assert_eq!(
            parse_duration("validity", "24h").expect("ok"),
            Duration::hours(24)
        );
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(validate_key("order-42").is_ok());
        assert!(validate_key("with space").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
    }
}
