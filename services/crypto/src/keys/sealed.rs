//! CA keys sealed in files under one directory with an AES-256-GCM key-encryption key.
//!
//! File `<dir>/<id>.sealed`, mode 0600, written atomically (temporary file, fsync, rename):
//!
//! ```text
//! "CMSK" | version (1) | key spec (1) | nonce (12) | AES-256-GCM(PKCS#8) with tag (16)
//! ```
//!
//! The AAD is the 6-byte header followed by the key reference string, so a file that is edited,
//! truncated, relabelled or renamed to another id fails to open with [`CryptoError::Unseal`].

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::software::{SoftwareSigner, generate_pkcs8};
use super::{Kek, KeyBackend, KeyRef, KeySpec, Signer};
use crate::error::{CryptoError, Result};

const MAGIC: &[u8; 4] = b"CMSK";
const VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 2;
const BACKEND: &str = "sealed";

/// A [`KeyBackend`] keeping each key in its own KEK-sealed file.
pub struct SealedFileBackend {
    dir: PathBuf,
    aead: LessSafeKey,
    rng: SystemRandom,
    cache: Mutex<HashMap<KeyRef, Arc<dyn Signer>>>,
}

impl SealedFileBackend {
    /// Opens (creating with mode 0700 if needed) the key directory.
    pub fn new(dir: PathBuf, kek: Kek) -> Result<SealedFileBackend> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| CryptoError::io(format!("creating key directory {}", dir.display()), e))?;
        let key = UnboundKey::new(&AES_256_GCM, kek.bytes()).map_err(|_| CryptoError::Kek {
            detail: "not usable as an AES-256-GCM key".to_owned(),
        })?;
        Ok(SealedFileBackend {
            dir,
            aead: LessSafeKey::new(key),
            rng: SystemRandom::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn path_of(&self, key: &KeyRef) -> PathBuf {
        // KeyRef ids are [A-Za-z0-9._-] without a leading dot: always a plain file name.
        self.dir.join(format!("{}.sealed", key.id()))
    }

    fn check_backend(&self, key: &KeyRef) -> Result<()> {
        if key.backend() == BACKEND {
            Ok(())
        } else {
            Err(not_found(key))
        }
    }

    fn cached(&self, key: &KeyRef) -> Option<Arc<dyn Signer>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).cloned()
    }

    fn remember(&self, key: KeyRef, signer: Arc<dyn Signer>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.insert(key, signer);
    }

    fn forget(&self, key: &KeyRef) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.remove(key);
    }

    fn seal(&self, key: &KeyRef, spec: KeySpec, pkcs8: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| rng_failed())?;
        let header = header(spec);
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + pkcs8.len() + 16);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        let mut body = pkcs8.to_vec();
        let aad = aad(&header, key);
        let sealed = self.aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_slice()),
            &mut body,
        );
        sealed.map_err(|_| CryptoError::Signing {
            detail: "sealing the key failed".to_owned(),
        })?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn unseal(&self, key: &KeyRef, file: &[u8]) -> Result<(KeySpec, Zeroizing<Vec<u8>>)> {
        if file.len() < HEADER_LEN + NONCE_LEN || &file[..MAGIC.len()] != MAGIC {
            return Err(CryptoError::Unseal);
        }
        let (header_bytes, rest) = file.split_at(HEADER_LEN);
        let spec = match (header_bytes[4], header_bytes[5]) {
            (VERSION, 1) => KeySpec::EcdsaP256,
            (VERSION, 2) => KeySpec::EcdsaP384,
            _ => return Err(CryptoError::Unseal),
        };
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
        let mut body = Zeroizing::new(ciphertext.to_vec());
        let aad = aad(&header(spec), key);
        let plain_len = self
            .aead
            .open_in_place(nonce, Aad::from(aad.as_slice()), &mut body)
            .map_err(|_| CryptoError::Unseal)?
            .len();
        body.truncate(plain_len);
        Ok((spec, body))
    }
}

fn header(spec: KeySpec) -> [u8; HEADER_LEN] {
    let spec_byte = match spec {
        KeySpec::EcdsaP256 => 1,
        KeySpec::EcdsaP384 => 2,
    };
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION, spec_byte]
}

