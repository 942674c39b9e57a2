//! A small strict DER reader and writer for the few structures rcgen and x509-parser do not
//! cover: OCSP requests (untrusted input) and OCSP responses (built per request, so cheap).
//!
//! The reader accepts only DER (X.690 §10): low tag numbers, definite minimal lengths, content
//! within bounds. It never panics and never allocates; a structure is walked with one
//! [`Reader`] per constructed value, so nesting depth is bounded by the caller's code, not by the
//! input.

use chrono::{DateTime, Datelike, Timelike, Utc};

pub(crate) const BOOLEAN: u8 = 0x01;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const NULL: u8 = 0x05;
pub(crate) const OID: u8 = 0x06;
pub(crate) const ENUMERATED: u8 = 0x0a;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
pub(crate) const SEQUENCE: u8 = 0x30;

/// Context-specific constructed tag `[n]` (EXPLICIT tagging, or IMPLICIT over a SEQUENCE).
pub(crate) const fn context_constructed(n: u8) -> u8 {
    0xa0 | n
}

/// Context-specific primitive tag `[n]` (IMPLICIT over a primitive type).
pub(crate) const fn context_primitive(n: u8) -> u8 {
    0x80 | n
}

/// Why input is not the DER expected; static, so rejecting costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DerError(pub(crate) &'static str);

pub(crate) type DerResult<T> = std::result::Result<T, DerError>;

/// One decoded element: its content octets and its whole encoding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tlv<'a> {
    pub(crate) content: &'a [u8],
    pub(crate) raw: &'a [u8],
}

/// Reads consecutive DER elements from a byte slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The tag of the next element, without consuming it.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next element, whatever its tag.
    pub(crate) fn read_any(&mut self) -> DerResult<Tlv<'a>> {
        let (&tag, rest) = self.data.split_first().ok_or(DerError("unexpected end"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("high tag number form"));
        }
        let (len, rest) = read_length(rest)?;
        if len > rest.len() {
            return Err(DerError("length beyond the input"));
        }
        let header = self.data.len() - rest.len();
        let (raw, remaining) = self.data.split_at(header + len);
        self.data = remaining;
        Ok(Tlv {
            content: &raw[header..],
            raw,
        })
    }

    /// The next element, which must have `tag`.
    pub(crate) fn read_tlv(&mut self, tag: u8) -> DerResult<Tlv<'a>> {
        if self.peek_tag() != Some(tag) {
            return Err(DerError("unexpected tag"));
        }
        self.read_any()
    }

    /// The content of the next element, which must have `tag`.
    pub(crate) fn read(&mut self, tag: u8) -> DerResult<&'a [u8]> {
        self.read_tlv(tag).map(|tlv| tlv.content)
    }

    /// The content of the next element if it has `tag` (an OPTIONAL field).
    pub(crate) fn read_optional(&mut self, tag: u8) -> DerResult<Option<&'a [u8]>> {
        if self.peek_tag() == Some(tag) {
            self.read(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails unless everything was read.
    pub(crate) fn finish(&self) -> DerResult<()> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DerError("trailing data"))
        }
    }
}

/// X.690 §10.1: definite form, minimal number of octets; at most 4 length octets.
fn read_length(data: &[u8]) -> DerResult<(usize, &[u8])> {
    let (&first, rest) = data.split_first().ok_or(DerError("missing length"))?;
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 {
        return Err(DerError("indefinite length"));
    }
    if n > 4 || n > rest.len() {
        return Err(DerError("length too long"));
    }
    let (octets, rest) = rest.split_at(n);
    if octets[0] == 0 {
        return Err(DerError("non-minimal length"));
    }
    let len = octets
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    if len < 0x80 {
        return Err(DerError("non-minimal length"));
    }
    Ok((len, rest))
}

/// The content of a DER INTEGER must be non-empty and minimal (X.690 §8.3.2).
pub(crate) fn check_integer(content: &[u8]) -> DerResult<()> {
    match content {
        [] => Err(DerError("empty INTEGER")),
        [0x00, next, ..] if next & 0x80 == 0 => Err(DerError("non-minimal INTEGER")),
        [0xff, next, ..] if next & 0x80 != 0 => Err(DerError("non-minimal INTEGER")),
        _ => Ok(()),
    }
}

/// A DER BOOLEAN's value (X.690 §11.1: FALSE is 0x00, TRUE is 0xFF).
pub(crate) fn boolean(content: &[u8]) -> DerResult<bool> {
    match content {
        [0x00] => Ok(false),
        [0xff] => Ok(true),
        _ => Err(DerError("BOOLEAN is not DER")),
    }
}

