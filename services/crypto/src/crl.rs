//! Certificate revocation lists (RFC 5280 §5): signing a full v2 CRL for a CA
//! ([`IssuingCa::sign_crl`]) and reading one back ([`parse_crl`]).
//!
//! A CRL carries what RFC 5280 §5.2 requires of a conforming issuer: the CA's subject as issuer
//! (byte for byte, so name chaining holds), authorityKeyIdentifier = the CA's key identifier,
//! cRLNumber, thisUpdate and nextUpdate. An entry's reasonCode is omitted for `unspecified`
//! (§5.3.1 SHOULD). A CRL published at a distribution point names it in a critical
//! issuingDistributionPoint scoped to end-entity certificates (§5.2.5): certmesh shards leaf
//! certificates by CRL URL, and each leaf's cRLDistributionPoints names the same URL.

use chrono::{DateTime, Utc};
use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
    KeyIdMethod, RevokedCertParams, SerialNumber,
};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::{CertificateRevocationList, RevokedCertificate};
use x509_parser::time::ASN1Time;

use crate::cert::{IssuingCa, asn1_time, sign_with, signing};
use crate::error::{CryptoError, Result};
use crate::revocation::{RevocationReason, check_uri};
use crate::serial::Serial;

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlEntry {
    /// The certificate's serial number.
    pub serial: Serial,
    /// When the CA revoked it (written in whole seconds).
    pub revoked_at: DateTime<Utc>,
    /// Why; `Unspecified` is written without a reasonCode, `RemoveFromCrl` is refused.
    pub reason: RevocationReason,
}

/// What varies per CRL.
#[derive(Clone, Copy, Debug)]
pub struct CrlTemplate<'a> {
    /// The cRLNumber, increasing for each CRL of this CA and distribution point (§5.2.3).
    pub number: u64,
    /// Issue time.
    pub this_update: DateTime<Utc>,
    /// Time by which the next CRL is issued; must be after `this_update`.
    pub next_update: DateTime<Utc>,
    /// The URL this CRL is published at; when set, a critical issuingDistributionPoint with
    /// this fullName and onlyContainsUserCerts is written.
    pub distribution_point: Option<&'a str>,
    /// The revoked certificates, written in this order.
    pub entries: &'a [CrlEntry],
}

impl IssuingCa {
    /// Signs a DER v2 CRL through the CA's signer. Fails with
    /// [`CryptoError::RevocationReasonRefused`] for a `RemoveFromCrl` entry,
    /// [`CryptoError::InvalidUri`] for a bad distribution point and [`CryptoError::Signing`] if
    /// nextUpdate is not after thisUpdate or a time is out of range.
    pub fn sign_crl(&self, t: &CrlTemplate<'_>) -> Result<Vec<u8>> {
        if t.next_update <= t.this_update {
            return Err(signing("the CRL's nextUpdate is not after its thisUpdate"));
        }
        let Some(key_id) = self.cert.subject_key_id() else {
            // IssuingCa::new refuses such certificates.
            return Err(signing("the CA certificate has no subjectKeyIdentifier"));
        };
        let params = CertificateRevocationListParams {
            this_update: asn1_time(t.this_update)?.to_datetime(),
            next_update: asn1_time(t.next_update)?.to_datetime(),
            crl_number: SerialNumber::from(t.number),
            issuing_distribution_point: t.distribution_point.map(idp).transpose()?,
            revoked_certs: t.entries.iter().map(revoked_cert).collect::<Result<_>>()?,
            key_identifier_method: KeyIdMethod::PreSpecified(key_id.to_vec()),
        };
        let crl = sign_with(|| params.signed_by(&self.issuer), "CRL")?;
        Ok(crl.der().to_vec())
    }
}

/// RFC 5280 §5.2.5: the CRL's scope is the leaf certificates whose CDP names `url`.
fn idp(url: &str) -> Result<CrlIssuingDistributionPoint> {
    check_uri(url)?;
    Ok(CrlIssuingDistributionPoint {
        distribution_point: CrlDistributionPoint {
            uris: vec![url.to_owned()],
        },
        scope: Some(CrlScope::UserCertsOnly),
    })
}

fn revoked_cert(entry: &CrlEntry) -> Result<RevokedCertParams> {
    Ok(RevokedCertParams {
        serial_number: SerialNumber::from_slice(entry.serial.as_bytes()),
        revocation_time: asn1_time(entry.revoked_at)?.to_datetime(),
        reason_code: crl_reason(entry.reason)?,
        invalidity_date: None,
    })
}

/// RFC 5280 §5.3.1: no reasonCode for `unspecified`; `removeFromCRL` only in delta CRLs.
fn crl_reason(reason: RevocationReason) -> Result<Option<rcgen::RevocationReason>> {
    use rcgen::RevocationReason as R;
    Ok(Some(match reason {
        RevocationReason::Unspecified => return Ok(None),
        RevocationReason::RemoveFromCrl => {
            return Err(CryptoError::RevocationReasonRefused { reason });
        }
        RevocationReason::KeyCompromise => R::KeyCompromise,
        RevocationReason::CaCompromise => R::CaCompromise,
        RevocationReason::AffiliationChanged => R::AffiliationChanged,
        RevocationReason::Superseded => R::Superseded,
        RevocationReason::CessationOfOperation => R::CessationOfOperation,
        RevocationReason::CertificateHold => R::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => R::AaCompromise,
    }))
}

