//! The deploy contract on real files in temporary directories, with real shell commands and a
//! real TLS endpoint.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certmesh_agent::clock::TestClock;
use certmesh_agent::deploy::backup::{self, KEEP};
use certmesh_agent::deploy::{Deployer, Material, Outcome, OutcomeKind, Target};
use certmesh_agent::verify::Schedule;
use certmesh_crypto::cert::Certificate;
use certmesh_proto::fleet::DeployTarget;

use crate::support::{Pki, install_provider, mode, not_before, tls_server};

struct Host {
    dir: tempfile::TempDir,
    clock: TestClock,
    pki: Pki,
    chain: String,
}

impl Host {
    fn new() -> Host {
        install_provider();
        Host {
            dir: tempfile::tempdir().expect("tempdir"),
            clock: TestClock::at(not_before()),
            pki: Pki::new("Test Issuing CA"),
            chain: Pki::new("Test Intermediate").root_pem(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn backups(&self) -> PathBuf {
        self.path("state/backups/bd-1")
    }

    fn target(&self, edit: impl FnOnce(&mut DeployTarget)) -> Target {
        let mut t = DeployTarget {
            cert_path: self.path("etc/cert.pem").display().to_string(),
            key_path: self.path("etc/key.pem").display().to_string(),
            ..DeployTarget::default()
        };
        edit(&mut t);
        Target::try_from(&t).expect("valid target")
    }

    fn deployer(&self) -> Deployer {
        let mut d = Deployer::new(Arc::new(self.clock.clone()));
        d.command_timeout = Duration::from_secs(10);
        d.verify = Schedule {
            window: Duration::from_secs(2),
            interval: Duration::from_millis(100),
            attempt_timeout: Duration::from_millis(500),
        };
        d
    }

    fn leaf(&self) -> (String, Certificate) {
        self.pki.leaf(&["www.example.test"], &[])
    }

    async fn deploy(&self, target: &Target, key: &str, cert: &Certificate) -> Outcome {
        self.clock.advance(chrono::Duration::seconds(1));
        let leaf = cert.to_pem();
        let material = Material {
            leaf_pem: &leaf,
            chain_pem: &self.chain,
            key_pem: key,
        };
        self.deployer()
            .deploy(target, material, &self.backups())
            .await
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).expect("read")
}

#[tokio::test]
async fn installs_with_modes_then_skips_identical_bytes() {
    let host = Host::new();
    let target = host.target(|t| t.mode = "0640".into());
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Installed, "{out:?}");
    assert_eq!(out.certificate_sha256, cert.fingerprint_sha256());
    // No chain path: the chain follows the leaf in the certificate file.
    assert_eq!(
        read(&target.cert_path),
        format!("{}{}", cert.to_pem(), host.chain)
    );
    assert_eq!(read(&target.key_path).trim_end(), key.trim_end());
    assert_eq!(mode(&target.cert_path), 0o640);
    assert_eq!(mode(&target.key_path), 0o600);
    assert_eq!(
        mode(&host.path("etc")),
        0o755,
        "a missing directory is made reachable"
    );
    let sets = backup::list(&host.backups()).expect("list");
    assert_eq!(sets.len(), 1);
    assert!(sets[0].join("manifest.json").is_file());
    assert!(
        !sets[0].join("cert.pem").exists(),
        "nothing existed to back up"
    );

    let again = host.deploy(&target, &key, &cert).await;
    assert_eq!(again.kind, OutcomeKind::Unchanged, "{again:?}");
    assert_eq!(backup::list(&host.backups()).expect("list").len(), 1);
}

#[tokio::test]
async fn a_chain_path_keeps_the_chain_apart() {
    let host = Host::new();
    let chain_path = host.path("etc/chain.pem");
    let target = host.target(|t| t.chain_path = chain_path.display().to_string());
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Installed, "{out:?}");
    assert_eq!(read(&target.cert_path), cert.to_pem());
    assert_eq!(read(&chain_path), host.chain);
    assert_eq!(mode(&chain_path), 0o644);
}

#[tokio::test]
async fn only_the_last_three_backup_sets_are_kept() {
    let host = Host::new();
    let target = host.target(|_| {});
    let mut installed = Vec::new();
    for _ in 0..5 {
        let (key, cert) = host.leaf();
        let out = host.deploy(&target, &key, &cert).await;
        assert_eq!(out.kind, OutcomeKind::Installed, "{out:?}");
        installed.push((key, cert));
    }
    let sets = backup::list(&host.backups()).expect("list");
    assert_eq!(sets.len(), KEEP);
    // The newest set holds what the fifth deploy replaced: the fourth certificate and key.
    let newest = sets.last().expect("a set");
    let (key4, cert4) = &installed[3];
    assert!(read(&newest.join("cert.pem")).starts_with(&cert4.to_pem()));
    assert_eq!(read(&newest.join("key.pem")).trim_end(), key4.trim_end());
    assert_eq!(mode(&newest.join("key.pem")), 0o600);
}

#[tokio::test]
async fn a_failed_validation_restores_the_old_files_and_never_reloads() {
    let host = Host::new();
    let marker = host.path("reloaded");
    let chain_path = host.path("etc/chain.pem");
    let target = host.target(|t| {
        t.chain_path = chain_path.display().to_string();
        t.mode = "0644".into();
        t.validate_command = "echo 'nginx: [emerg] bad certificate' >&2; exit 1".into();
        t.reload_command = format!("touch {}", marker.display());
    });
    fs::create_dir_all(host.path("etc")).expect("mkdir");
    fs::write(&target.cert_path, b"old certificate bytes\n").expect("write");
    fs::write(&target.key_path, b"old key bytes\n").expect("write");
    fs::set_permissions(
        &target.cert_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .expect("chmod");
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Failed, "{out:?}");
    assert!(out.detail.contains("exit status 1"), "{}", out.detail);
    assert!(
        out.detail.contains("[emerg] bad certificate"),
        "{}",
        out.detail
    );
    assert!(out.detail.contains("restored"), "{}", out.detail);
    assert_eq!(
        fs::read(&target.cert_path).expect("read"),
        b"old certificate bytes\n"
    );
    assert_eq!(
        fs::read(&target.key_path).expect("read"),
        b"old key bytes\n"
    );
    assert_eq!(
        mode(&target.cert_path),
        0o444,
        "the old mode comes back too"
    );
    assert!(
        !chain_path.exists(),
        "a file that did not exist before is removed"
    );
    assert!(!marker.exists(), "the reload must not run");
}

#[tokio::test]
async fn a_failed_reload_restores_and_reloads_again() {
    let host = Host::new();
    let reloads = host.path("reloads");
    let target = host.target(|t| {
        t.reload_command = format!("echo reload >> {}; exit 7", reloads.display());
    });
    fs::create_dir_all(host.path("etc")).expect("mkdir");
    fs::write(&target.cert_path, b"old cert\n").expect("write");
    fs::write(&target.key_path, b"old key\n").expect("write");
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Failed, "{out:?}");
    assert!(out.detail.contains("exit status 7"), "{}", out.detail);
    assert_eq!(read(&target.cert_path), "old cert\n");
    assert_eq!(read(&target.key_path), "old key\n");
    assert_eq!(read(&reloads), "reload\nreload\n");
}

