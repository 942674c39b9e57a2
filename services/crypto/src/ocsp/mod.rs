//! OCSP (RFC 6960) in the RFC 5019 lightweight profile: parsing requests
//! ([`parse_request`]), matching their CertIDs to a CA ([`issuer_hashes`]), issuing a delegated
//! responder certificate ([`crate::cert::IssuingCa::issue_ocsp_responder`]) and signing
//! responses with it ([`Responder::sign`]).
//!
//! Requests are untrusted input parsed by a strict DER reader with hard limits (size, CertIDs,
//! nonce length); responses are encoded directly, echoing each CertID as received, so one
//! response costs one ECDSA P-256 signature and a few small allocations.

use chrono::{DateTime, Utc};
use ring::digest;

use crate::cert::Certificate;
use crate::der::{self, Reader};
use crate::revocation::RevocationReason;
use crate::serial::Serial;

mod request;
mod responder;

pub use request::{OcspRequest, OcspRequestError, parse_request};
pub use responder::{Responder, ResponderKey, ResponderTemplate};

/// Largest request [`parse_request`] reads; RFC 5019 requests are a few hundred bytes.
pub const MAX_REQUEST_LEN: usize = 4096;
/// Longest nonce accepted (RFC 8954 §2.1: 1 to 32 octets).
pub const MAX_NONCE_LEN: usize = 32;
/// Most CertIDs in one request.
pub const MAX_CERT_IDS: usize = 16;

/// id-pkix-ocsp-nonce (1.3.6.1.5.5.7.48.1.2), DER content octets.
pub(crate) const OID_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];

/// The hash algorithm of a CertID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-1, the RFC 5019 default (a name/key hash, not a signature).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm.
    pub const ALL: [HashAlgorithm; 4] = [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ];

    /// Digest length in octets.
    pub fn output_len(self) -> usize {
        self.ring().output_len()
    }

    /// The DER content octets of the algorithm's OID.
    fn oid(self) -> &'static [u8] {
        match self {
            // 1.3.14.3.2.26
            HashAlgorithm::Sha1 => &[0x2b, 0x0e, 0x03, 0x02, 0x1a],
            // 2.16.840.1.101.3.4.2.{1,2,3}
            HashAlgorithm::Sha256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
            HashAlgorithm::Sha384 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02],
            HashAlgorithm::Sha512 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03],
        }
    }

    fn from_oid(oid: &[u8]) -> Option<HashAlgorithm> {
        Self::ALL.into_iter().find(|alg| alg.oid() == oid)
    }

    fn ring(self) -> &'static digest::Algorithm {
        match self {
            HashAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlgorithm::Sha256 => &digest::SHA256,
            HashAlgorithm::Sha384 => &digest::SHA384,
            HashAlgorithm::Sha512 => &digest::SHA512,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.ring(), data).as_ref().to_vec()
    }
}

/// A CertID (RFC 6960 §4.1.1) as received.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertId {
    /// The hash algorithm of both issuer hashes.
    pub hash: HashAlgorithm,
    /// Hash of the issuer's subject Name DER.
    pub issuer_name_hash: Vec<u8>,
    /// Hash of the issuer's subjectPublicKey BIT STRING value.
    pub issuer_key_hash: Vec<u8>,
    /// The serialNumber INTEGER's content octets, as sent.
    pub serial_bytes: Vec<u8>,
    /// The whole CertID DER as received, echoed back verbatim in the response.
    pub der: Vec<u8>,
}

impl CertId {
    /// The serial as a [`Serial`]; `None` if it is zero, negative or longer than 20 octets, so
    /// cannot be one certmesh issued.
    pub fn serial(&self) -> Option<Serial> {
        match self.serial_bytes.first() {
            Some(b) if b & 0x80 == 0 => Serial::from_bytes(&self.serial_bytes).ok(),
            _ => None,
        }
    }
}

/// A CA's name and key hashes under one algorithm, to match the CertIDs of requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerHashes {
    /// The algorithm.
    pub hash: HashAlgorithm,
    /// Hash of the CA's subject Name DER.
    pub name_hash: Vec<u8>,
    /// Hash of the CA's subjectPublicKey BIT STRING value.
    pub key_hash: Vec<u8>,
}

impl IssuerHashes {
    /// Whether `id` names this issuer (same algorithm, name hash and key hash).
    pub fn matches(&self, id: &CertId) -> bool {
        self.hash == id.hash
            && self.name_hash == id.issuer_name_hash
            && self.key_hash == id.issuer_key_hash
    }
}

/// The issuer hashes of `ca` under every [`HashAlgorithm`], as RFC 6960 §4.1.1 defines them:
/// over the subject Name DER, and over the subjectPublicKey BIT STRING value (without tag,
/// length and unused-bits octet).
pub fn issuer_hashes(ca: &Certificate) -> Vec<IssuerHashes> {
    // A Certificate's SPKI has been parsed already, so this does not fail in practice.
    let key_bits = subject_public_key_bits(ca.spki_der()).unwrap_or_default();
    HashAlgorithm::ALL
        .into_iter()
        .map(|hash| IssuerHashes {
            hash,
            name_hash: hash.digest(ca.subject_der()),
            key_hash: hash.digest(key_bits),
        })
        .collect()
}

