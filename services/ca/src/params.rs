//! The parameters of a gated CA operation: validated, normalized and put in canonical form, so
//! that what custodians approve (the ceremony's digest) and what an operation later asks for
//! compare byte for byte (docs/rfcs/0003).

use std::fmt;

use certmesh_proto::ca as pb;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::CaError;

/// Longest CA name.
const MAX_NAME_LEN: usize = 63;
/// RFC 5280 Appendix A: ub-common-name, ub-organization-name.
const MAX_CN_LEN: usize = 64;
/// Longest lifetime a CA certificate may ask for (30 years).
const MAX_VALIDITY_DAYS: u32 = 30 * 366;
/// Default lifetimes when a request leaves `validity_days` at 0.
const DEFAULT_ROOT_DAYS: u32 = 3650;
const DEFAULT_CHILD_DAYS: u32 = 1825;

/// What a ceremony gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    CreateRoot,
    CreateIntermediate,
    Rotate,
    CrossSign,
    ImportRoot,
}

impl Purpose {
    const ALL: [Purpose; 5] = [
        Purpose::CreateRoot,
        Purpose::CreateIntermediate,
        Purpose::Rotate,
        Purpose::CrossSign,
        Purpose::ImportRoot,
    ];

    /// The stable name, as stored and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::CreateRoot => "create_root",
            Purpose::CreateIntermediate => "create_intermediate",
            Purpose::Rotate => "rotate",
            Purpose::CrossSign => "cross_sign",
            Purpose::ImportRoot => "import_root",
        }
    }

    /// The inverse of [`Purpose::as_str`].
    pub fn parse(text: &str) -> Result<Purpose, CaError> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == text.trim())
            .ok_or_else(|| CaError::InvalidField {
                field: "purpose",
                problem: format!(
                    "must be one of {}",
                    Purpose::ALL.map(Purpose::as_str).join(", ")
                ),
            })
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validated parameters of one operation; which fields are set depends on the purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub purpose: Purpose,
    pub name: Option<String>,
    pub parent_ca_id: Option<uuid::Uuid>,
    pub ca_id: Option<uuid::Uuid>,
    pub issuer_ca_id: Option<uuid::Uuid>,
    pub subject_cn: Option<String>,
    pub subject_o: Option<String>,
    pub key_spec: Option<String>,
    pub path_len: Option<u8>,
    pub permitted_dns: Vec<String>,
    pub excluded_dns: Vec<String>,
    pub validity_days: Option<u32>,
    pub certificate_sha256: Option<String>,
    pub key_ref: Option<String>,
}

/// Which fields a purpose takes.
struct Shape {
    name: bool,
    parent: bool,
    ca: bool,
    issuer: bool,
    subject: bool,
    key_spec: bool,
    constraints: bool,
    validity: bool,
    import: bool,
}

fn shape(purpose: Purpose) -> Shape {
    let none = Shape {
        name: false,
        parent: false,
        ca: false,
        issuer: false,
        subject: false,
        key_spec: false,
        constraints: false,
        validity: false,
        import: false,
    };
    match purpose {
        Purpose::CreateRoot => Shape {
            name: true,
            subject: true,
            key_spec: true,
            constraints: true,
            validity: true,
            ..none
        },
        Purpose::CreateIntermediate => Shape {
            name: true,
            parent: true,
            subject: true,
            key_spec: true,
            constraints: true,
            validity: true,
            ..none
        },
        Purpose::Rotate => Shape {
            ca: true,
            key_spec: true,
            validity: true,
            ..none
        },
        Purpose::CrossSign => Shape {
            ca: true,
            issuer: true,
            validity: true,
            ..none
        },
        Purpose::ImportRoot => Shape {
            name: true,
            import: true,
            ..none
        },
    }
}

impl Params {
    /// Validates `raw` for `purpose`: the fields the purpose takes are checked and normalized
    /// (DNS subtrees lower-cased, sorted and de-duplicated; defaults filled in), and every
    /// other field must be empty, so nothing unapproved can ride along.
    pub fn from_proto(purpose: Purpose, raw: &pb::CaParams) -> Result<Params, CaError> {
        let s = shape(purpose);
        let unexpected = |field: &'static str, set: bool, allowed: bool| {
            if set && !allowed {
                Err(CaError::InvalidField {
                    field,
                    problem: format!("does not apply to {purpose}"),
                })
            } else {
                Ok(())
            }
        };
        unexpected("params.name", !raw.name.trim().is_empty(), s.name)?;
        unexpected(
            "params.parent_ca_id",
            !raw.parent_ca_id.is_empty(),
            s.parent,
        )?;
        unexpected("params.ca_id", !raw.ca_id.is_empty(), s.ca)?;
        unexpected(
            "params.issuer_ca_id",
            !raw.issuer_ca_id.is_empty(),
            s.issuer,
        )?;
        unexpected("params.subject_cn", !raw.subject_cn.is_empty(), s.subject)?;
        unexpected("params.subject_o", !raw.subject_o.is_empty(), s.subject)?;
        unexpected("params.key_spec", !raw.key_spec.is_empty(), s.key_spec)?;
        unexpected("params.path_len", raw.path_len.is_some(), s.constraints)?;
        unexpected(
            "params.permitted_dns",
            !raw.permitted_dns.is_empty(),
            s.constraints,
        )?;
        unexpected(
            "params.excluded_dns",
            !raw.excluded_dns.is_empty(),
            s.constraints,
        )?;
        unexpected("params.validity_days", raw.validity_days != 0, s.validity)?;
        unexpected(
            "params.certificate_sha256",
            !raw.certificate_sha256.is_empty(),
            s.import,
        )?;
        unexpected("params.key_ref", !raw.key_ref.is_empty(), s.import)?;

