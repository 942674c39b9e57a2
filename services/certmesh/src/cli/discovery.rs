//! `certmesh discovery …`: scan targets, scans, and the inventory of certificates found on the
//! network or on agents' disks (claim one for renewal, or dismiss it), through the gateway.

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum DiscoveryCommand {
    /// What network scans dial: named sets of hosts and ports.
    Targets {
        #[command(subcommand)]
        command: ScanTargetCommand,
    },
    /// Scan a target now and print the finished scan (waits until it is done or times out).
    Scan {
        /// The target's id.
        target_id: String,
    },
    /// List scans, newest first (show one with `scan-show <scan-id>`).
    Scans {
        /// Only this target's scans.
        #[arg(long = "target", value_name = "TARGET_ID")]
        target_id: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show one scan.
    ScanShow {
        /// The scan's id.
        scan_id: String,
    },
    /// List discovered certificates (dismissed ones only with --status dismissed).
    List(ListDiscoveredArgs),
    /// Show one discovered certificate, its PEM included.
    Show {
        id: String,
        /// Print only the certificate, as PEM (for openssl).
        #[arg(long)]
        pem: bool,
    },
    /// Bring a find under management: a fleet binding that issues and renews a replacement on
    /// the agent that reported it (or --agent, or every agent of --group).
    Claim(Box<ClaimArgs>),
    /// Ignore a find: no expiry alerts, hidden from listings unless asked for.
    Dismiss { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ScanTargetCommand {
    /// Create a scan target.
    Create {
        /// Target name, unique in the tenant.
        name: String,
        /// Hostname, IP address or CIDR block such as 10.0.0.0/28 (repeatable).
        #[arg(long = "host", value_name = "HOST", required = true)]
        hosts: Vec<String>,
        /// TCP port (repeatable); every host is dialled on every port.
        #[arg(long = "port", value_name = "PORT", required = true, value_parser = clap::value_parser!(u16).range(1..))]
        ports: Vec<u16>,
        /// SNI name presented on every address (repeatable; default: a hostname's own name,
        /// none for addresses).
        #[arg(long)]
        sni: Vec<String>,
        /// How often to scan, e.g. 6h (default: only on demand).
        #[arg(long)]
        interval: Option<String>,
    },
    /// List scan targets.
    List,
    /// Delete a scan target; its scans and finds stay.
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct ListDiscoveredArgs {
    /// Only finds expiring within this many days (expired ones included).
    #[arg(long)]
    pub expiring_within_days: Option<u32>,
    /// Default: all but dismissed.
    #[arg(long, value_parser = ["unmanaged", "managed", "dismissed"])]
    pub status: Option<String>,
    /// Only finds with a weakness (RSA under 2048 bits, SHA-1 or MD5 signature, DSA key).
    #[arg(long)]
    pub weak: bool,
    /// Only self-signed finds.
    #[arg(long)]
    pub self_signed: bool,
    /// Only finds whose issuer contains this text (case-insensitive).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Only finds from network scans or from agents' disks.
    #[arg(long, value_parser = ["network", "filesystem"])]
    pub source: Option<String>,
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The discovered certificate's id.
    pub id: String,
    /// Deploy on this agent (default: the agent that reported a filesystem find).
    #[arg(long, conflicts_with = "group")]
    pub agent: Option<String>,
    /// Deploy on every agent of this group instead.
    #[arg(long)]
    pub group: Option<String>,
    /// Binding name (default: claimed-<first name>-<id prefix>).
    #[arg(long)]
    pub name: Option<String>,
    /// Issuance profile of the replacement.
    #[arg(long)]
    pub profile: Option<String>,
    /// ecdsa-p256 (default) or ecdsa-p384.
    #[arg(long)]
    pub key_type: Option<String>,
    /// Where the replacement goes on the host (default: the find's own path).
    #[arg(long)]
    pub cert_path: Option<String>,
    /// Where its key goes on the host.
    #[arg(long)]
    pub key_path: Option<String>,
    /// Where the chain goes.
    #[arg(long)]
    pub chain_path: Option<String>,
    /// Run after the files are in place, e.g. "nginx -s reload".
    #[arg(long)]
    pub reload_command: Option<String>,
    /// Run before anything live changes, e.g. "nginx -t".
    #[arg(long)]
    pub validate_command: Option<String>,
    /// host:port to check after deploying (default: the find's endpoint, for network finds).
    #[arg(long)]
    pub verify_endpoint: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn discovery(argv: &[&str]) -> Result<DiscoveryCommand, clap::Error> {
        let argv = ["certmesh", "discovery"].iter().chain(argv);
        match Cli::try_parse_from(argv)?.command {
            Command::Discovery { command, .. } => Ok(command),
            other => panic!("not discovery: {other:?}"),
        }
    }

    #[test]
    fn target_create_takes_repeated_hosts_and_ports() {
        let command = discovery(&[
            "targets",
            "create",
            "edge",
            "--host",
            "10.0.0.0/28",
            "--host",
            "www.example.com",
            "--port",
            "443",
            "--port",
            "8443",
            "--sni",
            "api.example.com",
            "--interval",
            "6h",
        ])
        .expect("parses");
        let DiscoveryCommand::Targets {
            command:
                ScanTargetCommand::Create {
                    name,
                    hosts,
                    ports,
                    sni,
                    interval,
                },
        } = command
        else {
            panic!("targets create: {command:?}")
        };
        assert_eq!(name, "edge");
        assert_eq!(hosts, ["10.0.0.0/28", "www.example.com"]);
        assert_eq!(ports, [443, 8443]);
        assert_eq!(sni, ["api.example.com"]);
        assert_eq!(interval.as_deref(), Some("6h"));
    }

    #[test]
    fn target_create_refuses_missing_or_bad_ports() {
        let create = |port: Option<&str>| {
            let mut argv = vec!["targets", "create", "edge", "--host", "a.example"];
            argv.extend(port.map(|p| ["--port", p]).into_iter().flatten());
            discovery(&argv)
        };
        assert!(create(Some("443")).is_ok());
        assert!(create(None).is_err(), "--port is required");
        assert!(create(Some("0")).is_err());
        assert!(create(Some("65536")).is_err());
        assert!(discovery(&["targets", "create", "edge", "--port", "443"]).is_err());
    }

    #[test]
    fn scans_and_finds_parse() {
        let command = discovery(&["scans", "--target", "t-1", "--limit", "5"]).expect("parses");
        assert!(matches!(
            command,
            DiscoveryCommand::Scans { target_id: Some(t), limit: Some(5) } if t == "t-1"
        ));
        assert!(matches!(
            discovery(&["scan-show", "s-1"]).expect("parses"),
            DiscoveryCommand::ScanShow { scan_id } if scan_id == "s-1"
        ));
        assert!(discovery(&["scan"]).is_err(), "scan needs a target id");

        let command = discovery(&[
            "list",
            "--expiring-within-days",
            "30",
            "--weak",
            "--source",
            "network",
            "--issuer",
            "Let's Encrypt",
        ])
        .expect("parses");
        let DiscoveryCommand::List(list) = command else {
            panic!("list: {command:?}")
        };
        assert_eq!(list.expiring_within_days, Some(30));
        assert!(list.weak && !list.self_signed);
        assert_eq!(list.source.as_deref(), Some("network"));
        assert_eq!(list.issuer.as_deref(), Some("Let's Encrypt"));
        assert!(discovery(&["list", "--source", "ldap"]).is_err());
        assert!(discovery(&["list", "--status", "lost"]).is_err());
    }

    #[test]
    fn claim_parses_and_agent_excludes_group() {
        let command = discovery(&[
            "claim",
            "d-1",
            "--agent",
            "a-1",
            "--profile",
            "web",
            "--cert-path",
            "/etc/nginx/tls/site.pem",
            "--reload-command",
            "nginx -s reload",
            "--verify-endpoint",
            "127.0.0.1:443",
        ])
        .expect("parses");
        let DiscoveryCommand::Claim(claim) = command else {
            panic!("claim: {command:?}")
        };
        assert_eq!(claim.id, "d-1");
        assert_eq!(claim.agent.as_deref(), Some("a-1"));
        assert_eq!(claim.profile.as_deref(), Some("web"));
        assert_eq!(claim.reload_command.as_deref(), Some("nginx -s reload"));
        assert_eq!(claim.group, None);
        assert!(discovery(&["claim", "d-1", "--agent", "a-1", "--group", "web"]).is_err());
        assert!(matches!(
            discovery(&["show", "d-1", "--pem"]).expect("parses"),
            DiscoveryCommand::Show { pem: true, .. }
        ));
    }
}
