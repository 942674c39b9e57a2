//! Parsing OCSP requests (RFC 6960 §4.1) from untrusted clients.
//!
//! ```text
//! OCSPRequest ::= SEQUENCE { tbsRequest TBSRequest, optionalSignature [0] EXPLICIT Signature OPTIONAL }
//! TBSRequest  ::= SEQUENCE { version [0] EXPLICIT Version DEFAULT v1,
//!                            requestorName [1] EXPLICIT GeneralName OPTIONAL,
//!                            requestList SEQUENCE OF Request,
//!                            requestExtensions [2] EXPLICIT Extensions OPTIONAL }
//! Request     ::= SEQUENCE { reqCert CertID, singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
//! CertID      ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, issuerNameHash OCTET STRING,
//!                            issuerKeyHash OCTET STRING, serialNumber CertificateSerialNumber }
//! ```
//!
//! Only DER is accepted, with two tolerances seen in deployed clients: an explicit `v1`
//! version and hash AlgorithmIdentifier parameters that are either absent or NULL. The
//! requestor name and signature are checked for shape and otherwise ignored (RFC 5019 §2.1.2:
//! responders need not verify request signatures).

use super::{CertId, HashAlgorithm, MAX_CERT_IDS, MAX_NONCE_LEN, MAX_REQUEST_LEN, OID_NONCE};
use crate::der::{self, DerError, Reader};

/// A parsed OCSP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcspRequest {
    /// The certificates asked about, in request order (1 to [`MAX_CERT_IDS`]).
    pub cert_ids: Vec<CertId>,
    /// The nonce extension's OCTET STRING content (RFC 8954), if the request had one.
    pub nonce: Option<Vec<u8>>,
}

/// Why a request was refused; each maps to the `malformedRequest` response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OcspRequestError {
    /// Larger than [`MAX_REQUEST_LEN`]; not parsed.
    #[error("OCSP request larger than {MAX_REQUEST_LEN} bytes")]
    TooLarge,
    /// Not a DER OCSPRequest this responder accepts.
    #[error("malformed OCSP request: {0}")]
    Malformed(String),
    /// A nonce extension that is not a 1 to 32 octet OCTET STRING (RFC 8954 §2.1).
    #[error("bad OCSP nonce: {0}")]
    BadNonce(String),
}

impl From<DerError> for OcspRequestError {
    fn from(e: DerError) -> Self {
        OcspRequestError::Malformed(e.0.to_owned())
    }
}

type Result<T> = std::result::Result<T, OcspRequestError>;

fn malformed(detail: &str) -> OcspRequestError {
    OcspRequestError::Malformed(detail.to_owned())
}

/// Parses a DER OCSPRequest. Never panics; see [`OcspRequestError`] for what is refused.
pub fn parse_request(der: &[u8]) -> Result<OcspRequest> {
    if der.len() > MAX_REQUEST_LEN {
        return Err(OcspRequestError::TooLarge);
    }
    let mut outer = Reader::new(der);
    let mut request = Reader::new(outer.read(der::SEQUENCE)?);
    outer.finish()?;
    let tbs = request.read(der::SEQUENCE)?;
    if let Some(signature) = request.read_optional(der::context_constructed(0))? {
        let mut explicit = Reader::new(signature);
        explicit.read(der::SEQUENCE)?;
        explicit.finish()?;
    }
    request.finish()?;
    tbs_request(tbs)
}

fn tbs_request(tbs: &[u8]) -> Result<OcspRequest> {
    let mut r = Reader::new(tbs);
    if let Some(version) = r.read_optional(der::context_constructed(0))? {
        let mut explicit = Reader::new(version);
        if der::small_uint(explicit.read(der::INTEGER)?)? != 0 {
            return Err(malformed("unsupported version"));
        }
        explicit.finish()?;
    }
    if let Some(name) = r.read_optional(der::context_constructed(1))? {
        let mut explicit = Reader::new(name);
        explicit.read_any()?;
        explicit.finish()?;
    }
    let cert_ids = request_list(r.read(der::SEQUENCE)?)?;
    let mut nonce = None;
    if let Some(exts) = r.read_optional(der::context_constructed(2))? {
        for ext in extensions(exts)? {
            if ext.oid == OID_NONCE {
                nonce = Some(nonce_value(ext.value)?);
            } else if ext.critical {
                return Err(malformed("unsupported critical request extension"));
            }
        }
    }
    r.finish()?;
    Ok(OcspRequest { cert_ids, nonce })
}