fn aad(header: &[u8; HEADER_LEN], key: &KeyRef) -> Vec<u8> {
    let mut aad = header.to_vec();
    aad.extend_from_slice(key.as_str().as_bytes());
    aad
}

fn not_found(key: &KeyRef) -> CryptoError {
    CryptoError::KeyNotFound {
        key_ref: key.to_string(),
    }
}

fn rng_failed() -> CryptoError {
    CryptoError::Signing {
        detail: "the OS random number generator failed".to_owned(),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600: temp file, fsync, rename, fsync dir.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// Runs blocking file-system work off the async executor.
async fn blocking<T: Send + 'static>(
    context: String,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<io::Result<T>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CryptoError::io(context, io::Error::other(e.to_string())))
}

#[async_trait::async_trait]
impl KeyBackend for SealedFileBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    async fn generate(&self, spec: KeySpec) -> Result<KeyRef> {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| rng_failed())?;
        let key = KeyRef::new(BACKEND, &hex::encode(id))?;
        let pkcs8 = generate_pkcs8(spec)?;
        let sealed = self.seal(&key, spec, &pkcs8)?;
        let signer = SoftwareSigner::from_pkcs8(spec, &pkcs8)?;
        let (dir, path) = (self.dir.clone(), self.path_of(&key));
        let context = format!("writing sealed key {}", path.display());
        blocking(context.clone(), move || {
            write_atomically(&dir, &path, &sealed)
        })
        .await?
        .map_err(|e| CryptoError::io(context, e))?;
        self.remember(key.clone(), Arc::new(signer));
        tracing::info!(key_ref = %key, %spec, "Sealed key generated.");
        Ok(key)
    }

    async fn signer(&self, key: &KeyRef) -> Result<Arc<dyn Signer>> {
        self.check_backend(key)?;
        if let Some(signer) = self.cached(key) {
            return Ok(signer);
        }
        let path = self.path_of(key);
        let context = format!("reading sealed key {}", path.display());
        let file = match blocking(context.clone(), move || fs::read(path)).await? {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found(key)),
            Err(e) => return Err(CryptoError::io(context, e)),
        };
        let (spec, pkcs8) = self.unseal(key, &file)?;
        let signer: Arc<dyn Signer> =
            Arc::new(SoftwareSigner::from_pkcs8(spec, &pkcs8).map_err(|_| CryptoError::Unseal)?);
        self.remember(key.clone(), Arc::clone(&signer));
        Ok(signer)
    }

    async fn destroy(&self, key: &KeyRef) -> Result<()> {
        self.check_backend(key)?;
        self.forget(key);
        let path = self.path_of(key);
        let context = format!("removing sealed key {}", path.display());
        match blocking(context.clone(), move || fs::remove_file(path)).await? {
            Ok(()) => {
                tracing::info!(key_ref = %key, "Sealed key destroyed.");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(key)),
            Err(e) => Err(CryptoError::io(context, e)),
        }
    }
}

impl fmt::Debug for SealedFileBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedFileBackend")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(dir: &Path) -> SealedFileBackend {
        let kek = Kek::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("kek");
        SealedFileBackend::new(dir.to_path_buf(), kek).expect("backend")
    }

    #[test]
    fn seal_round_trip_and_aad_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = backend(dir.path());
        let a: KeyRef = "sealed:a".parse().expect("ref");
        let other: KeyRef = "sealed:b".parse().expect("ref");
        let sealed = b.seal(&a, KeySpec::EcdsaP384, b"secret").expect("seal");
        let (spec, plain) = b.unseal(&a, &sealed).expect("unseal");
        assert_eq!(
            (spec, plain.as_slice()),
            (KeySpec::EcdsaP384, &b"secret"[..])
        );
        assert!(matches!(
            b.unseal(&other, &sealed),
            Err(CryptoError::Unseal)
        ));
        let mut relabelled = sealed.clone();
        relabelled[5] = 1;
        assert!(matches!(
            b.unseal(&a, &relabelled),
            Err(CryptoError::Unseal)
        ));
        assert!(matches!(
            b.unseal(&a, &sealed[..10]),
            Err(CryptoError::Unseal)
        ));
    }

    #[test]
    fn debug_hides_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{:?}", backend(dir.path()));
        assert!(text.starts_with("SealedFileBackend"));
        assert!(!text.contains("aead"));
    }
}