        Ok(Params {
            purpose,
            name: s.name.then(|| ca_name(&raw.name)).transpose()?,
            parent_ca_id: s
                .parent
                .then(|| id("params.parent_ca_id", &raw.parent_ca_id))
                .transpose()?,
            ca_id: s.ca.then(|| id("params.ca_id", &raw.ca_id)).transpose()?,
            issuer_ca_id: s
                .issuer
                .then(|| id("params.issuer_ca_id", &raw.issuer_ca_id))
                .transpose()?,
            subject_cn: s
                .subject
                .then(|| text("params.subject_cn", &raw.subject_cn, true))
                .transpose()?,
            subject_o: if s.subject && !raw.subject_o.trim().is_empty() {
                Some(text("params.subject_o", &raw.subject_o, false)?)
            } else {
                None
            },
            key_spec: s.key_spec.then(|| key_spec(&raw.key_spec)).transpose()?,
            path_len: match raw.path_len {
                Some(n) => Some(u8::try_from(n).map_err(|_| CaError::InvalidField {
                    field: "params.path_len",
                    problem: "must be at most 255".into(),
                })?),
                None => None,
            },
            permitted_dns: subtrees("params.permitted_dns", &raw.permitted_dns)?,
            excluded_dns: subtrees("params.excluded_dns", &raw.excluded_dns)?,
            validity_days: s
                .validity
                .then(|| validity(purpose, raw.validity_days))
                .transpose()?,
            certificate_sha256: s
                .import
                .then(|| sha256_hex(&raw.certificate_sha256))
                .transpose()?,
            key_ref: s
                .import
                .then(|| text("params.key_ref", &raw.key_ref, true))
                .transpose()?,
        })
    }

    /// The canonical JSON object stored with the ceremony: only the purpose's fields.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        if let Some(v) = &self.name {
            put("name", json!(v));
        }
        if let Some(v) = self.parent_ca_id {
            put("parent_ca_id", json!(v.to_string()));
        }
        if let Some(v) = self.ca_id {
            put("ca_id", json!(v.to_string()));
        }
        if let Some(v) = self.issuer_ca_id {
            put("issuer_ca_id", json!(v.to_string()));
        }
        if let Some(v) = &self.subject_cn {
            put("subject_cn", json!(v));
        }
        if let Some(v) = &self.subject_o {
            put("subject_o", json!(v));
        }
        if let Some(v) = &self.key_spec {
            put("key_spec", json!(v));
        }
        if let Some(v) = self.path_len {
            put("path_len", json!(v));
        }
        let s = shape(self.purpose);
        if s.constraints {
            put("permitted_dns", json!(self.permitted_dns));
            put("excluded_dns", json!(self.excluded_dns));
        }
        if let Some(v) = self.validity_days {
            put("validity_days", json!(v));
        }
        if let Some(v) = &self.certificate_sha256 {
            put("certificate_sha256", json!(v));
        }
        if let Some(v) = &self.key_ref {
            put("key_ref", json!(v));
        }
        Value::Object(m)
    }

    /// Reads stored parameters back (they were valid when stored).
    pub fn from_json(purpose: Purpose, v: &Value) -> Result<Params, CaError> {
        let corrupt = || CaError::Corrupt("ceremony parameters".into());
        let obj = v.as_object().ok_or_else(corrupt)?;
        let str_of = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
        let list = |k: &str| -> Vec<String> {
            obj.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let raw = pb::CaParams {
            name: str_of("name").into(),
            parent_ca_id: str_of("parent_ca_id").into(),
            ca_id: str_of("ca_id").into(),
            issuer_ca_id: str_of("issuer_ca_id").into(),
            subject_cn: str_of("subject_cn").into(),
            subject_o: str_of("subject_o").into(),
            key_spec: str_of("key_spec").into(),
            path_len: obj
                .get("path_len")
                .and_then(Value::as_u64)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            permitted_dns: list("permitted_dns"),
            excluded_dns: list("excluded_dns"),
            validity_days: obj
                .get("validity_days")
                .and_then(Value::as_u64)
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            certificate_sha256: str_of("certificate_sha256").into(),
            key_ref: str_of("key_ref").into(),
        };
        Params::from_proto(purpose, &raw).map_err(|_| corrupt())
    }

    /// The API form.
    pub fn to_proto(&self) -> pb::CaParams {
        let id = |v: Option<uuid::Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
        pb::CaParams {
            name: self.name.clone().unwrap_or_default(),
            parent_ca_id: id(self.parent_ca_id),
            ca_id: id(self.ca_id),
            issuer_ca_id: id(self.issuer_ca_id),
            subject_cn: self.subject_cn.clone().unwrap_or_default(),
            subject_o: self.subject_o.clone().unwrap_or_default(),
            key_spec: self.key_spec.clone().unwrap_or_default(),
            path_len: self.path_len.map(u32::from),
            permitted_dns: self.permitted_dns.clone(),
            excluded_dns: self.excluded_dns.clone(),
            validity_days: self.validity_days.unwrap_or_default(),
            certificate_sha256: self.certificate_sha256.clone().unwrap_or_default(),
            key_ref: self.key_ref.clone().unwrap_or_default(),
        }
    }
}

