//! The CA-related extensions of a certificate as plain data: basicConstraints (RFC 5280
//! §4.2.1.9) and nameConstraints (§4.2.1.10).
//!
//! Only dNSName subtrees are carried as values, because they are the only kind certmesh issues
//! and checks; any other subtree kind is reported by [`NameConstraints::other_forms`] so a caller
//! can refuse a certificate it cannot reason about instead of silently ignoring a constraint.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, GeneralSubtree};

use super::malformed;
use crate::error::Result;

/// The basicConstraints extension of a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasicConstraintsInfo {
    /// The cA flag.
    pub ca: bool,
    /// pathLenConstraint; `None` when absent (unconstrained). Values above 255 read as 255,
    /// which is at least as strict.
    pub path_len: Option<u8>,
}

/// The dNSName part of a nameConstraints extension; empty when the extension is absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameConstraints {
    /// Permitted dNSName subtrees, as written in the certificate (`example.com`,
    /// `.example.com`).
    pub permitted_dns: Vec<String>,
    /// Excluded dNSName subtrees, as written in the certificate.
    pub excluded_dns: Vec<String>,
    /// Whether the extension also constrains other name forms (IP ranges, e-mail, directory
    /// names, URIs, ...), which are not represented here.
    pub other_forms: bool,
}

impl NameConstraints {
    /// Whether no dNSName subtree and no other form is constrained.
    pub fn is_empty(&self) -> bool {
        self.permitted_dns.is_empty() && self.excluded_dns.is_empty() && !self.other_forms
    }
}

pub(super) fn basic_constraints(
    x509: &X509Certificate<'_>,
) -> Result<Option<BasicConstraintsInfo>> {
    let bc = x509.basic_constraints().map_err(malformed)?;
    Ok(bc.map(|bc| BasicConstraintsInfo {
        ca: bc.value.ca,
        path_len: bc
            .value
            .path_len_constraint
            .map(|n| u8::try_from(n).unwrap_or(u8::MAX)),
    }))
}

pub(super) fn name_constraints(x509: &X509Certificate<'_>) -> Result<NameConstraints> {
    let Some(nc) = x509.name_constraints().map_err(malformed)? else {
        return Ok(NameConstraints::default());
    };
    let mut out = NameConstraints::default();
    let permitted = nc.value.permitted_subtrees.as_deref().unwrap_or_default();
    let excluded = nc.value.excluded_subtrees.as_deref().unwrap_or_default();
    out.other_forms |= collect_dns(permitted, &mut out.permitted_dns)?;
    out.other_forms |= collect_dns(excluded, &mut out.excluded_dns)?;
    Ok(out)
}

/// Appends the dNSName bases to `dns`; returns whether any other form was present.
fn collect_dns(subtrees: &[GeneralSubtree<'_>], dns: &mut Vec<String>) -> Result<bool> {
    let mut other = false;
    for subtree in subtrees {
        match &subtree.base {
            GeneralName::DNSName(name) => dns.push((*name).to_owned()),
            GeneralName::Invalid(tag, _) => {
                return Err(malformed(format!("invalid name constraint entry {tag}")));
            }
            _ => other = true,
        }
    }
    Ok(other)
}
