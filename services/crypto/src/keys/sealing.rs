//! Small secrets sealed at rest under the [`Kek`]: notification channel credentials, and the
//! like, stored in a database column rather than a key file.
//!
//! ```text
//! version (1) | nonce (12, random) | AES-256-GCM(plaintext) with tag (16)
//! ```
//!
//! The AEAD's additional data is a fixed label, the version byte and the caller's `aad`. The
//! label keeps these blobs apart from the sealed CA key files (whose AAD starts with `CMSK`)
//! although both use the same KEK; the caller's `aad` should name the row the blob belongs to
//! (tenant and channel id, say) so that a blob copied to another row fails to open.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::Kek;
use crate::error::{CryptoError, Result};

const VERSION: u8 = 1;
const LABEL: &[u8] = b"certmesh-sealing\0";
const TAG_LEN: usize = 16;

/// Encrypts and authenticates `plaintext` under `kek`, bound to `aad`.
///
/// Every call draws a fresh random nonce, so sealing the same input twice gives different
/// blobs. Fails only if the OS random number generator does.
pub fn seal(kek: &Kek, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::Signing {
            detail: "the OS random number generator failed".to_owned(),
        })?;
    // Room for the tag up front, so that no reallocation leaves a plaintext copy behind.
    let mut body = Vec::with_capacity(plaintext.len() + TAG_LEN);
    body.extend_from_slice(plaintext);
    aead(kek)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(full_aad(VERSION, aad).as_slice()),
            &mut body,
        )
        .map_err(|_| CryptoError::Signing {
            detail: "sealing failed".to_owned(),
        })?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens a blob made by [`seal`] with the same `kek` and `aad`.
///
/// A wrong KEK, a different `aad`, an unknown version or any changed, missing or added byte
/// gives [`CryptoError::Unseal`], without saying which.
pub fn open(kek: &Kek, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(CryptoError::Unseal);
    };
    if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Unseal);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
    let mut body = Zeroizing::new(ciphertext.to_vec());
    let plain_len = aead(kek)?
        .open_in_place(
            nonce,
            Aad::from(full_aad(version, aad).as_slice()),
            &mut body,
        )
        .map_err(|_| CryptoError::Unseal)?
        .len();
    body.truncate(plain_len);
    Ok(body)
}

fn aead(kek: &Kek) -> Result<LessSafeKey> {
    let key = UnboundKey::new(&AES_256_GCM, kek.bytes()).map_err(|_| CryptoError::Kek {
        detail: "not usable as an AES-256-GCM key".to_owned(),
    })?;
    Ok(LessSafeKey::new(key))
}

fn full_aad(version: u8, aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(LABEL.len() + 1 + aad.len());
    full.extend_from_slice(LABEL);
    full.push(version);
    full.extend_from_slice(aad);
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> Kek {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        Kek::from_base64(&encoded).expect("kek")
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let k = kek(1);
        let a = seal(&k, b"tenant/channel", b"hunter2-hmac-secret").expect("seal");
        let b = seal(&k, b"tenant/channel", b"hunter2-hmac-secret").expect("seal");
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(a[0], VERSION);
        assert_eq!(a.len(), 1 + NONCE_LEN + 19 + TAG_LEN);
        let opened = open(&k, b"tenant/channel", &a).expect("open");
        assert_eq!(opened.as_slice(), b"hunter2-hmac-secret");
        assert_eq!(
            open(&k, b"", &seal(&k, b"", b"").expect("seal"))
                .expect("open")
                .len(),
            0
        );
    }

    #[test]
    fn wrong_aad_fails() {
        let k = kek(1);
        let sealed = seal(&k, b"tenant-a/ch-1", b"secret").expect("seal");
        assert!(matches!(
            open(&k, b"tenant-a/ch-2", &sealed),
            Err(CryptoError::Unseal)
        ));
        assert!(matches!(open(&k, b"", &sealed), Err(CryptoError::Unseal)));
    }

    #[test]
    fn every_tampered_byte_fails() {
        let k = kek(1);
        let sealed = seal(&k, b"aad", b"secret").expect("seal");
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(
                matches!(open(&k, b"aad", &tampered), Err(CryptoError::Unseal)),
                "byte {i} flipped but opened"
            );
        }
        for len in 0..sealed.len() {
            assert!(
                open(&k, b"aad", &sealed[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let mut extended = sealed.clone();
        extended.push(0);
        assert!(open(&k, b"aad", &extended).is_err());
    }

    #[test]
    fn wrong_kek_fails() {
        let sealed = seal(&kek(1), b"aad", b"secret").expect("seal");
        assert!(matches!(
            open(&kek(2), b"aad", &sealed),
            Err(CryptoError::Unseal)
        ));
        let generated = Kek::generate().expect("kek");
        assert!(open(&generated, b"aad", &sealed).is_err());
    }
}
