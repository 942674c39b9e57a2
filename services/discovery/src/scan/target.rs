//! What a scan is asked to dial: hosts (DNS names, IP addresses, CIDR blocks), ports and SNI
//! names. [`TargetSpec::validate`] checks a spec once, naming the field at fault; each host
//! parses into a [`Host`], and [`Cidr`] is the small CIDR parser the spec and the guard share.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use rustls_pki_types::DnsName;

use super::ScanError;

/// Most ports one scan may name.
pub const MAX_PORTS: usize = 64;
/// Most extra SNI names one scan may name (each multiplies the handshakes per address).
pub const MAX_SNI: usize = 16;

/// The targets of one scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSpec {
    /// Hostnames, IPv4/IPv6 addresses (`192.0.2.7`, `2001:db8::7` or `[2001:db8::7]`) and CIDR
    /// blocks (`10.0.0.0/30`).
    pub hosts: Vec<String>,
    /// TCP ports, 1 to [`MAX_PORTS`] of them.
    pub ports: Vec<u16>,
    /// SNI names to send on every address instead of the default, which is the hostname
    /// itself for hostname hosts and no SNI for addresses and CIDR blocks.
    pub sni: Vec<String>,
}

impl TargetSpec {
    /// Checks the spec: at least one host and port, no port 0, at most [`MAX_PORTS`] ports
    /// and [`MAX_SNI`] SNI names, every host a DNS name, address or CIDR block, every SNI name
    /// a DNS name, and at most `max_addresses` addresses in the literal hosts and blocks
    /// together (hostnames are counted again once resolved).
    pub fn validate(&self, max_addresses: u64) -> Result<(), ScanError> {
        self.validate_ports()?;
        self.validate_sni()?;
        if self.hosts.is_empty() {
            return Err(invalid("hosts", "at least one host is required"));
        }
        let mut total: u128 = 0;
        for host in &self.hosts {
            let size = Host::parse(host)?.address_count();
            if size > u128::from(max_addresses) {
                return Err(invalid(
                    "hosts",
                    format!("{host} holds {size} addresses, more than the {max_addresses} allowed"),
                ));
            }
            total = total.saturating_add(size);
        }
        if total > u128::from(max_addresses) {
            return Err(invalid(
                "hosts",
                format!("{total} addresses in all, more than the {max_addresses} allowed"),
            ));
        }
        Ok(())
    }

    fn validate_ports(&self) -> Result<(), ScanError> {
        if self.ports.is_empty() {
            return Err(invalid("ports", "at least one port is required"));
        }
        if self.ports.len() > MAX_PORTS {
            return Err(invalid(
                "ports",
                format!("{} ports, more than {MAX_PORTS}", self.ports.len()),
            ));
        }
        if self.ports.contains(&0) {
            return Err(invalid("ports", "port 0 cannot be dialed"));
        }
        Ok(())
    }

    fn validate_sni(&self) -> Result<(), ScanError> {
        if self.sni.len() > MAX_SNI {
            return Err(invalid(
                "sni",
                format!("{} names, more than {MAX_SNI}", self.sni.len()),
            ));
        }
        for name in &self.sni {
            sni_name(name)?;
        }
        Ok(())
    }

    /// The ports, without repeats, in the order given.
    pub(crate) fn distinct_ports(&self) -> Vec<u16> {
        let mut ports = self.ports.clone();
        let mut seen = std::collections::HashSet::new();
        ports.retain(|p| seen.insert(*p));
        ports
    }
}

fn invalid(field: &'static str, detail: impl Into<String>) -> ScanError {
    ScanError::InvalidTarget {
        field,
        detail: detail.into(),
    }
}

/// An SNI name must be a DNS name (RFC 6066 §3: literal addresses are not sent as SNI).
fn sni_name(name: &str) -> Result<(), ScanError> {
    if name.parse::<IpAddr>().is_ok() || DnsName::try_from(name).is_err() {
        return Err(invalid("sni", format!("{name:?} is not a DNS name")));
    }
    Ok(())
}

/// One entry of [`TargetSpec::hosts`], parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, resolved when the scan is expanded.
    Name(String),
    /// One address.
    Ip(IpAddr),
    /// A block of addresses.
    Cidr(Cidr),
}

impl Host {
    /// A CIDR block if it has a `/`, else an address (brackets allowed around IPv6), else a
    /// DNS name.
    pub fn parse(text: &str) -> Result<Host, ScanError> {
        let text = text.trim();
        if text.contains('/') {
            return text
                .parse()
                .map(Host::Cidr)
                .map_err(|detail| invalid("hosts", detail));
        }
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = unbracketed.parse() {
            return Ok(Host::Ip(ip));
        }
        if DnsName::try_from(text).is_err() {
            return Err(invalid(
                "hosts",
                format!("{text:?} is not a hostname, IP address or CIDR block"),
            ));
        }
        Ok(Host::Name(text.to_ascii_lowercase()))
    }

    /// How many addresses the host stands for before resolution (1 for a name).
    fn address_count(&self) -> u128 {
        match self {
            Host::Name(_) | Host::Ip(_) => 1,
            Host::Cidr(cidr) => cidr.size(),
        }
    }
}

