//! Cross-certification: one CA certifying another CA's existing name and key, so that paths
//! through the existing CA also build to the certifying CA (RFC 5280 §3.2, cross-certificates;
//! RFC 4158 §2.3).
//!
//! A verifier chains by name and key identifier, so the cross-certificate must repeat the
//! existing certificate's subject Name byte for byte, its public key and its
//! subjectKeyIdentifier; basicConstraints and nameConstraints are copied so that the existing
//! CA is no less constrained through the new path. The result is checked against the existing
//! certificate before it is returned: what cannot be reproduced exactly is refused.

use chrono::{DateTime, Utc};
use rcgen::string::{BmpString, UniversalString};
use rcgen::{CidrSubnet, DistinguishedName, DnType, DnValue, GeneralSubtree, KeyIdMethod};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::{GeneralName, GeneralSubtree as ParsedSubtree};
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use x509_parser::oid_registry::{OID_X509_EXT_NAME_CONSTRAINTS, Oid};

use super::issue::{CA_KEY_USAGES, base_params, ca_basic_constraints, sign, signing};
use super::{Certificate, IssuingCa, malformed};
use crate::error::{CryptoError, Result};
use crate::serial::Serial;
use crate::spki::SubjectKey;

impl IssuingCa {
    /// Issues a cross-certificate for `existing` (another CA's certificate): same subject Name
    /// (byte-identical), public key, subjectKeyIdentifier, path length and name constraints,
    /// issued and signed by this CA (authorityKeyIdentifier = this CA's key identifier).
    ///
    /// Whether this CA may certify `existing` (its own path length and name constraints,
    /// validity capping) is for the caller to decide with [`crate::ca_checks`]. Fails with
    /// [`CryptoError::MalformedCertificate`] if `existing` is not a CA certificate with a
    /// subjectKeyIdentifier, and with [`CryptoError::Signing`] if its name, key or name
    /// constraints cannot be reproduced exactly.
    pub fn cross_sign(
        &self,
        existing: &Certificate,
        serial: Serial,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<Certificate> {
        let (_, x509) = X509Certificate::from_der(existing.der()).map_err(malformed)?;
        let Some(bc) = existing.basic_constraints().filter(|bc| bc.ca) else {
            return Err(malformed(
                "not a CA certificate (basicConstraints CA:TRUE missing)",
            ));
        };
        let Some(key_id) = existing.subject_key_id() else {
            return Err(malformed("CA certificate has no subjectKeyIdentifier"));
        };
        let subject_key = SubjectKey::from_der(existing.spki_der())?;
        let mut params = base_params(&serial, not_before, not_after)?;
        params.distinguished_name = distinguished_name(x509.subject())?;
        params.is_ca = ca_basic_constraints(bc.path_len);
        params.key_usages = CA_KEY_USAGES.to_vec();
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id.to_vec());
        params.name_constraints = name_constraints(&x509)?;
        let cross = sign(|| params.signed_by(&subject_key, &self.issuer))?;
        check_reproduced(existing, &cross)?;
        Ok(cross)
    }
}

/// The re-encoded parts must equal the originals, or paths would not chain (or would be less
/// constrained).
fn check_reproduced(existing: &Certificate, cross: &Certificate) -> Result<()> {
    let nc_oid = &OID_X509_EXT_NAME_CONSTRAINTS;
    let same = cross.subject_der() == existing.subject_der()
        && cross.spki_der() == existing.spki_der()
        && cross.subject_key_id() == existing.subject_key_id()
        && cross.basic_constraints() == existing.basic_constraints()
        && extension_value(cross, nc_oid)? == extension_value(existing, nc_oid)?;
    if same {
        Ok(())
    } else {
        Err(signing(
            "the CA certificate's name, key or constraints cannot be reproduced exactly",
        ))
    }
}

/// The DER extnValue of the extension `oid`, if present.
fn extension_value(cert: &Certificate, oid: &Oid<'_>) -> Result<Option<Vec<u8>>> {
    let (_, x509) = X509Certificate::from_der(cert.der()).map_err(malformed)?;
    let ext = x509.get_extension_unique(oid).map_err(malformed)?;
    Ok(ext.map(|ext| ext.value.to_vec()))
}

