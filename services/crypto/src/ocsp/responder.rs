//! The delegated OCSP responder (RFC 6960 §4.2.2.2): its key, its certificate and the signing
//! of BasicOCSPResponses.
//!
//! The responder key is an ECDSA P-256 key that lives only in process memory: a responder
//! restarts with a fresh key and a fresh certificate from its CA, so the CA key is never used
//! per request and a leaked responder key expires with its short-lived certificate.
//!
//! ```text
//! OCSPResponse      ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT ResponseBytes }
//! ResponseBytes     ::= SEQUENCE { responseType OBJECT IDENTIFIER, response OCTET STRING }
//! BasicOCSPResponse ::= SEQUENCE { tbsResponseData ResponseData, signatureAlgorithm AlgorithmIdentifier,
//!                                  signature BIT STRING, certs [0] EXPLICIT SEQUENCE OF Certificate }
//! ResponseData      ::= SEQUENCE { responderID ResponderID, producedAt GeneralizedTime,
//!                                  responses SEQUENCE OF SingleResponse,
//!                                  responseExtensions [1] EXPLICIT Extensions OPTIONAL }
//! SingleResponse    ::= SEQUENCE { certID CertID, certStatus CertStatus, thisUpdate GeneralizedTime,
//!                                  nextUpdate [0] EXPLICIT GeneralizedTime }
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use rcgen::{CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyUsagePurpose};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

use super::{CertStatus, MAX_NONCE_LEN, OID_NONCE, SingleResponse};
use crate::cert::{Certificate, IssuingCa, base_params, check_cn, sign, signing};
use crate::der::{self, Reader, context_constructed, nested, tlv};
use crate::digest::sha1_key_id;
use crate::error::{CryptoError, Result};
use crate::keys::{KeySpec, generate_pkcs8};
use crate::revocation::RevocationReason;
use crate::serial::Serial;
use crate::spki::SubjectKey;

/// RFC 6960 §4.2.2.2.1: id-pkix-ocsp-nocheck.
const OID_OCSP_NOCHECK: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5];

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1), DER content octets.
const OID_OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// AlgorithmIdentifier ecdsa-with-SHA256 (RFC 5758 §3.2: parameters absent).
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// DER prefix of a P-256 SubjectPublicKeyInfo, up to the uncompressed point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An OCSP responder's ECDSA P-256 key, generated in memory and never serialized.
pub struct ResponderKey {
    key_pair: EcdsaKeyPair,
    spki: Vec<u8>,
    rng: SystemRandom,
}

impl ResponderKey {
    /// A fresh key. The PKCS#8 copy it is loaded from is wiped once loaded (ring's own
    /// generation buffer, a stack value, is outside safe code's reach).
    pub fn generate() -> Result<ResponderKey> {
        let rng = SystemRandom::new();
        let pkcs8 = generate_pkcs8(KeySpec::EcdsaP256)?;
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
            .map_err(|_| signing("loading the generated OCSP responder key failed"))?;
        drop(pkcs8);
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key_pair.public_key().as_ref());
        Ok(ResponderKey {
            key_pair,
            spki,
            rng,
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_key_spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// A DER ECDSA-Sig-Value over SHA-256 of `msg`.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key_pair
            .sign(&self.rng, msg)
            .map_err(|_| signing("OCSP response signature failed"))?;
        Ok(sig.as_ref().to_vec())
    }
}

impl fmt::Debug for ResponderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponderKey")
            .field("public_key_sha256", &crate::digest::sha256_hex(&self.spki))
            .finish_non_exhaustive()
    }
}

/// What varies per responder certificate.
#[derive(Clone, Debug)]
pub struct ResponderTemplate {
    /// Serial number (unique per CA).
    pub serial: Serial,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity; short, as the certificate carries ocsp-nocheck.
    pub not_after: DateTime<Utc>,
    /// Subject commonName.
    pub common_name: String,
}