/// An IP network: an address with its host bits cleared, and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of `addr` with `prefix` bits (host bits are cleared, as `10.0.0.5/30` is
    /// commonly written for `10.0.0.4/30`).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let bits = family_bits(addr);
        if prefix > bits {
            return Err(format!("prefix /{prefix} is longer than {bits} bits"));
        }
        let mask = mask(bits, prefix);
        Ok(Cidr {
            network: from_bits(addr, to_bits(addr) & mask),
            prefix,
        })
    }

    /// The first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the block holds (saturating at `u128::MAX` for `::/0`).
    pub fn size(&self) -> u128 {
        let host_bits = u32::from(family_bits(self.network) - self.prefix);
        1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
    }

    /// Whether `ip` is in the block (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        let mask = mask(family_bits(ip), self.prefix);
        to_bits(ip) & mask == to_bits(self.network)
    }

    /// Every address of the block, in order, network and broadcast addresses included.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let bits = family_bits(self.network);
        let first = to_bits(self.network);
        let last = first | (all_ones(bits) & !mask(bits, self.prefix));
        (first..=last).map(|bits| from_bits(self.network, bits))
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `<address>/<prefix>`, e.g. `10.0.0.0/30` or `2001:db8::/126`.
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR block like 10.0.0.0/24"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: {addr:?} is not an IP address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|_| prefix.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{text:?}: {prefix:?} is not a prefix length"))?;
        Cidr::new(addr, prefix).map_err(|e| format!("{text:?}: {e}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn family_bits(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The low `bits` bits set.
fn all_ones(bits: u8) -> u128 {
    u128::MAX >> (128 - u32::from(bits))
}

/// The top `prefix` of the low `bits` bits set.
fn mask(bits: u8, prefix: u8) -> u128 {
    let all = all_ones(bits);
    let host = all.checked_shr(u32::from(prefix)).unwrap_or(0);
    all & !host
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// An address of the same family as `like` from its bits.
fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        // The IPv4 callers only pass values below 2^32.
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(bits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("valid CIDR")
    }

    fn spec(hosts: &[&str], ports: &[u16], sni: &[&str]) -> TargetSpec {
        TargetSpec {
            hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
            ports: ports.to_vec(),
            sni: sni.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn field(err: ScanError) -> &'static str {
        match err {
            ScanError::InvalidTarget { field, .. } => field,
            other => panic!("not a target error: {other}"),
        }
    }

    #[test]
    fn cidr_parsing_and_sizes() {
        let block = cidr("10.0.0.0/30");
        assert_eq!(block.size(), 4);
        let all: Vec<String> = block.addresses().map(|ip| ip.to_string()).collect();
        assert_eq!(all, ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(cidr("10.0.0.2/30"), block, "host bits are cleared");
        assert_eq!(cidr("192.0.2.7/32").size(), 1);
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(cidr("2001:db8::/126").addresses().count(), 4);
        assert_eq!(cidr("::/0").size(), u128::MAX);
        assert_eq!(cidr("2001:db8::/64").to_string(), "2001:db8::/64");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_membership() {
        let block = cidr("172.16.0.0/12");
        assert!(block.contains("172.31.255.255".parse().expect("ip")));
        assert!(!block.contains("172.32.0.0".parse().expect("ip")));
        assert!(!block.contains("::ffff:172.16.0.1".parse().expect("ip")));
        assert!(cidr("::/0").contains("::1".parse().expect("ip")));
        assert!(cidr("0.0.0.0/0").contains("8.8.8.8".parse().expect("ip")));
    }

    #[test]
    fn hosts_parse_as_blocks_addresses_or_names() {
        assert_eq!(
            Host::parse("10.0.0.0/30").expect("cidr"),
            Host::Cidr(cidr("10.0.0.0/30"))
        );
        assert_eq!(
            Host::parse("[2001:db8::7]").expect("ip"),
            Host::Ip("2001:db8::7".parse().expect("ip"))
        );
        assert_eq!(
            Host::parse("Www.Example.COM").expect("name"),
            Host::Name("www.example.com".into())
        );
        for bad in ["", "not a host", "exa mple.com", "10.0.0.0/40", "http://x"] {
            assert!(Host::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(
            spec(&["example.com", "10.0.0.0/30"], &[443], &[])
                .validate(1024)
                .is_ok()
        );
        assert_eq!(
            field(spec(&[], &[443], &[]).validate(10).expect_err("")),
            "hosts"
        );
        assert_eq!(
            field(spec(&["a.b"], &[], &[]).validate(10).expect_err("")),
            "ports"
        );
        assert_eq!(
            field(spec(&["a.b"], &[0], &[]).validate(10).expect_err("")),
            "ports"
        );
        let many: Vec<u16> = (1..=65).collect();
        assert_eq!(
            field(spec(&["a.b"], &many, &[]).validate(10).expect_err("")),
            "ports"
        );
        assert_eq!(
            field(spec(&["10.0/8"], &[443], &[]).validate(10).expect_err("")),
            "hosts"
        );
        let err = spec(&["10.0.0.0/16"], &[443], &[])
            .validate(1024)
            .expect_err("too big");
        assert!(err.to_string().contains("65536"), "{err}");
        assert_eq!(err.reason(), "SCAN_TARGET_INVALID");
        let sum = spec(&["10.0.0.0/23", "10.0.2.0/23", "10.0.4.0/23"], &[443], &[]);
        assert_eq!(field(sum.validate(1024).expect_err("sum")), "hosts");
        for bad_sni in ["10.0.0.1", "bad name", ""] {
            let err = spec(&["a.b"], &[443], &[bad_sni])
                .validate(10)
                .expect_err("sni");
            assert_eq!(field(err), "sni", "{bad_sni:?}");
        }
        assert!(
            spec(&["a.b"], &[443, 443], &["www.a.b"])
                .validate(10)
                .is_ok()
        );
        assert_eq!(
            spec(&["a.b"], &[443, 8443, 443], &[]).distinct_ports(),
            [443, 8443]
        );
    }
}
