//! Certificate discovery on this host: the certificates under the configured paths, reported
//! to the inventory while the stream is up (right after it opens, then every interval).
//!
//! Only certificates leave the host. Files that hold them often hold the private key too, so
//! a file's bytes are read into a buffer wiped on drop, [`certmesh_crypto::certificates_in`]
//! picks out the certificate blocks without decoding any other, and only their DER is sent.
//!
//! The walk is bounded: symlinked directories are not followed (no loops), depth, file size,
//! files examined and bytes kept are capped by [`Limits`]. Only regular files are opened, so a
//! FIFO or device under a path cannot block the scan (a file swapped for one between the check
//! and the open still could; the scan runs on a blocking thread of its own, off the stream).

use std::fs::{self, File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certmesh_proto::fleet::{AgentMessage, DiscoveredFile, DiscoveryReport, agent_message};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::config::DiscoverySettings;

/// Most files in one report message.
pub const MAX_REPORT_FILES: usize = 500;
/// About the most certificate bytes in one report message (one larger file goes alone).
pub const MAX_REPORT_BYTES: usize = 2 * 1024 * 1024;

/// Bounds of one scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Larger files are skipped (certificate bundles are far smaller).
    pub max_file_bytes: u64,
    /// The scan stops after examining this many regular files.
    pub max_files: usize,
    /// Directories deeper than this below a root are not read.
    pub max_depth: usize,
    /// The scan stops once the certificates kept add up to this many bytes.
    pub max_total_bytes: usize,
}

impl Default for Limits {
    /// 1 MiB per file, 10 000 files, 16 levels, 64 MiB of certificates.
    fn default() -> Self {
        Limits {
            max_file_bytes: 1024 * 1024,
            max_files: 10_000,
            max_depth: 16,
            max_total_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Every file under `roots` (each a directory, searched recursively, or a single file) that
/// holds at least one certificate, with the certificates' DER in file order. Unreadable
/// entries are skipped with a debug log.
pub fn scan_paths(roots: &[PathBuf], limits: &Limits) -> Vec<DiscoveredFile> {
    let mut walk = Walk {
        limits,
        examined: 0,
        kept_bytes: 0,
        found: Vec::new(),
    };
    for root in roots {
        walk.root(root);
    }
    walk.found
}

struct Walk<'a> {
    limits: &'a Limits,
    examined: usize,
    kept_bytes: usize,
    found: Vec<DiscoveredFile>,
}

impl Walk<'_> {
    /// A configured root is followed even if it is a symlink (`/etc/ssl/certs` often is).
    fn root(&mut self, root: &Path) {
        match fs::metadata(root) {
            Ok(meta) if meta.is_dir() => self.dir(root, 0),
            Ok(meta) if meta.is_file() => self.file(root, &meta),
            Ok(_) => {
                debug!(path = %root.display(), "Discovery path is no file or directory; skipped.")
            }
            Err(e) => {
                debug!(path = %root.display(), error = %e, "Discovery path unreadable; skipped.")
            }
        }
    }

    fn dir(&mut self, dir: &Path, depth: usize) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                debug!(path = %dir.display(), error = %e, "Directory unreadable; skipped.");
                return;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if self.full() {
                return;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                if depth < self.limits.max_depth {
                    self.dir(&path, depth + 1);
                }
            } else if meta.is_file() {
                self.file(&path, &meta);
            } else if meta.file_type().is_symlink() {
                // A link to a file is read (bundles are often links); a link to a directory
                // is not followed, which rules out loops.
                if let Ok(target) = fs::metadata(&path)
                    && target.is_file()
                {
                    self.file(&path, &target);
                }
            }
        }
    }

    /// Whether a limit stopped the scan.
    fn full(&self) -> bool {
        self.examined >= self.limits.max_files || self.kept_bytes >= self.limits.max_total_bytes
    }

    fn file(&mut self, path: &Path, meta: &Metadata) {
        if self.full() {
            return;
        }
        self.examined += 1;
        if self.full() {
            warn!(
                files = self.examined,
                kept_bytes = self.kept_bytes,
                "Discovery stopped at its limit; the rest of the paths are not searched."
            );
        }
        if meta.len() > self.limits.max_file_bytes {
            debug!(path = %path.display(), bytes = meta.len(), "File too large for discovery; skipped.");
            return;
        }
        let bytes = match read_capped(path, self.limits.max_file_bytes) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(e) => {
                debug!(path = %path.display(), error = %e, "File unreadable; skipped.");
                return;
            }
        };
        let certificates: Vec<Vec<u8>> = certmesh_crypto::certificates_in(&bytes)
            .iter()
            .map(|cert| cert.der().to_vec())
            .collect();
        if certificates.is_empty() {
            return;
        }
        self.kept_bytes += certificates.iter().map(Vec::len).sum::<usize>();
        self.found.push(DiscoveredFile {
            path: path.to_string_lossy().into_owned(),
            certificates,
        });
    }
}