fn request_list(list: &[u8]) -> Result<Vec<CertId>> {
    let mut r = Reader::new(list);
    let mut ids = Vec::new();
    while !r.is_empty() {
        if ids.len() == MAX_CERT_IDS {
            return Err(malformed("more than 16 CertIDs"));
        }
        ids.push(single_request(r.read(der::SEQUENCE)?)?);
    }
    if ids.is_empty() {
        return Err(malformed("no CertID"));
    }
    Ok(ids)
}

fn single_request(request: &[u8]) -> Result<CertId> {
    let mut r = Reader::new(request);
    let cert_id = r.read_tlv(der::SEQUENCE)?;
    if let Some(exts) = r.read_optional(der::context_constructed(0))? {
        // No single-request extension is understood here (RFC 6960 §4.4.6, the service
        // locator, is for forwarding responders).
        if extensions(exts)?.iter().any(|ext| ext.critical) {
            return Err(malformed("unsupported critical singleRequest extension"));
        }
    }
    r.finish()?;
    parse_cert_id(cert_id.content, cert_id.raw)
}

fn parse_cert_id(content: &[u8], raw: &[u8]) -> Result<CertId> {
    let mut r = Reader::new(content);
    let hash = hash_algorithm(r.read(der::SEQUENCE)?)?;
    let name_hash = r.read(der::OCTET_STRING)?;
    let key_hash = r.read(der::OCTET_STRING)?;
    let serial = r.read(der::INTEGER)?;
    der::check_integer(serial)?;
    r.finish()?;
    if name_hash.len() != hash.output_len() || key_hash.len() != hash.output_len() {
        return Err(malformed("issuer hash length does not match its algorithm"));
    }
    Ok(CertId {
        hash,
        issuer_name_hash: name_hash.to_vec(),
        issuer_key_hash: key_hash.to_vec(),
        serial_bytes: serial.to_vec(),
        der: raw.to_vec(),
    })
}

/// AlgorithmIdentifier of a hash: parameters absent or NULL (both are in use).
fn hash_algorithm(alg: &[u8]) -> Result<HashAlgorithm> {
    let mut r = Reader::new(alg);
    let oid = r.read(der::OID)?;
    if let Some(params) = r.read_optional(der::NULL)?
        && !params.is_empty()
    {
        return Err(malformed("NULL with content"));
    }
    r.finish()?;
    HashAlgorithm::from_oid(oid).ok_or_else(|| malformed("unsupported CertID hash algorithm"))
}

struct Extension<'a> {
    oid: &'a [u8],
    critical: bool,
    value: &'a [u8],
}

/// `[n] EXPLICIT Extensions`: SEQUENCE SIZE (1..MAX) OF Extension, each OID at most once
/// (RFC 5280 §4.2).
fn extensions(explicit: &[u8]) -> Result<Vec<Extension<'_>>> {
    let mut outer = Reader::new(explicit);
    let mut r = Reader::new(outer.read(der::SEQUENCE)?);
    outer.finish()?;
    let mut exts: Vec<Extension<'_>> = Vec::new();
    while !r.is_empty() {
        if exts.len() == MAX_CERT_IDS {
            return Err(malformed("too many extensions"));
        }
        let mut fields = Reader::new(r.read(der::SEQUENCE)?);
        let oid = fields.read(der::OID)?;
        let critical = match fields.read_optional(der::BOOLEAN)? {
            Some(b) => der::boolean(b)?,
            None => false,
        };
        let value = fields.read(der::OCTET_STRING)?;
        fields.finish()?;
        if exts.iter().any(|e| e.oid == oid) {
            return Err(malformed("duplicate extension"));
        }
        exts.push(Extension {
            oid,
            critical,
            value,
        });
    }
    if exts.is_empty() {
        return Err(malformed("empty extensions"));
    }
    Ok(exts)
}

