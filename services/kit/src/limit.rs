//! Per-principal request rate limits as a tower layer.
//!
//! The gateway may run without a database (split mode), so the limit cannot key on the
//! principal itself; it keys on the credential instead: the SHA-256 of the bearer token, which is
//! per-principal in practice since every token belongs to one principal. Only values shaped like
//! a certmesh token (`cmt_` and 64 lowercase hex characters) get a bucket of their own; requests
//! with no token or any other value share one "anonymous" bucket, so a flood of garbage
//! credentials is limited too and cannot grow the table.
//!
//! Each key has a token bucket of `burst` tokens refilled at `per_second`, kept as its
//! theoretical arrival time (GCRA, the same bucket in one `Instant` per key, with integer
//! arithmetic). The table holds at most [`MAX_KEYS`] keys; when it is full, idle buckets (which
//! are full again, so forgetting them changes nothing) are dropped, and if none are idle a new
//! key shares the anonymous bucket until some are. Time is `tokio::time::Instant`, so tests
//! drive it with `#[tokio::test(start_paused = true)]`.
//!
//! A limited request is answered without reaching the wrapped service: gRPC requests get a
//! trailers-only `RESOURCE_EXHAUSTED` with reason `RATE_LIMITED`, REST requests get HTTP 429 with
//! the JSON error body; both carry `Retry-After` in whole seconds.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    BoxError,
    body::{Body, HttpBody},
    response::IntoResponse,
};
use bytes::Bytes;
use certmesh_store::tokens::TOKEN_PREFIX;
use futures::future::{Either, MapOk, Ready, TryFutureExt, ready};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tonic::Code;
use tower::{Layer, Service};

use crate::reason::{Reason, status};

/// Most keys the table holds; past it, idle buckets are dropped.
pub const MAX_KEYS: usize = 100_000;

/// How often a full table may be swept, so a flood of new keys cannot make every request scan it.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Length of the hex part of a certmesh token.
const TOKEN_HEX_LEN: usize = 64;

/// How fast one caller may send requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (the bucket's refill rate).
    pub per_second: f64,
    /// Requests that may be sent at once after an idle spell (the bucket's capacity).
    pub burst: u32,
}

/// A [`RateLimit`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// The rate is zero, negative, not finite, or too small to represent.
    #[error("rate limit per_second must be a finite number above 0 (got {0})")]
    PerSecond(f64),
    /// The burst is zero: no request could ever pass.
    #[error("rate limit burst must be at least 1")]
    Burst,
}

impl RateLimit {
    /// `self` if it can work: `per_second` finite and above 0, `burst` at least 1.
    pub fn validate(self) -> Result<Self, RateLimitError> {
        self.gcra().map(|_| self)
    }

    /// The limit as GCRA parameters: time per token, and how far ahead of now the bucket may
    /// run (`burst - 1` tokens).
    fn gcra(self) -> Result<Gcra, RateLimitError> {
        let bad_rate = RateLimitError::PerSecond(self.per_second);
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(bad_rate);
        }
        if self.burst == 0 {
            return Err(RateLimitError::Burst);
        }
        let interval =
            Duration::try_from_secs_f64(1.0 / self.per_second).map_err(|_| bad_rate.clone())?;
        let tolerance = interval.checked_mul(self.burst - 1).ok_or(bad_rate)?;
        Ok(Gcra {
            interval,
            tolerance,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval: Duration,
    tolerance: Duration,
}

impl Gcra {
    /// Take one token from the bucket whose theoretical arrival time is `tat` (`None`: full).
    /// `Ok` with the new arrival time, or `Err` with how long until a token is available.
    fn take(self, tat: Option<Instant>, now: Instant) -> Result<Instant, Duration> {
        let tat = tat.map_or(now, |t| t.max(now));
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        // Only reachable with absurd rates; refuse rather than stop counting.
        tat.checked_add(self.interval).ok_or(self.interval)
    }
}

/// Whose bucket a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// No token, or a value that is not shaped like a certmesh token.
    Anonymous,
    /// SHA-256 of a token-shaped bearer credential.
    Token([u8; 32]),
}

impl Key {
    fn of(headers: &HeaderMap) -> Self {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| looks_like_token(t))
            .map_or(Key::Anonymous, |t| Key::Token(Sha256::digest(t).into()))
    }
}

