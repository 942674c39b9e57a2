//! Certificate profiles: what a profile version allows, and the evaluation of a CSR against it.
//!
//! A profile is stored as versions; each version is immutable once written. [`ValidatedProfile`]
//! is the only form the issuance path evaluates, made once from the wire or stored spec.

use std::collections::BTreeSet;

use certmesh_crypto::csr::{Csr, ExtendedKeyUsage, KeyAlgorithm};
use certmesh_proto::issuance as pb;
use certmesh_store::CaId;
use chrono::Duration;

use crate::{
    error::IssuanceError,
    model::{format_duration, parse_duration},
};

/// EKUs a leaf profile may grant. OCSP signing is for responder certificates the CA makes
/// itself, never for a requested leaf.
const LEAF_EKUS: &[ExtendedKeyUsage] = &[
    ExtendedKeyUsage::ServerAuth,
    ExtendedKeyUsage::ClientAuth,
    ExtendedKeyUsage::CodeSigning,
    ExtendedKeyUsage::EmailProtection,
    ExtendedKeyUsage::TimeStamping,
];

/// A profile version's rules, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedProfile {
    algorithms: BTreeSet<KeyAlgorithm>,
    min_ecdsa_bits: u32,
    min_rsa_bits: u32,
    ekus: Vec<ExtendedKeyUsage>,
    max_validity: Duration,
    dns_suffixes: Vec<String>,
    require_sans: bool,
    allow_ip_sans: bool,
    requires_approval: bool,
    /// The tree CA that signs; `None` for the built-in CA.
    issuer_ca_id: Option<CaId>,
}

/// What a profile grants a request it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Lifetime to sign for.
    pub validity: Duration,
    /// True when the request asked for more than the profile's maximum.
    pub capped: bool,
    /// EKUs to put in the certificate.
    pub ekus: Vec<ExtendedKeyUsage>,
}

/// Why a profile refuses a request: the rule (a spec field name) and what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule, named as the spec field that carries it.
    pub rule: &'static str,
    /// What in the request broke the rule.
    pub detail: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> IssuanceError {
    IssuanceError::ProfileInvalid {
        field,
        problem: problem.into(),
    }
}

/// Profile names: 1-63 characters of `a-z 0-9 - _ .`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), IssuanceError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IssuanceError::InvalidField {
            field: "name",
            problem: "must be 1-63 characters of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
                .into(),
        })
    }
}

impl ValidatedProfile {
    /// Validate a spec from the wire or from a stored version.
    pub fn validate(spec: &pb::ProfileSpec) -> Result<Self, IssuanceError> {
        let algorithms = parse_algorithms(&spec.allowed_key_algorithms)?;
        let min_ecdsa_bits = match spec.min_ecdsa_bits {
            0 | 256 => 256,
            384 => 384,
            other => {
                return Err(invalid(
                    "min_ecdsa_bits",
                    format!("{other} is not 256 or 384"),
                ));
            }
        };
        let min_rsa_bits = match spec.min_rsa_bits {
            0 => 2048,
            n if n < 2048 => return Err(invalid("min_rsa_bits", format!("{n} is below 2048"))),
            n if n > 16384 => return Err(invalid("min_rsa_bits", format!("{n} is above 16384"))),
            n => n,
        };
        let ekus = parse_ekus(&spec.allowed_ekus)?;
        let max_validity = parse_duration("max_validity", &spec.max_validity)
            .map_err(|e| invalid("max_validity", e.to_string()))?;
        let dns_suffixes = spec
            .permitted_dns_suffixes
            .iter()
            .map(|s| normalize_suffix(s))
            .collect::<Result<Vec<_>, _>>()?;
        let issuer_ca_id = parse_issuer_ca_id(&spec.issuer_ca_id)?;
        Ok(Self {
            algorithms,
            min_ecdsa_bits,
            min_rsa_bits,
            ekus,
            max_validity,
            dns_suffixes,
            require_sans: spec.require_sans,
            allow_ip_sans: spec.allow_ip_sans,
            requires_approval: spec.requires_approval,
            issuer_ca_id,
        })
    }

    /// The normalized spec, as stored and returned.
    pub fn to_spec(&self) -> pb::ProfileSpec {
        pb::ProfileSpec {
            allowed_key_algorithms: self
                .algorithms
                .iter()
                .map(|a| a.as_str().to_string())
                .collect(),
            min_ecdsa_bits: self.min_ecdsa_bits,
            min_rsa_bits: self.min_rsa_bits,
            allowed_ekus: self.ekus.iter().map(|e| e.as_str().to_string()).collect(),
            max_validity: format_duration(self.max_validity),
            permitted_dns_suffixes: self.dns_suffixes.clone(),
            require_sans: self.require_sans,
            allow_ip_sans: self.allow_ip_sans,
            requires_approval: self.requires_approval,
            issuer_ca_id: self
                .issuer_ca_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        }
    }