/// What a ceremony's digest covers.
#[derive(Debug)]
pub struct DigestInput<'a> {
    pub tenant_id: uuid::Uuid,
    pub ceremony_id: uuid::Uuid,
    pub purpose: Purpose,
    pub params: &'a Value,
    pub threshold: u32,
    /// Principal ids; sorted here.
    pub custodians: &'a [uuid::Uuid],
    pub expires_at: DateTime<Utc>,
}

/// Hex SHA-256 of the ceremony's canonical JSON (docs/rfcs/0003).
pub fn digest(input: &DigestInput<'_>) -> String {
    let mut custodians: Vec<String> = input.custodians.iter().map(|u| u.to_string()).collect();
    custodians.sort();
    let doc = json!({
        "ceremony_id": input.ceremony_id.to_string(),
        "custodians": custodians,
        "expires_at": input.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "params": input.params,
        "purpose": input.purpose.as_str(),
        "tenant_id": input.tenant_id.to_string(),
        "threshold": input.threshold,
    });
    hex::encode(Sha256::digest(canonical_json(&doc).as_bytes()))
}

/// JSON with object keys sorted at every depth and no whitespace: one text per value, whatever
/// order the map kept its keys in.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn ca_name(raw: &str) -> Result<String, CaError> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(CaError::InvalidField {
            field: "params.name",
            problem: format!(
                "must be 1 to {MAX_NAME_LEN} of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
            ),
        })
    }
}

fn id(field: &'static str, raw: &str) -> Result<uuid::Uuid, CaError> {
    raw.trim().parse().map_err(|_| CaError::InvalidField {
        field,
        problem: "must be a CA id (UUID)".into(),
    })
}

fn text(field: &'static str, raw: &str, required: bool) -> Result<String, CaError> {
    let v = raw.trim();
    if v.is_empty() && required {
        return Err(CaError::InvalidField {
            field,
            problem: "is required".into(),
        });
    }
    if v.chars().count() > MAX_CN_LEN || v.chars().any(char::is_control) {
        return Err(CaError::InvalidField {
            field,
            problem: format!("must be at most {MAX_CN_LEN} printable characters"),
        });
    }
    Ok(v.to_string())
}

fn key_spec(raw: &str) -> Result<String, CaError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "ecdsa-p256" => Ok("ecdsa-p256".into()),
        "ecdsa-p384" => Ok("ecdsa-p384".into()),
        _ => Err(CaError::InvalidField {
            field: "params.key_spec",
            problem: "must be ecdsa-p256 or ecdsa-p384".into(),
        }),
    }
}

fn validity(purpose: Purpose, days: u32) -> Result<u32, CaError> {
    let days = match (days, purpose) {
        (0, Purpose::CreateRoot) => DEFAULT_ROOT_DAYS,
        (0, _) => DEFAULT_CHILD_DAYS,
        (n, _) => n,
    };
    if days > MAX_VALIDITY_DAYS {
        return Err(CaError::InvalidField {
            field: "params.validity_days",
            problem: format!("must be at most {MAX_VALIDITY_DAYS}"),
        });
    }
    Ok(days)
}

fn sha256_hex(raw: &str) -> Result<String, CaError> {
    let v = raw.trim().to_ascii_lowercase().replace(':', "");
    if v.len() == 64 && v.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(v)
    } else {
        Err(CaError::InvalidField {
            field: "params.certificate_sha256",
            problem: "must be the certificate's SHA-256, 64 hex digits".into(),
        })
    }
}