/// `cmt_` and 64 lowercase hex characters, the shape `tokens::create` mints.
fn looks_like_token(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|hex| {
        hex.len() == TOKEN_HEX_LEN && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The buckets, shared by every service one layer makes.
#[derive(Debug)]
struct Limiter {
    gcra: Gcra,
    max_keys: usize,
    state: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    anonymous: Option<Instant>,
    tokens: HashMap<[u8; 32], Instant>,
    last_sweep: Option<Instant>,
}

impl Limiter {
    /// Take a token for `key` at `now`, or say how long until one is available.
    fn check(&self, key: Key, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let hash = match key {
            Key::Anonymous => return buckets.take_anonymous(self.gcra, now),
            Key::Token(hash) => hash,
        };
        if let Some(tat) = buckets.tokens.get_mut(&hash) {
            *tat = self.gcra.take(Some(*tat), now)?;
            return Ok(());
        }
        if buckets.tokens.len() >= self.max_keys && !buckets.sweep(now, self.max_keys) {
            return buckets.take_anonymous(self.gcra, now);
        }
        let tat = self.gcra.take(None, now)?;
        buckets.tokens.insert(hash, tat);
        Ok(())
    }
}

impl Buckets {
    fn take_anonymous(&mut self, gcra: Gcra, now: Instant) -> Result<(), Duration> {
        self.anonymous = Some(gcra.take(self.anonymous, now)?);
        Ok(())
    }

    /// Drop idle buckets (at most once per [`SWEEP_INTERVAL`]); true if there is room after.
    fn sweep(&mut self, now: Instant, max_keys: usize) -> bool {
        if self.last_sweep.is_none_or(|at| now - at >= SWEEP_INTERVAL) {
            self.last_sweep = Some(now);
            // A bucket whose arrival time has passed is full: dropping it forgets nothing.
            self.tokens.retain(|_, tat| *tat > now);
            if self.tokens.len() >= max_keys {
                tracing::warn!(
                    keys = self.tokens.len(),
                    "Rate-limit table is full; new callers share the anonymous bucket."
                );
            }
        }
        self.tokens.len() < max_keys
    }
}

/// Layer that limits each caller to a [`RateLimit`]. Every service it makes (for example one
/// per route, under `axum::Router::layer`) draws from the same buckets.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
}

impl RateLimitLayer {
    /// A layer enforcing `limit`, or why `limit` cannot work.
    pub fn new(limit: RateLimit) -> Result<Self, RateLimitError> {
        Ok(Self {
            limiter: Arc::new(Limiter {
                gcra: limit.gcra()?,
                max_keys: MAX_KEYS,
                state: Mutex::default(),
            }),
        })
    }

    /// The same limit with a table of at most `max_keys` keys (at least 1) instead of
    /// [`MAX_KEYS`]. Call before the layer is cloned or applied.
    pub fn with_max_keys(self, max_keys: usize) -> Self {
        Self {
            limiter: Arc::new(Limiter {
                gcra: self.limiter.gcra,
                max_keys: max_keys.max(1),
                state: Mutex::default(),
            }),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] produces.
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

type IntoAxum<B> = fn(http::Response<B>) -> http::Response<Body>;

/// The future of [`RateLimitService`]: the refusal, or the wrapped service's answer.
pub type RateLimitFuture<F, B, E> =
    Either<Ready<Result<http::Response<Body>, E>>, MapOk<F, IntoAxum<B>>>;

impl<S, B, ResBody> Service<http::Request<B>> for RateLimitService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let key = Key::of(request.headers());
        match self.limiter.check(key, Instant::now()) {
            Ok(()) => {
                let into_axum: IntoAxum<ResBody> = |response| response.map(Body::new);
                Either::Right(self.inner.call(request).map_ok(into_axum))
            }
            Err(wait) => {
                tracing::debug!(path = %request.uri().path(), "Request rate limited.");
                Either::Left(ready(Ok(refusal(is_grpc(request.headers()), wait))))
            }
        }
    }
}

/// A request is gRPC when its content type says so.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Whole seconds until a token is available, rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The answer to a limited request, in the protocol it came in.
fn refusal(grpc: bool, wait: Duration) -> http::Response<Body> {
    let secs = retry_after_secs(wait);
    let message = format!("request rate limit exceeded; retry after {secs} s");
    let mut response = if grpc {
        status(Code::ResourceExhausted, Reason::RateLimited, message).into_http::<Body>()
    } else {
        let body = serde_json::json!({
            "code": "RESOURCE_EXHAUSTED",
            "message": message,
            "reason": Reason::RateLimited.as_str(),
        });
        (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    const ONE_PER_SECOND_BURST_TWO: RateLimit = RateLimit {
        per_second: 1.0,
        burst: 2,
    };

    fn token(c: char) -> String {
        format!("{TOKEN_PREFIX}{}", c.to_string().repeat(TOKEN_HEX_LEN))
    }

    fn key(t: &str) -> Key {
        Key::Token(Sha256::digest(t).into())
    }

    fn limiter(limit: RateLimit, max_keys: usize) -> Arc<Limiter> {
        RateLimitLayer::new(limit)
            .expect("valid")
            .with_max_keys(max_keys)
            .limiter
    }

    #[test]
    fn validate_rejects_limits_that_cannot_work() {
        for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-30] {
            let limit = RateLimit {
                per_second,
                burst: 1,
            };
            assert!(
                matches!(limit.validate(), Err(RateLimitError::PerSecond(_))),
                "{per_second}"
            );
        }
        let no_burst = RateLimit {
            per_second: 1.0,
            burst: 0,
        };
        assert_eq!(no_burst.validate(), Err(RateLimitError::Burst));
        assert!(ONE_PER_SECOND_BURST_TWO.validate().is_ok());
        assert!(
            RateLimit {
                per_second: 0.001,
                burst: u32::MAX
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn only_token_shaped_credentials_get_their_own_key() {
        let good = token('a');
        let mut headers = HeaderMap::new();
        assert_eq!(Key::of(&headers), Key::Anonymous);
        for (value, expected) in [
            (format!("Bearer {good}"), key(&good)),
            (format!("bearer {good} "), key(&good)),
            (good.clone(), Key::Anonymous),
            ("Bearer garbage".to_string(), Key::Anonymous),
            (format!("Bearer {}", good.to_uppercase()), Key::Anonymous),
            (format!("Bearer {good}0"), Key::Anonymous),
            (format!("Bearer cmt_{}", "g".repeat(64)), Key::Anonymous),
            (format!("Bearer xyz_{}", "a".repeat(64)), Key::Anonymous),
        ] {
            headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
            assert_eq!(Key::of(&headers), expected, "{value}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(300)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
    }

    #[test]
    fn a_bucket_allows_the_burst_then_refills_at_the_rate() {
        let limiter = limiter(ONE_PER_SECOND_BURST_TWO, MAX_KEYS);
        let a = key(&token('a'));
        let t0 = Instant::now();
        assert_eq!(limiter.check(a, t0), Ok(()));
        assert_eq!(limiter.check(a, t0), Ok(()));
        assert_eq!(limiter.check(a, t0), Err(Duration::from_secs(1)));
        let later = t0 + Duration::from_millis(400);
        assert_eq!(limiter.check(a, later), Err(Duration::from_millis(600)));
        let refilled = t0 + Duration::from_secs(1);
        assert_eq!(limiter.check(a, refilled), Ok(()));
        assert!(limiter.check(a, refilled).is_err());
        // Idle for long: back to a full burst, never more.
        let idle = t0 + Duration::from_secs(60);
        assert_eq!(limiter.check(a, idle), Ok(()));
        assert_eq!(limiter.check(a, idle), Ok(()));
        assert!(limiter.check(a, idle).is_err());
    }

    #[test]
    fn fractional_rates_refill_in_proportion() {
        let limiter = limiter(
            RateLimit {
                per_second: 4.0,
                burst: 1,
            },
            MAX_KEYS,
        );
        let t0 = Instant::now();
        assert_eq!(limiter.check(Key::Anonymous, t0), Ok(()));
        assert_eq!(
            limiter.check(Key::Anonymous, t0),
            Err(Duration::from_millis(250))
        );
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(limiter.check(Key::Anonymous, t1), Ok(()));
    }

    #[test]
    fn keys_are_independent() {
        let limiter = limiter(ONE_PER_SECOND_BURST_TWO, MAX_KEYS);
        let (a, b) = (key(&token('a')), key(&token('b')));
        let now = Instant::now();
        for _ in 0..2 {
            assert_eq!(limiter.check(a, now), Ok(()));
        }
        assert!(limiter.check(a, now).is_err());
        assert_eq!(limiter.check(b, now), Ok(()));
        assert_eq!(limiter.check(Key::Anonymous, now), Ok(()));
    }

    #[test]
    fn a_full_table_drops_idle_buckets_and_otherwise_shares_the_anonymous_bucket() {
        let limiter = limiter(ONE_PER_SECOND_BURST_TWO, 2);
        let t0 = Instant::now();
        let keys: Vec<Key> = ['a', 'b', 'c', 'd'].map(|c| key(&token(c))).to_vec();
        assert_eq!(limiter.check(keys[0], t0), Ok(()));
        assert_eq!(limiter.check(keys[1], t0), Ok(()));
        // Both buckets are still refilling: newcomers draw from the anonymous bucket.
        assert_eq!(limiter.check(keys[2], t0), Ok(()));
        assert_eq!(limiter.check(keys[3], t0), Ok(()));
        assert!(limiter.check(keys[2], t0).is_err());
        assert!(limiter.check(Key::Anonymous, t0).is_err());
        let len = |l: &Limiter| l.state.lock().expect("lock").tokens.len();
        assert_eq!(len(&limiter), 2);
        // Once the first two are full again they are forgotten and the newcomer gets a bucket.
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(limiter.check(keys[2], t1), Ok(()));
        assert_eq!(limiter.check(keys[2], t1), Ok(()));
        assert!(limiter.check(keys[2], t1).is_err());
        assert_eq!(len(&limiter), 1);
    }

    fn ok_service() -> impl Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(|_: http::Request<Body>| async {
            Ok::<_, Infallible>(http::Response::new(Body::from("ok")))
        })
    }

    fn request(grpc: bool) -> http::Request<Body> {
        let builder = http::Request::builder()
            .uri("/x")
            .header(header::AUTHORIZATION, format!("Bearer {}", token('a')));
        let builder = if grpc {
            builder.header(header::CONTENT_TYPE, "application/grpc+proto")
        } else {
            builder.header(header::CONTENT_TYPE, "application/json")
        };
        builder.body(Body::empty()).expect("request")
    }

    #[tokio::test(start_paused = true)]
    async fn rest_refusals_are_429_with_retry_after_and_a_json_body() {
        let layer = RateLimitLayer::new(RateLimit {
            per_second: 0.5,
            burst: 1,
        })
        .expect("valid");
        let service = layer.layer(ok_service());
        let first = service.clone().oneshot(request(false)).await.expect("call");
        assert_eq!(first.status(), StatusCode::OK);
        let refused = service.clone().oneshot(request(false)).await.expect("call");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "2");
        let body = refused
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["code"], "RESOURCE_EXHAUSTED");
        assert_eq!(json["reason"], "RATE_LIMITED");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        tokio::time::advance(Duration::from_secs(2)).await;
        let again = service.oneshot(request(false)).await.expect("call");
        assert_eq!(again.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn grpc_refusals_are_resource_exhausted_with_the_reason() {
        let layer = RateLimitLayer::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        })
        .expect("valid");
        // One layer, two services (as axum makes one per route): the same buckets.
        let first = layer.layer(ok_service()).oneshot(request(true)).await;
        assert_eq!(first.expect("call").status(), StatusCode::OK);
        let refused = layer
            .layer(ok_service())
            .oneshot(request(true))
            .await
            .expect("call");
        assert_eq!(refused.status(), StatusCode::OK);
        assert_eq!(refused.headers()["grpc-status"], "8");
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        let status = tonic::Status::from_header_map(refused.headers()).expect("status");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            crate::reason::reason_of(&status).as_deref(),
            Some("RATE_LIMITED")
        );
    }
}
