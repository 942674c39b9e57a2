//! The fleet's domain types: agent identities (SPIFFE ids), validated binding specs, and agent
//! health. `TryFrom<pb::…>` validates, so the rest of the crate only sees valid values.

use std::fmt;
use std::net::IpAddr;

use certmesh_proto::fleet as pb;
use certmesh_store::TenantId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::FleetError;

/// Longest name, path or command accepted in a binding.
const MAX_FIELD: usize = 1024;
/// Most names a binding's certificate may carry.
const MAX_NAMES: usize = 100;

/// An agent's identity: `spiffe://<trust-domain>/tenant/<tenant>/agent/<agent>`, the one URI
/// SAN of its client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentIdentity {
    pub tenant: TenantId,
    pub agent: uuid::Uuid,
}

impl AgentIdentity {
    /// The SPIFFE id under `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/tenant/{}/agent/{}",
            self.tenant, self.agent
        )
    }

    /// Parses a SPIFFE id of `trust_domain`; `None` for anything else (another trust domain,
    /// another shape, ids that are not UUIDs).
    pub fn parse(uri: &str, trust_domain: &str) -> Option<AgentIdentity> {
        let rest = uri.strip_prefix("spiffe://")?.strip_prefix(trust_domain)?;
        let mut parts = rest.split('/');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(""), Some("tenant"), Some(t), Some("agent"), Some(a), None) => {
                Some(AgentIdentity {
                    tenant: TenantId(t.parse().ok()?),
                    agent: a.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

/// The key an agent makes for a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
}

impl KeyType {
    fn parse(s: &str) -> Result<KeyType, FleetError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "ecdsa-p256" | "p256" | "p-256" => Ok(KeyType::EcdsaP256),
            "ecdsa-p384" | "p384" | "p-384" => Ok(KeyType::EcdsaP384),
            other => Err(FleetError::BindingInvalid(format!(
                "key_type {other:?} is not ecdsa-p256 or ecdsa-p384"
            ))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
        }
    }
}

/// What a binding asks for and where it goes; stored as JSON in `bindings.spec`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSpec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub profile: String,
    pub key_type: KeyType,
    pub validity: String,
    pub cert_path: String,
    pub key_path: String,
    pub chain_path: String,
    pub owner: String,
    pub mode: String,
    pub validate_command: String,
    pub reload_command: String,
    pub verify_endpoint: String,
    pub verify_sni: String,
}

fn bounded(field: &'static str, value: &str) -> Result<String, FleetError> {
    let value = value.trim();
    if value.len() > MAX_FIELD || value.chars().any(char::is_control) {
        return Err(FleetError::BindingInvalid(format!(
            "{field} must be at most {MAX_FIELD} characters without control characters"
        )));
    }
    Ok(value.to_owned())
}

fn path(field: &'static str, value: &str, required: bool) -> Result<String, FleetError> {
    let value = bounded(field, value)?;
    if value.is_empty() && !required {
        return Ok(value);
    }
    if !value.starts_with('/') || value.split('/').any(|seg| seg == "..") {
        return Err(FleetError::BindingInvalid(format!(
            "{field} must be an absolute path without \"..\", got {value:?}"
        )));
    }
    Ok(value)
}

fn dns_name(name: &str) -> Result<String, FleetError> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').enumerate().all(|(i, label)| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (i == 0 && b == b'*'))
        });
    if ok {
        Ok(name)
    } else {
        Err(FleetError::BindingInvalid(format!(
            "{name:?} is not a DNS name"
        )))
    }
}

