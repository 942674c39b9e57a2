//! Command-line surface of the `certmesh` binary. Every flag has a `CERTMESH_*` variable.

mod ca;
mod discovery;
mod fleet;
mod notify;

use std::{net::SocketAddr, path::PathBuf};

use certmesh_kit::Secret;
use clap::{Args, Parser, Subcommand};

pub use self::ca::{CaCommand, CaParamsArgs, CeremonyCommand, CeremonyPurpose, CeremonyStartArgs};
pub use self::discovery::{ClaimArgs, DiscoveryCommand, ListDiscoveredArgs, ScanTargetCommand};
pub use self::fleet::{
    AgentCommand, BindingArgs, BindingCommand, FleetCommand, FleetTokenCommand, JobCommand,
};
pub use self::notify::{ChannelArgs, ChannelCommand, NotifyCommand, RuleCommand};

#[derive(Debug, Parser)]
#[command(
    name = "certmesh",
    version,
    about = "certmesh: certificate lifecycle control plane and private PKI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run server roles.
    Server(Box<ServerArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// The mesh CA of `--mesh internal`: make a secret, print the CA, issue a certificate
    /// (for curl or grpcurl against a role's listener while debugging).
    Mesh {
        #[command(subcommand)]
        command: MeshCommand,
    },
    /// API tokens: create (through the gateway, or bootstrap into the database), list, revoke.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Principals (users and service accounts) and their roles, through the gateway.
    Principal {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: PrincipalCommand,
    },
    /// Manage tenants directly in the database.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Verify and export the audit trail, reading the database directly (so the check does not
    /// trust a running server).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Certificates, through the gateway.
    Cert {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Certificate profiles, through the gateway.
    Profile {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Requests held for two-person approval, through the gateway.
    Approval {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ApprovalCommand,
    },
    /// m-of-n key ceremonies that gate CA operations, through the gateway.
    Ceremony {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: CeremonyCommand,
    },
    /// The CA tree (roots, intermediates, rotation, cross-signing, retirement), through the
    /// gateway.
    Ca {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Agents and what they deploy: bootstrap tokens, agents, bindings, jobs, deployments,
    /// renew-now, through the gateway.
    Fleet {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Certificates already out there: scan targets, scans, and the inventory of finds to
    /// claim or dismiss, through the gateway.
    ///
    /// Scans: `scan <target-id>` runs one and waits for it, `scans` lists them, `scan-show
    /// <scan-id>` shows one. Finds: `list`, then `show`, `claim` or `dismiss` by id.
    Discovery {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: DiscoveryCommand,
    },
    /// Where events go: channels, routing rules, the delivery log, through the gateway.
    ///
    /// Channel secrets are given as `--secret KEY=VALUE` or, to keep them off the command line,
    /// `--secret-env KEY=ENVVAR` (the value is read from that environment variable).
    Notify {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: NotifyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Print a new random mesh secret (one base64 line for --mesh-secret-file).
    Secret,
    /// Print the mesh CA certificate (PEM) the secret file's first secret derives.
    Ca(MeshSecretArgs),
    /// Issue a mesh certificate for roles and write it and its key.
    Issue {
        #[command(flatten)]
        secret: MeshSecretArgs,
        /// A role the certificate names (repeatable), e.g. gateway.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime.
        #[arg(long, default_value = "1h")]
        validity: String,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        cert_out: PathBuf,
        /// Where to write the private key (PEM, mode 0600).
        #[arg(long)]
        key_out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct MeshSecretArgs {
    /// The mesh secret file (as given to `certmesh server --mesh-secret-file`).
    #[arg(long, env = "CERTMESH_MESH_SECRET_FILE")]
    pub secret_file: PathBuf,
    /// Trust domain (as given to `certmesh server --trust-domain`).
    #[arg(long, env = "CERTMESH_TRUST_DOMAIN", default_value = "certmesh.local")]
    pub trust_domain: String,
}

/// How roles authenticate each other (`--mesh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MeshMode {
    /// No client certificates: role listeners accept any TLS (or h2c) peer; tokens still apply.
    Off,
    /// certmesh's own mesh CA, derived from the mesh secret.
    Internal,
    /// Certificates and CA mounted by the operator.
    Files,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Every role in one process on SQLite under --data-dir, with a bootstrapped development CA.
    #[arg(long)]
    pub dev: bool,
    /// Data directory for --dev.
    #[arg(long, env = "CERTMESH_DATA_DIR", default_value = ".certmesh")]
    pub data_dir: PathBuf,
    /// Listen address.
    #[arg(long, env = "CERTMESH_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Roles to run, comma-separated: issuance, iam, ca, revocation, fleet, discovery,
    /// notification, gateway.
    #[arg(long, env = "CERTMESH_SERVICES", value_delimiter = ',')]
    pub services: Vec<String>,
    /// Database URL: postgres://… or sqlite://path.
    #[arg(long, env = "CERTMESH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory of sealed CA key files.
    #[arg(long, env = "CERTMESH_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// File holding the base64 key-encryption key that seals CA keys (or set CERTMESH_KEK).
    #[arg(long, env = "CERTMESH_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// TLS certificate chain (PEM, leaf first) for the listener.
    #[arg(long, env = "CERTMESH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the listener.
    #[arg(long, env = "CERTMESH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Serve cleartext HTTP/2 instead of TLS. Only for a loopback hop or a mesh that encrypts.
    #[arg(long, env = "CERTMESH_DANGEROUS_PLAINTEXT")]
    pub dangerous_plaintext: bool,
    /// Mutual TLS between roles: `internal` (certificates from certmesh's mesh CA, derived from
    /// --mesh-secret-file, issued at start and renewed before expiry), `files` (--mesh-cert,
    /// --mesh-key and --mesh-ca, re-read when they change) or `off`. With a mesh, a role's
    /// listener refuses any peer without a certificate under the mesh CA; a gateway's listener
    /// stays the public API and presents the mesh identity only when it calls roles.
    #[arg(long, env = "CERTMESH_MESH", value_enum, default_value_t = MeshMode::Off)]
    pub mesh: MeshMode,
    /// File with the mesh secret(s): base64, one per line, at least 32 bytes each; the first
    /// signs, every line is trusted (add the new one first to roll the secret).
    #[arg(long, env = "CERTMESH_MESH_SECRET_FILE")]
    pub mesh_secret_file: Option<PathBuf>,
    /// Lifetime of an internal mesh certificate; it is renewed at two thirds of it.
    #[arg(long, env = "CERTMESH_MESH_CERT_VALIDITY", default_value = "24h")]
    pub mesh_cert_validity: String,
    /// `--mesh files`: this process's certificate chain (PEM, leaf first).
    #[arg(long, env = "CERTMESH_MESH_CERT")]
    pub mesh_cert: Option<PathBuf>,
    /// `--mesh files`: the private key (PEM) of --mesh-cert.
    #[arg(long, env = "CERTMESH_MESH_KEY")]
    pub mesh_key: Option<PathBuf>,
    /// `--mesh files`: the CA certificates (PEM) peers must chain to.
    #[arg(long, env = "CERTMESH_MESH_CA")]
    pub mesh_ca: Option<PathBuf>,
    /// Plain-HTTP listener for /healthz, /readyz and /metrics only (probes and scrapers that
    /// hold no mesh certificate). Off unless set.
    #[arg(long, env = "CERTMESH_OPS_LISTEN")]
    pub ops_listen: Option<SocketAddr>,
    /// Where the gateway reaches the issuance role when it is not in this process.
    #[arg(long, env = "CERTMESH_ISSUANCE_ENDPOINT")]
    pub issuance_endpoint: Option<String>,
    /// Where the gateway reaches the iam role when it is not in this process.
    #[arg(long, env = "CERTMESH_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
    /// Where the gateway reaches the ca role when it is not in this process.
    #[arg(long, env = "CERTMESH_CA_ENDPOINT")]
    pub ca_endpoint: Option<String>,
    /// Where the gateway reaches the revocation role when it is not in this process.
    #[arg(long, env = "CERTMESH_REVOCATION_ENDPOINT")]
    pub revocation_endpoint: Option<String>,
    /// CA bundle trusted for https:// role endpoints.
    #[arg(long, env = "CERTMESH_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// The revocation role's PKI listener (plain HTTP): CRLs and OCSP for relying parties.
    #[arg(long, env = "CERTMESH_PKI_LISTEN", default_value = "127.0.0.1:8080")]
    pub pki_listen: SocketAddr,
    /// The URL relying parties reach the PKI listener at, written into every leaf's OCSP and
    /// CRL pointers (default: http://<--pki-listen>). Give every role the same value.
    #[arg(long, env = "CERTMESH_PKI_PUBLIC_URL")]
    pub pki_public_url: Option<String>,
    /// Worker threads of the PKI listener's own runtime.
    #[arg(long, env = "CERTMESH_PKI_WORKERS", default_value_t = 2)]
    pub pki_workers: usize,
    /// CRL shards per CA key for new certificates (1 to 1024). Give every role the same value.
    #[arg(long, env = "CERTMESH_CRL_SHARDS", default_value_t = 1)]
    pub crl_shards: u32,
    /// nextUpdate − thisUpdate of each CRL.
    #[arg(long, env = "CERTMESH_CRL_VALIDITY", default_value = "24h")]
    pub crl_validity: String,
    /// Regenerate every CRL at least this often (and soon after each revocation).
    #[arg(long, env = "CERTMESH_CRL_REFRESH", default_value = "1h")]
    pub crl_refresh: String,
    /// nextUpdate − thisUpdate of each OCSP response (re-signed at half of it).
    #[arg(long, env = "CERTMESH_OCSP_VALIDITY", default_value = "4h")]
    pub ocsp_validity: String,
    /// Lifetime of the delegated OCSP responder certificates (renewed at half of it).
    #[arg(long, env = "CERTMESH_OCSP_RESPONDER_VALIDITY", default_value = "72h")]
    pub ocsp_responder_validity: String,
    /// The fleet role's agent listener (TLS; agents enroll and hold their streams here).
    #[arg(long, env = "CERTMESH_FLEET_LISTEN", default_value = "127.0.0.1:8444")]
    pub fleet_listen: SocketAddr,
    /// Where the fleet role reaches the issuance role when it is not in this process.
    /// (--issuance-endpoint is used when this is unset.)
    #[arg(long, env = "CERTMESH_FLEET_ISSUANCE_ENDPOINT")]
    pub fleet_issuance_endpoint: Option<String>,
    /// Where the gateway reaches the fleet role when it is not in this process.
    #[arg(long, env = "CERTMESH_FLEET_ENDPOINT")]
    pub fleet_endpoint: Option<String>,
    /// Trust domain of agents' SPIFFE ids (spiffe://<domain>/tenant/<t>/agent/<id>).
    #[arg(long, env = "CERTMESH_TRUST_DOMAIN", default_value = "certmesh.local")]
    pub trust_domain: String,
    /// Lifetime of an agent's client certificate (renewed over its stream after two thirds).
    #[arg(long, env = "CERTMESH_AGENT_IDENTITY_VALIDITY", default_value = "24h")]
    pub agent_identity_validity: String,
    /// How often agents send heartbeats; two missed mark an agent unhealthy, six offline.
    #[arg(long, env = "CERTMESH_AGENT_HEARTBEAT", default_value = "15s")]
    pub agent_heartbeat: String,
    /// Attempts per fleet job before it is dead.
    #[arg(long, env = "CERTMESH_FLEET_MAX_ATTEMPTS", default_value_t = 3)]
    pub fleet_max_attempts: u32,
    /// Wait after a job's first failed attempt (doubled per attempt, at most 10 min).
    #[arg(long, env = "CERTMESH_FLEET_RETRY_BASE", default_value = "10s")]
    pub fleet_retry_base: String,
    /// Where the gateway reaches the discovery role when it is not in this process.
    #[arg(long, env = "CERTMESH_DISCOVERY_ENDPOINT")]
    pub discovery_endpoint: Option<String>,
    /// Where the gateway reaches the notification role when it is not in this process.
    #[arg(long, env = "CERTMESH_NOTIFICATION_ENDPOINT")]
    pub notification_endpoint: Option<String>,
    /// Largest CIDR block a scan target may name, in addresses.
    #[arg(long, env = "CERTMESH_SCAN_MAX_ADDRESSES", default_value_t = 4096)]
    pub scan_max_addresses: u64,
    /// TLS handshakes in flight per scan.
    #[arg(long, env = "CERTMESH_SCAN_CONCURRENCY", default_value_t = 64)]
    pub scan_concurrency: usize,
    /// Time allowed to connect, then again to complete the TLS handshake, per endpoint.
    #[arg(long, env = "CERTMESH_SCAN_TIMEOUT", default_value = "5s")]
    pub scan_timeout: String,
    /// How often the discovery scheduler looks for scan targets that are due.
    #[arg(long, env = "CERTMESH_SCAN_TICK", default_value = "30s")]
    pub scan_tick: String,
    /// Ranges scans may always dial, comma-separated CIDRs (over the SSRF guard's refusals).
    #[arg(long, env = "CERTMESH_SCAN_ALLOW", value_delimiter = ',')]
    pub scan_allow: Vec<String>,
    /// Let scans dial loopback addresses (127.0.0.0/8, ::1).
    #[arg(long, env = "CERTMESH_DANGEROUS_SCAN_LOOPBACK")]
    pub dangerous_scan_loopback: bool,
    /// Let scans dial link-local addresses (cloud metadata addresses stay refused).
    #[arg(long, env = "CERTMESH_DANGEROUS_SCAN_LINK_LOCAL")]
    pub dangerous_scan_link_local: bool,
    /// Refuse RFC 1918 and other private ranges to scans.
    #[arg(long, env = "CERTMESH_SCAN_DENY_PRIVATE")]
    pub scan_deny_private: bool,
    /// Expiry alert thresholds in days, comma-separated.
    #[arg(
        long,
        env = "CERTMESH_NOTIFY_THRESHOLDS",
        value_delimiter = ',',
        default_value = "30,14,7,1,0"
    )]
    pub notify_thresholds: Vec<u32>,
    /// Wait after a delivery's first failed attempt (doubled per attempt, at most 1h).
    #[arg(long, env = "CERTMESH_NOTIFY_RETRY_BASE", default_value = "30s")]
    pub notify_retry_base: String,
    /// Attempts per delivery before it is dead-lettered.
    #[arg(long, env = "CERTMESH_NOTIFY_MAX_ATTEMPTS", default_value_t = 5)]
    pub notify_max_attempts: u32,
    /// How often the relay and the sender run.
    #[arg(long, env = "CERTMESH_NOTIFY_EVERY", default_value = "2s")]
    pub notify_every: String,
    /// How often the expiry watcher runs.
    #[arg(long, env = "CERTMESH_NOTIFY_EXPIRY_EVERY", default_value = "1m")]
    pub notify_expiry_every: String,
    /// Time allowed for one delivery.
    #[arg(long, env = "CERTMESH_NOTIFY_TIMEOUT", default_value = "10s")]
    pub notify_timeout: String,
    /// Tenant whose built-in CA the issuance role bootstraps at start.
    #[arg(long, env = "CERTMESH_TENANT", default_value = "default")]
    pub tenant: String,
    /// Requests per second each API credential may make through the gateway (0: no limit).
    #[arg(long, env = "CERTMESH_RATE_LIMIT_PER_SECOND", default_value_t = 5000.0)]
    pub rate_limit_per_second: f64,
    /// Burst each credential may spend at once.
    #[arg(long, env = "CERTMESH_RATE_LIMIT_BURST", default_value_t = 10000)]
    pub rate_limit_burst: u32,
    /// Log one JSON object per line.
    #[arg(long, env = "CERTMESH_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: postgres://… or sqlite://path.
    #[arg(long, env = "CERTMESH_DATABASE_URL")]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once: through the gateway, or with --database-url straight
    /// into the database (bootstrap, before any token exists; the principal is created with
    /// --role if missing).
    Create {
        /// Write to this database instead of calling the gateway.
        #[arg(long)]
        database_url: Option<String>,
        /// Tenant (with --database-url; created if missing).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The principal the token acts for (default: yourself; with --database-url: admin).
        #[arg(long)]
        principal: Option<String>,
        /// Roles of a principal created here (with --database-url; repeatable).
        #[arg(long = "role", default_value = "admin")]
        roles: Vec<String>,
        /// A name for the token.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime, e.g. 720h; the token never expires without it.
        #[arg(long)]
        expires_in: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your tokens, or a principal's. Never the secrets.
    List {
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token by id.
    Revoke {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Create a user or service account with roles.
    Create {
        name: String,
        /// admin, operator, ra-officer, custodian, auditor or viewer (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// user or service.
        #[arg(long, default_value = "user")]
        kind: String,
    },
    /// Show one principal.
    Get { name: String },
    /// List principals.
    List,
    /// Register a public key the principal signs key-ceremony approvals with.
    AddKey {
        name: String,
        /// Ed25519 or ECDSA P-256 public key, PEM, as `openssl pkey -pubout` writes it.
        #[arg(long)]
        public_key: PathBuf,
    },
    /// List a principal's public keys, revoked ones too.
    Keys { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (no-op if it exists) and print its id.
    Create {
        #[command(flatten)]
        db: DatabaseArgs,
        name: String,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every tenant's hash chain (or one tenant's) and name the first broken link.
    Verify {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Export a tenant's trail, oldest first.
    Export {
        #[command(flatten)]
        db: DatabaseArgs,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Gateway URL.
    #[arg(
        long,
        global = true,
        env = "CERTMESH_GATEWAY",
        default_value = "https://127.0.0.1:8443"
    )]
    pub gateway: String,
    /// API token.
    #[arg(long, global = true, env = "CERTMESH_TOKEN", hide_env_values = true)]
    pub token: Option<Secret<String>>,
    /// File holding the API token.
    #[arg(long, global = true, env = "CERTMESH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) that signs the gateway's certificate.
    #[arg(long, global = true, env = "CERTMESH_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate for a CSR.
    Issue {
        /// PKCS#10 CSR, PEM.
        #[arg(long)]
        csr: PathBuf,
        /// Profile name.
        #[arg(long)]
        profile: String,
        /// Requested validity, e.g. 720h.
        #[arg(long)]
        validity: Option<String>,
        /// Idempotency key: retries with the same key return the same certificate.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Print the certificate and chain as PEM instead of the JSON response.
        #[arg(long)]
        pem: bool,
    },
    /// Show one certificate.
    Get { serial: String },
    /// List certificates.
    List {
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Revoke a certificate (or lift its certificateHold with --reason removeFromCRL).
    Revoke {
        /// Hex serial.
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn,
        /// aACompromise.
        #[arg(long)]
        reason: String,
        /// Free-text note kept with the record and in the audit trail.
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Revoke every certificate of a CA and/or profile, optionally issued in a time window.
    BulkRevoke {
        /// Only certificates of this CA (id).
        #[arg(long = "ca")]
        issuer_ca_id: Option<String>,
        /// Only certificates of this profile.
        #[arg(long)]
        profile: Option<String>,
        /// Only certificates issued at or after this time (RFC 3339).
        #[arg(long)]
        issued_after: Option<chrono::DateTime<chrono::Utc>>,
        /// Only certificates issued before this time (RFC 3339).
        #[arg(long)]
        issued_before: Option<chrono::DateTime<chrono::Utc>>,
        /// RFC 5280 reason, as for `revoke`.
        #[arg(long)]
        reason: String,
        /// Free-text note.
        #[arg(long, default_value = "")]
        text: String,
        /// Count what would be revoked without revoking.
        #[arg(long)]
        dry_run: bool,
    },
    /// A certificate's revocation status.
    Status { serial: String },
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Create a profile, or a new version of one, from a JSON file {"name", "spec": {...}}.
    Create {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Show a profile's latest version, or one version.
    Get {
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// List profiles (latest versions).
    List,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// List approvals, oldest first.
    List {
        /// pending, approved, rejected or expired.
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve a held request: its certificate is issued (never by the requester).
    Approve { id: String },
    /// Reject a held request, saying why.
    Reject {
        id: String,
        #[arg(long)]
        note: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let cli =
            Cli::try_parse_from(["certmesh", "cert", "--token", "cmt_planted_secret", "list"])
                .expect("parses");
        let text = format!("{cli:?}");
        assert!(!text.contains("planted"), "{text}");
        let Command::Cert { client, .. } = cli.command else {
            panic!("cert")
        };
        assert_eq!(client.token.expect("token").expose(), "cmt_planted_secret");
    }

    #[test]
    fn approval_commands_parse() {
        let cli = Cli::try_parse_from([
            "certmesh",
            "approval",
            "reject",
            "0f0e",
            "--note",
            "wrong team",
        ])
        .expect("parses");
        let Command::Approval {
            command: ApprovalCommand::Reject { id, note },
            ..
        } = cli.command
        else {
            panic!("approval reject")
        };
        assert_eq!((id.as_str(), note.as_str()), ("0f0e", "wrong team"));
        assert!(Cli::try_parse_from(["certmesh", "approval", "reject", "0f0e"]).is_err());
        let cli = Cli::try_parse_from(["certmesh", "approval", "list", "--status", "pending"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Approval {
                command: ApprovalCommand::List { status: Some(_) },
                ..
            }
        ));
    }

    #[test]
    fn principal_key_commands_parse() {
        let cli = Cli::try_parse_from([
            "certmesh",
            "principal",
            "add-key",
            "carol",
            "--public-key",
            "carol.pub",
        ])
        .expect("parses");
        let Command::Principal {
            command: PrincipalCommand::AddKey { name, public_key },
            ..
        } = cli.command
        else {
            panic!("principal add-key")
        };
        assert_eq!((name.as_str(), public_key), ("carol", "carol.pub".into()));
        assert!(Cli::try_parse_from(["certmesh", "principal", "add-key", "carol"]).is_err());
        let cli = Cli::try_parse_from(["certmesh", "principal", "keys", "carol"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Principal {
                command: PrincipalCommand::Keys { .. },
                ..
            }
        ));
    }

    #[test]
    fn ceremony_commands_parse() {
        let cli = Cli::try_parse_from([
            "certmesh",
            "ceremony",
            "start",
            "--purpose",
            "create_intermediate",
            "--threshold",
            "2",
            "--custodian",
            "alice",
            "--custodian",
            "bob",
            "--custodian",
            "carol",
            "--name",
            "ops-policy",
            "--parent",
            "0193c0de-0000-7000-8000-000000000001",
            "--subject-cn",
            "Ops Policy CA",
            "--path-len",
            "1",
            "--permit-dns",
            "example.com",
            "--permit-dns",
            "example.net",
            "--exclude-dns",
            "corp.example.com",
            "--validity-days",
            "1825",
        ])
        .expect("parses");
        let Command::Ceremony {
            command: CeremonyCommand::Start(start),
            ..
        } = cli.command
        else {
            panic!("ceremony start")
        };
        assert_eq!(start.purpose, CeremonyPurpose::CreateIntermediate);
        assert_eq!(start.threshold, 2);
        assert_eq!(start.custodians, ["alice", "bob", "carol"]);
        assert_eq!(start.expires_in, "24h");
        let p = &start.params;
        assert_eq!(p.permit_dns, ["example.com", "example.net"]);
        assert_eq!(p.exclude_dns, ["corp.example.com"]);
        assert_eq!((p.path_len, p.validity_days), (Some(1), Some(1825)));
        assert_eq!(p.key_spec, None, "the client fills in the default");

        let start = |purpose: &str, custodian: bool| {
            let mut argv = vec!["certmesh", "ceremony", "start", "--purpose", purpose];
            argv.extend(["--threshold", "1"]);
            if custodian {
                argv.extend(["--custodian", "admin"]);
            }
            Cli::try_parse_from(argv)
        };
        assert!(start("import_root", true).is_ok());
        assert!(
            start("create_root", false).is_err(),
            "--custodian is required"
        );
        assert!(
            start("create-root", true).is_err(),
            "purposes are the API's names"
        );
        assert!(start("revoke", true).is_err());

        let cli =
            Cli::try_parse_from(["certmesh", "ceremony", "approve", "c-1", "--key", "me.key"])
                .expect("parses");
        let Command::Ceremony {
            command: CeremonyCommand::Approve { id, key },
            ..
        } = cli.command
        else {
            panic!("ceremony approve")
        };
        assert_eq!((id.as_str(), key), ("c-1", "me.key".into()));
        assert!(Cli::try_parse_from(["certmesh", "ceremony", "approve", "c-1"]).is_err());
        assert!(
            Cli::try_parse_from(["certmesh", "ceremony", "list", "--status", "completed"]).is_ok()
        );
        assert!(Cli::try_parse_from(["certmesh", "ceremony", "list", "--status", "done"]).is_err());
        assert!(Cli::try_parse_from(["certmesh", "ceremony", "show", "c-1"]).is_ok());
    }

    #[test]
    fn ca_commands_parse() {
        let cli = Cli::try_parse_from(["certmesh", "ca", "create-root", "--ceremony", "c-1"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Ca {
                command: CaCommand::CreateRoot { .. },
                ..
            }
        ));
        assert!(Cli::try_parse_from(["certmesh", "ca", "create-root"]).is_err());
        let cli = Cli::try_parse_from([
            "certmesh",
            "ca",
            "import-root",
            "--ceremony",
            "c-2",
            "--certificate",
            "root.pem",
        ])
        .expect("parses");
        let Command::Ca {
            command: CaCommand::ImportRoot { certificate, .. },
            ..
        } = cli.command
        else {
            panic!("ca import-root")
        };
        assert_eq!(certificate, PathBuf::from("root.pem"));
        assert!(
            Cli::try_parse_from(["certmesh", "ca", "import-root", "--ceremony", "c-2"]).is_err()
        );
        for gated in ["create-intermediate", "rotate", "cross-sign"] {
            let argv = ["certmesh", "ca", gated, "--ceremony", "c-3"];
            assert!(Cli::try_parse_from(argv).is_ok(), "{gated}");
        }

        let retire = |argv: &[&str]| match Cli::try_parse_from(argv).expect("parses").command {
            Command::Ca {
                command: CaCommand::Retire { id, confirm },
                ..
            } => (id, confirm),
            other => panic!("ca retire: {other:?}"),
        };
        assert_eq!(
            retire(&["certmesh", "ca", "retire", "x"]),
            ("x".into(), false)
        );
        assert_eq!(
            retire(&["certmesh", "ca", "retire", "x", "--confirm"]),
            ("x".into(), true)
        );
        for argv in [
            &["certmesh", "ca", "list"][..],
            &["certmesh", "ca", "show", "x"],
            &["certmesh", "ca", "chain", "x"],
        ] {
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
        assert!(Cli::try_parse_from(["certmesh", "ca", "chain"]).is_err());
    }

    #[test]
    fn revoke_requires_a_reason() {
        assert!(Cli::try_parse_from(["certmesh", "cert", "revoke", "01ab"]).is_err());
        let cli = Cli::try_parse_from([
            "certmesh",
            "cert",
            "revoke",
            "01ab",
            "--reason",
            "keyCompromise",
        ])
        .expect("parses");
        let Command::Cert {
            command: CertCommand::Revoke { serial, reason, .. },
            ..
        } = cli.command
        else {
            panic!("cert revoke")
        };
        assert_eq!(
            (serial.as_str(), reason.as_str()),
            ("01ab", "keyCompromise")
        );
        assert!(
            Cli::try_parse_from([
                "certmesh",
                "cert",
                "bulk-revoke",
                "--profile",
                "web",
                "--reason",
                "superseded",
                "--issued-before",
                "not a time",
            ])
            .is_err()
        );
    }

    #[test]
    fn server_defaults() {
        let cli = Cli::try_parse_from(["certmesh", "server", "--dev"]).expect("parses");
        let Command::Server(args) = cli.command else {
            panic!("server")
        };
        assert!(args.dev);
        assert_eq!(args.listen.to_string(), "127.0.0.1:8443");
        assert_eq!(args.pki_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.crl_shards, 1);
        assert_eq!(args.data_dir, PathBuf::from(".certmesh"));
    }
}
