//! Minimal PEM (RFC 7468) decoding and encoding for the labels this crate reads and writes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x509_parser::pem::Pem;
use zeroize::Zeroizing;

use crate::error::{CryptoError, Result};

/// Decodes the first PEM block of `text` and checks its label is one of `labels`.
pub(crate) fn decode(text: &str, labels: &[&str]) -> Result<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(text.as_bytes()).map_err(|_| {
        CryptoError::MalformedPem {
            detail: format!("no {} PEM block found", labels.join(" or ")),
        }
    })?;
    check_label(&pem, labels)?;
    Ok(pem.contents)
}

fn check_label(pem: &Pem, labels: &[&str]) -> Result<()> {
    if labels.contains(&pem.label.as_str()) {
        return Ok(());
    }
    Err(CryptoError::MalformedPem {
        detail: format!(
            "expected label {} but found {:?}",
            labels.join(" or "),
            pem.label
        ),
    })
}

/// Decodes the first block of `text` labelled with one of `labels`, skipping other blocks (such
/// as the `EC PARAMETERS` that `openssl ecparam -genkey` writes first); returns the label and
/// the DER. For private keys: the base64 text and the DER are wiped when dropped.
pub(crate) fn decode_secret<'l>(
    text: &str,
    labels: &[&'l str],
) -> Result<(&'l str, Zeroizing<Vec<u8>>)> {
    let malformed = |detail: String| CryptoError::MalformedPem { detail };
    let (start, label) = labels
        .iter()
        .filter_map(|l| text.find(&format!("-----BEGIN {l}-----")).map(|i| (i, *l)))
        .min()
        .ok_or_else(|| malformed(format!("no {} PEM block found", labels.join(" or "))))?;
    let body = &text[start + "-----BEGIN -----".len() + label.len()..];
    let end = body
        .find(&format!("-----END {label}-----"))
        .ok_or_else(|| malformed(format!("the {label} PEM block has no end line")))?;
    let b64: Zeroizing<String> = Zeroizing::new(
        body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    let mut der = Zeroizing::new(Vec::with_capacity(b64.len() * 3 / 4));
    STANDARD.decode_vec(b64.as_bytes(), &mut der).map_err(|_| {
        malformed(format!(
            "the {label} PEM block is not plain base64 (encrypted keys are not supported)"
        ))
    })?;
    Ok((label, der))
}

/// Encodes `der` as PEM with `label`, 64-character lines and a trailing newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so any byte chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..=255u8).collect();
        let text = encode("CERTIFICATE", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(decode(&text, &["CERTIFICATE"]).expect("decodes"), der);
    }

    #[test]
    fn secret_blocks_are_found_among_others() {
        let text = format!(
            "junk\n{}{}",
            encode("EC PARAMETERS", b"params"),
            encode("EC PRIVATE KEY", b"key")
        );
        let (label, der) =
            decode_secret(&text, &["PRIVATE KEY", "EC PRIVATE KEY"]).expect("decodes");
        assert_eq!((label, der.as_slice()), ("EC PRIVATE KEY", &b"key"[..]));
        assert!(decode_secret(&encode("ENCRYPTED PRIVATE KEY", b"x"), &["PRIVATE KEY"]).is_err());
        let cut = encode("PRIVATE KEY", b"x").replace("-----END PRIVATE KEY-----\n", "");
        assert!(decode_secret(&cut, &["PRIVATE KEY"]).is_err());
        let headers = "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(decode_secret(headers, &["PRIVATE KEY"]).is_err());
    }

    #[test]
    fn wrong_label_and_garbage() {
        let text = encode("PRIVATE KEY", b"x");
        assert!(matches!(
            decode(&text, &["CERTIFICATE"]),
            Err(CryptoError::MalformedPem { .. })
        ));
        assert!(matches!(
            decode("hello", &["CERTIFICATE"]),
            Err(CryptoError::MalformedPem { .. })
        ));
    }
}
