//! The deploy contract: put a certificate, its chain and its key where a binding says, prove
//! the service took them, and leave the host as it was when anything goes wrong.
//!
//! 1. The new contents: the certificate file holds the leaf (plus the chain when the chain has
//!    no file of its own), the chain file the chain, the key file the key.
//! 2. If every file already holds exactly those bytes: `unchanged`, nothing else runs.
//! 3. The current files go into a backup set ([`backup`]); the last three sets are kept.
//! 4. Each file is replaced atomically with its mode and owner ([`crate::files`]).
//! 5. The validate command runs. On failure the old files come back and nothing is reloaded,
//!    so the running service never saw the new ones: `failed`.
//! 6. The reload command runs. On failure the old files come back and the reload runs again:
//!    `failed`.
//! 7. With a verify endpoint, the served leaf is compared with the new one ([`crate::verify`])
//!    for up to ten seconds: `verified`; `mismatch` (old files back, reloaded again);
//!    `unreachable` (no handshake at all; the new files stay). Without one: `installed`.

pub mod backup;
pub mod command;
pub mod target;

use std::path::{Path, PathBuf};
use std::time::Duration;

use certmesh_crypto::cert::Certificate;
use certmesh_crypto::digest::sha256_hex;

use self::backup::{BackupSet, Role};
use self::command::{CommandEnv, CommandRun};
pub use self::target::{OwnerSpec, Target};
use crate::clock::SharedClock;
use crate::files::{self, FileOwner, PRIVATE};
use crate::identity::check_pair;
use crate::verify::{self, Schedule, Served};

/// Mode of the directories a deploy has to create for its files.
const PARENT_DIR_MODE: u32 = 0o755;

/// How a deploy ended; the names are the `JobResult.outcome` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    /// The endpoint serves the new certificate.
    Verified,
    /// The endpoint kept serving another certificate; the files were rolled back.
    Mismatch,
    /// No handshake with the endpoint; the new files stay.
    Unreachable,
    /// Installed, nothing to verify against.
    Installed,
    /// The files already held these bytes.
    Unchanged,
    /// Nothing live changed (or it was rolled back); see the detail.
    Failed,
}

impl OutcomeKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Verified => "verified",
            OutcomeKind::Mismatch => "mismatch",
            OutcomeKind::Unreachable => "unreachable",
            OutcomeKind::Installed => "installed",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::Failed => "failed",
        }
    }
}

/// The result reported to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How it ended.
    pub kind: OutcomeKind,
    /// Why, for people.
    pub detail: String,
    /// SHA-256 of the new leaf (empty if it did not parse).
    pub certificate_sha256: String,
    /// SHA-256 of the leaf the endpoint served, when one was read.
    pub served_sha256: String,
}

/// What to install.
#[derive(Clone, Copy)]
pub struct Material<'a> {
    /// The leaf certificate, PEM.
    pub leaf_pem: &'a str,
    /// Intermediates, leaf-side first, PEM (may be empty).
    pub chain_pem: &'a str,
    /// The private key, PKCS#8 PEM.
    pub key_pem: &'a str,
}

impl std::fmt::Debug for Material<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("leaf_pem", &self.leaf_pem.len())
            .field("chain_pem", &self.chain_pem.len())
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Runs deploys.
#[derive(Clone, Debug)]
pub struct Deployer {
    /// Names backup sets.
    pub clock: SharedClock,
    /// Bound on each validate and reload command.
    pub command_timeout: Duration,
    /// How the endpoint is checked.
    pub verify: Schedule,
}

/// One file to write.
struct Planned {
    role: Role,
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
}

impl Deployer {
    /// 60 s command timeout, 10 s verify window at 250 ms.
    pub fn new(clock: SharedClock) -> Self {
        Deployer {
            clock,
            command_timeout: Duration::from_secs(60),
            verify: Schedule::default(),
        }
    }

    /// Runs the contract for `target`, backing up into `backups` (the binding's directory).
    pub async fn deploy(&self, target: &Target, material: Material<'_>, backups: &Path) -> Outcome {
        let leaf = match Certificate::from_pem(material.leaf_pem) {
            Ok(leaf) => leaf,
            Err(e) => return failed("", format!("the certificate does not parse: {e}")),
        };
        let sha = leaf.fingerprint_sha256();
        if check_pair(&leaf, material.key_pem).is_err() {
            return failed(
                &sha,
                "the certificate is not for the key; nothing was installed",
            );
        }
        let owner = match target
            .owner
            .as_ref()
            .map(OwnerSpec::resolve_on_host)
            .transpose()
        {
            Ok(owner) => owner.unwrap_or_default(),
            Err(e) => return failed(&sha, format!("{e}; nothing was installed")),
        };
        let plan = plan(target, material);
        match unchanged(&plan) {
            Ok(true) => {
                return outcome(
                    OutcomeKind::Unchanged,
                    &sha,
                    "the files already hold this certificate",
                );
            }
            Ok(false) => {}
            Err(e) => return failed(&sha, format!("reading the current files: {e}")),
        }
        let roles: Vec<(Role, &Path)> = plan.iter().map(|p| (p.role, p.path.as_path())).collect();
        let set = match BackupSet::take(backups, self.clock.now(), &roles) {
            Ok(set) => set,
            Err(e) => {
                return failed(
                    &sha,
                    format!("backing up the current files: {e}; nothing was installed"),
                );
            }
        };
        if let Err(e) = install(&plan, owner) {
            let restored = restore_note(&set);
            return failed(&sha, format!("writing the files: {e}; {restored}"));
        }
        self.check_and_reload(target, &leaf, &set).await
    }

