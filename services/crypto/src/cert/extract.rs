//! Pulling the certificates out of a file found on disk or in a bundle, and nothing else:
//! such files often hold the private key too, so other PEM blocks are stepped over without
//! being decoded and nothing of them is returned or copied.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Certificate;
use crate::der::{self, Reader};

/// PEM labels that hold a certificate (RFC 7468 §5.1 asks parsers to accept the two old
/// spellings; `TRUSTED CERTIFICATE` is OpenSSL's certificate followed by trust settings).
const CERTIFICATE_LABELS: [&str; 4] = [
    "CERTIFICATE",
    "TRUSTED CERTIFICATE",
    "X509 CERTIFICATE",
    "X.509 CERTIFICATE",
];

/// Every certificate in `bytes`: all PEM `CERTIFICATE` (and `TRUSTED CERTIFICATE`) blocks in
/// file order, or else the input as DER (one certificate, or several concatenated). Other PEM
/// blocks, private keys above all, are never decoded, returned or retained. Blocks that do
/// not parse are skipped.
pub fn certificates_in(bytes: &[u8]) -> Vec<Certificate> {
    if bytes.first() == Some(&der::SEQUENCE) {
        let found = der_certificates(bytes);
        if !found.is_empty() {
            return found;
        }
    }
    pem_certificates(bytes)
}

/// Concatenated DER certificates, up to the first element that is not one.
fn der_certificates(bytes: &[u8]) -> Vec<Certificate> {
    let mut reader = Reader::new(bytes);
    let mut found = Vec::new();
    while let Ok(element) = reader.read_tlv(der::SEQUENCE) {
        match Certificate::from_der(element.raw.to_vec()) {
            Ok(cert) => found.push(cert),
            Err(_) => break,
        }
    }
    found
}

/// RFC 7468 §2 blocks: `-----BEGIN <label>-----`, base64, `-----END <label>-----`.
fn pem_certificates(bytes: &[u8]) -> Vec<Certificate> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const DASHES: &[u8] = b"-----";
    let mut found = Vec::new();
    let mut rest = bytes;
    while let Some(at) = find(rest, BEGIN) {
        rest = &rest[at + BEGIN.len()..];
        let Some(label_end) = find(rest, DASHES) else {
            break;
        };
        let label = &rest[..label_end];
        rest = &rest[label_end + DASHES.len()..];
        let end_line = [b"-----END ", label, DASHES].concat();
        let Some(body_end) = find(rest, &end_line) else {
            break;
        };
        let body = &rest[..body_end];
        rest = &rest[body_end + end_line.len()..];
        if CERTIFICATE_LABELS.iter().any(|l| l.as_bytes() == label)
            && let Some(cert) = pem_body_certificate(body)
        {
            found.push(cert);
        }
    }
    found
}

/// The certificate in a PEM block's base64 body. Only the first DER element is read: a
/// `TRUSTED CERTIFICATE` carries OpenSSL's trust settings after it.
fn pem_body_certificate(body: &[u8]) -> Option<Certificate> {
    let b64: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(b64).ok()?;
    let first = Reader::new(&der).read_tlv(der::SEQUENCE).ok()?;
    Certificate::from_der(first.raw.to_vec()).ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::cert::{CaTemplate, self_signed_root};
    use crate::keys::{KeySpec, SoftwareSigner};
    use crate::pem::encode;
    use crate::serial::Serial;

    /// Stands in for key material: it must never come out.
    const PLANTED: &[u8] = b"planted private key material, never to be returned";

    fn root(name: &str) -> Certificate {
        let signer = SoftwareSigner::generate_ephemeral(KeySpec::EcdsaP256).expect("key");
        let at = |year| {
            Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0)
                .single()
                .expect("t")
        };
        let template = CaTemplate {
            common_name: name.to_owned(),
            organization: None,
            serial: Serial::random(),
            not_before: at(2020),
            not_after: at(2040),
            path_len: None,
            permitted_dns: Vec::new(),
            excluded_dns: Vec::new(),
        };
        self_signed_root(Arc::new(signer), &template).expect("root")
    }

    fn subjects(certs: &[Certificate]) -> Vec<&str> {
        certs.iter().map(Certificate::subject).collect()
    }

    #[test]
    fn only_the_certificates_come_out_of_a_pem_file_with_a_key() {
        let (one, two) = (root("one"), root("two"));
        let key = encode("PRIVATE KEY", PLANTED);
        let broken = encode("CERTIFICATE", b"not a certificate");
        let bundle = format!(
            "subject=CN=one\n{key}{}\n{broken}junk\n{}{}",
            one.to_pem(),
            encode("EC PRIVATE KEY", PLANTED),
            two.to_pem()
        );
        let certs = certificates_in(bundle.as_bytes());
        assert_eq!(subjects(&certs), ["CN=one", "CN=two"]);
        assert!(certs.iter().all(|c| find(c.der(), PLANTED).is_none()));
        assert!(certificates_in(key.as_bytes()).is_empty());
        assert!(certificates_in(b"").is_empty());
        assert!(certificates_in(b"0 is not DER").is_empty());
        let unterminated = format!("{}{}", one.to_pem(), "-----BEGIN CERTIFICATE-----\nMII");
        assert_eq!(
            subjects(&certificates_in(unterminated.as_bytes())),
            ["CN=one"]
        );
    }

    #[test]
    fn der_files_and_trusted_certificates() {
        let cert = root("der");
        assert_eq!(certificates_in(cert.der()), std::slice::from_ref(&cert));
        let two = [cert.der(), cert.der()].concat();
        assert_eq!(certificates_in(&two).len(), 2);
        // A DER private key is no certificate.
        let mut key = vec![der::SEQUENCE, PLANTED.len() as u8];
        key.extend_from_slice(PLANTED);
        assert!(certificates_in(&key).is_empty());

        // What `openssl x509 -trustout -addtrust serverAuth` appends: a SEQUENCE of trust
        // settings after the certificate.
        let aux = [
            0x30, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
        ];
        let trusted = encode("TRUSTED CERTIFICATE", &[cert.der(), &aux].concat());
        assert_eq!(
            certificates_in(trusted.as_bytes()),
            std::slice::from_ref(&cert)
        );
        let old_label = encode("X509 CERTIFICATE", cert.der());
        assert_eq!(certificates_in(old_label.as_bytes()), [cert]);
    }
}
