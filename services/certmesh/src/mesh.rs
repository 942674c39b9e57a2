//! This process's mesh identity (`--mesh`): a certificate from certmesh's mesh CA, issued at
//! start and renewed at two thirds of its life, or files an operator mounts, re-read when
//! they change. It is what a role's listener demands of its peers and what this process
//! shows when it calls another role.

use std::{fs, path::PathBuf, sync::Arc, time::Duration as StdDuration};

use anyhow::{Context, bail};
use certmesh_crypto::mesh::{MeshCa, parse_secrets, role_dns_name};
use certmesh_kit::{SharedClock, mesh::MeshTls};
use chrono::{DateTime, Duration, Utc};
use rustls::{ClientConfig, ServerConfig};
use tokio::{sync::watch, task::JoinHandle};
use tonic::transport::Channel;

use crate::cli::{MeshCommand, MeshMode, MeshSecretArgs, ServerArgs};

/// The shortest internal certificate lifetime accepted.
const MIN_VALIDITY: Duration = Duration::seconds(10);
/// How often mounted files are checked for a change.
const FILE_POLL: StdDuration = StdDuration::from_secs(10);
/// Upper bound of one sleep of the renewal loop, so a moved clock is noticed.
const MAX_NAP: StdDuration = StdDuration::from_secs(30);

/// Where the identity comes from.
enum Source {
    Internal {
        ca: Box<MeshCa>,
        roles: Vec<String>,
        validity: Duration,
        trust_domain: String,
    },
    Files {
        cert: PathBuf,
        key: PathBuf,
        /// What the files held when last loaded.
        loaded: [u8; 32],
    },
}

/// The running mesh identity and its renewal task.
pub struct Mesh {
    tls: Arc<MeshTls>,
    client: Arc<ClientConfig>,
    /// The trust domain whose role names clients check (internal); `None` checks URL hosts.
    trust_domain: Option<String>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// Starts the mesh identity `args` ask for, for a process running `roles`; `None` with
    /// `--mesh off`.
    pub fn start(args: &ServerArgs, clock: SharedClock) -> anyhow::Result<Option<Mesh>> {
        let (source, roots, first) = match args.mesh {
            MeshMode::Off => {
                if args.mesh_secret_file.is_some() || args.mesh_cert.is_some() {
                    bail!(
                        "--mesh-secret-file and --mesh-cert need --mesh internal or --mesh files"
                    );
                }
                return Ok(None);
            }
            MeshMode::Internal => internal(args, &clock)?,
            MeshMode::Files => files(args)?,
        };
        let tls = MeshTls::new(first.0.as_bytes(), first.1.as_bytes(), roots.as_bytes())
            .context("the mesh certificate")?;
        let client = tls.client_config().context("the mesh client settings")?;
        let trust_domain = match &source {
            Source::Internal { trust_domain, .. } => Some(trust_domain.clone()),
            Source::Files { .. } => None,
        };
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(renew(source, tls.clone(), clock, first.2, rx));
        Ok(Some(Mesh {
            tls,
            client,
            trust_domain,
            shutdown,
            task,
        }))
    }

    /// Listener settings that require a mesh certificate of every client.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        self.tls
            .server_config()
            .context("the mesh listener settings")
    }

    /// A channel to the `role` at `url`, over mutual TLS.
    pub fn channel(&self, url: &str, role: &str) -> anyhow::Result<Channel> {
        let name = self
            .trust_domain
            .as_deref()
            .map(|domain| role_dns_name(role, domain));
        Ok(certmesh_kit::grpc::mesh_channel(
            url,
            self.client.clone(),
            name,
        )?)
    }

    /// Stops renewing.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Certificate PEM, key PEM, and when to look again.
type Issued = (String, zeroize::Zeroizing<String>, DateTime<Utc>);

