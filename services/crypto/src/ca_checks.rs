//! The RFC 5280 rules a CA hierarchy is built under, as small pure functions.
//!
//! Each function checks one rule and fails with one [`CaCheckError`] variant, so the CA service
//! can map every refusal to one stable reason. Nothing here reads the clock or a store: callers
//! pass the certificates, constraints and times they have.
//!
//! dNSName subtrees follow RFC 5280 §4.2.1.10 as OpenSSL and webpki apply them: `example.com`
//! covers itself and every name made by adding labels on the left (`a.example.com`, not
//! `badexample.com`); `.example.com` covers only the proper subdomains. Comparison is ASCII
//! case-insensitive and a trailing dot is ignored. Internationalized names must be in A-label
//! (`xn--`) form. A zero-length subtree (as found in some foreign certificates) covers every
//! name.

use chrono::{DateTime, Utc};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::FromDer;

use crate::cert::{Certificate, NameConstraints};

/// RFC 1035 §2.3.4: a name is at most 253 characters in text form, a label at most 63.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a CA certificate or a name may not be used where it was asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaCheckError {
    /// A certificate presented as a root is not self-issued or its signature does not verify
    /// with its own key (RFC 5280 §3.2, §6.1).
    #[error("the certificate is not self-signed: {detail}")]
    NotSelfSigned {
        /// Which part failed.
        detail: String,
    },
    /// The certificate's public key is not the key it is meant to go with.
    #[error("the certificate's public key is not the CA's key")]
    KeyMismatch,
    /// A child CA's path length is not allowed under its parent's (RFC 5280 §4.2.1.9).
    #[error("path length not allowed: {detail}")]
    PathLenExceeded {
        /// The parent's and the requested path length.
        detail: String,
    },
    /// A child CA's name constraints are wider than its parent's (RFC 5280 §4.2.1.10).
    #[error("name constraints wider than the parent's: {detail}")]
    NameConstraintExceeded {
        /// The subtree that is not covered.
        detail: String,
    },
    /// A leaf DNS name is outside the name constraints of a CA in its chain.
    #[error("DNS name {name:?} is not permitted by the name constraints of the issuing CAs")]
    LeafNameNotPermitted {
        /// The refused name.
        name: String,
    },
    /// A dNSName subtree is not a host name or domain (`example.com`, `.example.com`).
    #[error("invalid DNS name constraint {subtree:?}: {detail}")]
    InvalidDnsSubtree {
        /// The subtree as given.
        subtree: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// RFC 5280 §3.2, §6.1.1: a trust anchor certificate names itself as issuer (byte-identical
/// Name) and its signature verifies with its own public key. Accepted signatures: ECDSA P-256
/// and P-384, RSA PKCS#1 v1.5 and PSS with SHA-256/384/512 (2048 to 8192 bits), Ed25519. SHA-1
/// signatures are refused.
pub fn check_self_signed(cert: &Certificate) -> Result<(), CaCheckError> {
    if cert.subject_der() != cert.issuer_der() {
        return Err(not_self_signed(format!(
            "issuer {:?} is not the subject {:?}",
            cert.issuer(),
            cert.subject()
        )));
    }
    let (_, x509) = X509Certificate::from_der(cert.der()).map_err(not_self_signed)?;
    // RFC 5280 §4.1.1.2: the outer algorithm must be the one inside the signed part.
    if x509.signature_algorithm != x509.tbs_certificate.signature {
        return Err(not_self_signed(
            "the signature algorithm differs from the one in the signed part",
        ));
    }
    let oid = &x509.signature_algorithm.algorithm;
    if *oid == OID_PKCS1_SHA1WITHRSA || *oid == OID_SHA1_WITH_RSA {
        return Err(not_self_signed("SHA-1 signatures are not accepted"));
    }
    x509.verify_signature(None).map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => {
            not_self_signed(format!("signature algorithm {oid} is not supported"))
        }
        _ => not_self_signed("the signature does not verify with the certificate's own key"),
    })
}

fn not_self_signed(detail: impl ToString) -> CaCheckError {
    CaCheckError::NotSelfSigned {
        detail: detail.to_string(),
    }
}