/// RFC 8954 §2.1: the extnValue is the DER of `Nonce ::= OCTET STRING (SIZE(1..32))`.
fn nonce_value(value: &[u8]) -> Result<Vec<u8>> {
    let bad = |detail: &str| OcspRequestError::BadNonce(detail.to_owned());
    let mut r = Reader::new(value);
    let nonce = r
        .read(der::OCTET_STRING)
        .map_err(|_| bad("not an OCTET STRING"))?;
    r.finish().map_err(|_| bad("trailing data"))?;
    if nonce.is_empty() {
        return Err(bad("empty"));
    }
    if nonce.len() > MAX_NONCE_LEN {
        return Err(bad("longer than 32 octets"));
    }
    Ok(nonce.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::der::{context_constructed, nested, tlv};

    /// A SHA-1 CertID for serial 0x0102.
    fn cert_id(out: &mut Vec<u8>) {
        nested(out, der::SEQUENCE, |o| {
            nested(o, der::SEQUENCE, |o| {
                tlv(o, der::OID, HashAlgorithm::Sha1.oid());
                tlv(o, der::NULL, &[]);
            });
            tlv(o, der::OCTET_STRING, &[1; 20]);
            tlv(o, der::OCTET_STRING, &[2; 20]);
            tlv(o, der::INTEGER, &[1, 2]);
        });
    }

    fn extension(out: &mut Vec<u8>, oid: &[u8], critical: bool, value: &[u8]) {
        nested(out, der::SEQUENCE, |o| {
            tlv(o, der::OID, oid);
            if critical {
                tlv(o, der::BOOLEAN, &[0xff]);
            }
            tlv(o, der::OCTET_STRING, value);
        });
    }

    /// A request for `n` CertIDs, with `exts` written as requestExtensions.
    fn request(n: usize, exts: &dyn Fn(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        nested(&mut out, der::SEQUENCE, |o| {
            nested(o, der::SEQUENCE, |o| {
                nested(o, der::SEQUENCE, |o| {
                    for _ in 0..n {
                        nested(o, der::SEQUENCE, cert_id);
                    }
                });
                let mut ext_list = Vec::new();
                exts(&mut ext_list);
                if !ext_list.is_empty() {
                    nested(o, context_constructed(2), |o| {
                        tlv(o, der::SEQUENCE, &ext_list);
                    });
                }
            });
        });
        out
    }

    fn nonce_ext(nonce: &[u8]) -> impl Fn(&mut Vec<u8>) {
        let nonce = nonce.to_vec();
        move |o| {
            let mut value = Vec::new();
            tlv(&mut value, der::OCTET_STRING, &nonce);
            extension(o, OID_NONCE, false, &value);
        }
    }

    #[test]
    fn parses_cert_ids_and_nonce() {
        let req = parse_request(&request(2, &nonce_ext(&[9; 16]))).expect("parses");
        assert_eq!(req.cert_ids.len(), 2);
        let id = &req.cert_ids[0];
        assert_eq!(id.hash, HashAlgorithm::Sha1);
        assert_eq!(id.serial_bytes, [1, 2]);
        assert_eq!(id.serial().expect("serial").to_hex(), "0102");
        let mut expected = Vec::new();
        cert_id(&mut expected);
        assert_eq!(id.der, expected);
        assert_eq!(req.nonce, Some(vec![9; 16]));
        assert_eq!(parse_request(&request(1, &|_| {})).expect("ok").nonce, None);
    }

    #[test]
    fn limits() {
        assert!(parse_request(&request(MAX_CERT_IDS, &|_| {})).is_ok());
        assert!(matches!(
            parse_request(&request(MAX_CERT_IDS + 1, &|_| {})),
            Err(OcspRequestError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(&request(0, &|_| {})),
            Err(OcspRequestError::Malformed(_))
        ));
        assert_eq!(
            parse_request(&vec![0; MAX_REQUEST_LEN + 1]),
            Err(OcspRequestError::TooLarge)
        );
    }

    #[test]
    fn nonces() {
        assert!(parse_request(&request(1, &nonce_ext(&[1; 32]))).is_ok());
        for bad in [&[][..], &[1; 33]] {
            assert!(matches!(
                parse_request(&request(1, &nonce_ext(bad))),
                Err(OcspRequestError::BadNonce(_))
            ));
        }
        let raw_value = |o: &mut Vec<u8>| extension(o, OID_NONCE, false, &[1, 2, 3]);
        assert!(matches!(
            parse_request(&request(1, &raw_value)),
            Err(OcspRequestError::BadNonce(_))
        ));
    }

    #[test]
    fn extensions_by_criticality() {
        let unknown = [0x2b, 0x06, 0x01, 0x04, 0x01, 0x7f];
        let ignored = |o: &mut Vec<u8>| extension(o, &unknown, false, &[5, 0]);
        assert!(parse_request(&request(1, &ignored)).is_ok());
        let critical = |o: &mut Vec<u8>| extension(o, &unknown, true, &[5, 0]);
        assert!(matches!(
            parse_request(&request(1, &critical)),
            Err(OcspRequestError::Malformed(_))
        ));
        let twice = |o: &mut Vec<u8>| {
            nonce_ext(&[1])(o);
            nonce_ext(&[2])(o);
        };
        assert!(matches!(
            parse_request(&request(1, &twice)),
            Err(OcspRequestError::Malformed(_))
        ));
    }

    /// A request with an explicit v1, a requestorName and a signature, all to be ignored.
    fn decorated_request(version: u8) -> Vec<u8> {
        let mut out = Vec::new();
        nested(&mut out, der::SEQUENCE, |o| {
            nested(o, der::SEQUENCE, |o| {
                nested(o, context_constructed(0), |o| {
                    tlv(o, der::INTEGER, &[version])
                });
                nested(o, context_constructed(1), |o| {
                    tlv(o, der::context_primitive(2), b"client.example.com");
                });
                nested(o, der::SEQUENCE, |o| nested(o, der::SEQUENCE, cert_id));
            });
            nested(o, context_constructed(0), |o| {
                nested(o, der::SEQUENCE, |o| {
                    tlv(o, der::SEQUENCE, &[0x06, 0x01, 0x2a]);
                    tlv(o, der::BIT_STRING, &[0x00, 0x01]);
                });
            });
        });
        out
    }

    #[test]
    fn version_requestor_and_signature_are_tolerated() {
        let req = parse_request(&decorated_request(0)).expect("parses");
        assert_eq!(req.cert_ids.len(), 1);
        assert!(matches!(
            parse_request(&decorated_request(1)),
            Err(OcspRequestError::Malformed(_))
        ));
    }

    #[test]
    fn cert_id_hashes_must_fit_their_algorithm() {
        let with_cert_id = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            nested(&mut out, der::SEQUENCE, |o| {
                nested(o, der::SEQUENCE, |o| {
                    nested(o, der::SEQUENCE, |o| nested(o, der::SEQUENCE, |o| f(o)));
                });
            });
            parse_request(&out)
        };
        let id = |oid: &[u8], params: &[u8], hash_len: usize, serial: &[u8]| {
            let (oid, params, serial) = (oid.to_vec(), params.to_vec(), serial.to_vec());
            move |o: &mut Vec<u8>| {
                nested(o, der::SEQUENCE, |o| {
                    nested(o, der::SEQUENCE, |o| {
                        tlv(o, der::OID, &oid);
                        o.extend_from_slice(&params);
                    });
                    tlv(o, der::OCTET_STRING, &vec![1; hash_len]);
                    tlv(o, der::OCTET_STRING, &vec![2; hash_len]);
                    tlv(o, der::INTEGER, &serial);
                });
            }
        };
        let sha256 = HashAlgorithm::Sha256.oid();
        assert!(with_cert_id(&id(sha256, &[], 32, &[1])).is_ok());
        assert!(with_cert_id(&id(sha256, &[0x05, 0x00], 32, &[1])).is_ok());
        for bad in [
            id(sha256, &[], 20, &[1]),
            id(sha256, &[0x05, 0x01, 0x00], 32, &[1]),
            id(sha256, &[0x04, 0x00], 32, &[1]),
            id(&[0x2a, 0x03], &[], 32, &[1]),
            id(sha256, &[], 32, &[0x00, 0x01]),
            id(sha256, &[], 32, &[]),
        ] {
            assert!(matches!(
                with_cert_id(&bad),
                Err(OcspRequestError::Malformed(_))
            ));
        }
        let negative = with_cert_id(&id(sha256, &[], 32, &[0x80])).expect("parses");
        assert_eq!(negative.cert_ids[0].serial(), None);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_handled() {
        let valid = request(3, &nonce_ext(&[7; 20]));
        for len in 0..valid.len() {
            assert!(parse_request(&valid[..len]).is_err(), "truncated to {len}");
        }
        let mut trailing = valid.clone();
        trailing.push(0);
        assert!(parse_request(&trailing).is_err());
        for i in 0..valid.len() * 8 {
            let mut flipped = valid.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            // Must not panic; some flips still parse (hash or serial bytes).
            let _ = parse_request(&flipped);
        }
    }
}