fn internal(args: &ServerArgs, clock: &SharedClock) -> anyhow::Result<(Source, String, Issued)> {
    let path = args
        .mesh_secret_file
        .as_ref()
        .context("--mesh internal needs --mesh-secret-file")?;
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading --mesh-secret-file {}", path.display()))?;
    let secrets = parse_secrets(&text).context("--mesh-secret-file")?;
    let trust_domain = args.trust_domain.trim().to_owned();
    let mut cas = secrets
        .iter()
        .map(|s| MeshCa::derive(s, &trust_domain))
        .collect::<Result<Vec<_>, _>>()
        .context("deriving the mesh CA")?;
    let roots: String = cas.iter().map(|ca| ca.certificate().to_pem()).collect();
    let validity = certmesh_kit::duration::parse(&args.mesh_cert_validity)
        .map_err(|e| anyhow::anyhow!("--mesh-cert-validity: {e}"))?;
    if validity < MIN_VALIDITY {
        bail!("--mesh-cert-validity must be at least 10s");
    }
    let roles = if args.services.is_empty() {
        vec!["gateway".to_owned()]
    } else {
        args.services.clone()
    };
    let ca = cas.swap_remove(0);
    let now = clock.now();
    let leaf = ca
        .issue(&roles, now, validity)
        .context("issuing the mesh certificate")?;
    tracing::info!(
        fingerprint = %leaf.fingerprint,
        not_after = %leaf.not_after,
        roles = %roles.join(","),
        "Mesh certificate issued."
    );
    let issued = (leaf.cert_pem, leaf.key_pem, renew_at(now, validity));
    let source = Source::Internal {
        ca: Box::new(ca),
        roles,
        validity,
        trust_domain,
    };
    Ok((source, roots, issued))
}

fn files(args: &ServerArgs) -> anyhow::Result<(Source, String, Issued)> {
    let (Some(cert), Some(key), Some(ca)) = (&args.mesh_cert, &args.mesh_key, &args.mesh_ca) else {
        bail!("--mesh files needs --mesh-cert, --mesh-key and --mesh-ca");
    };
    let roots =
        fs::read_to_string(ca).with_context(|| format!("reading --mesh-ca {}", ca.display()))?;
    let chain = fs::read_to_string(cert)
        .with_context(|| format!("reading --mesh-cert {}", cert.display()))?;
    let pem = zeroize::Zeroizing::new(
        fs::read_to_string(key).with_context(|| format!("reading --mesh-key {}", key.display()))?,
    );
    let source = Source::Files {
        cert: cert.clone(),
        key: key.clone(),
        loaded: digest_of(chain.as_bytes(), pem.as_bytes()),
    };
    Ok((source, roots, (chain, pem, DateTime::<Utc>::MAX_UTC)))
}

/// Two thirds into a certificate's life counted from its issue (not from its back-dated
/// notBefore).
fn renew_at(issued: DateTime<Utc>, validity: Duration) -> DateTime<Utc> {
    issued + validity * 2 / 3
}

/// Keeps the identity fresh until `shutdown`: internal certificates are reissued when due,
/// mounted files are swapped in when their contents change. A failure keeps the current
/// identity and tries again.
async fn renew(
    source: Source,
    tls: Arc<MeshTls>,
    clock: SharedClock,
    mut due: DateTime<Utc>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut seen = match &source {
        Source::Files { loaded, .. } => Some(*loaded),
        Source::Internal { .. } => None,
    };
    loop {
        let nap = match &source {
            Source::Files { .. } => FILE_POLL,
            Source::Internal { .. } => (due - clock.now())
                .to_std()
                .unwrap_or(StdDuration::ZERO)
                .min(MAX_NAP),
        };
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            _ = shutdown.changed() => return,
        }
        match &source {
            Source::Internal {
                ca,
                roles,
                validity,
                ..
            } => {
                let now = clock.now();
                if now < due {
                    continue;
                }
                match ca
                    .issue(roles, now, *validity)
                    .map_err(anyhow::Error::from)
                    .and_then(|leaf| {
                        tls.replace(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes())?;
                        Ok(leaf)
                    }) {
                    Ok(leaf) => {
                        tracing::info!(fingerprint = %leaf.fingerprint, not_after = %leaf.not_after, "Mesh certificate renewed.");
                        due = renew_at(now, *validity);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Renewing the mesh certificate failed; keeping the current one.");
                        due = now + Duration::seconds(5);
                    }
                }
            }
            Source::Files { cert, key, .. } => {
                let now_seen = fingerprint(cert, key);
                if now_seen.is_none() || now_seen == seen {
                    continue;
                }
                let loaded =
                    fs::read(cert).and_then(|c| Ok((c, zeroize::Zeroizing::new(fs::read(key)?))));
                match loaded
                    .map_err(anyhow::Error::from)
                    .and_then(|(c, k)| Ok(tls.replace(&c, &k)?))
                {
                    Ok(()) => {
                        tracing::info!(cert = %cert.display(), "Mesh certificate reloaded from its file.");
                        seen = now_seen;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, cert = %cert.display(), "The changed mesh certificate files do not load; keeping the current ones.")
                    }
                }
            }
        }
    }
}