/// The subjectPublicKey BIT STRING value of a DER SubjectPublicKeyInfo.
pub(crate) fn subject_public_key_bits(spki: &[u8]) -> Option<&[u8]> {
    let mut outer = Reader::new(spki);
    let mut fields = Reader::new(outer.read(der::SEQUENCE).ok()?);
    fields.read(der::SEQUENCE).ok()?;
    let bits = fields.read(der::BIT_STRING).ok()?;
    match bits.split_first() {
        Some((0, key)) => Some(key),
        _ => None,
    }
}

/// The status of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at `at`; the reason is written when known.
    Revoked {
        /// Revocation time.
        at: DateTime<Utc>,
        /// Reason (`RemoveFromCrl` is refused when signing).
        reason: Option<RevocationReason>,
    },
    /// Not known to this responder.
    Unknown,
}

/// One answer of a response.
#[derive(Clone, Debug)]
pub struct SingleResponse<'a> {
    /// The CertID asked about, echoed verbatim.
    pub cert_id: &'a CertId,
    /// Its status.
    pub status: CertStatus,
    /// Time at which the status is known to be correct.
    pub this_update: DateTime<Utc>,
    /// Time by which newer information will be available (RFC 5019 §2.2.4: always present).
    pub next_update: DateTime<Utc>,
}

/// The unsuccessful responseStatus values (RFC 6960 §4.2.1; 4 is unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspErrorStatus {
    /// The request does not conform to the OCSP syntax.
    MalformedRequest = 1,
    /// The responder reached an inconsistent internal state.
    InternalError = 2,
    /// The service exists but is temporarily unable to respond.
    TryLater = 3,
    /// The request must be signed.
    SigRequired = 5,
    /// The client is not authorized to query this responder (e.g. a CA it does not serve).
    Unauthorized = 6,
}

/// The DER OCSPResponse carrying only `status` (no responseBytes), e.g. `30 03 0a 01 01`.
pub fn error_response(status: OcspErrorStatus) -> &'static [u8] {
    match status {
        OcspErrorStatus::MalformedRequest => &[0x30, 0x03, 0x0a, 0x01, 0x01],
        OcspErrorStatus::InternalError => &[0x30, 0x03, 0x0a, 0x01, 0x02],
        OcspErrorStatus::TryLater => &[0x30, 0x03, 0x0a, 0x01, 0x03],
        OcspErrorStatus::SigRequired => &[0x30, 0x03, 0x0a, 0x01, 0x05],
        OcspErrorStatus::Unauthorized => &[0x30, 0x03, 0x0a, 0x01, 0x06],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_carry_their_status() {
        for status in [
            OcspErrorStatus::MalformedRequest,
            OcspErrorStatus::InternalError,
            OcspErrorStatus::TryLater,
            OcspErrorStatus::SigRequired,
            OcspErrorStatus::Unauthorized,
        ] {
            let der = error_response(status);
            let mut r = Reader::new(der);
            let mut fields = Reader::new(r.read(der::SEQUENCE).expect("sequence"));
            assert_eq!(fields.read(der::ENUMERATED), Ok(&[status as u8][..]));
            assert!(fields.finish().is_ok() && r.finish().is_ok());
        }
    }

    #[test]
    fn cert_id_serials() {
        let id = |bytes: &[u8]| CertId {
            hash: HashAlgorithm::Sha1,
            issuer_name_hash: vec![0; 20],
            issuer_key_hash: vec![0; 20],
            serial_bytes: bytes.to_vec(),
            der: Vec::new(),
        };
        assert_eq!(id(&[0x00, 0x80]).serial().expect("ok").to_hex(), "80");
        assert_eq!(id(&[0x01]).serial().expect("ok").to_hex(), "01");
        assert_eq!(id(&[0x00]).serial(), None);
        assert_eq!(id(&[0x80]).serial(), None);
        assert_eq!(id(&[0x7f; 21]).serial(), None);
        assert!(id(&[0x7f; 20]).serial().is_some());
    }

    #[test]
    fn hash_algorithms() {
        for alg in HashAlgorithm::ALL {
            assert_eq!(HashAlgorithm::from_oid(alg.oid()), Some(alg));
            assert_eq!(alg.digest(b"x").len(), alg.output_len());
        }
        assert_eq!(
            HashAlgorithm::ALL.map(HashAlgorithm::output_len),
            [20, 32, 48, 64]
        );
    }

    #[test]
    fn key_bits_of_an_spki() {
        let mut spki =
            hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").expect("hex");
        spki.push(0x04);
        spki.extend_from_slice(&[7u8; 64]);
        let bits = subject_public_key_bits(&spki).expect("parses");
        assert_eq!(bits.len(), 65);
        assert_eq!(bits[0], 0x04);
        assert!(subject_public_key_bits(b"junk").is_none());
    }
}
