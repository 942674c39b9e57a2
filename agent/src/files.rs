//! Atomic file replacement, the one way the agent writes a file that matters: a temporary file
//! in the target's directory, written and fsynced with its final mode and owner, renamed over
//! the target, then the directory fsynced. A reader (nginx, the agent after a crash) sees the
//! old bytes or the new ones, never a torn file, and a key is never readable by others, not
//! even for the moment before a `chmod`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, fchown};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of private keys and of every agent state file that holds a secret.
pub const PRIVATE: u32 = 0o600;

/// The numeric owner to give a file; `None` parts stay as the agent's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOwner {
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` atomically, with permission bits `mode` and `owner`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, owner: FileOwner) -> io::Result<()> {
    let dir = parent_of(path)?;
    let temp = temp_path(path, dir)?;
    let written = write_temp(&temp, bytes, mode, owner).and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Removes `path` if it exists and makes the removal durable.
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent_of(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Renames `from` over `to` and makes it durable (both must be in one directory).
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent_of(to)?)
}

/// Creates `dir` (and its parents) if missing and sets its mode to `mode`.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Reads a file, `None` if it does not exist.
pub fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// fsyncs a directory, so that a rename or removal in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => Ok(dir),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )),
    }
}

fn temp_path(path: &Path, dir: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(
        ".{}.certmesh-{}-{n}.tmp",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn write_temp(temp: &Path, bytes: &[u8], mode: u32, owner: FileOwner) -> io::Result<()> {
    // Created private; the final mode is set on the open file before anything else sees it.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE)
        .open(temp)?;
    file.write_all(bytes)?;
    if owner.uid.is_some() || owner.gid.is_some() {
        fchown(&file, owner.uid, owner.gid)?;
    }
    // After chown: changing the owner may clear set-id bits, never the other way round.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn replaces_the_file_with_the_mode_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cert.pem");
        fs::write(&path, b"old").expect("write");
        write_atomic(&path, b"new", 0o640, FileOwner::default()).expect("atomic");
        assert_eq!(fs::read(&path).expect("read"), b"new");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["cert.pem"]);
    }

    #[test]
    fn sets_the_numeric_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        let me = fs::metadata(dir.path()).expect("meta");
        let owner = FileOwner {
            uid: Some(me.uid()),
            gid: Some(me.gid()),
        };
        write_atomic(&path, b"k", PRIVATE, owner).expect("atomic");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!((meta.uid(), meta.gid()), (me.uid(), me.gid()));
        assert_eq!(meta.mode() & 0o777, 0o600);
    }

    #[test]
    fn a_missing_directory_fails_without_creating_anything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent").join("cert.pem");
        assert!(write_atomic(&path, b"x", 0o644, FileOwner::default()).is_err());
        assert!(!dir.path().join("absent").exists());
    }

    #[test]
    fn remove_durably_ignores_a_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gone");
        remove_durably(&path).expect("missing is fine");
        fs::write(&path, b"x").expect("write");
        remove_durably(&path).expect("removes");
        assert!(!path.exists());
        assert_eq!(read_if_exists(&path).expect("read"), None);
    }
}