/// What the files hold now (a digest of both), to notice a change however it was made
/// (kubelet swaps a symlink, so modification times are not enough).
fn fingerprint(cert: &PathBuf, key: &PathBuf) -> Option<[u8; 32]> {
    let chain = fs::read(cert).ok()?;
    let key = zeroize::Zeroizing::new(fs::read(key).ok()?);
    Some(digest_of(&chain, &key))
}

fn digest_of(chain: &[u8], key: &[u8]) -> [u8; 32] {
    let mut both = zeroize::Zeroizing::new(Vec::with_capacity(chain.len() + key.len()));
    both.extend_from_slice(chain);
    both.extend_from_slice(key);
    certmesh_crypto::digest::sha256(&both)
}

/// Builds channels to other roles: over the mesh when there is one, else TLS trusting
/// `--ca-bundle` (or h2c for `http://`).
#[derive(Clone, Copy, Debug)]
pub struct Dialer<'a> {
    /// `--ca-bundle`, for `--mesh off`.
    pub bundle: Option<&'a [u8]>,
    /// The mesh identity, if any.
    pub mesh: Option<&'a Mesh>,
}

impl Dialer<'_> {
    /// A lazy channel to the `role` at `url`.
    pub fn channel(&self, url: &str, role: &str) -> anyhow::Result<Channel> {
        match self.mesh {
            Some(mesh) => mesh
                .channel(url, role)
                .with_context(|| format!("the {role} endpoint")),
            None => Ok(certmesh_kit::grpc::lazy_channel(url, self.bundle)?),
        }
    }
}

/// `certmesh mesh …`.
pub fn command(command: MeshCommand) -> anyhow::Result<()> {
    match command {
        MeshCommand::Secret => {
            println!("{}", certmesh_crypto::mesh::new_secret());
            Ok(())
        }
        MeshCommand::Ca(secret) => {
            print!("{}", cli_ca(&secret)?.certificate().to_pem());
            Ok(())
        }
        MeshCommand::Issue {
            secret,
            roles,
            validity,
            cert_out,
            key_out,
        } => {
            let validity = certmesh_kit::duration::parse(&validity)
                .map_err(|e| anyhow::anyhow!("--validity: {e}"))?;
            let leaf = cli_ca(&secret)?
                .issue(
                    &roles,
                    certmesh_kit::Clock::now(&certmesh_kit::SystemClock),
                    validity,
                )
                .context("issuing")?;
            crate::dev::write_file(&key_out, leaf.key_pem.as_bytes(), 0o600)?;
            crate::dev::write_file(&cert_out, leaf.cert_pem.as_bytes(), 0o644)?;
            println!("{}", leaf.fingerprint);
            Ok(())
        }
    }
}

