//! Where relying parties check revocation: the URLs written into every leaf (authorityInfoAccess
//! OCSP, cRLDistributionPoints) and served by the revocation role's PKI listener, and the CRL
//! shard a certificate belongs to. The issuance role writes them, the revocation role serves
//! them; both read this one definition.
//!
//! Paths, under the public base URL:
//! - `/.well-known/pki/ocsp` — OCSP by POST, and by GET with the base64 request appended
//!   (RFC 6960 Appendix A);
//! - `/.well-known/pki/crl/{ca_key_id}/{shard}` — one CRL per CA key and shard. `ca_key_id` is the
//!   id of the CA certificate (generation) that signs: for a CA never rotated, the CA's own id.
//!   A rotated CA's older keys keep their own CRLs, so certificates they signed stay checkable.

use std::fmt;

/// Path of the OCSP responder.
pub const OCSP_PATH: &str = "/.well-known/pki/ocsp";
/// Prefix of the CRL paths.
pub const CRL_PREFIX: &str = "/.well-known/pki/crl/";
/// Most CRL shards a CA may have.
pub const MAX_CRL_SHARDS: u32 = 1024;

/// The public base URL relying parties reach the PKI listener at, e.g.
/// `http://pki.example.com` (no trailing slash, no path beyond the host, http or https).
#[derive(Clone, PartialEq, Eq)]
pub struct PkiUrls {
    base: String,
}

/// A base URL that cannot go into certificates.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "public PKI base URL {0:?} must be http(s)://host[:port] with an optional path and no query, fragment or spaces"
)]
pub struct InvalidBaseUrl(pub String);

impl PkiUrls {
    /// Validates `base` (a trailing `/` is dropped).
    pub fn new(base: &str) -> Result<PkiUrls, InvalidBaseUrl> {
        let trimmed = base.trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("http://")
            .or_else(|| trimmed.strip_prefix("https://"));
        let ok = match rest {
            Some(rest) => {
                let host = rest.split('/').next().unwrap_or("");
                !host.is_empty()
                    && rest.is_ascii()
                    && !rest.contains(['?', '#', ' ', '"', '<', '>', '\\', '@'])
            }
            None => false,
        };
        if ok {
            Ok(PkiUrls {
                base: trimmed.to_owned(),
            })
        } else {
            Err(InvalidBaseUrl(base.to_owned()))
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The OCSP responder's URL.
    pub fn ocsp(&self) -> String {
        format!("{}{OCSP_PATH}", self.base)
    }

    /// The URL of the CRL of CA key `ca_key_id`, shard `shard`.
    pub fn crl(&self, ca_key_id: uuid::Uuid, shard: u32) -> String {
        format!("{}{CRL_PREFIX}{ca_key_id}/{shard}", self.base)
    }
}

impl fmt::Debug for PkiUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PkiUrls").field(&self.base).finish()
    }
}

/// What the issuance role writes into every leaf it signs: the OCSP URL and the CRL URL of the
/// certificate's shard, out of `crl_shards` per CA key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafPointers {
    /// Where the PKI listener is reached.
    pub urls: PkiUrls,
    /// Shards per CA key (1 to [`MAX_CRL_SHARDS`]).
    pub crl_shards: u32,
}

impl LeafPointers {
    /// The pointers of a leaf with this serial (big-endian magnitude) signed by CA key
    /// `ca_key_id`: its shard, the OCSP URL and its shard's CRL URL.
    pub fn for_leaf(&self, ca_key_id: uuid::Uuid, serial: &[u8]) -> LeafUrls {
        let shard = crl_shard(serial, self.crl_shards);
        LeafUrls {
            shard,
            ocsp: self.urls.ocsp(),
            crl: self.urls.crl(ca_key_id, shard),
        }
    }
}

/// What [`LeafPointers::for_leaf`] gives one leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafUrls {
    /// The CRL shard.
    pub shard: u32,
    /// The authorityInfoAccess OCSP URL.
    pub ocsp: String,
    /// The cRLDistributionPoints URL.
    pub crl: String,
}

/// The CRL shard of a certificate with this serial (big-endian magnitude bytes) when its CA has
/// `shards` shards: the low 32 bits of the serial, modulo `shards`. Serials are random, so shards
/// fill evenly; a certificate keeps its shard for life (it is written into the certificate).
pub fn crl_shard(serial: &[u8], shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    let low = serial
        .iter()
        .rev()
        .take(4)
        .rev()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    low % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_under_the_base() {
        let urls = PkiUrls::new("http://pki.example.com:8080/").expect("valid");
        assert_eq!(
            urls.ocsp(),
            "http://pki.example.com:8080/.well-known/pki/ocsp"
        );
        let id = uuid::Uuid::nil();
        assert_eq!(
            urls.crl(id, 3),
            "http://pki.example.com:8080/.well-known/pki/crl/00000000-0000-0000-0000-000000000000/3"
        );
    }

    #[test]
    fn bad_bases_are_refused() {
        for bad in [
            "",
            "pki.example.com",
            "ftp://x",
            "http://",
            "http://a b",
            "http://x?y",
            "http://u@x",
        ] {
            assert!(PkiUrls::new(bad).is_err(), "{bad}");
        }
        assert!(PkiUrls::new("https://pki.example.com/base").is_ok());
    }

    #[test]
    fn shards_spread_and_stay_in_range() {
        assert_eq!(crl_shard(&[0xff; 16], 1), 0);
        assert_eq!(crl_shard(&[0x01, 0x02], 0), 0);
        assert_eq!(crl_shard(&[0, 0, 0, 7], 4), 3);
        assert_eq!(crl_shard(&[0x55, 0, 0, 0, 9], 4), 1);
        let mut seen = [0u32; 8];
        for i in 0u32..8000 {
            let serial = (i.wrapping_mul(2_654_435_761)).to_be_bytes();
            seen[crl_shard(&serial, 8) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 500), "{seen:?}");
    }
}