/// A non-negative INTEGER content that fits a u8.
pub(crate) fn small_uint(content: &[u8]) -> DerResult<u8> {
    check_integer(content)?;
    match content {
        [b] if b & 0x80 == 0 => Ok(*b),
        [0x00, b] => Ok(*b),
        _ => Err(DerError("integer out of range")),
    }
}

/// Appends DER length octets.
pub(crate) fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // Lossless: checked just above.
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    // At most size_of::<usize>() octets, so the count fits the 7 bits.
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends one element with the given content.
pub(crate) fn tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    push_length(out, content.len());
    out.extend_from_slice(content);
}

/// Appends one constructed element whose content `f` writes; the length is patched in after.
pub(crate) fn nested<R>(out: &mut Vec<u8>, tag: u8, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    out.push(tag);
    let len_at = out.len();
    out.push(0);
    let result = f(out);
    let len = out.len() - len_at - 1;
    if len < 0x80 {
        out[len_at] = len as u8;
    } else {
        let mut octets = Vec::with_capacity(9);
        push_length(&mut octets, len);
        out.splice(len_at..=len_at, octets);
    }
    result
}

/// Appends a GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2: whole seconds, UTC);
/// `None` if the year is outside 0000–9999.
pub(crate) fn generalized_time(out: &mut Vec<u8>, t: DateTime<Utc>) -> Option<()> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    out.extend_from_slice(&[GENERALIZED_TIME, 15]);
    let digits = |out: &mut Vec<u8>, v: u32, n: u32| {
        for i in (0..n).rev() {
            // A single decimal digit: always below 10.
            out.push(b'0' + (v / 10u32.pow(i) % 10) as u8);
        }
    };
    digits(out, year, 4);
    digits(out, t.month(), 2);
    digits(out, t.day(), 2);
    digits(out, t.hour(), 2);
    digits(out, t.minute(), 2);
    // A leap second (chrono's second 59 with nanosecond ≥ 1e9) is written as :59.
    digits(out, t.second(), 2);
    out.push(b'Z');
    Some(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 40_000_000] {
            let mut out = Vec::new();
            tlv(&mut out, OCTET_STRING, &vec![7u8; len]);
            let mut r = Reader::new(&out);
            let tlv = r.read_tlv(OCTET_STRING).expect("reads");
            assert_eq!(tlv.content.len(), len);
            assert_eq!(tlv.raw.len(), out.len());
            r.finish().expect("all read");

            let mut nested_out = Vec::new();
            nested(&mut nested_out, SEQUENCE, |o| o.extend(vec![7u8; len]));
            let mut plain = Vec::new();
            tlv_seq(&mut plain, len);
            assert_eq!(nested_out, plain, "{len}");
        }
    }

    fn tlv_seq(out: &mut Vec<u8>, len: usize) {
        tlv(out, SEQUENCE, &vec![7u8; len]);
    }

    #[test]
    fn reader_rejects_non_der() {
        for bad in [
            &[0x30, 0x80, 0x00, 0x00][..], // indefinite
            &[0x30, 0x81, 0x05, 1, 2, 3, 4, 5],
            &[0x30, 0x82, 0x00, 0x81],
            &[0x1f, 0x01, 0x00], // high tag number
            &[0x30, 0x03, 0x01],
            &[0x30],
            &[0x30, 0x85, 1, 0, 0, 0, 0],
        ] {
            assert!(Reader::new(bad).read_any().is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn integers_and_booleans() {
        assert!(check_integer(&[]).is_err());
        assert!(check_integer(&[0x00, 0x7f]).is_err());
        assert!(check_integer(&[0xff, 0x80]).is_err());
        assert!(check_integer(&[0x00, 0x80]).is_ok());
        assert!(check_integer(&[0x00]).is_ok());
        assert_eq!(small_uint(&[0x00, 0xff]), Ok(255));
        assert!(small_uint(&[0x80]).is_err());
        assert_eq!(boolean(&[0xff]), Ok(true));
        assert!(boolean(&[0x01]).is_err());
    }

    #[test]
    fn generalized_time_is_whole_seconds_utc() {
        let t = Utc
            .with_ymd_and_hms(2031, 2, 3, 4, 5, 6)
            .single()
            .expect("valid")
            + chrono::Duration::milliseconds(789);
        let mut out = Vec::new();
        generalized_time(&mut out, t).expect("in range");
        assert_eq!(&out[..2], &[GENERALIZED_TIME, 15]);
        assert_eq!(&out[2..], b"20310203040506Z");
        let far = Utc
            .with_ymd_and_hms(10_000, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        assert!(generalized_time(&mut Vec::new(), far).is_none());
    }
}
