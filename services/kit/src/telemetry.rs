//! Logging setup, and the hook for OpenTelemetry export. Log lines are sentences; identifiers
//! go in fields.
//!
//! The exporter itself (OTLP over gRPC) is built by the binary, which passes its tracer here;
//! kit only bridges `tracing` spans to it, so crates that log need no exporter.

use opentelemetry::trace::{Tracer, noop::NoopTracer};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// Install the global subscriber: `CERTMESH_LOG` (or `RUST_LOG`) filters, default `info`;
/// `json` switches to one JSON object per line for log shippers.
pub fn init(json: bool) {
    init_with(json, None::<NoopTracer>);
}

/// [`init`], and with a `tracer` every span that passes the filter is also an OpenTelemetry
/// span handed to it (the binary's OTLP exporter).
pub fn init_with<T>(json: bool, tracer: Option<T>)
where
    T: Tracer + Send + Sync + 'static,
    T::Span: Send + Sync,
{
    let filter = std::env::var("CERTMESH_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn"));
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = if json {
        registry
            .with(fmt::layer().json().with_target(false))
            .try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
    // A subscriber set earlier (tests) is fine.
    let _ = result;
}