/// A Name in its original attribute types, order and string types.
fn distinguished_name(name: &X509Name<'_>) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        // rcgen writes one attribute per RDN (and panics on an empty one).
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(signing("a name has an empty or multi-valued RDN"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| malformed("name attribute type out of range"))?
            .collect();
        let ty = DnType::from_oid(&oid);
        // rcgen keeps one value per attribute type; a repeated type could not be reproduced.
        if dn.get(&ty).is_some() {
            return Err(signing("a name repeats an attribute type"));
        }
        dn.push(ty, dn_value(attr)?);
    }
    Ok(dn)
}

fn dn_value(attr: &AttributeTypeAndValue<'_>) -> Result<DnValue> {
    let value = attr.attr_value();
    let data = value.data;
    let text = || {
        std::str::from_utf8(data)
            .map_err(|_| malformed("name attribute is not valid text"))
            .map(str::to_owned)
    };
    let unsupported = |e: rcgen::Error| malformed(format!("name attribute: {e}"));
    Ok(match value.header.tag() {
        Tag::Utf8String => DnValue::Utf8String(text()?),
        Tag::PrintableString => DnValue::PrintableString(text()?.try_into().map_err(unsupported)?),
        Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(unsupported)?),
        Tag::T61String => DnValue::TeletexString(text()?.try_into().map_err(unsupported)?),
        Tag::BmpString => {
            DnValue::BmpString(BmpString::from_utf16be(data.to_vec()).map_err(unsupported)?)
        }
        Tag::UniversalString => DnValue::UniversalString(
            UniversalString::from_utf32be(data.to_vec()).map_err(unsupported)?,
        ),
        other => {
            return Err(malformed(format!(
                "name attribute of ASN.1 type {other:?} cannot be reproduced"
            )));
        }
    })
}

/// Every subtree of the existing nameConstraints, of the forms rcgen can write.
fn name_constraints(x509: &X509Certificate<'_>) -> Result<Option<rcgen::NameConstraints>> {
    let Some(nc) = x509.name_constraints().map_err(malformed)? else {
        return Ok(None);
    };
    let convert = |list: &Option<Vec<ParsedSubtree<'_>>>| {
        list.as_deref()
            .unwrap_or_default()
            .iter()
            .map(subtree)
            .collect::<Result<Vec<_>>>()
    };
    Ok(Some(rcgen::NameConstraints {
        permitted_subtrees: convert(&nc.value.permitted_subtrees)?,
        excluded_subtrees: convert(&nc.value.excluded_subtrees)?,
    }))
}

fn subtree(parsed: &ParsedSubtree<'_>) -> Result<GeneralSubtree> {
    let cannot = |kind: &str| signing(&format!("a {kind} name constraint cannot be reproduced"));
    match &parsed.base {
        GeneralName::DNSName(dns) => Ok(GeneralSubtree::DnsName((*dns).to_owned())),
        GeneralName::RFC822Name(email) => Ok(GeneralSubtree::Rfc822Name((*email).to_owned())),
        GeneralName::DirectoryName(name) => {
            Ok(GeneralSubtree::DirectoryName(distinguished_name(name)?))
        }
        GeneralName::IPAddress(bytes) => ip_subtree(bytes).ok_or_else(|| cannot("malformed IP")),
        GeneralName::URI(_) => Err(cannot("URI")),
        GeneralName::OtherName(..) => Err(cannot("otherName")),
        GeneralName::RegisteredID(_) => Err(cannot("registeredID")),
        GeneralName::X400Address(_) => Err(cannot("x400Address")),
        GeneralName::EDIPartyName(_) => Err(cannot("ediPartyName")),
        GeneralName::Invalid(..) => Err(CryptoError::MalformedCertificate {
            detail: "invalid name constraint entry".to_owned(),
        }),
    }
}

/// RFC 5280 §4.2.1.10: an iPAddress constraint is an address followed by its mask.
fn ip_subtree(bytes: &[u8]) -> Option<GeneralSubtree> {
    let subnet = match bytes.len() {
        8 => CidrSubnet::V4(bytes[..4].try_into().ok()?, bytes[4..].try_into().ok()?),
        32 => CidrSubnet::V6(bytes[..16].try_into().ok()?, bytes[16..].try_into().ok()?),
        _ => return None,
    };
    Some(GeneralSubtree::IpAddress(subnet))
}
