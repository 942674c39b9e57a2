//! `certmesh ceremony` and `certmesh ca`: the key ceremonies that gate CA operations, and the
//! operations on the CA tree (docs/rfcs/0003).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum CeremonyCommand {
    /// Open a ceremony: the purpose and parameters are fixed now, and custodians approve its
    /// digest. Prints the ceremony (its id, digest and signing_message).
    Start(Box<CeremonyStartArgs>),
    /// Show one ceremony.
    Show { id: String },
    /// List ceremonies.
    List {
        #[arg(long, value_parser = ["open", "completed", "expired"])]
        status: Option<String>,
    },
    /// Approve as a custodian: signs the ceremony's signing message with your key, locally.
    Approve {
        id: String,
        /// Your private key (Ed25519 or ECDSA P-256, PEM); it never leaves this machine.
        #[arg(long)]
        key: PathBuf,
    },
}

/// What a ceremony gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum CeremonyPurpose {
    CreateRoot,
    CreateIntermediate,
    Rotate,
    CrossSign,
    ImportRoot,
}

impl CeremonyPurpose {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateRoot => "create_root",
            Self::CreateIntermediate => "create_intermediate",
            Self::Rotate => "rotate",
            Self::CrossSign => "cross_sign",
            Self::ImportRoot => "import_root",
        }
    }

    /// The `certmesh ca` command that completes a ceremony of this purpose.
    pub fn command(self) -> &'static str {
        match self {
            Self::CreateRoot => "create-root",
            Self::CreateIntermediate => "create-intermediate",
            Self::Rotate => "rotate",
            Self::CrossSign => "cross-sign",
            Self::ImportRoot => "import-root",
        }
    }

    /// Whether the operation makes a key, and so takes a key spec.
    pub fn makes_key(self) -> bool {
        match self {
            Self::CreateRoot | Self::CreateIntermediate | Self::Rotate => true,
            Self::CrossSign | Self::ImportRoot => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct CeremonyStartArgs {
    /// What the ceremony gates.
    #[arg(long, value_enum)]
    pub purpose: CeremonyPurpose,
    /// m: approvals needed.
    #[arg(long)]
    pub threshold: u32,
    /// n: a principal who may approve, holding the custodian role (repeatable).
    #[arg(long = "custodian", required = true)]
    pub custodians: Vec<String>,
    /// How long the ceremony stays open (at most 168h).
    #[arg(long, default_value = "24h")]
    pub expires_in: String,
    #[command(flatten)]
    pub params: CaParamsArgs,
}

/// The operation's parameters; which apply depends on the purpose (docs/rfcs/0003).
#[derive(Debug, Args)]
pub struct CaParamsArgs {
    /// create_root, create_intermediate, import_root: the CA's name.
    #[arg(long)]
    pub name: Option<String>,
    /// create_intermediate: the parent CA's id.
    #[arg(long, value_name = "CA_ID")]
    pub parent: Option<String>,
    /// rotate, cross_sign: the CA operated on.
    #[arg(long, value_name = "CA_ID")]
    pub ca: Option<String>,
    /// cross_sign: the CA that signs the cross-certificate.
    #[arg(long, value_name = "CA_ID")]
    pub issuer: Option<String>,
    /// Subject commonName.
    #[arg(long)]
    pub subject_cn: Option<String>,
    /// Subject organizationName.
    #[arg(long)]
    pub subject_o: Option<String>,
    /// ecdsa-p256 or ecdsa-p384 (default ecdsa-p256 for create_root, create_intermediate and
    /// rotate).
    #[arg(long)]
    pub key_spec: Option<String>,
    /// basicConstraints pathLenConstraint (unset: unconstrained for a root, parent - 1 below).
    #[arg(long, value_name = "N")]
    pub path_len: Option<u32>,
    /// A permitted dNSName subtree (repeatable).
    #[arg(long = "permit-dns", value_name = "D")]
    pub permit_dns: Vec<String>,
    /// An excluded dNSName subtree (repeatable).
    #[arg(long = "exclude-dns", value_name = "D")]
    pub exclude_dns: Vec<String>,
    /// Lifetime in whole days (default 3650 for a root, 1825 below).
    #[arg(long, value_name = "N")]
    pub validity_days: Option<u32>,
    /// import_root: the root certificate (PEM); its SHA-256 is what custodians approve.
    #[arg(long, value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// import_root: where the root's key is, `<backend>:<id>` (it may stay offline).
    #[arg(long, value_name = "REF")]
    pub key_ref: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a root with a fresh key, completing an approved create_root ceremony.
    CreateRoot {
        #[arg(long)]
        ceremony: String,
    },
    /// Import a root certificate, completing an approved import_root ceremony.
    ImportRoot {
        #[arg(long)]
        ceremony: String,
        /// The root certificate (PEM) the ceremony approved.
        #[arg(long)]
        certificate: PathBuf,
    },
    /// Create an intermediate, completing an approved create_intermediate ceremony.
    CreateIntermediate {
        #[arg(long)]
        ceremony: String,
    },
    /// Give a CA a new key and certificate, completing an approved rotate ceremony.
    Rotate {
        #[arg(long)]
        ceremony: String,
    },
    /// Have another CA certify a CA's current key, completing an approved cross_sign
    /// ceremony; the response carries the cross-certificate.
    CrossSign {
        #[arg(long)]
        ceremony: String,
    },
    /// Drain first: without --confirm an active CA becomes retiring; with it a drained,
    /// retiring CA becomes retired.
    Retire {
        id: String,
        #[arg(long)]
        confirm: bool,
    },
    /// List the tenant's CAs.
    List,
    /// Show one CA.
    Show { id: String },
    /// Print a CA's chain as PEM, the CA's certificate first, up to the root.
    Chain { id: String },
}