/// A CRL as read back by [`parse_crl`]. The signature is not verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCrl {
    /// The cRLNumber, if present.
    pub number: Option<u64>,
    /// thisUpdate.
    pub this_update: DateTime<Utc>,
    /// nextUpdate, if present.
    pub next_update: Option<DateTime<Utc>>,
    /// The DER of the issuer Name, as in the CRL.
    pub issuer_der: Vec<u8>,
    /// The keyIdentifier of the authorityKeyIdentifier, if present.
    pub authority_key_id: Option<Vec<u8>>,
    /// The first URI of the issuingDistributionPoint's fullName, if any.
    pub distribution_point: Option<String>,
    /// The revoked certificates, in CRL order.
    pub entries: Vec<ParsedCrlEntry>,
}

/// One revoked certificate of a [`ParsedCrl`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCrlEntry {
    /// The serial number.
    pub serial: Serial,
    /// revocationDate.
    pub revoked_at: DateTime<Utc>,
    /// The reasonCode, if present.
    pub reason: Option<RevocationReason>,
}

fn malformed(detail: impl std::fmt::Display) -> CryptoError {
    CryptoError::MalformedCrl {
        detail: detail.to_string(),
    }
}

/// Parses a DER CRL (no trailing data) without verifying its signature. Fails with
/// [`CryptoError::MalformedCrl`] if it does not parse, has an unknown reasonCode, or a cRLNumber
/// beyond `u64`.
pub fn parse_crl(der: &[u8]) -> Result<ParsedCrl> {
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(malformed("trailing data after the CRL"));
    }
    let mut parsed = ParsedCrl {
        number: None,
        this_update: to_chrono(crl.last_update())?,
        next_update: crl.next_update().map(to_chrono).transpose()?,
        issuer_der: crl.issuer().as_raw().to_vec(),
        authority_key_id: None,
        distribution_point: None,
        entries: crl
            .iter_revoked_certificates()
            .map(parsed_entry)
            .collect::<Result<_>>()?,
    };
    for ext in crl.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                parsed.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            ParsedExtension::CRLNumber(n) => parsed.number = Some(crl_number(&n.to_bytes_be())?),
            ParsedExtension::IssuingDistributionPoint(idp) => {
                parsed.distribution_point = idp.distribution_point.as_ref().and_then(first_uri);
            }
            _ => {}
        }
    }
    Ok(parsed)
}

fn parsed_entry(revoked: &RevokedCertificate<'_>) -> Result<ParsedCrlEntry> {
    let reason = match revoked.reason_code() {
        None => None,
        Some((_, code)) => Some(
            RevocationReason::from_code(code.0)
                .ok_or_else(|| malformed(format!("unknown reasonCode {}", code.0)))?,
        ),
    };
    Ok(ParsedCrlEntry {
        serial: Serial::from_der_content(revoked.raw_serial()),
        revoked_at: to_chrono(revoked.revocation_date)?,
        reason,
    })
}

fn crl_number(be: &[u8]) -> Result<u64> {
    let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    let magnitude = &be[first..];
    if magnitude.len() > 8 {
        return Err(malformed("cRLNumber does not fit 64 bits"));
    }
    Ok(magnitude
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn first_uri(name: &DistributionPointName<'_>) -> Option<String> {
    let DistributionPointName::FullName(names) = name else {
        return None;
    };
    names.iter().find_map(|n| match n {
        GeneralName::URI(uri) => Some((*uri).to_owned()),
        _ => None,
    })
}

fn to_chrono(t: ASN1Time) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp(t.timestamp(), 0).ok_or_else(|| malformed("time out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_numbers_up_to_64_bits() {
        assert_eq!(crl_number(&[]).expect("zero"), 0);
        assert_eq!(crl_number(&[0, 0x01, 0x02]).expect("small"), 0x0102);
        assert_eq!(crl_number(&[0xff; 8]).expect("max"), u64::MAX);
        assert!(crl_number(&[1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn reasons_map_to_crl_entries() {
        assert_eq!(crl_reason(RevocationReason::Unspecified).expect("ok"), None);
        assert!(matches!(
            crl_reason(RevocationReason::RemoveFromCrl),
            Err(CryptoError::RevocationReasonRefused {
                reason: RevocationReason::RemoveFromCrl
            })
        ));
        for reason in RevocationReason::ALL {
            if let Ok(Some(r)) = crl_reason(reason) {
                assert_eq!(r as u8, reason.code());
            }
        }
        assert!(parse_crl(b"\x30\x00").is_err());
    }
}
