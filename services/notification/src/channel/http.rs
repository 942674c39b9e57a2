//! The small HTTP client every HTTP channel posts through, and the validated URL it posts to.
//!
//! One pooled hyper client for the whole process, speaking HTTP/1.1 over plain TCP or rustls
//! (ring, Mozilla roots). A delivery has one deadline, from the [`super::Sender`]'s timeout,
//! that covers connecting, the TLS handshake and the response head; a 2xx head means delivered,
//! whatever the body then does. At most [`MAX_BODY`] bytes of an error answer are read, for the
//! detail.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::header::{CONTENT_TYPE, USER_AGENT};
use ::http::{Request, StatusCode, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{Instant, timeout_at};

use super::error::DeliveryError;

/// Most bytes of a response body read for an error detail.
pub(super) const MAX_BODY: usize = 4096;
/// Longest wait for the body of a 2xx answer.
const DRAIN: Duration = Duration::from_secs(1);
/// Longest URL accepted.
const MAX_URL: usize = 2048;
/// `User-Agent` of every request.
pub(super) const AGENT: &str = concat!("certmesh/", env!("CARGO_PKG_VERSION"));

/// An absolute `http://` or `https://` URL with a host and no `user:password@`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint(Uri);

impl Endpoint {
    /// Parses a URL; the error is the end of a sentence that never repeats the URL, because
    /// the URL may be a secret.
    pub(super) fn parse(s: &str) -> Result<Endpoint, &'static str> {
        if s.len() > MAX_URL {
            return Err("must be at most 2048 bytes");
        }
        let uri: Uri = s.parse().map_err(|_| "is not a valid URL")?;
        let scheme_ok = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
        if !scheme_ok {
            return Err("must be an http:// or https:// URL");
        }
        let Some(authority) = uri.authority() else {
            return Err("must name a host");
        };
        if authority.as_str().contains('@') {
            return Err("must not carry user:password@");
        }
        if authority.host().is_empty() {
            return Err("must name a host");
        }
        Ok(Endpoint(uri))
    }

    /// Like [`Endpoint::parse`], but plain `http://` only to a loopback host: for URLs that
    /// carry a token, or requests that carry a key, which must not cross a network in clear.
    pub(super) fn parse_confidential(s: &str) -> Result<Endpoint, &'static str> {
        let endpoint = Self::parse(s)?;
        if endpoint.is_https() || is_loopback_host(endpoint.host()) {
            Ok(endpoint)
        } else {
            Err("must be an https:// URL (http:// is allowed only to a loopback host)")
        }
    }

    /// The host, as written (an IPv6 literal keeps its brackets).
    pub fn host(&self) -> &str {
        self.0.host().unwrap_or_default()
    }

    fn is_https(&self) -> bool {
        self.0
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    }

    /// The pieces of the URL that may be echoed back by a server and must then be redacted: the
    /// whole URL, its path and query, and each path segment or query value long enough to be a
    /// token.
    pub(super) fn secret_parts(&self) -> Vec<String> {
        let mut parts = vec![self.to_string()];
        if let Some(pq) = self.0.path_and_query() {
            parts.push(pq.as_str().to_owned());
        }
        let path_segments = self.0.path().split('/');
        let query_values = self
            .0
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .map(|kv| kv.split_once('=').map_or(kv, |(_, v)| v));
        parts.extend(
            path_segments
                .chain(query_values)
                .filter(|p| p.len() >= 8)
                .map(str::to_owned),
        );
        parts
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `localhost`, or an IPv4 or IPv6 loopback address (with or without brackets).
pub(super) fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A DNS name of letter-digit-hyphen labels (RFC 1123 §2.1), or an IP address literal.
pub(super) fn is_host_name(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A pooled HTTP/1.1 client with one deadline per request.
#[derive(Clone)]
pub(super) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub(super) fn new(timeout: Duration) -> HttpClient {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(timeout));
        tcp.set_nodelay(true);
        // Explicitly ring: feature unification must not make rustls guess a process default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .expect("the ring provider supports rustls' default protocol versions")
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .build(tls);
        HttpClient { client, timeout }
    }

    /// POSTs a JSON `body` with extra `headers`; 2xx is delivered. `secrets` are scrubbed from
    /// any error detail.
    pub(super) async fn post_json(
        &self,
        url: &Endpoint,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
        secrets: &[&str],
    ) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + self.timeout;
        let request = build_request(url, headers, body).map_err(|e| e.scrubbed(secrets))?;
        self.exchange(request, deadline)
            .await
            .map_err(|e| e.scrubbed(secrets))
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<(), DeliveryError> {
        let response = match timeout_at(deadline, self.client.request(request)).await {
            Err(_) => return Err(self.timed_out()),
            Ok(Err(e)) => return Err(DeliveryError::retryable(error_chain("request failed", &e))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            // Drained briefly so that the connection can go back to the pool; delivered either
            // way, so a slow body must not hold up the answer.
            let drain_until = deadline.min(Instant::now() + DRAIN);
            let _ = timeout_at(drain_until, read_prefix(response.into_body())).await;
            return Ok(());
        }
        let snippet = timeout_at(deadline, read_prefix(response.into_body()))
            .await
            .unwrap_or_default();
        Err(status_error(status, &snippet))
    }

    fn timed_out(&self) -> DeliveryError {
        DeliveryError::retryable(format!(
            "no response within {} ms",
            self.timeout.as_millis()
        ))
    }
}

fn build_request(
    url: &Endpoint,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<Request<Full<Bytes>>, DeliveryError> {
    let mut builder = Request::post(url.0.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, AGENT);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| DeliveryError::permanent("a request header is not valid HTTP"))
}

/// Whether a status may succeed on a later try: RFC 9110 §15.5.9 (408), RFC 8470 §5.2 (425),
/// RFC 6585 §4 (429) and every 5xx.
fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error()
}

