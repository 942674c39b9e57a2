//! Network scans: dial TLS endpoints and record the certificate chains they serve.
//!
//! A scan goes in two steps. [`expand`] turns a [`TargetSpec`] (hosts, CIDR blocks, ports,
//! SNI names) into a plan: it resolves names, expands blocks and puts every resolved address
//! through the [`Guard`], so that an address the guard refuses shows up as
//! [`Planned::Refused`] instead of disappearing. [`Scanner::scan`] then dials the planned
//! [`Endpoint`]s, a bounded number at a time, and returns what each one served.
//!
//! An endpoint carries the address that was checked, and that address is what gets dialed:
//! nothing is resolved twice, so a name cannot be rebound to a refused address in between.

use std::net::IpAddr;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::timeout;

mod guard;
mod target;
mod tls;

pub use guard::{Guard, Refusal};
pub use target::{Cidr, Host, MAX_PORTS, MAX_SNI, TargetSpec};
pub use tls::Scanner;

/// How long one name may take to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many names resolve at once.
const RESOLVE_CONCURRENCY: usize = 16;

/// Why a scan cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The spec is malformed or asks for too much.
    #[error("invalid scan target: {field}: {detail}")]
    InvalidTarget {
        /// The spec field at fault: `hosts`, `ports` or `sni`.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A hostname did not resolve (or resolved to nothing) within [`RESOLVE_TIMEOUT`].
    #[error("invalid scan target: hosts: {host} does not resolve: {detail}")]
    Unresolved {
        /// The hostname.
        host: String,
        /// What the resolver said.
        detail: String,
    },
    /// The guard refuses the address.
    #[error("{ip} is refused: {reason}")]
    Refused {
        /// The address.
        ip: IpAddr,
        /// Why.
        reason: Refusal,
    },
}

impl ScanError {
    /// The stable reason: `SCAN_TARGET_INVALID` or `SCAN_TARGET_REFUSED`.
    pub fn reason(&self) -> &'static str {
        match self {
            ScanError::InvalidTarget { .. } | ScanError::Unresolved { .. } => "SCAN_TARGET_INVALID",
            ScanError::Refused { .. } => "SCAN_TARGET_REFUSED",
        }
    }
}

/// One TLS endpoint to dial.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The host as the spec named it (a hostname, an address, or the CIDR block it is from).
    pub host: String,
    /// The checked address that is dialed.
    pub ip: IpAddr,
    /// The TCP port.
    pub port: u16,
    /// The SNI name sent, if any.
    pub sni: Option<String>,
}

/// One line of the plan [`expand`] makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// To be dialed.
    Endpoint(Endpoint),
    /// An address the guard refuses: one line per address, whatever the ports.
    Refused {
        /// The host as the spec named it.
        host: String,
        /// The refused address.
        ip: IpAddr,
        /// Why.
        reason: Refusal,
    },
}

/// What dialing one endpoint gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// The endpoint dialed.
    pub endpoint: Endpoint,
    /// What it served, or a short detail of what failed (`"connection refused"`,
    /// `"timed out after 3s"`, `"TLS: …"`).
    pub outcome: Result<Served, String>,
}

/// What a TLS endpoint served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The negotiated version: `"TLSv1.3"` or `"TLSv1.2"`.
    pub tls_version: String,
    /// The DER certificates, leaf first, as served.
    pub chain: Vec<Vec<u8>>,
}

/// Plans a scan: validates `spec`, resolves its names (at most [`RESOLVE_TIMEOUT`] each),
/// expands its blocks, checks every address with `guard` and pairs each allowed one with
/// every port and SNI name. A name that does not resolve is [`ScanError::Unresolved`]; more
/// than `max_addresses` addresses in all is [`ScanError::InvalidTarget`].
pub async fn expand(
    spec: &TargetSpec,
    guard: &Guard,
    max_addresses: u64,
) -> Result<Vec<Planned>, ScanError> {
    spec.validate(max_addresses)?;
    let hosts = spec
        .hosts
        .iter()
        .map(|text| Host::parse(text).map(|host| (text.trim().to_owned(), host)))
        .collect::<Result<Vec<_>, _>>()?;
    let resolved: Vec<Addresses> = stream::iter(hosts)
        .map(|(text, host)| addresses(text, host))
        .buffered(RESOLVE_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let total: usize = resolved.iter().map(|r| r.ips.len()).sum();
    if total as u64 > max_addresses {
        return Err(ScanError::InvalidTarget {
            field: "hosts",
            detail: format!("{total} addresses in all, more than the {max_addresses} allowed"),
        });
    }
    let ports = spec.distinct_ports();
    let mut plan = Vec::new();
    for host in resolved {
        host.plan(spec, guard, &ports, &mut plan);
    }
    Ok(plan)
}

/// The addresses one host stands for.
struct Addresses {
    host: String,
    /// The hostname, for a hostname host (the default SNI).
    name: Option<String>,
    ips: Vec<IpAddr>,
}

impl Addresses {
    fn plan(self, spec: &TargetSpec, guard: &Guard, ports: &[u16], plan: &mut Vec<Planned>) {
        let snis: Vec<Option<String>> = if spec.sni.is_empty() {
            vec![self.name.clone()]
        } else {
            spec.sni.iter().cloned().map(Some).collect()
        };
        for ip in self.ips {
            if let Some(reason) = guard.refusal(ip) {
                plan.push(Planned::Refused {
                    host: self.host.clone(),
                    ip,
                    reason,
                });
                continue;
            }
            for port in ports {
                for sni in &snis {
                    plan.push(Planned::Endpoint(Endpoint {
                        host: self.host.clone(),
                        ip,
                        port: *port,
                        sni: sni.clone(),
                    }));
                }
            }
        }
    }
}

async fn addresses(text: String, host: Host) -> Result<Addresses, ScanError> {
    let (name, ips) = match host {
        Host::Ip(ip) => (None, vec![ip]),
        Host::Cidr(cidr) => (None, cidr.addresses().collect()),
        Host::Name(name) => {
            let ips = resolve(&name)
                .await
                .map_err(|detail| ScanError::Unresolved {
                    host: text.clone(),
                    detail,
                })?;
            (Some(name), ips)
        }
    };
    Ok(Addresses {
        host: text,
        name,
        ips,
    })
}

/// Every address `name` resolves to, without repeats, in the resolver's order.
async fn resolve(name: &str) -> Result<Vec<IpAddr>, String> {
    let found = timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| format!("no answer within {}s", RESOLVE_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !ips.contains(&addr.ip()) {
            ips.push(addr.ip());
        }
    }
    if ips.is_empty() {
        return Err("the name has no addresses".to_owned());
    }
    Ok(ips)
}