fn cli_ca(args: &MeshSecretArgs) -> anyhow::Result<MeshCa> {
    let text = fs::read_to_string(&args.secret_file)
        .with_context(|| format!("reading {}", args.secret_file.display()))?;
    let secrets = parse_secrets(&text)?;
    Ok(MeshCa::derive(&secrets[0], args.trust_domain.trim())?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use certmesh_kit::{Clock, clock::TestClock};
    use chrono::TimeZone;
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn server_args(extra: &[&str]) -> ServerArgs {
        let mut argv = vec!["certmesh", "server", "--services", "iam"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Server(args) => *args,
            _ => panic!("server"),
        }
    }

    fn der(pem: &str) -> Vec<u8> {
        certmesh_crypto::cert::Certificate::from_pem(pem)
            .expect("pem")
            .der()
            .to_vec()
    }

    fn clock() -> TestClock {
        TestClock::at(
            Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0)
                .single()
                .expect("t"),
        )
    }

    fn write_leaf(dir: &Path, leaf: &certmesh_crypto::mesh::MeshLeaf) {
        fs::write(dir.join("cert.pem"), &leaf.cert_pem).expect("cert");
        fs::write(dir.join("key.pem"), leaf.key_pem.as_bytes()).expect("key");
    }

    #[tokio::test(start_paused = true)]
    async fn mounted_files_are_swapped_in_when_they_change_and_kept_when_broken() {
        certmesh_kit::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("dir");
        let ca = MeshCa::derive(&[3; 32], "certmesh.local").expect("ca");
        fs::write(dir.path().join("ca.pem"), ca.certificate().to_pem()).expect("ca");
        let roles = ["iam".to_string()];
        let now = clock().now();
        let first = ca.issue(&roles, now, Duration::hours(1)).expect("a");
        write_leaf(dir.path(), &first);
        let path = |name: &str| dir.path().join(name).display().to_string();
        let args = server_args(&[
            "--mesh",
            "files",
            "--mesh-cert",
            &path("cert.pem"),
            "--mesh-key",
            &path("key.pem"),
            "--mesh-ca",
            &path("ca.pem"),
        ]);
        let clock: SharedClock = Arc::new(clock());
        let mesh = Mesh::start(&args, clock).expect("start").expect("a mesh");
        assert_eq!(mesh.tls.leaf(), der(&first.cert_pem));

        let second = ca.issue(&roles, now, Duration::hours(1)).expect("b");
        write_leaf(dir.path(), &second);
        tokio::time::sleep(FILE_POLL * 2).await;
        assert_eq!(
            mesh.tls.leaf(),
            der(&second.cert_pem),
            "the new files are served"
        );

        fs::write(dir.path().join("key.pem"), "not a key").expect("garbage");
        tokio::time::sleep(FILE_POLL * 2).await;
        assert_eq!(
            mesh.tls.leaf(),
            der(&second.cert_pem),
            "broken files are not loaded"
        );
        mesh.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_internal_certificate_is_renewed_at_two_thirds_of_its_life() {
        certmesh_kit::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("secret");
        fs::write(
            &secret,
            format!("{}\n", certmesh_crypto::mesh::new_secret()),
        )
        .expect("secret");
        let args = server_args(&[
            "--mesh",
            "internal",
            "--mesh-secret-file",
            &secret.display().to_string(),
            "--mesh-cert-validity",
            "90m",
        ]);
        let test_clock = clock();
        let shared: SharedClock = Arc::new(test_clock.clone());
        let mesh = Mesh::start(&args, shared).expect("start").expect("a mesh");
        let first = mesh.tls.leaf();
        let cert = certmesh_crypto::cert::Certificate::from_der(first.clone()).expect("leaf");
        assert_eq!(cert.dns_names(), ["iam.mesh.certmesh.local"]);

        test_clock.advance(Duration::minutes(59));
        tokio::time::sleep(MAX_NAP * 2).await;
        assert_eq!(mesh.tls.leaf(), first, "not yet due at 59 of 90 minutes");

        test_clock.advance(Duration::minutes(2));
        tokio::time::sleep(MAX_NAP * 2).await;
        let renewed = mesh.tls.leaf();
        assert_ne!(renewed, first, "renewed past 60 of 90 minutes");
        let cert = certmesh_crypto::cert::Certificate::from_der(renewed).expect("leaf");
        assert_eq!(cert.not_after(), test_clock.now() + Duration::minutes(90));
        mesh.stop().await;
    }

    #[test]
    fn bad_mesh_settings_are_refused_at_start() {
        let clock: SharedClock = Arc::new(clock());
        let refused = |extra: &[&str]| {
            let args = server_args(extra);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt")
                .block_on(async { Mesh::start(&args, clock.clone()).map(|_| ()) })
                .expect_err("refused")
                .to_string()
        };
        assert!(refused(&["--mesh", "internal"]).contains("--mesh-secret-file"));
        assert!(refused(&["--mesh", "files", "--mesh-cert", "c"]).contains("--mesh-key"));
        assert!(refused(&["--mesh-secret-file", "s"]).contains("--mesh internal"));
        let dir = tempfile::tempdir().expect("dir");
        let short = dir.path().join("short");
        fs::write(&short, "c2hvcnQ=\n").expect("short");
        let msg = refused(&[
            "--mesh",
            "internal",
            "--mesh-secret-file",
            &short.display().to_string(),
        ]);
        assert!(msg.contains("--mesh-secret-file"), "{msg}");
        let good = dir.path().join("good");
        fs::write(&good, certmesh_crypto::mesh::new_secret()).expect("good");
        let msg = refused(&[
            "--mesh",
            "internal",
            "--mesh-secret-file",
            &good.display().to_string(),
            "--mesh-cert-validity",
            "5s",
        ]);
        assert!(msg.contains("at least 10s"), "{msg}");
    }
}