fn status_error(status: StatusCode, snippet: &[u8]) -> DeliveryError {
    let text = String::from_utf8_lossy(snippet);
    let detail = if text.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    };
    DeliveryError {
        retryable: retryable_status(status),
        detail,
    }
}

/// Up to [`MAX_BODY`] bytes of the body; a body error ends it early.
async fn read_prefix(mut body: Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < MAX_BODY {
        let Some(Ok(frame)) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY - out.len();
            out.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    out
}

/// `context: error: cause: cause…`, the way an operator can act on it (refused, DNS, TLS).
fn error_chain(context: &str, error: &dyn std::error::Error) -> String {
    let mut text = format!("{context}: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        let ok = Endpoint::parse("https://hooks.example/a/b?x=1").expect("ok");
        assert_eq!(ok.host(), "hooks.example");
        assert_eq!(ok.to_string(), "https://hooks.example/a/b?x=1");
        for bad in [
            "ftp://x/",
            "/relative",
            "https://u:p@x/",
            "not a url",
            "https://",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(Endpoint::parse(&format!("https://x/{}", "a".repeat(MAX_URL))).is_err());
        assert!(Endpoint::parse_confidential("http://hooks.example/x").is_err());
        for local in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]:80/x",
        ] {
            assert!(Endpoint::parse_confidential(local).is_ok(), "{local}");
        }
    }

    #[test]
    fn secret_parts_cover_token_segments() {
        let url = "https://hooks.slack.com/services/T0000/B1111/XXXXXXXXXXXXXXXX?sig=abcdefghij";
        let parts = Endpoint::parse(url).expect("ok").secret_parts();
        for needle in ["XXXXXXXXXXXXXXXX", "abcdefghij", "services", url] {
            assert!(parts.iter().any(|p| p == needle), "{needle} missing");
        }
    }

    #[test]
    fn status_classes() {
        for code in [408, 425, 429, 500, 502, 503] {
            assert!(
                retryable_status(StatusCode::from_u16(code).expect("code")),
                "{code}"
            );
        }
        for code in [301, 400, 401, 403, 404, 410, 422] {
            assert!(
                !retryable_status(StatusCode::from_u16(code).expect("code")),
                "{code}"
            );
        }
        let e = status_error(StatusCode::BAD_REQUEST, b"invalid_payload");
        assert_eq!(e.detail, "HTTP 400 Bad Request: invalid_payload");
    }

    #[test]
    fn host_name_syntax() {
        for ok in ["smtp.example.com", "localhost", "10.0.0.1", "::1", "a-b.c"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in ["", "a..b", "-a.b", "a_b.c", "a b", "[::1]"] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
