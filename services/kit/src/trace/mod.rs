//! Request tracing: a `tracing` span around every request a process serves and every call it
//! makes to another role, one request id per request, and the W3C trace context carried from
//! the gateway to the roles.
//!
//! Log lines a handler writes carry its span's fields (the RPC or route, the request id, the
//! tenant and principal once the auth layer has verified the token). When the binary installs
//! an OpenTelemetry layer (an OTLP endpoint is configured), the same spans are exported, a
//! role's server span is the child of the gateway's client span, and the outcome (gRPC or HTTP
//! status) is recorded as the response or its trailers arrive.

mod client;
mod context;
mod outcome;
mod request_id;
mod server;

pub use client::{ClientLayer, ClientService};
pub use outcome::TracedBody;
pub use request_id::{REQUEST_ID_HEADER, RequestId};
pub use server::{SpanLayer, SpanService};

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Empty;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
    use tower::{Layer, ServiceExt};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn grpc_request() -> http::request::Builder {
        http::Request::builder()
            .uri("/certmesh.test.v1.Test/Call")
            .header(http::header::CONTENT_TYPE, "application/grpc")
    }

    /// The trace id of the current span, as hex.
    fn current_trace_id() -> String {
        tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string()
    }

    #[tokio::test]
    async fn the_trace_continues_from_the_caller_through_the_gateway_to_the_role() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _default = tracing::subscriber::set_default(subscriber);
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

        // The role reports the trace it joined and the traceparent it was sent.
        let role = SpanLayer.layer(tower::service_fn(|request: http::Request<()>| async move {
            let mut response = http::Response::new(Empty::<Bytes>::new());
            let headers = response.headers_mut();
            headers.insert("x-trace", current_trace_id().parse().expect("hex"));
            headers.insert("x-parent", request.headers()["traceparent"].clone());
            headers.insert("x-id", request.headers()[REQUEST_ID_HEADER].clone());
            Ok::<_, Infallible>(response)
        }));
        // The gateway forwards to the role through the client layer.
        let gateway = SpanLayer.layer(tower::service_fn(move |request: http::Request<()>| {
            let role = ClientLayer.layer(role.clone());
            async move {
                let gateway_trace = current_trace_id();
                let mut response = role.oneshot(request).await?;
                response
                    .headers_mut()
                    .insert("x-gateway-trace", gateway_trace.parse().expect("hex"));
                Ok::<_, Infallible>(response)
            }
        }));
        let request = grpc_request()
            .header(
                "traceparent",
                format!("00-{CALLER_TRACE}-00f067aa0ba902b7-01"),
            )
            .header(REQUEST_ID_HEADER, "trace-test-1")
            .body(())
            .expect("a request");
        let response = gateway.oneshot(request).await.expect("infallible");
        let header = |name: &str| response.headers()[name].to_str().expect("ASCII").to_owned();

        assert_eq!(header("x-gateway-trace"), CALLER_TRACE);
        assert_eq!(header("x-trace"), CALLER_TRACE);
        let parent = header("x-parent");
        assert!(
            parent.starts_with(&format!("00-{CALLER_TRACE}-")),
            "{parent}"
        );
        assert!(
            !parent.contains("00f067aa0ba902b7"),
            "the role's parent is the gateway's call span, not the caller's: {parent}"
        );
        assert_eq!(header("x-id"), "trace-test-1");
        assert_eq!(header(REQUEST_ID_HEADER), "trace-test-1");
    }
}
