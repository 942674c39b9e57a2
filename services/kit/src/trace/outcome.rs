//! Recording how a request ended on its span: the gRPC status (from the headers of a
//! trailers-only answer, or from the trailers at the end of the body) or the HTTP status.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tracing::Span;

/// Which end of a call a span stands for; it decides which gRPC codes are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    Client,
}

/// Whether `code` marks the span failed. OpenTelemetry's gRPC conventions: a client span fails
/// on any code but OK; a server span only on codes that mean the server failed, not the caller.
fn is_error(side: Side, code: Code) -> bool {
    match side {
        Side::Client => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    }
}

/// Records `grpc-status` (and `grpc-message` when it fails the span) from `headers` on `span`;
/// false when `headers` carry no status.
pub(crate) fn record_grpc_status(span: &Span, side: Side, headers: &HeaderMap) -> bool {
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return false;
    };
    span.record("rpc.grpc.status_code", status.code() as i32);
    if is_error(side, status.code()) {
        span.record("otel.status_code", "error");
        if !status.message().is_empty() {
            span.record("otel.status_description", status.message());
        }
    }
    true
}

/// Records an HTTP status on a REST span; 5xx fails it (the server's fault, not the caller's).
pub(crate) fn record_http_status(span: &Span, status: http::StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// A response body that keeps its request's span open until the body is done (so a streaming
/// call's span lasts as long as the stream) and records the gRPC status from the trailers.
#[derive(Debug)]
pub struct TracedBody<B> {
    inner: B,
    span: Span,
    /// Set while the gRPC status is still to come in the trailers.
    trailers: Option<Side>,
}

impl<B> TracedBody<B> {
    pub(crate) fn new(inner: B, span: Span, trailers: Option<Side>) -> Self {
        Self {
            inner,
            span,
            trailers,
        }
    }
}

impl<B> Body for TracedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Some(side), Poll::Ready(Some(Ok(frame)))) = (this.trailers, &polled)
            && let Some(trailers) = frame.trailers_ref()
            && record_grpc_status(&this.span, side, trailers)
        {
            this.trailers = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_spans_fail_only_on_server_faults() {
        assert!(!is_error(Side::Server, Code::Ok));
        assert!(!is_error(Side::Server, Code::InvalidArgument));
        assert!(!is_error(Side::Server, Code::PermissionDenied));
        assert!(is_error(Side::Server, Code::Internal));
        assert!(is_error(Side::Server, Code::Unavailable));
        assert!(is_error(Side::Client, Code::NotFound));
        assert!(!is_error(Side::Client, Code::Ok));
    }
}