    /// Whether every request under this profile waits for a second person's approval.
    pub fn requires_approval(&self) -> bool {
        self.requires_approval
    }

    /// The tree CA that signs under this profile; `None` for the built-in CA.
    pub fn issuer_ca_id(&self) -> Option<CaId> {
        self.issuer_ca_id
    }

    /// The spec as stored JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.to_spec()).unwrap_or(serde_json::Value::Null)
    }

    /// Read a stored version's spec.
    pub fn from_json(json: &serde_json::Value) -> Result<Self, IssuanceError> {
        let spec: pb::ProfileSpec = serde_json::from_value(json.clone())
            .map_err(|e| invalid("spec", format!("stored spec does not parse: {e}")))?;
        Self::validate(&spec)
    }

    /// Evaluate a CSR and requested lifetime. Rules run in a fixed order and the first broken
    /// one is reported.
    pub fn evaluate(&self, csr: &Csr, requested: Option<Duration>) -> Result<Grant, Denial> {
        self.check_key(csr)?;
        self.check_names(csr)?;
        let ekus = self.grant_ekus(csr)?;
        let (validity, capped) = match requested {
            Some(r) if r > self.max_validity => (self.max_validity, true),
            Some(r) => (r, false),
            None => (self.max_validity, false),
        };
        Ok(Grant {
            validity,
            capped,
            ekus,
        })
    }

    fn check_key(&self, csr: &Csr) -> Result<(), Denial> {
        let key = csr.key();
        if !self.algorithms.contains(&key.algorithm) {
            return Err(deny(
                "allowed_key_algorithms",
                format!("{} keys are not allowed", key.algorithm.as_str()),
            ));
        }
        let floor = match key.algorithm {
            KeyAlgorithm::Ecdsa => Some(("min_ecdsa_bits", self.min_ecdsa_bits)),
            KeyAlgorithm::Rsa => Some(("min_rsa_bits", self.min_rsa_bits)),
            KeyAlgorithm::Ed25519 => None,
        };
        match floor {
            Some((rule, min)) if key.bits < min => Err(deny(
                rule,
                format!(
                    "{} key of {} bits is below {min}",
                    key.algorithm.as_str(),
                    key.bits
                ),
            )),
            _ => Ok(()),
        }
    }

    fn check_names(&self, csr: &Csr) -> Result<(), Denial> {
        let san_count = csr.dns_names().len() + csr.ip_addresses().len() + csr.other_names().len();
        if self.require_sans && san_count == 0 {
            return Err(deny(
                "require_sans",
                "the CSR has no subject alternative name".into(),
            ));
        }
        if let Some(other) = csr.other_names().first() {
            return Err(deny(
                "permitted_dns_suffixes",
                format!("SAN {other} is not a DNS name or IP address"),
            ));
        }
        if let Some(ip) = csr.ip_addresses().first().filter(|_| !self.allow_ip_sans) {
            return Err(deny("allow_ip_sans", format!("IP SAN {ip} is not allowed")));
        }
        for name in csr.dns_names() {
            self.check_dns_name(name)?;
        }
        if let Some(cn) = csr.common_name() {
            let in_sans = csr.dns_names().iter().any(|n| n.eq_ignore_ascii_case(cn))
                || csr.ip_addresses().iter().any(|ip| ip.to_string() == cn);
            if !in_sans {
                self.check_dns_name(cn)?;
            }
        }
        Ok(())
    }

    fn check_dns_name(&self, name: &str) -> Result<(), Denial> {
        let lower = name.to_ascii_lowercase();
        if !is_dns_name(&lower) {
            return Err(deny(
                "permitted_dns_suffixes",
                format!("{name:?} is not a valid DNS name"),
            ));
        }
        let base = lower.strip_prefix("*.").unwrap_or(&lower);
        let permitted = self
            .dns_suffixes
            .iter()
            .any(|s| base == s || base.ends_with(&format!(".{s}")));
        if permitted {
            Ok(())
        } else {
            Err(deny(
                "permitted_dns_suffixes",
                format!("{name} is outside the permitted DNS suffixes"),
            ))
        }
    }

    fn grant_ekus(&self, csr: &Csr) -> Result<Vec<ExtendedKeyUsage>, Denial> {
        if csr.requested_ekus().is_empty() {
            return Ok(self.ekus.clone());
        }
        if let Some(eku) = csr.requested_ekus().iter().find(|e| !self.ekus.contains(e)) {
            return Err(deny(
                "allowed_ekus",
                format!("EKU {} is not allowed", eku.as_str()),
            ));
        }
        Ok(csr.requested_ekus().to_vec())
    }

    /// Longest lifetime the profile grants.
    pub fn max_validity(&self) -> Duration {
        self.max_validity
    }
}