    /// Steps 5 to 7, once the new files are in place.
    async fn check_and_reload(
        &self,
        target: &Target,
        leaf: &Certificate,
        set: &BackupSet,
    ) -> Outcome {
        let sha = leaf.fingerprint_sha256();
        if let Some(cmd) = &target.validate_command {
            let run = self.run(cmd, target).await;
            if !run.success {
                let restored = restore_note(set);
                return failed(
                    &sha,
                    format!(
                        "validate command failed ({}); {restored}, nothing was reloaded",
                        run.describe()
                    ),
                );
            }
        }
        if let Some(cmd) = &target.reload_command {
            let run = self.run(cmd, target).await;
            if !run.success {
                let restored = restore_note(set);
                let again = self.reload_again(target).await;
                return failed(
                    &sha,
                    format!(
                        "reload command failed ({}); {restored}{again}",
                        run.describe()
                    ),
                );
            }
        }
        match &target.verify_endpoint {
            Some(endpoint) => self.verify(target, leaf, set, endpoint).await,
            None => outcome(
                OutcomeKind::Installed,
                &sha,
                "installed; no verify endpoint",
            ),
        }
    }

    /// Step 7: the endpoint must serve the new leaf; another one rolls back.
    async fn verify(
        &self,
        target: &Target,
        leaf: &Certificate,
        set: &BackupSet,
        endpoint: &str,
    ) -> Outcome {
        let sha = leaf.fingerprint_sha256();
        let sni = verify::default_sni(target.verify_sni.as_deref(), leaf.dns_names(), endpoint);
        match verify::wait_for(endpoint, &sni, &sha, self.verify).await {
            Served::Match => outcome(
                OutcomeKind::Verified,
                &sha,
                format!("{endpoint} serves the new certificate (SNI {sni})"),
            ),
            Served::Mismatch { served_sha256 } => {
                let restored = restore_note(set);
                let again = self.reload_again(target).await;
                Outcome {
                    kind: OutcomeKind::Mismatch,
                    detail: format!(
                        "{endpoint} (SNI {sni}) kept serving another certificate; {restored}{again}"
                    ),
                    certificate_sha256: sha,
                    served_sha256,
                }
            }
            Served::Unreachable { error } => outcome(
                OutcomeKind::Unreachable,
                &sha,
                format!("could not verify: {error}; the new files stay in place"),
            ),
        }
    }

    async fn run(&self, cmd: &str, target: &Target) -> CommandRun {
        let env = CommandEnv {
            cert_path: &target.cert_path,
            key_path: &target.key_path,
            chain_path: target.chain_path.as_deref(),
        };
        command::run(cmd, env, self.command_timeout).await
    }

    /// After a rollback: reload so the service picks the old files up again.
    async fn reload_again(&self, target: &Target) -> String {
        let Some(cmd) = &target.reload_command else {
            return String::new();
        };
        let run = self.run(cmd, target).await;
        if run.success {
            ", reloaded again".to_owned()
        } else {
            format!(
                ", and the reload after the rollback failed too ({})",
                run.describe()
            )
        }
    }
}

fn plan(target: &Target, m: Material<'_>) -> Vec<Planned> {
    let leaf = with_newline(m.leaf_pem);
    let chain = with_newline(m.chain_pem);
    let mut plan = Vec::with_capacity(3);
    let cert_bytes = match &target.chain_path {
        Some(_) => leaf.clone(),
        None => format!("{leaf}{chain}"),
    };
    plan.push(Planned {
        role: Role::Cert,
        path: target.cert_path.clone(),
        bytes: cert_bytes.into_bytes(),
        mode: target.mode,
    });
    if let Some(path) = &target.chain_path {
        plan.push(Planned {
            role: Role::Chain,
            path: path.clone(),
            bytes: chain.into_bytes(),
            mode: target.mode,
        });
    }
    plan.push(Planned {
        role: Role::Key,
        path: target.key_path.clone(),
        bytes: with_newline(m.key_pem).into_bytes(),
        mode: PRIVATE,
    });
    plan
}

fn with_newline(pem: &str) -> String {
    let pem = pem.trim_end();
    if pem.is_empty() {
        String::new()
    } else {
        format!("{pem}\n")
    }
}

/// Whether every file already holds its planned bytes.
fn unchanged(plan: &[Planned]) -> std::io::Result<bool> {
    for p in plan {
        match files::read_if_exists(&p.path)? {
            Some(current) if sha256_hex(&current) == sha256_hex(&p.bytes) => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

fn install(plan: &[Planned], owner: FileOwner) -> std::io::Result<()> {
    for p in plan {
        if let Some(dir) = p.path.parent() {
            create_parents(dir)?;
        }
        files::write_atomic(&p.path, &p.bytes, p.mode, owner)?;
    }
    Ok(())
}

/// Creates the missing directories up to `dir` 0755, whatever the umask: the service reading
/// the certificate (often another user) must be able to reach it.
fn create_parents(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for d in missing {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(PARENT_DIR_MODE))?;
    }
    Ok(())
}

fn restore_note(set: &BackupSet) -> String {
    match set.restore() {
        Ok(()) => "the previous files were restored".to_owned(),
        Err(e) => format!(
            "restoring the previous files from {} failed: {e}",
            set.dir().display()
        ),
    }
}

fn outcome(kind: OutcomeKind, sha: &str, detail: impl Into<String>) -> Outcome {
    Outcome {
        kind,
        detail: detail.into(),
        certificate_sha256: sha.to_owned(),
        served_sha256: String::new(),
    }
}

fn failed(sha: &str, detail: impl Into<String>) -> Outcome {
    outcome(OutcomeKind::Failed, sha, detail)
}