/// The certificate certifies exactly `spki_der` (a DER SubjectPublicKeyInfo), e.g. the public
/// key of the key reference it is to be stored with.
pub fn check_key_match(cert: &Certificate, spki_der: &[u8]) -> Result<(), CaCheckError> {
    if cert.spki_der() == spki_der {
        Ok(())
    } else {
        Err(CaCheckError::KeyMismatch)
    }
}

/// RFC 5280 §4.2.1.9: the path length of a child CA under a parent with pathLenConstraint
/// `parent` (`None`: unconstrained). Under an unconstrained parent the request stands; under
/// `Some(n)` it must be below `n` and defaults to `n - 1`; under `Some(0)` no CA may be issued.
pub fn child_path_len(
    parent: Option<u8>,
    requested: Option<u8>,
) -> Result<Option<u8>, CaCheckError> {
    match (parent, requested) {
        (None, requested) => Ok(requested),
        (Some(0), _) => Err(CaCheckError::PathLenExceeded {
            detail: "a CA with path length 0 can have no CA children".to_owned(),
        }),
        (Some(n), None) => Ok(Some(n - 1)),
        (Some(n), Some(r)) if r < n => Ok(Some(r)),
        (Some(n), Some(r)) => Err(CaCheckError::PathLenExceeded {
            detail: format!("requested path length {r} must be below the parent's {n}"),
        }),
    }
}

/// RFC 5280 §4.2.1.10, applied when creating a child CA so that its constraints never claim
/// more than its parent allows: when the parent has permitted subtrees, the child must have at
/// least one and each must lie within one of the parent's; each of the parent's excluded
/// subtrees must lie within one of the child's.
///
/// Only dNSName subtrees are compared; callers refuse constraint sets with
/// [`NameConstraints::other_forms`] if they must reason about those.
pub fn check_name_constraints(
    parent: &NameConstraints,
    child: &NameConstraints,
) -> Result<(), CaCheckError> {
    if !parent.permitted_dns.is_empty() {
        if child.permitted_dns.is_empty() {
            return Err(name_constraint_exceeded(format!(
                "the parent permits only {:?}, the child would permit every DNS name",
                parent.permitted_dns
            )));
        }
        for subtree in &child.permitted_dns {
            if !parent.permitted_dns.iter().any(|p| dns_within(subtree, p)) {
                return Err(name_constraint_exceeded(format!(
                    "permitted {subtree:?} is not within the parent's permitted {:?}",
                    parent.permitted_dns
                )));
            }
        }
    }
    for excluded in &parent.excluded_dns {
        if !child.excluded_dns.iter().any(|c| dns_within(excluded, c)) {
            return Err(name_constraint_exceeded(format!(
                "the parent's excluded {excluded:?} is not excluded by the child"
            )));
        }
    }
    Ok(())
}

fn name_constraint_exceeded(detail: String) -> CaCheckError {
    CaCheckError::NameConstraintExceeded { detail }
}

/// RFC 5280 §4.2.1.10 dNSName matching: whether every name covered by `name_or_subtree` (a
/// host name, or a subtree in either form) is covered by `subtree`. Label-wise
/// (`badexample.com` is not within `example.com`), ASCII case-insensitive, trailing dot
/// ignored; a leading dot means "proper subdomains only".
pub fn dns_within(name_or_subtree: &str, subtree: &str) -> bool {
    let (name, name_has_base) = split_subtree(name_or_subtree);
    let (base, base_included) = split_subtree(subtree);
    if base.is_empty() {
        return true;
    }
    if name == base {
        return base_included || !name_has_base;
    }
    name.len() > base.len()
        && name.ends_with(&base)
        && name.as_bytes()[name.len() - base.len() - 1] == b'.'
}

/// Lower-cases and drops a trailing dot; a leading dot becomes `false` ("base not included").
fn split_subtree(s: &str) -> (String, bool) {
    let s = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    match s.strip_prefix('.') {
        Some(rest) => (rest.to_owned(), false),
        None => (s, true),
    }
}