/// Profile versions are immutable, so a validated version is cached for good, keyed by the
/// profile's id and version number. Only the pointer to the latest version is read per request.
#[derive(Debug, Default)]
pub struct VersionCache {
    versions: std::sync::RwLock<
        std::collections::HashMap<(uuid::Uuid, u32), std::sync::Arc<ValidatedProfile>>,
    >,
}

/// Versions held before the cache starts over (profiles are few; this bounds a pathological
/// tenant that writes versions in a loop).
const VERSION_CACHE_MAX: usize = 10_000;

impl VersionCache {
    /// The cached version, if validated before.
    pub fn get(
        &self,
        profile_id: uuid::Uuid,
        version: u32,
    ) -> Option<std::sync::Arc<ValidatedProfile>> {
        let map = self.versions.read().unwrap_or_else(|e| e.into_inner());
        map.get(&(profile_id, version)).cloned()
    }

    /// Remember a validated version.
    pub fn insert(
        &self,
        profile_id: uuid::Uuid,
        version: u32,
        profile: std::sync::Arc<ValidatedProfile>,
    ) {
        let mut map = self.versions.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= VERSION_CACHE_MAX {
            map.clear();
        }
        map.insert((profile_id, version), profile);
    }
}

fn deny(rule: &'static str, detail: String) -> Denial {
    Denial { rule, detail }
}

fn parse_algorithms(names: &[String]) -> Result<BTreeSet<KeyAlgorithm>, IssuanceError> {
    if names.is_empty() {
        return Err(invalid(
            "allowed_key_algorithms",
            "must name at least one of ECDSA, RSA, Ed25519",
        ));
    }
    names
        .iter()
        .map(|n| {
            n.parse::<KeyAlgorithm>().map_err(|_| {
                invalid(
                    "allowed_key_algorithms",
                    format!("{n:?} is not ECDSA, RSA or Ed25519"),
                )
            })
        })
        .collect()
}

fn parse_ekus(names: &[String]) -> Result<Vec<ExtendedKeyUsage>, IssuanceError> {
    if names.is_empty() {
        return Err(invalid("allowed_ekus", "must name at least one EKU"));
    }
    let mut ekus = Vec::new();
    for name in names {
        let eku = name
            .parse::<ExtendedKeyUsage>()
            .ok()
            .filter(|e| LEAF_EKUS.contains(e))
            .ok_or_else(|| {
                invalid(
                    "allowed_ekus",
                    format!("{name:?} is not one of serverAuth, clientAuth, codeSigning, emailProtection, timeStamping"),
                )
            })?;
        if !ekus.contains(&eku) {
            ekus.push(eku);
        }
    }
    ekus.sort();
    Ok(ekus)
}

/// Empty is the built-in CA; anything else must be a UUID, stored in its hyphenated lower-case
/// form. Whether the tenant has that CA is checked where the store is at hand.
fn parse_issuer_ca_id(raw: &str) -> Result<Option<CaId>, IssuanceError> {
    match raw.trim() {
        "" => Ok(None),
        id => uuid::Uuid::parse_str(id)
            .map(|id| Some(CaId(id)))
            .map_err(|_| invalid("issuer_ca_id", format!("{raw:?} is not a CA id (a UUID)"))),
    }
}

fn normalize_suffix(raw: &str) -> Result<String, IssuanceError> {
    let s = raw.trim().trim_start_matches('.').to_ascii_lowercase();
    if is_dns_name(&s) && !s.starts_with("*.") {
        Ok(s)
    } else {
        Err(invalid(
            "permitted_dns_suffixes",
            format!("{raw:?} is not a DNS name"),
        ))
    }
}

