//! Request ids: one per request, taken from the caller when it sent a sane one, so a line in a
//! client's log, the gateway's, a role's and the audit trail can be matched up.

use std::fmt;

use http::{HeaderMap, HeaderValue};

/// The header that carries the request id in and out, and on to other roles.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request id: 1 to [`RequestId::MAX_LEN`] visible ASCII characters (no spaces, no
/// controls), so it is safe in a header, a log field and an audit row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Longest id taken from a caller.
    pub const MAX_LEN: usize = 128;

    /// `value` as a request id, or `None` when it is empty, too long or not visible ASCII.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let sane =
            (1..=Self::MAX_LEN).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic);
        if !sane {
            return None;
        }
        HeaderValue::from_bytes(value).ok().map(Self)
    }

    /// A fresh id (a random UUID).
    pub fn generate() -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self(HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown")))
    }

    /// The caller's `x-request-id` when it is sane, else a fresh id.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| Self::parse(v.as_bytes()))
            .unwrap_or_else(Self::generate)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in, so this never falls back.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_bytes(value).expect("a header value"),
        );
        h
    }

    #[test]
    fn a_sane_id_is_kept() {
        let id = RequestId::from_headers(&headers(b"req-42_ABC.x:y"));
        assert_eq!(id.as_str(), "req-42_ABC.x:y");
        let longest = "a".repeat(RequestId::MAX_LEN);
        assert_eq!(
            RequestId::from_headers(&headers(longest.as_bytes())).as_str(),
            longest
        );
    }

    #[test]
    fn a_missing_or_bad_id_is_replaced_by_a_uuid() {
        let too_long = "a".repeat(RequestId::MAX_LEN + 1);
        for h in [
            HeaderMap::new(),
            headers(b""),
            headers(b"has space"),
            headers(b"tab\there"),
            headers("caf\u{e9}".as_bytes()),
            headers(too_long.as_bytes()),
        ] {
            let id = RequestId::from_headers(&h);
            assert!(
                uuid::Uuid::parse_str(id.as_str()).is_ok(),
                "{h:?} gave {id}"
            );
        }
        assert_ne!(RequestId::generate(), RequestId::generate());
    }
}
