//! Backups of the files a deploy replaces, and putting them back.
//!
//! Each deploy that changes something first copies the current files into a new set
//! `<state>/backups/<binding>/<UTC timestamp>/` (`cert.pem`, `chain.pem`, `key.pem`, key 0600,
//! plus `manifest.json` naming the original paths, modes and owners). Only the last
//! [`KEEP`] sets stay. [`BackupSet::restore`] puts every file back as it was, atomically,
//! and removes the files that did not exist before the deploy.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::files::{self, FileOwner, PRIVATE};
use crate::state::DIR_MODE;

/// Backup sets kept per binding.
pub const KEEP: usize = 3;

/// Which of a target's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The certificate file.
    Cert,
    /// The chain file.
    Chain,
    /// The private key.
    Key,
}

impl Role {
    /// The file's name inside a backup set.
    pub fn backup_name(self) -> &'static str {
        match self {
            Role::Cert => "cert.pem",
            Role::Chain => "chain.pem",
            Role::Key => "key.pem",
        }
    }

    fn backup_mode(self) -> u32 {
        match self {
            Role::Cert | Role::Chain => 0o644,
            Role::Key => PRIVATE,
        }
    }
}

/// One file of a backup set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Which file.
    pub role: Role,
    /// Where it lives.
    pub path: PathBuf,
    /// Whether it existed before the deploy; the rest is set only if it did.
    pub existed: bool,
    /// Its permission bits.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
}

/// The files as they were before one deploy.
#[derive(Clone, Debug)]
pub struct BackupSet {
    dir: PathBuf,
    entries: Vec<Entry>,
}

impl BackupSet {
    /// Copies the current state of `files` into a new set under `root`, named after `at`,
    /// then drops all but the newest [`KEEP`] sets.
    pub fn take(
        root: &Path,
        at: DateTime<Utc>,
        targets: &[(Role, &Path)],
    ) -> io::Result<BackupSet> {
        files::ensure_dir(root, DIR_MODE)?;
        let dir = new_set_dir(root, at)?;
        let mut entries = Vec::with_capacity(targets.len());
        for (role, path) in targets {
            entries.push(save(&dir, *role, path)?);
        }
        let mut manifest = serde_json::to_vec_pretty(&entries).map_err(io::Error::other)?;
        manifest.push(b'\n');
        files::write_atomic(
            &dir.join("manifest.json"),
            &manifest,
            PRIVATE,
            FileOwner::default(),
        )?;
        rotate(root, KEEP)?;
        Ok(BackupSet { dir, entries })
    }

    /// The set's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the set holds.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Puts every file back; goes through all of them even if one fails, returning the first
    /// error.
    pub fn restore(&self) -> io::Result<()> {
        let mut first_error = None;
        for entry in &self.entries {
            if let Err(e) = self.restore_one(entry) {
                tracing::error!(path = %entry.path.display(), error = %e, "Restoring a file failed.");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn restore_one(&self, entry: &Entry) -> io::Result<()> {
        if !entry.existed {
            return files::remove_durably(&entry.path);
        }
        let bytes = fs::read(self.dir.join(entry.role.backup_name()))?;
        let owner = FileOwner {
            uid: Some(entry.uid),
            gid: Some(entry.gid),
        };
        match files::write_atomic(&entry.path, &bytes, entry.mode, owner) {
            // Not running as root: the old bytes matter more than the old owner.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                files::write_atomic(&entry.path, &bytes, entry.mode, FileOwner::default())
            }
            other => other,
        }
    }
}

fn save(dir: &Path, role: Role, path: &Path) -> io::Result<Entry> {
    let (bytes, meta) = match fs::read(path) {
        Ok(bytes) => (bytes, fs::metadata(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Entry {
                role,
                path: path.to_path_buf(),
                existed: false,
                mode: 0,
                uid: 0,
                gid: 0,
            });
        }
        Err(e) => return Err(e),
    };
    let backup = dir.join(role.backup_name());
    files::write_atomic(&backup, &bytes, role.backup_mode(), FileOwner::default())?;
    Ok(Entry {
        role,
        path: path.to_path_buf(),
        existed: true,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// A fresh directory named after `at` (fixed width, so names sort by time), with a counter
/// when two deploys share a millisecond.
fn new_set_dir(root: &Path, at: DateTime<Utc>) -> io::Result<PathBuf> {
    let stamp = at.format("%Y%m%dT%H%M%S%.3fZ").to_string();
    for n in 0u32..1000 {
        let name = if n == 0 {
            stamp.clone()
        } else {
            format!("{stamp}-{n:03}")
        };
        let dir = root.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => {
                files::ensure_dir(&dir, DIR_MODE)?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("too many backup sets named {stamp} in {}", root.display()),
    ))
}

/// Removes all but the newest `keep` sets under `root`.
pub fn rotate(root: &Path, keep: usize) -> io::Result<()> {
    let mut sets = list(root)?;
    let excess = sets.len().saturating_sub(keep);
    for old in sets.drain(..excess) {
        fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The backup sets under `root`, oldest first.
pub fn list(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut sets = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sets.push(entry.path());
        }
    }
    sets.sort();
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn names_sort_by_time_even_within_one_millisecond() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = DateTime::from_timestamp(1_800_000_000, 5_000_000).expect("valid");
        let a = new_set_dir(dir.path(), at).expect("first");
        let b = new_set_dir(dir.path(), at).expect("second");
        let c = new_set_dir(dir.path(), at + Duration::milliseconds(1)).expect("third");
        assert!(a.ends_with("20270115T080000.005Z"), "{}", a.display());
        assert!(b.ends_with("20270115T080000.005Z-001"));
        assert_eq!(list(dir.path()).expect("list"), [a, b, c]);
    }
}