/// RFC 1035 §2.3.1 preferred name syntax (letters, digits, hyphens; labels 1-63 octets; at
/// most 253 octets), lower case, with an optional leading `*.` wildcard label.
fn is_dns_name(name: &str) -> bool {
    let body = name.strip_prefix("*.").unwrap_or(name);
    !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> pb::ProfileSpec {
        pb::ProfileSpec {
            allowed_key_algorithms: vec!["ECDSA".into()],
            min_ecdsa_bits: 256,
            min_rsa_bits: 2048,
            allowed_ekus: vec!["serverAuth".into()],
            max_validity: "2160h".into(),
            permitted_dns_suffixes: vec!["example.com".into()],
            require_sans: true,
            allow_ip_sans: false,
            requires_approval: false,
            issuer_ca_id: String::new(),
        }
    }

    #[test]
    fn a_valid_spec_normalizes_and_round_trips_through_json() {
        let mut s = spec();
        s.permitted_dns_suffixes = vec![".Example.COM".into()];
        let p = ValidatedProfile::validate(&s).expect("valid");
        assert_eq!(p.to_spec().permitted_dns_suffixes, vec!["example.com"]);
        assert_eq!(
            ValidatedProfile::from_json(&p.to_json()).expect("reads back"),
            p
        );
        assert!(!p.requires_approval());
    }

    #[test]
    fn requires_approval_round_trips() {
        let mut s = spec();
        s.requires_approval = true;
        let p = ValidatedProfile::validate(&s).expect("valid");
        assert!(p.requires_approval());
        assert!(p.to_spec().requires_approval);
        let back = ValidatedProfile::from_json(&p.to_json()).expect("reads back");
        assert!(back.requires_approval());
        // Specs stored before the field existed read as not requiring approval.
        let mut old = ValidatedProfile::validate(&spec())
            .expect("valid")
            .to_json();
        old.as_object_mut()
            .expect("object")
            .remove("requires_approval");
        assert!(
            !ValidatedProfile::from_json(&old)
                .expect("old")
                .requires_approval()
        );
    }

    #[test]
    fn issuer_ca_id_round_trips_and_old_specs_read_as_the_built_in_ca() {
        let id = "0F8FAD5B-D9CB-469F-A165-70867728950E";
        let mut s = spec();
        s.issuer_ca_id = format!(" {id} ");
        let p = ValidatedProfile::validate(&s).expect("valid");
        let want = CaId(uuid::Uuid::parse_str(id).expect("uuid"));
        assert_eq!(p.issuer_ca_id(), Some(want));
        assert_eq!(
            p.to_spec().issuer_ca_id,
            "0f8fad5b-d9cb-469f-a165-70867728950e"
        );
        let json = p.to_json();
        assert_eq!(json["issuer_ca_id"], "0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(ValidatedProfile::from_json(&json).expect("reads back"), p);

        let builtin = ValidatedProfile::validate(&spec()).expect("valid");
        assert_eq!(builtin.issuer_ca_id(), None);
        // Specs stored before the field existed read as signed by the built-in CA.
        let mut old = builtin.to_json();
        old.as_object_mut().expect("object").remove("issuer_ca_id");
        let old = ValidatedProfile::from_json(&old).expect("old");
        assert_eq!(old.issuer_ca_id(), None);
        assert_eq!(old, builtin);
    }

    #[test]
    fn broken_specs_name_the_field() {
        type Mutation = fn(&mut pb::ProfileSpec);
        let cases: Vec<(Mutation, &str)> = vec![
            (
                |s| s.allowed_key_algorithms = vec![],
                "allowed_key_algorithms",
            ),
            (
                |s| s.allowed_key_algorithms = vec!["DSA".into()],
                "allowed_key_algorithms",
            ),
            (|s| s.min_ecdsa_bits = 224, "min_ecdsa_bits"),
            (|s| s.min_rsa_bits = 1024, "min_rsa_bits"),
            (
                |s| s.allowed_ekus = vec!["OCSPSigning".into()],
                "allowed_ekus",
            ),
            (|s| s.allowed_ekus = vec![], "allowed_ekus"),
            (|s| s.max_validity = "forever".into(), "max_validity"),
            (
                |s| s.permitted_dns_suffixes = vec!["bad name".into()],
                "permitted_dns_suffixes",
            ),
            (|s| s.issuer_ca_id = "ca-1".into(), "issuer_ca_id"),
        ];
        for (mutate, field) in cases {
            let mut s = spec();
            mutate(&mut s);
            match ValidatedProfile::validate(&s) {
                Err(IssuanceError::ProfileInvalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn dns_names_follow_rfc_1035() {
        assert!(is_dns_name("a.example.com"));
        assert!(is_dns_name("*.example.com"));
        assert!(!is_dns_name("a..example.com"));
        assert!(!is_dns_name("-a.example.com"));
        assert!(!is_dns_name("a b.example.com"));
        assert!(!is_dns_name("a.*.example.com"));
    }

    #[test]
    fn profile_names_are_constrained() {
        assert!(validate_name("web-servers").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("Web").is_err());
        assert!(validate_name("-x").is_err());
    }
}
