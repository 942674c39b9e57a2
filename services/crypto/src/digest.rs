//! Message digests the rest of certmesh needs (fingerprints, content hashes) without importing
//! a crypto library.

use ring::digest;

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

    #[test]
    fn sha1_of_abc() {
        assert_eq!(
            hex::encode(sha1_key_id(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