/// Checks a leaf's DNS names (subjectAltName dNSNames, plus the commonName when it is a host
/// name) against the name constraints of every CA on its chain: each name must lie within a
/// permitted subtree of every CA that has some, and within no excluded subtree of any.
///
/// A wildcard name (`*.example.com`) is treated as covering every name directly under its
/// domain: it is refused when an excluded subtree lies anywhere under that domain, even one
/// the wildcard could not match, which errs on the side of refusing.
///
/// IP addresses are not checked here: dNSName subtrees do not constrain them (RFC 5280
/// §4.2.1.10 applies constraints per name form), and certmesh issues no iPAddress constraints.
pub fn check_leaf_names(
    constraints_chain: &[NameConstraints],
    dns_names: &[String],
) -> Result<(), CaCheckError> {
    for name in dns_names {
        if !constraints_chain
            .iter()
            .all(|nc| leaf_name_allowed(nc, name))
        {
            return Err(CaCheckError::LeafNameNotPermitted { name: name.clone() });
        }
    }
    Ok(())
}

fn leaf_name_allowed(constraints: &NameConstraints, name: &str) -> bool {
    let permitted = constraints.permitted_dns.is_empty()
        || constraints
            .permitted_dns
            .iter()
            .any(|p| dns_within(name, p));
    let wildcard_domain = name.strip_prefix("*.");
    let excluded = constraints.excluded_dns.iter().any(|excluded| {
        dns_within(name, excluded) || wildcard_domain.is_some_and(|d| dns_within(excluded, d))
    });
    permitted && !excluded
}

/// A child's notAfter may not outlive its issuer's (RFC 5280 §6.1.3 checks every certificate on
/// a path for validity): returns the requested time, or the parent's with `true` when capped.
pub fn cap_not_after(
    parent_not_after: DateTime<Utc>,
    requested: DateTime<Utc>,
) -> (DateTime<Utc>, bool) {
    if requested > parent_not_after {
        (parent_not_after, true)
    } else {
        (requested, false)
    }
}

/// Validates a dNSName subtree for a CA certificate and returns its canonical form: ASCII
/// lower case, no trailing dot, an optional leading dot (subdomains only), then one or more
/// letter-digit-hyphen labels (RFC 1035 §2.3.1; A-labels for internationalized names).
pub fn normalize_dns_subtree(subtree: &str) -> Result<String, CaCheckError> {
    let invalid = |detail: &str| CaCheckError::InvalidDnsSubtree {
        subtree: subtree.to_owned(),
        detail: detail.to_owned(),
    };
    let canonical = subtree
        .strip_suffix('.')
        .unwrap_or(subtree)
        .to_ascii_lowercase();
    let domain = canonical.strip_prefix('.').unwrap_or(&canonical);
    if domain.is_empty() {
        return Err(invalid("empty"));
    }
    if domain.len() > MAX_NAME_LEN {
        return Err(invalid("longer than 253 characters"));
    }
    for label in domain.split('.') {
        check_label(label).map_err(invalid)?;
    }
    Ok(canonical)
}