/// RFC 5280 dNSName subtrees: a host name, or one with a leading dot for "subdomains only";
/// lower-cased, sorted, de-duplicated.
fn subtrees(field: &'static str, raw: &[String]) -> Result<Vec<String>, CaError> {
    let mut out = Vec::with_capacity(raw.len());
    for entry in raw {
        let v = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        let host = v.strip_prefix('.').unwrap_or(&v);
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        if !ok {
            return Err(CaError::InvalidField {
                field,
                problem: format!(
                    "{entry:?} is not a DNS name subtree (host name, optionally with a leading dot)"
                ),
            });
        }
        out.push(v);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_raw() -> pb::CaParams {
        pb::CaParams {
            name: "corp-root".into(),
            subject_cn: "Corp Root CA".into(),
            permitted_dns: vec![
                "Example.COM".into(),
                ".corp.example.com".into(),
                "example.com".into(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn create_root_is_normalized_with_defaults() {
        let p = Params::from_proto(Purpose::CreateRoot, &root_raw()).expect("valid");
        assert_eq!(p.key_spec.as_deref(), Some("ecdsa-p256"));
        assert_eq!(p.validity_days, Some(DEFAULT_ROOT_DAYS));
        assert_eq!(p.permitted_dns, [".corp.example.com", "example.com"]);
        assert_eq!(
            canonical_json(&p.to_json()),
            r#"{"excluded_dns":[],"key_spec":"ecdsa-p256","name":"corp-root","permitted_dns":[".corp.example.com","example.com"],"subject_cn":"Corp Root CA","validity_days":3650}"#
        );
        let back = Params::from_json(Purpose::CreateRoot, &p.to_json()).expect("round trip");
        assert_eq!(back, p);
        assert_eq!(
            Params::from_proto(Purpose::CreateRoot, &back.to_proto()).expect("proto round trip"),
            p
        );
    }

    #[test]
    fn fields_of_another_purpose_are_refused() {
        let mut raw = root_raw();
        raw.ca_id = uuid::Uuid::new_v4().to_string();
        let err = Params::from_proto(Purpose::CreateRoot, &raw).expect_err("ca_id on create_root");
        assert!(err.to_string().contains("params.ca_id"), "{err}");
        let rotate = pb::CaParams {
            ca_id: uuid::Uuid::new_v4().to_string(),
            path_len: Some(1),
            ..Default::default()
        };
        assert!(Params::from_proto(Purpose::Rotate, &rotate).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        for (field, raw) in [
            (
                "params.name",
                pb::CaParams {
                    name: "Bad Name".into(),
                    ..root_raw()
                },
            ),
            (
                "params.subject_cn",
                pb::CaParams {
                    subject_cn: " ".into(),
                    ..root_raw()
                },
            ),
            (
                "params.key_spec",
                pb::CaParams {
                    key_spec: "rsa-2048".into(),
                    ..root_raw()
                },
            ),
            (
                "params.permitted_dns",
                pb::CaParams {
                    permitted_dns: vec!["*.example.com".into()],
                    ..root_raw()
                },
            ),
            (
                "params.validity_days",
                pb::CaParams {
                    validity_days: 100_000,
                    ..root_raw()
                },
            ),
        ] {
            let err = Params::from_proto(Purpose::CreateRoot, &raw).expect_err(field);
            assert!(err.to_string().starts_with(field), "{field}: {err}");
        }
    }

    #[test]
    fn the_digest_covers_every_part_and_ignores_key_order() {
        let params = Params::from_proto(Purpose::CreateRoot, &root_raw())
            .expect("valid")
            .to_json();
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let base = DigestInput {
            tenant_id: uuid::Uuid::nil(),
            ceremony_id: uuid::Uuid::max(),
            purpose: Purpose::CreateRoot,
            params: &params,
            threshold: 2,
            custodians: &[a, b],
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        };
        let d = digest(&base);
        assert_eq!(d.len(), 64);
        assert_eq!(
            digest(&DigestInput {
                custodians: &[b, a],
                ..base
            }),
            d
        );
        assert_ne!(
            digest(&DigestInput {
                threshold: 3,
                ..base
            }),
            d
        );
        let other = json!({"name": "other"});
        assert_ne!(
            digest(&DigestInput {
                params: &other,
                ..base
            }),
            d
        );
        assert_ne!(
            digest(&DigestInput {
                custodians: &[a],
                ..base
            }),
            d
        );
        assert_eq!(
            canonical_json(&json!({"b": [1, {"d": 1, "c": 2}], "a": "x"})),
            r#"{"a":"x","b":[1,{"c":2,"d":1}]}"#
        );
    }
}
