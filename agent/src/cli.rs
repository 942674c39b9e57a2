//! The command line: `enroll`, `run`, `status`, and a flag for every configuration key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use certmesh_agent::config::{DEFAULT_CONFIG, DiscoveryLayer, Layer, Secret};

/// certmesh fleet agent.
#[derive(Debug, Parser)]
#[command(name = "certmesh-agent", version, about)]
pub struct Cli {
    /// The TOML configuration file (a missing file is fine).
    #[arg(long, global = true, env = "CERTMESH_AGENT_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    #[command(flatten)]
    pub flags: Flags,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trade the bootstrap token for this host's identity.
    Enroll {
        /// Enroll again even if this host is enrolled (a new identity replaces the old one).
        #[arg(long, conflicts_with = "if_not_enrolled")]
        force: bool,
        /// Succeed without enrolling (and without reading a bootstrap token) when this host is
        /// enrolled already: for an init container that runs at every pod start.
        #[arg(long)]
        if_not_enrolled: bool,
    },
    /// Hold the stream to the server and carry out jobs (the daemon).
    Run,
    /// Show the identity, the connection and the last job results; exit 1 if not enrolled.
    Status,
}

/// Overrides of the configuration keys (over `CERTMESH_AGENT_*`, over the file).
#[derive(Debug, Args)]
pub struct Flags {
    /// server: the fleet listener, https://host:port.
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// ca_bundle: PEM bundle trusted for the server's certificate.
    #[arg(long, global = true)]
    pub ca_bundle: Option<PathBuf>,
    /// server_name: TLS name to check the server's certificate against.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
    /// state_dir: identity, pending keys, backups, status.
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
    /// bootstrap_token_file: file holding the bootstrap token.
    #[arg(long, global = true)]
    pub bootstrap_token_file: Option<PathBuf>,
    /// bootstrap_token: the token itself (visible in the process list; prefer the file or
    /// CERTMESH_AGENT_BOOTSTRAP_TOKEN).
    #[arg(long, global = true)]
    pub bootstrap_token: Option<String>,
    /// group: the group this host is expected to join (informational).
    #[arg(long, global = true)]
    pub group: Option<String>,
    /// key_type: identity key type, ecdsa-p256 or ecdsa-p384.
    #[arg(long, global = true)]
    pub key_type: Option<String>,
    /// discovery.paths: files and directories searched for certificates, comma-separated.
    #[arg(long, global = true, value_delimiter = ',')]
    pub discovery_paths: Option<Vec<PathBuf>>,
    /// discovery.interval: how often to search them again (e.g. 1h, 30m).
    #[arg(long, global = true)]
    pub discovery_interval: Option<String>,
}

impl Flags {
    /// The flags as the top configuration layer.
    pub fn into_layer(self) -> Layer {
        let Flags {
            server,
            ca_bundle,
            server_name,
            state_dir,
            bootstrap_token_file,
            bootstrap_token,
            group,
            key_type,
            discovery_paths,
            discovery_interval,
        } = self;
        Layer {
            server,
            ca_bundle,
            server_name,
            state_dir,
            bootstrap_token_file,
            bootstrap_token: bootstrap_token.map(Secret::new),
            group,
            key_type,
            discovery: DiscoveryLayer {
                paths: discovery_paths,
                interval: discovery_interval,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_is_well_formed_and_flags_work_after_the_subcommand() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "certmesh-agent",
            "enroll",
            "--force",
            "--server",
            "https://fleet:8444",
            "--state-dir",
            "/tmp/s",
            "--discovery-paths",
            "/etc/ssl/a,/etc/ssl/b",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Enroll {
                force: true,
                if_not_enrolled: false
            }
        ));
        assert!(
            Cli::try_parse_from(["certmesh-agent", "enroll", "--force", "--if-not-enrolled"])
                .is_err(),
            "--force and --if-not-enrolled exclude each other"
        );
        let layer = cli.flags.into_layer();
        assert_eq!(layer.server.as_deref(), Some("https://fleet:8444"));
        assert_eq!(
            layer.discovery.paths,
            Some(vec![
                PathBuf::from("/etc/ssl/a"),
                PathBuf::from("/etc/ssl/b")
            ])
        );
        assert_eq!(cli.config, PathBuf::from(DEFAULT_CONFIG));
    }
}
