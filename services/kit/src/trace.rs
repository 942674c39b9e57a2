//! A `tracing` span around every request, so each log line a handler writes carries the RPC
//! or route it served. (OpenTelemetry export hangs off these spans when it is configured.)

use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::{Instrument, instrument::Instrumented};

/// Wraps each request in an `rpc` span with its method and path.
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

impl<S, B> Service<http::Request<B>> for SpanService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span =
            tracing::info_span!("rpc", method = %request.method(), path = %request.uri().path());
        self.inner.call(request).instrument(span)
    }
}
