//! The SSRF guard: which addresses a scan may dial.
//!
//! A scan dials whatever an operator (or a compromised API client) names, from inside the
//! network certmesh runs in. The guard stands between every resolved address and the dial:
//! cloud metadata endpoints (which hand out credentials), the unspecified address (which Linux
//! dials as the local host), multicast and broadcast are always refused; loopback and
//! link-local unless allowed; private ranges are allowed by default because private PKI lives
//! there. An explicit allow range overrides all of it. IPv4-mapped (`::ffff:a.b.c.d`) and NAT64
//! (`64:ff9b::a.b.c.d`) IPv6 addresses are judged as the IPv4 address they reach.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ScanError;
use super::target::Cidr;

/// Cloud instance metadata services: AWS, GCP, Azure and OCI (169.254.169.254), AWS ECS task
/// metadata (169.254.170.2), EKS Pod Identity (169.254.170.23), Alibaba (100.100.100.200).
const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(100, 100, 100, 200),
];

/// The IPv6 metadata endpoints of AWS (IMDS and EKS Pod Identity).
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
];

/// Why the guard refuses an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A cloud instance metadata endpoint.
    CloudMetadata,
    /// `0.0.0.0/8` or `::`.
    Unspecified,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// RFC 1918, shared address space (`100.64.0.0/10`) or unique local (`fc00::/7`).
    Private,
}

impl Refusal {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::CloudMetadata => "cloud-metadata",
            Refusal::Unspecified => "unspecified",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Loopback => "loopback",
            Refusal::LinkLocal => "link-local",
            Refusal::Private => "private",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::CloudMetadata => "a cloud metadata address",
            Refusal::Unspecified => "an unspecified address",
            Refusal::Multicast => "a multicast address",
            Refusal::Broadcast => "the broadcast address",
            Refusal::Loopback => "a loopback address (not allowed)",
            Refusal::LinkLocal => "a link-local address (not allowed)",
            Refusal::Private => "a private address (not allowed)",
        })
    }
}

/// Which addresses a scan may dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Dial `127.0.0.0/8` and `::1` (tests, or scanning the certmesh host itself).
    pub allow_loopback: bool,
    /// Dial RFC 1918, `100.64.0.0/10` and `fc00::/7` (default: yes).
    pub allow_private: bool,
    /// Dial `169.254.0.0/16` and `fe80::/10` (metadata addresses stay refused).
    pub allow_link_local: bool,
    /// Ranges always allowed, whatever else they are.
    pub allowed: Vec<Cidr>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            allow_loopback: false,
            allow_private: true,
            allow_link_local: false,
            allowed: Vec::new(),
        }
    }
}

impl Guard {
    /// `Ok` if `ip` may be dialed, else [`ScanError::Refused`] saying why.
    pub fn check(&self, ip: IpAddr) -> Result<(), ScanError> {
        match self.refusal(ip) {
            None => Ok(()),
            Some(reason) => Err(ScanError::Refused { ip, reason }),
        }
    }

    /// Why `ip` may not be dialed, if it may not.
    pub fn refusal(&self, ip: IpAddr) -> Option<Refusal> {
        let reached = reached(ip);
        if self
            .allowed
            .iter()
            .any(|range| range.contains(ip) || range.contains(reached))
        {
            return None;
        }
        let class = classify(reached)?;
        let allowed = match class {
            Refusal::Loopback => self.allow_loopback,
            Refusal::LinkLocal => self.allow_link_local,
            Refusal::Private => self.allow_private,
            Refusal::CloudMetadata
            | Refusal::Unspecified
            | Refusal::Multicast
            | Refusal::Broadcast => false,
        };
        (!allowed).then_some(class)
    }
}

/// The address a packet to `ip` reaches: the embedded IPv4 address of an IPv4-mapped
/// (RFC 4291 §2.5.5.2) or NAT64 well-known-prefix (RFC 6052 §2.1) address, else `ip`.
fn reached(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let [a, b, c, d, e, f, g, h] = v6.segments();
    if [a, b, c, d, e, f] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [g1, g2] = g.to_be_bytes();
        let [h1, h2] = h.to_be_bytes();
        return IpAddr::V4(Ipv4Addr::new(g1, g2, h1, h2));
    }
    ip
}

