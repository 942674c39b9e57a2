//! Message digests the rest of certmesh needs (fingerprints, content hashes, webhook
//! signatures) without importing a crypto library.

use ring::{digest, hmac};

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// SHA-256 of `data` as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// HMAC-SHA256 (RFC 2104) of `msg` under `key`, e.g. to sign outgoing webhook bodies.
///
/// Any key length is accepted; keys longer than the 64-byte block are hashed first, as the RFC
/// says. Compare tags with a constant-time comparison, never `==`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// SHA-1 of `data`, only for RFC 5280 §4.2.1.2 method-1 key identifiers (not a security use).
pub(crate) fn sha1_key_id(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    // RFC 4231 §4.3 (test case 2) and §4.7 (test case 6: a key longer than the block size).
    #[test]
    fn hmac_sha256_rfc4231_vectors() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn sha1_of_abc() {
        assert_eq!(
            hex::encode(sha1_key_id(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
