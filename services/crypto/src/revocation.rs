//! Why a certificate was revoked: the CRLReason codes of RFC 5280 §5.3.1, shared by CRLs
//! ([`crate::crl`]) and OCSP responses ([`crate::ocsp`], RFC 6960 §4.2.1).
//!
//! The names are the ASN.1 identifiers of the RFC (`keyCompromise`, `cACompromise`), so that
//! what certmesh stores and displays matches what `openssl crl -text` prints.

use std::fmt;

use crate::error::{CryptoError, Result};

/// Longest revocation-pointer URI accepted; far beyond any real CRL or OCSP URL.
const MAX_URI_LEN: usize = 1024;

/// A CRLReason (RFC 5280 §5.3.1). Code 7 is unassigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// `unspecified` (0); a CRL omits the reasonCode for it (RFC 5280 §5.3.1 SHOULD).
    Unspecified,
    /// `keyCompromise` (1).
    KeyCompromise,
    /// `cACompromise` (2).
    CaCompromise,
    /// `affiliationChanged` (3).
    AffiliationChanged,
    /// `superseded` (4).
    Superseded,
    /// `cessationOfOperation` (5).
    CessationOfOperation,
    /// `certificateHold` (6): a suspension that may be lifted.
    CertificateHold,
    /// `removeFromCRL` (8): only meaningful in delta CRLs, which certmesh does not issue.
    RemoveFromCrl,
    /// `privilegeWithdrawn` (9).
    PrivilegeWithdrawn,
    /// `aACompromise` (10).
    AaCompromise,
}

impl RevocationReason {
    /// Every reason, in code order.
    pub const ALL: [RevocationReason; 10] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::RemoveFromCrl,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 ASN.1 name, e.g. `"keyCompromise"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::RemoveFromCrl => "removeFromCRL",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aACompromise",
        }
    }

    /// The CRLReason ENUMERATED value.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::RemoveFromCrl => 8,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason with this CRLReason value; `None` for 7 and above 10.
    pub fn from_code(code: u8) -> Option<RevocationReason> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The reason named `s` ([`RevocationReason::as_str`], ASCII case-insensitive).
    pub fn parse(s: &str) -> Option<RevocationReason> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 5280 §4.2.1.6: a uniformResourceIdentifier is an absolute URI (RFC 3986 §4.3: a
/// scheme, `:`, then the rest) in an IA5String; this checks the shape without resolving it, and
/// refuses spaces and control characters, which no CRL or OCSP URL needs.
pub(crate) fn check_uri(uri: &str) -> Result<()> {
    let invalid = |detail: &str| CryptoError::InvalidUri {
        uri: uri.to_owned(),
        detail: detail.to_owned(),
    };
    if uri.len() > MAX_URI_LEN {
        return Err(invalid("longer than 1024 characters"));
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("only printable ASCII without spaces is allowed"));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(invalid("not an absolute URI (no scheme)"));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.is_empty() {
        return Err(invalid("not an absolute URI (scheme \":\" rest)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        for ok in ["http://crl.example.com/a.crl", "ldap://x/cn=a", "urn:x"] {
            check_uri(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "crl.example.com/a",
            "http://a b",
            "1http://a",
            "http:",
            "http://\u{e9}",
        ] {
            assert!(
                matches!(check_uri(bad), Err(CryptoError::InvalidUri { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(check_uri(&format!("http://{}", "a".repeat(MAX_URI_LEN))).is_err());
    }

    #[test]
    fn codes_and_names_round_trip() {
        for (i, reason) in RevocationReason::ALL.into_iter().enumerate() {
            assert_eq!(RevocationReason::from_code(reason.code()), Some(reason));
            assert_eq!(RevocationReason::parse(reason.as_str()), Some(reason));
            assert_eq!(
                RevocationReason::parse(&reason.as_str().to_ascii_uppercase()),
                Some(reason)
            );
            assert_eq!(reason.to_string(), reason.as_str());
            if i > 0 {
                assert!(RevocationReason::ALL[i - 1].code() < reason.code());
            }
        }
        assert_eq!(RevocationReason::from_code(7), None);
        assert_eq!(RevocationReason::from_code(11), None);
        assert_eq!(RevocationReason::parse("compromised"), None);
        assert_eq!(RevocationReason::CaCompromise.as_str(), "cACompromise");
        assert_eq!(RevocationReason::AaCompromise.code(), 10);
    }
}
