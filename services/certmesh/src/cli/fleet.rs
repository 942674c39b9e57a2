//! `certmesh fleet …`: bootstrap tokens, agents, deployment bindings, jobs, deployments and
//! renew-now, through the gateway.

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// One-time bootstrap tokens that enroll an agent into a group.
    Token {
        #[command(subcommand)]
        command: FleetTokenCommand,
    },
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Deployment bindings: what to issue and where an agent installs it.
    Binding {
        #[command(subcommand)]
        command: BindingCommand,
    },
    /// Jobs the fleet role gave agents.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Deployment state per binding and agent.
    Deployments {
        /// Only this agent's.
        #[arg(long)]
        agent: Option<String>,
        /// Only this certificate's (hex serial).
        #[arg(long)]
        serial: Option<String>,
        /// Only this binding's.
        #[arg(long)]
        binding: Option<String>,
    },
    /// Renew a certificate now wherever it is deployed.
    RenewNow {
        /// Hex serial.
        serial: String,
    },
    /// Install a binding's current certificate again (no new issuance), e.g. after the files
    /// were changed by hand.
    Redeploy {
        /// Binding id.
        binding: String,
        /// Only on this agent.
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetTokenCommand {
    /// Create a token; the secret is printed once.
    Create {
        /// Agent group (default "default").
        #[arg(long)]
        group: Option<String>,
        /// How long it may be used (default 24h, at most 720h).
        #[arg(long)]
        expires_in: Option<String>,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
        /// Print only the secret.
        #[arg(long)]
        secret_only: bool,
    },
    /// List tokens (never the secrets).
    List,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List agents with their health.
    List {
        #[arg(long)]
        group: Option<String>,
    },
    /// One agent.
    Show { id: String },
    /// Retire an agent: its certificate stops working and its jobs are cancelled.
    Retire { id: String },
}

#[derive(Debug, Subcommand)]
pub enum BindingCommand {
    /// Create a binding for one agent (--agent) or a group (--group).
    Create(Box<BindingArgs>),
    /// List live bindings.
    List,
    /// Delete a binding (installed files stay).
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct BindingArgs {
    /// Binding name, unique in the tenant.
    #[arg(long)]
    pub name: String,
    /// The agent (id) it is for.
    #[arg(long, conflicts_with = "group")]
    pub agent: Option<String>,
    /// The agent group it is for.
    #[arg(long)]
    pub group: Option<String>,
    /// DNS subjectAltName (repeatable).
    #[arg(long = "dns")]
    pub dns_names: Vec<String>,
    /// IP subjectAltName (repeatable).
    #[arg(long = "ip")]
    pub ip_addresses: Vec<String>,
    /// Subject commonName (default: the first DNS name).
    #[arg(long)]
    pub common_name: Option<String>,
    /// Profile to issue under.
    #[arg(long)]
    pub profile: String,
    /// ecdsa-p256 (default) or ecdsa-p384.
    #[arg(long)]
    pub key_type: Option<String>,
    /// Requested lifetime, e.g. 720h.
    #[arg(long)]
    pub validity: Option<String>,
    /// Where the certificate goes on the host (absolute).
    #[arg(long)]
    pub cert_path: String,
    /// Where the key goes on the host (absolute; written 0600).
    #[arg(long)]
    pub key_path: String,
    /// Where the chain goes (default: appended to the certificate file).
    #[arg(long)]
    pub chain_path: Option<String>,
    /// Owner of the files, user or user:group.
    #[arg(long)]
    pub owner: Option<String>,
    /// Octal mode of the certificate and chain (default 0644).
    #[arg(long)]
    pub mode: Option<String>,
    /// Run before anything live changes, e.g. "nginx -t".
    #[arg(long)]
    pub validate_command: Option<String>,
    /// Run after the files are in place, e.g. "nginx -s reload".
    #[arg(long)]
    pub reload_command: Option<String>,
    /// host:port the agent dials to check the served certificate.
    #[arg(long)]
    pub verify_endpoint: Option<String>,
    /// SNI for that check.
    #[arg(long)]
    pub verify_sni: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// List jobs, newest first.
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        binding: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// One job.
    Show { id: String },
}
