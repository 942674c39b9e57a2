//! Just enough DER for the tests to be an OCSP client: requests built by hand (RFC 6960 §4.1,
//! CertIDs over SHA-1 or SHA-256, an optional RFC 8954 nonce) and responses read back (status,
//! each SingleResponse, the nonce, the responder certificate). Panics on anything unexpected:
//! what the responder sends must be well-formed.

use certmesh_crypto::{
    cert::Certificate,
    ocsp::{HashAlgorithm, issuer_hashes},
};
use chrono::{DateTime, NaiveDateTime, Utc};

const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const ENUMERATED: u8 = 0x0a;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;

/// id-pkix-ocsp-nonce.
const OID_NONCE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02];
/// id-pkix-ocsp-basic.
const OID_OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

fn hash_oid(hash: HashAlgorithm) -> &'static [u8] {
    match hash {
        HashAlgorithm::Sha1 => &[0x2b, 0x0e, 0x03, 0x02, 0x1a],
        HashAlgorithm::Sha256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
        HashAlgorithm::Sha384 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02],
        HashAlgorithm::Sha512 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03],
    }
}

/// The DER CertID naming `serial` (big-endian magnitude) of `issuer`.
pub fn cert_id(issuer: &Certificate, serial: &[u8], hash: HashAlgorithm) -> Vec<u8> {
    let hashes = issuer_hashes(issuer)
        .into_iter()
        .find(|h| h.hash == hash)
        .expect("every algorithm");
    let mut integer = Vec::new();
    if serial.first().is_some_and(|b| b & 0x80 != 0) {
        integer.push(0);
    }
    integer.extend_from_slice(serial);
    seq(&[
        seq(&[tlv(OID, hash_oid(hash)), tlv(NULL, &[])]),
        tlv(OCTET_STRING, &hashes.name_hash),
        tlv(OCTET_STRING, &hashes.key_hash),
        tlv(INTEGER, &integer),
    ])
}

/// An OCSPRequest for the CertIDs `ids`, with the nonce extension when `nonce` is given.
pub fn request_for(ids: &[Vec<u8>], nonce: Option<&[u8]>) -> Vec<u8> {
    let list: Vec<Vec<u8>> = ids.iter().map(|id| seq(std::slice::from_ref(id))).collect();
    let mut tbs = vec![seq(&list)];
    if let Some(nonce) = nonce {
        let extension = seq(&[
            tlv(OID, OID_NONCE),
            tlv(OCTET_STRING, &tlv(OCTET_STRING, nonce)),
        ]);
        tbs.push(tlv(0xa2, &seq(&[extension])));
    }
    seq(&[seq(&tbs)])
}

/// An OCSPRequest for one certificate of `issuer`.
pub fn request(
    issuer: &Certificate,
    serial: &[u8],
    hash: HashAlgorithm,
    nonce: Option<&[u8]>,
) -> Vec<u8> {
    request_for(&[cert_id(issuer, serial, hash)], nonce)
}

/// One TLV read from DER.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads TLVs off the front of a byte string.
#[derive(Debug)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Reader(input)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    pub fn any(&mut self) -> Tlv<'a> {
        let input = self.0;
        let tag = input[0];
        let (len, header) = match input[1] {
            n if n < 0x80 => (usize::from(n), 2),
            n => {
                let count = usize::from(n & 0x7f);
                let len = input[2..2 + count]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                (len, 2 + count)
            }
        };
        let raw = &input[..header + len];
        self.0 = &input[header + len..];
        Tlv {
            tag,
            content: &raw[header..],
            raw,
        }
    }

    pub fn read(&mut self, tag: u8) -> Tlv<'a> {
        let t = self.any();
        assert_eq!(t.tag, tag, "expected tag {tag:#04x}, got {:#04x}", t.tag);
        t
    }

    pub fn optional(&mut self, tag: u8) -> Option<Tlv<'a>> {
        (self.peek_tag() == Some(tag)).then(|| self.any())
    }
}

/// A certStatus as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Good,
    /// Revocation time and CRLReason code, if any.
    Revoked(DateTime<Utc>, Option<u8>),
    Unknown,
}