/// The file's bytes in a buffer wiped on drop; `None` if it grew past `max` since its size
/// was checked.
fn read_capped(path: &Path, max: u64) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// `files` split into reports of at most [`MAX_REPORT_FILES`] files and about
/// [`MAX_REPORT_BYTES`] of paths and certificates each.
pub fn reports(files: Vec<DiscoveredFile>) -> Vec<DiscoveryReport> {
    let mut reports = Vec::new();
    let mut current = DiscoveryReport::default();
    let mut bytes = 0;
    for file in files {
        let size = file.path.len() + file.certificates.iter().map(Vec::len).sum::<usize>();
        let too_many = current.files.len() >= MAX_REPORT_FILES;
        if !current.files.is_empty() && (too_many || bytes + size > MAX_REPORT_BYTES) {
            reports.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.files.push(file);
    }
    if !current.files.is_empty() {
        reports.push(current);
    }
    reports
}

/// Discovery for one stream; stops when dropped.
#[derive(Debug)]
pub struct Reporter(JoinHandle<()>);

impl Drop for Reporter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts reporting on `tx` (a scan now, then every interval), or nothing when no paths are
/// configured.
pub fn spawn(settings: &DiscoverySettings, tx: mpsc::Sender<AgentMessage>) -> Option<Reporter> {
    if settings.paths.is_empty() {
        return None;
    }
    let task = report_every(settings.paths.clone(), settings.interval, tx);
    Some(Reporter(tokio::spawn(task)))
}

async fn report_every(paths: Vec<PathBuf>, interval: Duration, tx: mpsc::Sender<AgentMessage>) {
    loop {
        let roots = paths.clone();
        let scan = tokio::task::spawn_blocking(move || scan_paths(&roots, &Limits::default()));
        match scan.await {
            Ok(files) => {
                let found = files.len();
                let reports = reports(files);
                let messages = reports.len();
                for report in reports {
                    let message = AgentMessage {
                        message: Some(agent_message::Message::Discovery(report)),
                    };
                    if tx.send(message).await.is_err() {
                        return; // the stream closed; the next one scans again
                    }
                }
                info!(files = found, messages, "Discovery scan reported.");
            }
            Err(e) => warn!(error = %e, "The discovery scan failed."),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use certmesh_crypto::cert::{CaTemplate, Certificate, self_signed_root};
    use certmesh_crypto::keys::{KeySpec, SoftwareSigner};
    use certmesh_crypto::serial::Serial;
    use chrono::{TimeZone, Utc};

    use super::*;

    fn cert(name: &str) -> Certificate {
        let signer = SoftwareSigner::generate_ephemeral(KeySpec::EcdsaP256).expect("key");
        let at = |year| {
            Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
                .single()
                .expect("t")
        };
        let template = CaTemplate {
            common_name: name.to_owned(),
            organization: None,
            serial: Serial::random(),
            not_before: at(2020),
            not_after: at(2040),
            path_len: None,
            permitted_dns: Vec::new(),
            excluded_dns: Vec::new(),
        };
        self_signed_root(Arc::new(signer), &template).expect("cert")
    }

    fn write(path: &Path, bytes: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write");
    }

    fn found_paths(found: &[DiscoveredFile], root: &Path) -> Vec<String> {
        found
            .iter()
            .map(|f| {
                Path::new(&f.path)
                    .strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn bundles_der_files_and_nested_directories_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let (a, b, c) = (cert("a"), cert("b"), cert("c"));
        write(
            &root.join("bundle.pem"),
            format!("{}{}", a.to_pem(), b.to_pem()),
        );
        write(&root.join("c.der"), c.der());
        write(&root.join("x/y/z/deep.crt"), a.to_pem());
        write(&root.join("notes.txt"), "not a certificate\n");
        write(&root.join("empty"), "");
        let found = scan_paths(&[root.to_path_buf()], &Limits::default());
        assert_eq!(
            found_paths(&found, root),
            ["bundle.pem", "c.der", "x/y/z/deep.crt"]
        );
        assert_eq!(found[0].certificates, [a.der().to_vec(), b.der().to_vec()]);
        assert_eq!(found[1].certificates, [c.der().to_vec()]);
        assert!(Path::new(&found[0].path).is_absolute());
        // A root may be a single file.
        let single = scan_paths(&[root.join("c.der")], &Limits::default());
        assert_eq!(single.len(), 1);
    }

    #[test]
    fn only_the_certificate_of_a_key_and_cert_file_comes_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, _) =
            certmesh_crypto::tls::server_identity(&["site.test".into()], &[]).expect("key");
        let leaf = cert("site.test");
        write(
            &dir.path().join("site.pem"),
            format!("{}{}", key.as_str(), leaf.to_pem()),
        );
        write(&dir.path().join("site.key"), key.as_bytes());
        let found = scan_paths(&[dir.path().to_path_buf()], &Limits::default());
        assert_eq!(found.len(), 1, "the key alone is no find");
        assert_eq!(found[0].certificates, [leaf.der().to_vec()]);
        let shown = format!("{found:?}");
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "key material in {shown}");
        }
    }

    #[test]
    fn symlink_loops_are_not_followed_but_linked_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(&root.join("real/a.pem"), cert("a").to_pem());
        std::os::unix::fs::symlink(root, root.join("real/loop")).expect("symlink");
        std::os::unix::fs::symlink(root.join("real/a.pem"), root.join("link.pem"))
            .expect("symlink");
        let found = scan_paths(&[root.to_path_buf()], &Limits::default());
        assert_eq!(found_paths(&found, root), ["link.pem", "real/a.pem"]);
    }

    #[test]
    fn limits_skip_large_files_and_stop_the_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let pem = cert("a").to_pem();
        let mut big = pem.clone();
        big.push_str(&"#".repeat(2048));
        write(&root.join("1-big.pem"), &big);
        for name in ["2.pem", "3.pem", "4.pem"] {
            write(&root.join(name), &pem);
        }
        write(&root.join("d1/d2/deep.pem"), &pem);
        let limits = Limits {
            max_file_bytes: 1024,
            max_depth: 1,
            ..Limits::default()
        };
        let found = scan_paths(&[root.to_path_buf()], &limits);
        assert_eq!(found_paths(&found, root), ["2.pem", "3.pem", "4.pem"]);
        let limits = Limits {
            max_files: 2,
            ..Limits::default()
        };
        let found = scan_paths(&[root.to_path_buf()], &limits);
        assert_eq!(found_paths(&found, root), ["1-big.pem", "2.pem"]);
        let missing = scan_paths(&[root.join("absent")], &Limits::default());
        assert!(missing.is_empty());
    }

    #[test]
    fn reports_are_split_by_count_and_size() {
        let file = |bytes: usize| DiscoveredFile {
            path: "/p".into(),
            certificates: vec![vec![0u8; bytes]],
        };
        let many: Vec<DiscoveredFile> = (0..1201).map(|_| file(10)).collect();
        let sizes: Vec<usize> = reports(many).iter().map(|r| r.files.len()).collect();
        assert_eq!(sizes, [500, 500, 201]);
        let large: Vec<DiscoveredFile> = (0..5).map(|_| file(900 * 1024)).collect();
        let sizes: Vec<usize> = reports(large).iter().map(|r| r.files.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        let huge = reports(vec![file(3 * 1024 * 1024), file(1)]);
        assert_eq!(huge.len(), 2, "an oversized file goes alone");
        assert!(reports(Vec::new()).is_empty());
    }
}
