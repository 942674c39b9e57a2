//! The key-encryption key that seals CA keys at rest.
//!
//! 32 random bytes, carried base64-encoded in a file or environment variable, wiped from memory
//! on drop and never printed.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};

/// KEK length in bytes (AES-256).
pub(crate) const KEK_LEN: usize = 32;

/// A 32-byte key-encryption key, zeroized on drop; `Debug` prints `Kek(REDACTED)`.
pub struct Kek(Zeroizing<[u8; KEK_LEN]>);

fn kek_err(detail: impl Into<String>) -> CryptoError {
    CryptoError::Kek {
        detail: detail.into(),
    }
}

impl Kek {
    /// A fresh random KEK.
    pub fn generate() -> Result<Kek> {
        let mut bytes = Zeroizing::new([0u8; KEK_LEN]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| kek_err("the OS random number generator failed"))?;
        Ok(Kek(bytes))
    }

    /// Decodes standard base64 (surrounding whitespace ignored) of exactly 32 bytes.
    pub fn from_base64(s: &str) -> Result<Kek> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(s.trim())
                .map_err(|_| kek_err("not valid base64"))?,
        );
        let mut bytes = Zeroizing::new([0u8; KEK_LEN]);
        if decoded.len() != KEK_LEN {
            return Err(kek_err(format!(
                "decodes to {} bytes, expected {KEK_LEN}",
                decoded.len()
            )));
        }
        bytes.copy_from_slice(&decoded);
        Ok(Kek(bytes))
    }

    /// Reads a file holding the base64 KEK.
    pub fn from_file(path: &Path) -> Result<Kek> {
        let text =
            Zeroizing::new(fs::read_to_string(path).map_err(|e| {
                CryptoError::io(format!("reading the KEK file {}", path.display()), e)
            })?);
        Self::from_base64(&text)
    }

    /// Reads the base64 KEK from an environment variable.
    pub fn from_env(var: &str) -> Result<Kek> {
        let text = Zeroizing::new(
            std::env::var(var)
                .map_err(|_| kek_err(format!("environment variable {var} is not set")))?,
        );
        Self::from_base64(&text)
    }

    /// Development mode: reads the KEK file, or creates it (mode 0600, parent directories 0700)
    /// with a fresh random KEK if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Kek> {
        match Self::from_file(path) {
            Err(CryptoError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Self::create(path)
            }
            other => other,
        }
    }

    fn create(path: &Path) -> Result<Kek> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| CryptoError::io(format!("creating {}", parent.display()), e))?;
        }
        let kek = Self::generate()?;
        let encoded = Zeroizing::new(STANDARD.encode(kek.0.as_ref()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let mut file = match file {
            Ok(file) => file,
            // Another process created it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Self::from_file(path),
            Err(e) => return Err(CryptoError::io(format!("creating {}", path.display()), e)),
        };
        file.write_all(encoded.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| CryptoError::io(format!("writing {}", path.display()), e))?;
        Ok(kek)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEK_LEN] {
        &self.0
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(REDACTED)")
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn base64_length_is_checked() {
        let good = STANDARD.encode([7u8; 32]);
        assert_eq!(
            Kek::from_base64(&format!(" {good}\n")).expect("ok").bytes(),
            &[7u8; 32]
        );
        assert!(matches!(
            Kek::from_base64(&STANDARD.encode([7u8; 31])),
            Err(CryptoError::Kek { .. })
        ));
        assert!(Kek::from_base64("!!!").is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let kek = Kek::from_base64(&STANDARD.encode([0xabu8; 32])).expect("ok");
        assert_eq!(format!("{kek:?}"), "Kek(REDACTED)");
    }

    #[test]
    fn load_or_create_creates_once_with_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/deeper/kek");
        let first = Kek::load_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = Kek::load_or_create(&path).expect("load");
        assert_eq!(first.bytes(), second.bytes());
        assert_eq!(Kek::from_file(&path).expect("file").bytes(), first.bytes());
    }

    #[test]
    fn missing_env_is_a_kek_error() {
        assert!(matches!(
            Kek::from_env("CERTMESH_TEST_SURELY_UNSET_KEK_VAR"),
            Err(CryptoError::Kek { .. })
        ));
    }
}