impl IssuingCa {
    /// Issues a delegated OCSP responder certificate for `key` (RFC 6960 §4.2.2.2): CA:FALSE,
    /// critical keyUsage digitalSignature, extendedKeyUsage id-kp-OCSPSigning, and
    /// id-pkix-ocsp-nocheck (§4.2.2.2.1) so clients do not ask for the responder's own status.
    pub fn issue_ocsp_responder(
        &self,
        key: &ResponderKey,
        t: &ResponderTemplate,
    ) -> Result<Certificate> {
        let subject = SubjectKey::from_der(key.public_key_spki_der())?;
        let mut params = base_params(&t.serial, t.not_before, t.not_after)?;
        check_cn(&t.common_name)?;
        params
            .distinguished_name
            .push(DnType::CommonName, t.common_name.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            OID_OCSP_NOCHECK,
            vec![der::NULL, 0x00],
        )];
        params.key_identifier_method = KeyIdMethod::PreSpecified(subject.key_id());
        sign(|| params.signed_by(&subject, &self.issuer))
    }
}

/// A responder key with its certificate, ready to sign responses; shared across threads.
pub struct Responder {
    key: ResponderKey,
    cert: Certificate,
    /// `[2] EXPLICIT KeyHash`: SHA-1 of the responder's subjectPublicKey bits.
    responder_id: Vec<u8>,
    /// `[0] EXPLICIT SEQUENCE OF Certificate` with the responder certificate.
    certs: Vec<u8>,
}

impl Responder {
    /// Pairs a key with its certificate; [`CryptoError::KeyMismatch`] if the certificate is
    /// for another key.
    pub fn new(key: ResponderKey, cert: Certificate) -> Result<Responder> {
        if cert.spki_der() != key.public_key_spki_der() {
            return Err(CryptoError::KeyMismatch);
        }
        let mut responder_id = Vec::with_capacity(24);
        nested(&mut responder_id, context_constructed(2), |o| {
            tlv(
                o,
                der::OCTET_STRING,
                &sha1_key_id(key.key_pair.public_key().as_ref()),
            );
        });
        let mut certs = Vec::with_capacity(cert.der().len() + 8);
        nested(&mut certs, context_constructed(0), |o| {
            tlv(o, der::SEQUENCE, cert.der());
        });
        Ok(Responder {
            key,
            cert,
            responder_id,
            certs,
        })
    }