fn check_label(label: &str) -> Result<(), &'static str> {
    if label.is_empty() {
        return Err("empty label");
    }
    if label.len() > MAX_LABEL_LEN {
        return Err("label longer than 63 characters");
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("labels may hold only letters, digits and hyphens");
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err("a label may not start or end with a hyphen");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn nc(permitted: &[&str], excluded: &[&str]) -> NameConstraints {
        NameConstraints {
            permitted_dns: permitted.iter().map(|s| (*s).to_owned()).collect(),
            excluded_dns: excluded.iter().map(|s| (*s).to_owned()).collect(),
            other_forms: false,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn dns_within_matches_label_wise() {
        assert!(dns_within("example.com", "example.com"));
        assert!(dns_within("a.example.com", "example.com"));
        assert!(dns_within("a.b.example.com", "example.com"));
        assert!(!dns_within("badexample.com", "example.com"));
        assert!(!dns_within("example.com.evil.org", "example.com"));
        assert!(!dns_within("com", "example.com"));
        assert!(!dns_within("", "example.com"));
    }

    #[test]
    fn dns_within_leading_dot_means_subdomains_only() {
        assert!(!dns_within("example.com", ".example.com"));
        assert!(dns_within("a.example.com", ".example.com"));
        assert!(!dns_within("badexample.com", ".example.com"));
        // Subtrees against subtrees.
        assert!(dns_within(".example.com", "example.com"));
        assert!(dns_within(".example.com", ".example.com"));
        assert!(!dns_within("example.com", ".example.com"));
        assert!(dns_within(".a.example.com", ".example.com"));
        assert!(!dns_within("example.com", "a.example.com"));
    }

    #[test]
    fn dns_within_ignores_case_and_trailing_dot() {
        assert!(dns_within("A.Example.COM", "example.com"));
        assert!(dns_within("a.example.com.", "EXAMPLE.com"));
        assert!(dns_within("a.example.com", "example.com."));
        assert!(dns_within("a.example.com", ".Example.Com."));
    }

    #[test]
    fn dns_within_empty_subtree_covers_everything() {
        assert!(dns_within("anything.test", ""));
        assert!(dns_within(".example.com", ""));
    }

    #[test]
    fn path_len_rules() {
        assert_eq!(child_path_len(None, None), Ok(None));
        assert_eq!(child_path_len(None, Some(7)), Ok(Some(7)));
        assert_eq!(child_path_len(Some(2), None), Ok(Some(1)));
        assert_eq!(child_path_len(Some(2), Some(0)), Ok(Some(0)));
        assert_eq!(child_path_len(Some(1), None), Ok(Some(0)));
        let zero = child_path_len(Some(0), None).expect_err("no children under 0");
        assert_eq!(
            zero.to_string(),
            "path length not allowed: a CA with path length 0 can have no CA children"
        );
        assert!(matches!(
            child_path_len(Some(0), Some(0)),
            Err(CaCheckError::PathLenExceeded { .. })
        ));
        let equal = child_path_len(Some(2), Some(2)).expect_err("equal is refused");
        assert!(
            equal.to_string().contains("below the parent's 2"),
            "{equal}"
        );
        assert!(child_path_len(Some(2), Some(3)).is_err());
    }

    #[test]
    fn unconstrained_parent_allows_any_child_constraints() {
        let parent = NameConstraints::default();
        assert_eq!(check_name_constraints(&parent, &nc(&[], &[])), Ok(()));
        assert_eq!(
            check_name_constraints(&parent, &nc(&["x.org"], &["y.org"])),
            Ok(())
        );
    }

    #[test]
    fn child_permitted_must_lie_within_parent_permitted() {
        let parent = nc(&["example.com", "example.net"], &[]);
        assert_eq!(check_name_constraints(&parent, &parent), Ok(()));
        let narrower = nc(&["a.example.com", ".example.net"], &[]);
        assert_eq!(check_name_constraints(&parent, &narrower), Ok(()));
        for wider in [
            nc(&[], &[]),
            nc(&["example.org"], &[]),
            nc(&["a.example.com", "com"], &[]),
            nc(&["badexample.com"], &[]),
        ] {
            let err = check_name_constraints(&parent, &wider).expect_err("wider");
            assert!(
                matches!(err, CaCheckError::NameConstraintExceeded { .. }),
                "{err}"
            );
        }
        let dot_parent = nc(&[".example.com"], &[]);
        assert!(check_name_constraints(&dot_parent, &nc(&["example.com"], &[])).is_err());
        assert!(check_name_constraints(&dot_parent, &nc(&["a.example.com"], &[])).is_ok());
    }

    #[test]
    fn parent_exclusions_must_be_covered_by_child_exclusions() {
        let parent = nc(&[], &["secret.example.com"]);
        assert!(check_name_constraints(&parent, &nc(&[], &[])).is_err());
        assert!(check_name_constraints(&parent, &nc(&[], &["other.example.com"])).is_err());
        assert!(check_name_constraints(&parent, &nc(&[], &["a.secret.example.com"])).is_err());
        assert!(check_name_constraints(&parent, &nc(&[], &["secret.example.com"])).is_ok());
        // A wider exclusion covers it.
        assert!(check_name_constraints(&parent, &nc(&[], &["example.com"])).is_ok());
        assert!(check_name_constraints(&parent, &nc(&[], &[".example.com"])).is_ok());
        let err = check_name_constraints(&parent, &nc(&["x.org"], &[])).expect_err("dropped");
        assert!(err.to_string().contains("secret.example.com"), "{err}");
    }

    #[test]
    fn leaf_names_against_a_chain() {
        let chain = [
            nc(&["example.com"], &[]),
            nc(&["a.example.com", "b.example.com"], &["x.a.example.com"]),
        ];
        let ok = names(&["a.example.com", "y.b.example.com", "Q.A.EXAMPLE.COM."]);
        assert_eq!(check_leaf_names(&chain, &ok), Ok(()));
        for bad in [
            "c.example.com",
            "x.a.example.com",
            "deep.x.a.example.com",
            "evil.org",
        ] {
            assert_eq!(
                check_leaf_names(&chain, &names(&["a.example.com", bad])),
                Err(CaCheckError::LeafNameNotPermitted {
                    name: bad.to_owned()
                }),
                "{bad}"
            );
        }
        assert_eq!(check_leaf_names(&[], &names(&["anything.test"])), Ok(()));
        assert_eq!(check_leaf_names(&chain, &[]), Ok(()));
    }

    #[test]
    fn wildcards_are_refused_when_they_could_reach_an_exclusion() {
        let chain = [nc(&["example.com"], &["secret.example.com"])];
        assert!(check_leaf_names(&chain, &names(&["*.example.com"])).is_err());
        assert!(check_leaf_names(&chain, &names(&["*.public.example.com"])).is_ok());
        assert!(check_leaf_names(&chain, &names(&["*.secret.example.com"])).is_err());
        // The wildcard label is not a way out of a permitted subtree.
        let narrow = [nc(&["a.example.com"], &[])];
        assert!(check_leaf_names(&narrow, &names(&["*.example.com"])).is_err());
        assert!(check_leaf_names(&narrow, &names(&["*.a.example.com"])).is_ok());
    }

    #[test]
    fn not_after_is_capped_at_the_parent() {
        let parent = Utc
            .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .expect("date");
        let earlier = parent - Duration::days(1);
        assert_eq!(cap_not_after(parent, earlier), (earlier, false));
        assert_eq!(cap_not_after(parent, parent), (parent, false));
        assert_eq!(
            cap_not_after(parent, parent + Duration::seconds(1)),
            (parent, true)
        );
    }

    #[test]
    fn subtrees_normalize_or_are_refused() {
        assert_eq!(
            normalize_dns_subtree("Example.COM.").as_deref(),
            Ok("example.com")
        );
        assert_eq!(
            normalize_dns_subtree(".corp.example").as_deref(),
            Ok(".corp.example")
        );
        assert_eq!(
            normalize_dns_subtree("xn--bcher-kva.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        let long_label = "a".repeat(64);
        for bad in [
            "",
            ".",
            "..example.com",
            "a..example.com",
            "*.example.com",
            "exa mple.com",
            "bücher.example",
            "-a.example.com",
            "a-.example.com",
            "under_score.example",
            long_label.as_str(),
        ] {
            assert!(
                matches!(
                    normalize_dns_subtree(bad),
                    Err(CaCheckError::InvalidDnsSubtree { .. })
                ),
                "{bad:?}"
            );
        }
        let too_long = vec!["a".repeat(63); 4].join(".");
        assert!(normalize_dns_subtree(&too_long).is_err());
    }

    #[test]
    fn key_mismatch_and_messages() {
        assert_eq!(
            CaCheckError::LeafNameNotPermitted {
                name: "evil.org".into()
            }
            .to_string(),
            "DNS name \"evil.org\" is not permitted by the name constraints of the issuing CAs"
        );
        assert_eq!(
            CaCheckError::KeyMismatch.to_string(),
            "the certificate's public key is not the CA's key"
        );
    }
}
