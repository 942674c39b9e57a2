//! The client side: a span around every call this process makes to another role, whose trace
//! context goes out with the call so the role's span joins the same trace.

use std::{
    fmt,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};

use super::{
    REQUEST_ID_HEADER, context,
    outcome::{Side, TracedBody, record_grpc_status},
    server::grpc_method,
};

/// Wraps a channel to another role: each call gets a `call` span (`otel.kind = client`, child
/// of whatever span makes the call) whose context is injected as `traceparent`/`tracestate`,
/// replacing any the original caller sent. The request id travels as the request already
/// carries it (`x-request-id`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientLayer;

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientService { inner }
    }
}

/// The service [`ClientLayer`] produces.
#[derive(Debug, Clone)]
pub struct ClientService<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for ClientService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: fmt::Display,
{
    type Response = http::Response<TracedBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (service, method) = grpc_method(request.uri().path());
        let span = tracing::info_span!(
            "call",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            request_id = Empty,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        if let Some(id) = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            span.record("request_id", id);
        }
        context::inject(&span, request.headers_mut());
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(async move {
            match future.instrument(span.clone()).await {
                Ok(response) => {
                    let known = record_grpc_status(&span, Side::Client, response.headers());
                    let trailers = (!known).then_some(Side::Client);
                    Ok(response.map(|body| TracedBody::new(body, span, trailers)))
                }
                Err(e) => {
                    span.record("otel.status_description", tracing::field::display(&e));
                    Err(e)
                }
            }
        })
    }
}