    /// The responder certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// Signs a successful DER OCSPResponse with one SingleResponse per entry of `responses`
    /// (each CertID echoed as received) and, when `nonce` is given, the nonce extension
    /// echoing it (RFC 8954). Fails with [`CryptoError::Signing`] for no responses, a CertID
    /// that is not one DER SEQUENCE, a nextUpdate not after thisUpdate, a nonce not of 1 to 32
    /// octets or a time outside years 0–9999, and with
    /// [`CryptoError::RevocationReasonRefused`] for `RemoveFromCrl`.
    pub fn sign(
        &self,
        responses: &[SingleResponse<'_>],
        nonce: Option<&[u8]>,
        produced_at: DateTime<Utc>,
    ) -> Result<Vec<u8>> {
        if responses.is_empty() {
            return Err(signing(
                "an OCSP response needs at least one SingleResponse",
            ));
        }
        if nonce.is_some_and(|n| n.is_empty() || n.len() > MAX_NONCE_LEN) {
            return Err(signing("an OCSP nonce has 1 to 32 octets"));
        }
        let tbs = self.response_data(responses, nonce, produced_at)?;
        let signature = self.key.sign(&tbs)?;
        let mut basic = Vec::with_capacity(tbs.len() + signature.len() + self.certs.len() + 32);
        nested(&mut basic, der::SEQUENCE, |o| {
            o.extend_from_slice(&tbs);
            o.extend_from_slice(ECDSA_WITH_SHA256);
            nested(o, der::BIT_STRING, |o| {
                o.push(0);
                o.extend_from_slice(&signature);
            });
            o.extend_from_slice(&self.certs);
        });
        let mut out = Vec::with_capacity(basic.len() + 32);
        nested(&mut out, der::SEQUENCE, |o| {
            tlv(o, der::ENUMERATED, &[0]);
            nested(o, context_constructed(0), |o| {
                nested(o, der::SEQUENCE, |o| {
                    tlv(o, der::OID, OID_OCSP_BASIC);
                    tlv(o, der::OCTET_STRING, &basic);
                });
            });
        });
        Ok(out)
    }

    /// The DER ResponseData (version v1, the DEFAULT, omitted).
    fn response_data(
        &self,
        responses: &[SingleResponse<'_>],
        nonce: Option<&[u8]>,
        produced_at: DateTime<Utc>,
    ) -> Result<Vec<u8>> {
        let size: usize = responses.iter().map(|r| r.cert_id.der.len() + 80).sum();
        let mut tbs = Vec::with_capacity(size + 128);
        nested(&mut tbs, der::SEQUENCE, |o| {
            o.extend_from_slice(&self.responder_id);
            time(o, produced_at)?;
            nested(o, der::SEQUENCE, |o| {
                responses.iter().try_for_each(|r| single_response(o, r))
            })?;
            if let Some(nonce) = nonce {
                nested(o, context_constructed(1), |o| {
                    nested(o, der::SEQUENCE, |o| nonce_extension(o, nonce));
                });
            }
            Ok::<_, CryptoError>(())
        })?;
        Ok(tbs)
    }
}

fn single_response(out: &mut Vec<u8>, r: &SingleResponse<'_>) -> Result<()> {
    if r.next_update <= r.this_update {
        return Err(signing(
            "an OCSP response's nextUpdate is not after thisUpdate",
        ));
    }
    let mut cert_id = Reader::new(&r.cert_id.der);
    if cert_id.read(der::SEQUENCE).is_err() || cert_id.finish().is_err() {
        return Err(signing("the CertID is not one DER SEQUENCE"));
    }
    nested(out, der::SEQUENCE, |o| {
        o.extend_from_slice(&r.cert_id.der);
        cert_status(o, &r.status)?;
        time(o, r.this_update)?;
        nested(o, context_constructed(0), |o| time(o, r.next_update))
    })
}

/// RFC 6960 §4.2.1: good `[0] IMPLICIT NULL`, revoked `[1] IMPLICIT RevokedInfo`, unknown
/// `[2] IMPLICIT NULL`.
fn cert_status(out: &mut Vec<u8>, status: &CertStatus) -> Result<()> {
    match status {
        CertStatus::Good => tlv(out, der::context_primitive(0), &[]),
        CertStatus::Revoked { at, reason } => {
            if *reason == Some(RevocationReason::RemoveFromCrl) {
                return Err(CryptoError::RevocationReasonRefused {
                    reason: RevocationReason::RemoveFromCrl,
                });
            }
            nested(out, context_constructed(1), |o| {
                time(o, *at)?;
                if let Some(reason) = reason {
                    nested(o, context_constructed(0), |o| {
                        tlv(o, der::ENUMERATED, &[reason.code()]);
                    });
                }
                Ok::<_, CryptoError>(())
            })?;
        }
        CertStatus::Unknown => tlv(out, der::context_primitive(2), &[]),
    }
    Ok(())
}

/// RFC 8954 §2.1: extnValue = DER of the nonce OCTET STRING, echoing the request's.
fn nonce_extension(out: &mut Vec<u8>, nonce: &[u8]) {
    nested(out, der::SEQUENCE, |o| {
        tlv(o, der::OID, OID_NONCE);
        nested(o, der::OCTET_STRING, |o| tlv(o, der::OCTET_STRING, nonce));
    });
}

fn time(out: &mut Vec<u8>, t: DateTime<Utc>) -> Result<()> {
    der::generalized_time(out, t).ok_or_else(|| signing("time outside years 0000 to 9999"))
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Responder>();
        assert_send_sync::<ResponderKey>();
    }

    #[test]
    fn key_debug_shows_no_key_material() {
        let key = ResponderKey::generate().expect("key");
        let text = format!("{key:?}");
        assert!(text.contains("public_key_sha256"));
        assert!(!text.contains("key_pair"));
        assert_eq!(key.public_key_spki_der().len(), 91);
    }

    #[test]
    fn revoked_status_encoding() {
        let at = DateTime::from_timestamp(1_900_000_000, 0).expect("time");
        let mut out = Vec::new();
        let status = CertStatus::Revoked {
            at,
            reason: Some(RevocationReason::KeyCompromise),
        };
        cert_status(&mut out, &status).expect("encodes");
        assert_eq!(&out[..4], &[0xa1, 0x16, 0x18, 0x0f]);
        assert_eq!(&out[out.len() - 5..], &[0xa0, 0x03, 0x0a, 0x01, 0x01]);
        let refused = CertStatus::Revoked {
            at,
            reason: Some(RevocationReason::RemoveFromCrl),
        };
        assert!(cert_status(&mut Vec::new(), &refused).is_err());
        let mut good = Vec::new();
        cert_status(&mut good, &CertStatus::Good).expect("encodes");
        assert_eq!(good, [0x80, 0x00]);
    }
}
