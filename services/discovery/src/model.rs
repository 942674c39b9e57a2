//! Domain types: a validated scan target, and how it is stored.

use certmesh_kit::duration;
use certmesh_proto::discovery as pb;
use serde::{Deserialize, Serialize};

use crate::DiscoveryError;
use crate::scan::TargetSpec;

/// Longest scan-target name.
const NAME_MAX: usize = 64;
/// Shortest interval between scheduled scans.
const MIN_INTERVAL_SECONDS: i64 = 60;

/// A target's stored `spec` (JSON): what [`TargetSpec`] holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredSpec {
    pub hosts: Vec<String>,
    pub ports: Vec<u16>,
    #[serde(default)]
    pub sni: Vec<String>,
}

impl StoredSpec {
    pub fn to_spec(&self) -> TargetSpec {
        TargetSpec {
            hosts: self.hosts.clone(),
            ports: self.ports.clone(),
            sni: self.sni.clone(),
        }
    }

    pub fn from_json(raw: &str) -> Result<StoredSpec, DiscoveryError> {
        serde_json::from_str(raw).map_err(|e| DiscoveryError::Corrupt(format!("target spec: {e}")))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A target as the operator asked for it, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTarget {
    pub name: String,
    pub spec: StoredSpec,
    /// 0 = on demand only.
    pub interval_seconds: i64,
}

impl NewTarget {
    /// Validates `r`: a name, a well-formed spec within `max_addresses`, an interval of at
    /// least a minute (or none).
    pub fn parse(
        r: &pb::CreateScanTargetRequest,
        max_addresses: u64,
    ) -> Result<NewTarget, DiscoveryError> {
        let name = r.name.trim();
        if name.is_empty()
            || name.len() > NAME_MAX
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(DiscoveryError::InvalidField {
                field: "name",
                problem: format!("must be 1 to {NAME_MAX} letters, digits, '-', '_' or '.'"),
            });
        }
        let ports = r
            .ports
            .iter()
            .map(|p| {
                u16::try_from(*p).map_err(|_| DiscoveryError::InvalidField {
                    field: "ports",
                    problem: format!("{p} is not a TCP port"),
                })
            })
            .collect::<Result<Vec<u16>, _>>()?;
        let spec = StoredSpec {
            hosts: r.hosts.iter().map(|h| h.trim().to_owned()).collect(),
            ports,
            sni: r
                .sni
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
        };
        spec.to_spec().validate(max_addresses)?;
        let interval_seconds = match r.interval.trim() {
            "" => 0,
            text => {
                let d = duration::parse(text).map_err(|e| DiscoveryError::InvalidField {
                    field: "interval",
                    problem: e.to_string(),
                })?;
                if d.num_seconds() < MIN_INTERVAL_SECONDS {
                    return Err(DiscoveryError::InvalidField {
                        field: "interval",
                        problem: "must be at least 1m (or empty for on demand)".to_owned(),
                    });
                }
                d.num_seconds()
            }
        };
        Ok(NewTarget {
            name: name.to_owned(),
            spec,
            interval_seconds,
        })
    }
}

/// Where a network find was served: `tls://<ip>:<port>[#<sni>]` (IPv6 in brackets).
pub fn network_location(ip: std::net::IpAddr, port: u16, sni: Option<&str>) -> String {
    let addr = std::net::SocketAddr::new(ip, port);
    match sni {
        Some(name) if !name.is_empty() => format!("tls://{addr}#{name}"),
        _ => format!("tls://{addr}"),
    }
}

/// Where a filesystem find lies: `file://<agent-id><absolute path>`.
pub fn file_location(agent: uuid::Uuid, path: &str) -> String {
    format!("file://{agent}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        name: &str,
        hosts: &[&str],
        ports: &[u32],
        interval: &str,
    ) -> pb::CreateScanTargetRequest {
        pb::CreateScanTargetRequest {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ports: ports.to_vec(),
            sni: Vec::new(),
            interval: interval.into(),
        }
    }

    #[test]
    fn a_good_target_parses() {
        let t = NewTarget::parse(
            &request("lab", &["10.0.0.0/30", "db.internal"], &[443, 8443], "6h"),
            4096,
        )
        .expect("parses");
        assert_eq!(t.interval_seconds, 6 * 3600);
        assert_eq!(t.spec.ports, vec![443, 8443]);
    }

    #[test]
    fn bad_fields_are_named() {
        for (r, field) in [
            (request("", &["10.0.0.1"], &[443], ""), "name"),
            (request("a b", &["10.0.0.1"], &[443], ""), "name"),
            (request("lab", &["10.0.0.1"], &[70000], ""), "ports"),
            (request("lab", &["10.0.0.1"], &[443], "10s"), "interval"),
            (request("lab", &["10.0.0.1"], &[443], "soon"), "interval"),
        ] {
            match NewTarget::parse(&r, 4096) {
                Err(DiscoveryError::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(matches!(
            NewTarget::parse(&request("lab", &["10.0.0.0/8"], &[443], ""), 4096),
            Err(DiscoveryError::Target(_))
        ));
        assert!(matches!(
            NewTarget::parse(&request("lab", &[], &[443], ""), 4096),
            Err(DiscoveryError::Target(_))
        ));
    }

    #[test]
    fn locations_are_stable() {
        let v4 = network_location("10.0.0.5".parse().expect("ip"), 443, Some("web.internal"));
        assert_eq!(v4, "tls://10.0.0.5:443#web.internal");
        let v6 = network_location("::1".parse().expect("ip"), 8443, None);
        assert_eq!(v6, "tls://[::1]:8443");
        assert_eq!(
            file_location(uuid::Uuid::nil(), "/etc/ssl/a.pem"),
            "file://00000000-0000-0000-0000-000000000000/etc/ssl/a.pem"
        );
    }
}
