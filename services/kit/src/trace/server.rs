//! The server side: a span around every request a listener serves, gRPC or REST.

use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty};

use super::{
    REQUEST_ID_HEADER, RequestId, context,
    outcome::{Side, TracedBody, record_grpc_status, record_http_status},
};

/// Wraps each request in a span: `rpc` for gRPC (`rpc.service`, `rpc.method`), `rest` for
/// REST (`http.route`), both with `request_id` and with `tenant` and `principal` for the auth
/// layer to fill in, continuing the caller's trace. It settles the request id (the caller's
/// `x-request-id` when sane, else a fresh one), writes it back on the request (as a header, so
/// it travels on to other roles, and as a [`RequestId`] extension) and echoes it on the
/// response. Probes and scrapes get DEBUG spans, so they stay out of traces at the default
/// filter.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanLayer;

impl<S> Layer<S> for SpanLayer {
    type Service = SpanService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SpanService { inner }
    }
}

/// The service [`SpanLayer`] produces.
#[derive(Debug, Clone)]
pub struct SpanService<S> {
    inner: S,
}

/// Probe and scrape endpoints.
fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
        || path.starts_with("/grpc.health.v1.Health/")
}

/// True for gRPC requests (`application/grpc`, `application/grpc+proto`, …).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// `(service, method)` of a gRPC path `/pkg.Service/Method`.
pub(crate) fn grpc_method(path: &str) -> (&str, &str) {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

macro_rules! grpc_span {
    ($level:expr, $service:expr, $method:expr, $id:expr) => {
        tracing::span!(
            $level,
            "rpc",
            otel.name = %format_args!("{}/{}", $service, $method),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %$service,
            rpc.method = %$method,
            request_id = %$id,
            tenant = Empty,
            principal = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        )
    };
}

macro_rules! rest_span {
    ($level:expr, $name:expr, $method:expr, $route:expr, $path:expr, $id:expr) => {
        tracing::span!(
            $level,
            "rest",
            otel.name = %$name,
            otel.kind = "server",
            http.request.method = %$method,
            http.route = $route,
            url.path = %$path,
            request_id = %$id,
            tenant = Empty,
            principal = Empty,
            http.response.status_code = Empty,
            otel.status_code = Empty,
        )
    };
}

fn server_span<B>(request: &http::Request<B>, id: &RequestId) -> Span {
    let path = request.uri().path();
    let quiet = is_operational(path);
    if is_grpc(request.headers()) {
        let (service, method) = grpc_method(path);
        return if quiet {
            grpc_span!(tracing::Level::DEBUG, service, method, id)
        } else {
            grpc_span!(tracing::Level::INFO, service, method, id)
        };
    }
    let method = request.method();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    // `POST /api/v1/certificates`: the route template, never the concrete path (ids in it
    // would make every span name unique).
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    if quiet {
        rest_span!(tracing::Level::DEBUG, name, method, route, path, id)
    } else {
        rest_span!(tracing::Level::INFO, name, method, route, path, id)
    }
}

impl<S, B, RB> Service<http::Request<B>> for SpanService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let id = RequestId::from_headers(request.headers());
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, id.header_value());
        let grpc = is_grpc(request.headers());
        let span = server_span(&request, &id);
        context::continue_trace(&span, request.headers());
        request.extensions_mut().insert(id.clone());
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            let mut response = future.instrument(span.clone()).await?;
            response
                .headers_mut()
                .insert(REQUEST_ID_HEADER, id.header_value());
            let trailers = if grpc {
                let known = record_grpc_status(&span, Side::Server, response.headers());
                (!known).then_some(Side::Server)
            } else {
                record_http_status(&span, response.status());
                None
            };
            Ok(response.map(|body| TracedBody::new(body, span, trailers)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Empty;
    use tower::ServiceExt;

    use super::*;

    /// Serves one request through [`SpanLayer`]; returns the id the handler saw (header and
    /// extension, which must agree) and the one echoed on the response.
    async fn round_trip(sent: Option<&[u8]>) -> (String, String) {
        let handler = tower::service_fn(|request: http::Request<()>| async move {
            let header = request.headers()[REQUEST_ID_HEADER]
                .to_str()
                .map(str::to_owned);
            let extension = request
                .extensions()
                .get::<RequestId>()
                .map(|id| id.to_string());
            assert_eq!(header.as_deref().ok(), extension.as_deref());
            let mut response = http::Response::new(Empty::<Bytes>::new());
            if let Ok(v) = http::HeaderValue::from_str(&header.unwrap_or_default()) {
                response.headers_mut().insert("x-seen", v);
            }
            Ok::<_, Infallible>(response)
        });
        let mut request = http::Request::builder().uri("/api/v1/certificates");
        if let Some(sent) = sent {
            request = request.header(REQUEST_ID_HEADER, sent);
        }
        let response = SpanLayer
            .layer(handler)
            .oneshot(request.body(()).expect("a request"))
            .await
            .expect("infallible");
        let header = |name: &str| {
            response.headers()[name]
                .to_str()
                .expect("ASCII")
                .to_string()
        };
        (header("x-seen"), header(REQUEST_ID_HEADER))
    }

    #[tokio::test]
    async fn a_sane_request_id_is_passed_on_and_echoed() {
        let (seen, echoed) = round_trip(Some(b"client-7f3a")).await;
        assert_eq!(seen, "client-7f3a");
        assert_eq!(echoed, "client-7f3a");
    }

    #[tokio::test]
    async fn a_request_id_is_made_when_absent() {
        let (seen, echoed) = round_trip(None).await;
        assert!(uuid::Uuid::parse_str(&seen).is_ok(), "{seen}");
        assert_eq!(echoed, seen);
    }

    #[tokio::test]
    async fn a_bad_request_id_is_replaced() {
        let long = vec![b'a'; RequestId::MAX_LEN + 1];
        for bad in [&b"two words"[..], &long, "caf\u{e9}".as_bytes()] {
            let (seen, echoed) = round_trip(Some(bad)).await;
            assert!(uuid::Uuid::parse_str(&seen).is_ok(), "{bad:?} gave {seen}");
            assert_eq!(echoed, seen);
        }
    }

    #[test]
    fn grpc_paths_split_into_service_and_method() {
        assert_eq!(
            grpc_method("/certmesh.issuance.v1.IssuanceService/Issue"),
            ("certmesh.issuance.v1.IssuanceService", "Issue")
        );
        assert_eq!(grpc_method("/odd"), ("odd", ""));
        assert!(is_operational("/grpc.health.v1.Health/Check"));
        assert!(is_operational("/metrics"));
        assert!(!is_operational("/api/v1/certificates"));
    }
}