impl BindingSpec {
    /// Validates a binding's certificate spec and target.
    pub fn new(
        cert: Option<&pb::CertificateSpec>,
        target: Option<&pb::DeployTarget>,
    ) -> Result<BindingSpec, FleetError> {
        let cert =
            cert.ok_or_else(|| FleetError::BindingInvalid("certificate is required".to_owned()))?;
        let target =
            target.ok_or_else(|| FleetError::BindingInvalid("target is required".to_owned()))?;
        let dns_names = cert
            .dns_names
            .iter()
            .map(|n| dns_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let ip_addresses = cert
            .ip_addresses
            .iter()
            .map(|ip| {
                ip.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| FleetError::BindingInvalid(format!("{ip:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if dns_names.is_empty() && ip_addresses.is_empty() {
            return Err(FleetError::BindingInvalid(
                "the certificate needs at least one DNS name or IP address".to_owned(),
            ));
        }
        if dns_names.len() + ip_addresses.len() > MAX_NAMES {
            return Err(FleetError::BindingInvalid(format!(
                "at most {MAX_NAMES} names"
            )));
        }
        let profile = bounded("profile", &cert.profile)?;
        if profile.is_empty() {
            return Err(FleetError::BindingInvalid("profile is required".to_owned()));
        }
        if !cert.validity.trim().is_empty() {
            certmesh_kit::duration::parse(cert.validity.trim())
                .map_err(|e| FleetError::BindingInvalid(format!("validity: {e}")))?;
        }
        let mode = bounded("mode", &target.mode)?;
        if !mode.is_empty()
            && (mode.len() > 4 || u32::from_str_radix(&mode, 8).map_or(true, |m| m > 0o777))
        {
            return Err(FleetError::BindingInvalid(format!(
                "mode {mode:?} is not an octal file mode like 0644"
            )));
        }
        let verify_endpoint = bounded("verify_endpoint", &target.verify_endpoint)?;
        if !verify_endpoint.is_empty() {
            let port = verify_endpoint
                .rsplit_once(':')
                .and_then(|(host, port)| (!host.is_empty()).then_some(port))
                .and_then(|p| p.parse::<u16>().ok());
            if port.is_none_or(|p| p == 0) {
                return Err(FleetError::BindingInvalid(format!(
                    "verify_endpoint {verify_endpoint:?} is not host:port"
                )));
            }
        }
        let spec = BindingSpec {
            common_name: bounded("common_name", &cert.common_name)?,
            dns_names,
            ip_addresses,
            profile,
            key_type: KeyType::parse(&cert.key_type)?,
            validity: bounded("validity", &cert.validity)?,
            cert_path: path("cert_path", &target.cert_path, true)?,
            key_path: path("key_path", &target.key_path, true)?,
            chain_path: path("chain_path", &target.chain_path, false)?,
            owner: bounded("owner", &target.owner)?,
            mode,
            validate_command: bounded("validate_command", &target.validate_command)?,
            reload_command: bounded("reload_command", &target.reload_command)?,
            verify_endpoint,
            verify_sni: bounded("verify_sni", &target.verify_sni)?,
        };
        if spec.cert_path == spec.key_path || spec.chain_path == spec.key_path {
            return Err(FleetError::BindingInvalid(
                "the key path must differ from the certificate and chain paths".to_owned(),
            ));
        }
        Ok(spec)
    }

    /// The stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored JSON.
    pub fn from_json(json: &str) -> Result<BindingSpec, FleetError> {
        serde_json::from_str(json).map_err(|e| FleetError::Corrupt(format!("binding spec: {e}")))
    }

    /// The wire form of the certificate half.
    pub fn certificate(&self) -> pb::CertificateSpec {
        pb::CertificateSpec {
            common_name: self.common_name.clone(),
            dns_names: self.dns_names.clone(),
            ip_addresses: self.ip_addresses.iter().map(IpAddr::to_string).collect(),
            profile: self.profile.clone(),
            key_type: self.key_type.as_str().to_owned(),
            validity: self.validity.clone(),
        }
    }

    /// The wire form of the target half.
    pub fn target(&self) -> pb::DeployTarget {
        pb::DeployTarget {
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
            chain_path: self.chain_path.clone(),
            owner: self.owner.clone(),
            mode: self.mode.clone(),
            validate_command: self.validate_command.clone(),
            reload_command: self.reload_command.clone(),
            verify_endpoint: self.verify_endpoint.clone(),
            verify_sni: self.verify_sni.clone(),
        }
    }
}

/// How an agent is doing, from its lifecycle and when it was last heard from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Online,
    Unhealthy,
    Offline,
    Retired,
}

impl Health {
    /// Online while heartbeats arrive within two intervals, unhealthy up to six, offline after.
    pub fn of(
        retired: bool,
        last_seen: Option<DateTime<Utc>>,
        heartbeat: Duration,
        now: DateTime<Utc>,
    ) -> Health {
        if retired {
            return Health::Retired;
        }
        match last_seen {
            Some(seen) if now - seen <= heartbeat * 2 => Health::Online,
            Some(seen) if now - seen <= heartbeat * 6 => Health::Unhealthy,
            _ => Health::Offline,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Online => "online",
            Health::Unhealthy => "unhealthy",
            Health::Offline => "offline",
            Health::Retired => "retired",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> pb::DeployTarget {
        pb::DeployTarget {
            cert_path: "/etc/nginx/tls/web.pem".into(),
            key_path: "/etc/nginx/tls/web.key".into(),
            verify_endpoint: "127.0.0.1:8443".into(),
            mode: "0640".into(),
            ..pb::DeployTarget::default()
        }
    }

    fn cert() -> pb::CertificateSpec {
        pb::CertificateSpec {
            dns_names: vec!["WWW.Example.com.".into()],
            ip_addresses: vec!["127.0.0.1".into()],
            profile: "web".into(),
            ..pb::CertificateSpec::default()
        }
    }

    #[test]
    fn spiffe_ids_round_trip_and_refuse_other_shapes() {
        let id = AgentIdentity {
            tenant: TenantId(uuid::Uuid::from_u128(1)),
            agent: uuid::Uuid::from_u128(2),
        };
        let uri = id.spiffe_id("certmesh.local");
        assert_eq!(AgentIdentity::parse(&uri, "certmesh.local"), Some(id));
        assert_eq!(AgentIdentity::parse(&uri, "other.local"), None);
        assert_eq!(
            AgentIdentity::parse(&format!("{uri}/x"), "certmesh.local"),
            None
        );
        assert_eq!(
            AgentIdentity::parse("spiffe://certmesh.local/tenant/x/agent/y", "certmesh.local"),
            None
        );
        assert_eq!(
            AgentIdentity::parse(&uri.replace("spiffe", "https"), "certmesh.local"),
            None
        );
    }

    #[test]
    fn a_binding_spec_normalises_and_round_trips() {
        let spec = BindingSpec::new(Some(&cert()), Some(&target())).expect("valid");
        assert_eq!(spec.dns_names, ["www.example.com"]);
        assert_eq!(spec.key_type, KeyType::EcdsaP256);
        assert_eq!(BindingSpec::from_json(&spec.to_json()).expect("json"), spec);
    }

    #[test]
    fn bad_bindings_are_refused_with_the_rule() {
        let refused = |c: pb::CertificateSpec, t: pb::DeployTarget| match BindingSpec::new(
            Some(&c),
            Some(&t),
        ) {
            Err(FleetError::BindingInvalid(why)) => why,
            other => panic!("not refused: {other:?}"),
        };
        let no_names = pb::CertificateSpec {
            dns_names: vec![],
            ip_addresses: vec![],
            ..cert()
        };
        assert!(refused(no_names, target()).contains("at least one"));
        let relative = pb::DeployTarget {
            cert_path: "web.pem".into(),
            ..target()
        };
        assert!(refused(cert(), relative).contains("absolute"));
        let escape = pb::DeployTarget {
            key_path: "/etc/../root/.ssh/id".into(),
            ..target()
        };
        assert!(refused(cert(), escape).contains(".."));
        let same = pb::DeployTarget {
            key_path: "/etc/nginx/tls/web.pem".into(),
            ..target()
        };
        assert!(refused(cert(), same).contains("differ"));
        let rsa = pb::CertificateSpec {
            key_type: "rsa-2048".into(),
            ..cert()
        };
        assert!(refused(rsa, target()).contains("key_type"));
        let mode = pb::DeployTarget {
            mode: "rw-r--r--".into(),
            ..target()
        };
        assert!(refused(cert(), mode).contains("mode"));
        let endpoint = pb::DeployTarget {
            verify_endpoint: "nginx".into(),
            ..target()
        };
        assert!(refused(cert(), endpoint).contains("host:port"));
        let name = pb::CertificateSpec {
            dns_names: vec!["bad name".into()],
            ..cert()
        };
        assert!(refused(name, target()).contains("DNS"));
        assert!(BindingSpec::new(None, Some(&target())).is_err());
    }

    #[test]
    fn health_follows_heartbeats() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let hb = Duration::seconds(15);
        let seen = |s: i64| Some(now - Duration::seconds(s));
        assert_eq!(Health::of(false, seen(20), hb, now), Health::Online);
        assert_eq!(Health::of(false, seen(60), hb, now), Health::Unhealthy);
        assert_eq!(Health::of(false, seen(200), hb, now), Health::Offline);
        assert_eq!(Health::of(false, None, hb, now), Health::Offline);
        assert_eq!(Health::of(true, seen(1), hb, now), Health::Retired);
    }
}
