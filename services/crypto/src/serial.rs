//! Certificate serial numbers (RFC 5280 §4.1.2.2).
//!
//! A [`Serial`] is held in canonical form: the big-endian magnitude of a positive INTEGER without
//! leading zero bytes. That is what a certificate's DER carries (minus the sign byte), so a serial
//! stored from a template reads back identically from the issued certificate.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{CryptoError, Result};

/// RFC 5280 §4.1.2.2: conforming CAs use serials of at most 20 octets (DER content, sign included).
const MAX_DER_OCTETS: usize = 20;

/// Length of freshly generated serials, in bytes (126 bits of entropy).
const RANDOM_LEN: usize = 16;

/// A positive certificate serial number of at most 20 DER octets.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// A fresh random serial: 16 bytes from the OS RNG with the top bit cleared (positive) and
    /// the next bit set, so it is never zero and always encodes in exactly 16 octets.
    pub fn random() -> Serial {
        let mut bytes = [0u8; RANDOM_LEN];
        // The OS RNG failing is not recoverable; ring itself treats it as fatal.
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the OS random number generator failed");
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Serial(bytes.to_vec())
    }

    /// Parses hex (either case, no separators). Rejects empty input, non-hex characters, zero,
    /// and values longer than 20 DER octets.
    pub fn from_hex(s: &str) -> Result<Serial> {
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        let padded;
        let even = if s.len() % 2 == 1 {
            padded = format!("0{s}");
            padded.as_str()
        } else {
            s
        };
        let bytes = hex::decode(even).map_err(|_| invalid("not hexadecimal"))?;
        Self::from_magnitude(&bytes)
    }

    /// Builds a serial from big-endian magnitude bytes (leading zeros allowed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Serial> {
        Self::from_magnitude(bytes)
    }

    fn from_magnitude(bytes: &[u8]) -> Result<Serial> {
        let canonical = strip_leading_zeros(bytes);
        if canonical.is_empty() {
            return Err(invalid("zero is not a positive serial"));
        }
        let sign_octet = usize::from(canonical[0] & 0x80 != 0);
        if canonical.len() + sign_octet > MAX_DER_OCTETS {
            return Err(invalid("longer than 20 octets"));
        }
        Ok(Serial(canonical.to_vec()))
    }

    /// Reads a serial from the content octets of a DER INTEGER as found in a certificate,
    /// without the RFC checks (foreign certificates may carry odd serials; they still display).
    pub(crate) fn from_der_content(raw: &[u8]) -> Serial {
        let canonical = strip_leading_zeros(raw);
        if canonical.is_empty() {
            Serial(vec![0])
        } else {
            Serial(canonical.to_vec())
        }
    }

    /// Lower-case hex without separators, as stored and displayed.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// The big-endian magnitude bytes, without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

fn invalid(detail: &str) -> CryptoError {
    CryptoError::InvalidSerial {
        detail: detail.to_owned(),
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Serial {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Serial> {
        Serial::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_positive_sixteen_bytes_and_distinct() {
        let a = Serial::random();
        let b = Serial::random();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes().len(), 16);
        assert_eq!(a.as_bytes()[0] & 0x80, 0);
        assert_eq!(a.to_hex().len(), 32);
    }

    #[test]
    fn hex_round_trip_is_canonical() {
        let s = Serial::from_hex("00AbC1").expect("valid");
        assert_eq!(s.to_hex(), "abc1");
        assert_eq!(s.to_string(), "abc1");
        assert_eq!(
            "abc".parse::<Serial>().expect("odd length").to_hex(),
            "0abc"
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "zz", "00", "12 34", &"7f".repeat(21)] {
            assert!(
                matches!(
                    Serial::from_hex(bad),
                    Err(CryptoError::InvalidSerial { .. })
                ),
                "{bad:?} accepted"
            );
        }
        // 20 bytes with the top bit set needs a 21st sign octet.
        assert!(Serial::from_hex(&"ff".repeat(20)).is_err());
        assert!(Serial::from_hex(&"7f".repeat(20)).is_ok());
    }

    #[test]
    fn der_content_drops_sign_octet() {
        assert_eq!(
            Serial::from_der_content(&[0x00, 0x80, 0x01]).to_hex(),
            "8001"
        );
    }
}