/// One SingleResponse as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Single {
    pub cert_id: Vec<u8>,
    pub status: Status,
    pub this_update: DateTime<Utc>,
    pub next_update: Option<DateTime<Utc>>,
}

/// An OCSPResponse as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// responseStatus: 0 successful, 1 malformedRequest, 6 unauthorized, …
    pub status: u8,
    pub produced_at: Option<DateTime<Utc>>,
    pub singles: Vec<Single>,
    pub nonce: Option<Vec<u8>>,
    /// The responder certificates sent along.
    pub certs: Vec<Vec<u8>>,
}

impl Reply {
    /// The only SingleResponse.
    pub fn single(&self) -> &Single {
        assert_eq!(self.singles.len(), 1, "{self:?}");
        &self.singles[0]
    }
}

fn time(t: Tlv<'_>) -> DateTime<Utc> {
    assert_eq!(t.tag, GENERALIZED_TIME);
    let text = std::str::from_utf8(t.content).expect("ASCII time");
    NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%SZ")
        .unwrap_or_else(|e| panic!("time {text:?}: {e}"))
        .and_utc()
}

/// Reads a DER OCSPResponse.
pub fn parse(der: &[u8]) -> Reply {
    let mut outer = Reader::new(der);
    let response = outer.read(SEQUENCE);
    assert!(outer.is_empty(), "trailing data");
    let mut r = Reader::new(response.content);
    let status = r.read(ENUMERATED).content;
    assert_eq!(status.len(), 1);
    let mut reply = Reply {
        status: status[0],
        produced_at: None,
        singles: Vec::new(),
        nonce: None,
        certs: Vec::new(),
    };
    let Some(bytes) = r.optional(0xa0) else {
        return reply;
    };
    let mut bytes = Reader::new(Reader::new(bytes.content).read(SEQUENCE).content);
    assert_eq!(bytes.read(OID).content, OID_OCSP_BASIC);
    let basic = bytes.read(OCTET_STRING).content;
    let mut basic = Reader::new(Reader::new(basic).read(SEQUENCE).content);
    let mut tbs = Reader::new(basic.read(SEQUENCE).content);
    basic.read(SEQUENCE); // signatureAlgorithm
    basic.read(0x03); // signature
    if let Some(certs) = basic.optional(0xa0) {
        let mut list = Reader::new(Reader::new(certs.content).read(SEQUENCE).content);
        while !list.is_empty() {
            reply.certs.push(list.read(SEQUENCE).raw.to_vec());
        }
    }
    tbs.optional(0xa0); // version
    let id = tbs.any();
    assert!(matches!(id.tag, 0xa1 | 0xa2), "responderID");
    reply.produced_at = Some(time(tbs.any()));
    let mut singles = Reader::new(tbs.read(SEQUENCE).content);
    while !singles.is_empty() {
        reply.singles.push(single(singles.read(SEQUENCE).content));
    }
    if let Some(exts) = tbs.optional(0xa1) {
        let mut exts = Reader::new(Reader::new(exts.content).read(SEQUENCE).content);
        while !exts.is_empty() {
            let mut ext = Reader::new(exts.read(SEQUENCE).content);
            let oid = ext.read(OID).content;
            ext.optional(0x01);
            let value = ext.read(OCTET_STRING).content;
            if oid == OID_NONCE {
                reply.nonce = Some(Reader::new(value).read(OCTET_STRING).content.to_vec());
            }
        }
    }
    reply
}

fn single(content: &[u8]) -> Single {
    let mut r = Reader::new(content);
    let cert_id = r.read(SEQUENCE).raw.to_vec();
    let status = r.any();
    let status = match status.tag {
        0x80 => Status::Good,
        0x82 => Status::Unknown,
        0xa1 => {
            let mut info = Reader::new(status.content);
            let at = time(info.any());
            let reason = info.optional(0xa0).map(|explicit| {
                let code = Reader::new(explicit.content).read(ENUMERATED).content;
                code[0]
            });
            Status::Revoked(at, reason)
        }
        other => panic!("certStatus tag {other:#04x}"),
    };
    let this_update = time(r.any());
    let next_update = r
        .optional(0xa0)
        .map(|explicit| time(Reader::new(explicit.content).any()));
    Single {
        cert_id,
        status,
        this_update,
        next_update,
    }
}