#[tokio::test]
async fn a_certificate_for_another_key_is_refused_before_anything_is_written() {
    let host = Host::new();
    let target = host.target(|_| {});
    let (_, cert) = host.leaf();
    let (other_key, _) = host.leaf();
    let out = host.deploy(&target, &other_key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Failed, "{out:?}");
    assert!(out.detail.contains("not for the key"));
    assert!(!target.cert_path.exists());
    assert!(!host.backups().exists());
}

#[tokio::test]
async fn the_owner_is_applied_to_every_file() {
    let host = Host::new();
    if fs::metadata(host.dir.path()).expect("meta").uid() != 0 {
        // chown to another user needs root; the numeric path is still covered by files.rs.
        return;
    }
    let target = host.target(|t| t.owner = "65534:65534".into());
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Installed, "{out:?}");
    for path in [&target.cert_path, &target.key_path] {
        let meta = fs::metadata(path).expect("meta");
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }
    let unknown = host.target(|t| t.owner = "no-such-user-here".into());
    let (key, cert) = host.leaf();
    let out = host.deploy(&unknown, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Failed);
    assert!(out.detail.contains("no-such-user-here"));
}

#[tokio::test]
async fn verified_when_the_endpoint_serves_the_new_certificate() {
    let host = Host::new();
    let target = host.target(|_| {});
    let (old_key, old_cert) = host.leaf();
    assert_eq!(
        host.deploy(&target, &old_key, &old_cert).await.kind,
        OutcomeKind::Installed
    );
    // The endpoint reads the target files at each handshake, like nginx after a reload.
    let endpoint = tls_server(&target.cert_path, &target.key_path).await;
    let target = host.target(|t| {
        t.reload_command = "true".into();
        t.verify_endpoint = endpoint.clone();
    });
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Verified, "{out:?}");
    assert!(
        out.detail.contains("SNI www.example.test"),
        "{}",
        out.detail
    );

    // An IP as SNI works too (sent as no SNI, as TLS requires).
    let by_ip = host.target(|t| {
        t.verify_endpoint = endpoint.clone();
        t.verify_sni = "127.0.0.1".into();
    });
    let (key, cert) = host.leaf();
    let out = host.deploy(&by_ip, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Verified, "{out:?}");
}

#[tokio::test]
async fn a_mismatch_rolls_back_and_reloads_again() {
    let host = Host::new();
    let (other_key, other_cert) = host.leaf();
    let other_dir = host.path("other");
    fs::create_dir_all(&other_dir).expect("mkdir");
    fs::write(other_dir.join("cert.pem"), other_cert.to_pem()).expect("write");
    fs::write(other_dir.join("key.pem"), &other_key).expect("write");
    let endpoint = tls_server(&other_dir.join("cert.pem"), &other_dir.join("key.pem")).await;
    let reloads = host.path("reloads");
    let target = host.target(|t| {
        t.reload_command = format!("echo reload >> {}", reloads.display());
        t.verify_endpoint = endpoint;
    });
    fs::create_dir_all(host.path("etc")).expect("mkdir");
    fs::write(&target.cert_path, b"old cert\n").expect("write");
    fs::write(&target.key_path, b"old key\n").expect("write");
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Mismatch, "{out:?}");
    assert_eq!(out.served_sha256, other_cert.fingerprint_sha256());
    assert_eq!(out.certificate_sha256, cert.fingerprint_sha256());
    assert_eq!(read(&target.cert_path), "old cert\n");
    assert_eq!(read(&target.key_path), "old key\n");
    assert_eq!(read(&reloads), "reload\nreload\n");
}

#[tokio::test]
async fn unreachable_leaves_the_new_files_in_place() {
    let host = Host::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let target = host.target(|t| t.verify_endpoint = endpoint);
    let (key, cert) = host.leaf();
    let out = host.deploy(&target, &key, &cert).await;
    assert_eq!(out.kind, OutcomeKind::Unreachable, "{out:?}");
    assert!(
        out.detail.contains("connecting to 127.0.0.1:"),
        "{}",
        out.detail
    );
    assert!(read(&target.cert_path).starts_with(&cert.to_pem()));
}