/// The special range `ip` is in, if any; metadata first, as it sits inside link-local and
/// private ranges.
fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, ..] = ip.octets();
    Some(if METADATA_V4.contains(&ip) {
        Refusal::CloudMetadata
    } else if a == 0 {
        // RFC 1122 §3.2.1.3 "this network"; Linux dials 0.0.0.0 as the local host.
        Refusal::Unspecified
    } else if ip.is_broadcast() {
        Refusal::Broadcast
    } else if ip.is_multicast() {
        Refusal::Multicast
    } else if ip.is_loopback() {
        Refusal::Loopback
    } else if ip.is_link_local() {
        Refusal::LinkLocal
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        // RFC 1918, and RFC 6598 shared address space (carrier-grade NAT).
        Refusal::Private
    } else {
        return None;
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    Some(if METADATA_V6.contains(&ip) {
        Refusal::CloudMetadata
    } else if ip.is_unspecified() {
        Refusal::Unspecified
    } else if ip.is_multicast() {
        Refusal::Multicast
    } else if ip.is_loopback() {
        Refusal::Loopback
    } else if ip.is_unicast_link_local() {
        Refusal::LinkLocal
    } else if ip.is_unique_local() {
        Refusal::Private
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(guard: &Guard, ip: &str) -> Option<Refusal> {
        guard.refusal(ip.parse().expect("ip"))
    }

    #[test]
    fn defaults_refuse_the_dangerous_and_allow_private_and_public() {
        let guard = Guard::default();
        let cases = [
            ("169.254.169.254", Some(Refusal::CloudMetadata)),
            ("169.254.170.2", Some(Refusal::CloudMetadata)),
            ("100.100.100.200", Some(Refusal::CloudMetadata)),
            ("fd00:ec2::254", Some(Refusal::CloudMetadata)),
            ("0.0.0.0", Some(Refusal::Unspecified)),
            ("0.1.2.3", Some(Refusal::Unspecified)),
            ("::", Some(Refusal::Unspecified)),
            ("224.0.0.1", Some(Refusal::Multicast)),
            ("ff02::1", Some(Refusal::Multicast)),
            ("255.255.255.255", Some(Refusal::Broadcast)),
            ("127.0.0.1", Some(Refusal::Loopback)),
            ("127.255.0.9", Some(Refusal::Loopback)),
            ("::1", Some(Refusal::Loopback)),
            ("::ffff:127.0.0.1", Some(Refusal::Loopback)),
            ("::ffff:169.254.169.254", Some(Refusal::CloudMetadata)),
            ("64:ff9b::a9fe:a9fe", Some(Refusal::CloudMetadata)),
            ("169.254.1.1", Some(Refusal::LinkLocal)),
            ("fe80::1", Some(Refusal::LinkLocal)),
            ("10.0.0.1", None),
            ("172.16.5.4", None),
            ("192.168.1.1", None),
            ("100.64.0.1", None),
            ("fd12:3456::1", None),
            ("192.0.2.10", None),
            ("2001:db8::1", None),
            ("::ffff:192.0.2.10", None),
        ];
        for (ip, expected) in cases {
            assert_eq!(refusal(&guard, ip), expected, "{ip}");
        }
    }

    #[test]
    fn knobs_open_their_ranges_but_never_metadata() {
        let open = Guard {
            allow_loopback: true,
            allow_private: false,
            allow_link_local: true,
            allowed: Vec::new(),
        };
        assert_eq!(refusal(&open, "127.0.0.1"), None);
        assert_eq!(refusal(&open, "::ffff:127.0.0.1"), None);
        assert_eq!(refusal(&open, "169.254.1.1"), None);
        assert_eq!(
            refusal(&open, "169.254.169.254"),
            Some(Refusal::CloudMetadata)
        );
        assert_eq!(refusal(&open, "10.1.2.3"), Some(Refusal::Private));
        assert_eq!(refusal(&open, "100.127.0.1"), Some(Refusal::Private));
        assert_eq!(refusal(&open, "fc00::1"), Some(Refusal::Private));
        assert_eq!(refusal(&open, "0.0.0.0"), Some(Refusal::Unspecified));
    }

    #[test]
    fn explicit_ranges_override() {
        let guard = Guard {
            allowed: vec!["127.0.0.0/30".parse().expect("cidr")],
            ..Guard::default()
        };
        assert_eq!(refusal(&guard, "127.0.0.2"), None);
        assert_eq!(refusal(&guard, "::ffff:127.0.0.2"), None);
        assert_eq!(refusal(&guard, "127.0.0.4"), Some(Refusal::Loopback));
        let err = guard
            .check("::1".parse().expect("ip"))
            .expect_err("refused");
        assert_eq!(err.reason(), "SCAN_TARGET_REFUSED");
        assert_eq!(
            err.to_string(),
            "::1 is refused: a loopback address (not allowed)"
        );
    }
}
