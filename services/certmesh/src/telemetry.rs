//! Logs and traces for `certmesh server`: the log subscriber always, the W3C trace-context
//! propagator always, and an OTLP/gRPC span exporter only when an endpoint is configured
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Unset, no exporter
//! is built and nothing connects anywhere.
//!
//! The exporter lives here, in the binary, so the library crates carry only the light
//! OpenTelemetry API (see `certmesh_kit::trace`).

use std::{env, fs};

use anyhow::{Context, bail};
use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithTonicConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tonic::transport::{Certificate, ClientTlsConfig};

/// The tracer provider when export is on; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Install logging (`json` for one JSON object per line) and, when configured, span export
/// for a process running `roles`.
pub fn init(json: bool, roles: &[String]) -> anyhow::Result<Telemetry> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let service = service_name(set("OTEL_SERVICE_NAME"), roles);
    let provider = export_configured()
        .then(|| provider(&service))
        .transpose()?;
    certmesh_kit::telemetry::init_with(json, provider.as_ref().map(|p| p.tracer("certmesh")));
    if provider.is_some() {
        tracing::info!(%service, "Exporting traces over OTLP/gRPC.");
    }
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Export what is still queued and stop the exporter (after the server has drained, so
    /// the last requests' spans go out too).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // Shutting down blocks until the batch processor's thread has exported.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "Flushing traces failed."),
            Err(e) => tracing::warn!(error = %e, "Flushing traces failed."),
        }
    }
}

fn set(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An OTLP endpoint is set and the SDK is not disabled.
fn export_configured() -> bool {
    let disabled = set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .is_some();
    endpoint && !disabled
}

/// `certmesh-issuance+iam` for `--services issuance,iam`; `certmesh` for dev mode.
fn service_name(configured: Option<String>, roles: &[String]) -> String {
    match configured {
        Some(name) => name,
        None if roles.is_empty() => "certmesh".to_string(),
        None => format!("certmesh-{}", roles.join("+")),
    }
}

/// The tracer provider with a batch OTLP/gRPC exporter. The exporter reads the standard
/// `OTEL_EXPORTER_OTLP_*` variables, the batch processor `OTEL_BSP_*`, the sampler
/// `OTEL_TRACES_SAMPLER`; `OTEL_EXPORTER_OTLP_CERTIFICATE` names the CA bundle for an https://
/// collector.
fn provider(service: &str) -> anyhow::Result<SdkTracerProvider> {
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(protocol) = protocol.filter(|p| p.trim() != "grpc") {
        bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: certmesh exports OTLP over gRPC only (grpc)"
        );
    }
    let mut builder = SpanExporter::builder().with_tonic();
    if let Some(path) = set("OTEL_EXPORTER_OTLP_CERTIFICATE") {
        let pem = fs::read(&path)
            .with_context(|| format!("reading OTEL_EXPORTER_OTLP_CERTIFICATE {path}"))?;
        builder = builder
            .with_tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)));
    }
    let exporter = builder.build().context("building the OTLP span exporter")?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service))
        .build())
}

/// `service.name`, `service.version`, and a `service.instance.id` unique to this process;
/// `OTEL_RESOURCE_ATTRIBUTES` adds to them.
fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        ])
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_named_after_its_roles_unless_configured() {
        let roles = ["issuance".to_string(), "iam".to_string()];
        assert_eq!(service_name(None, &[]), "certmesh");
        assert_eq!(service_name(None, &roles), "certmesh-issuance+iam");
        assert_eq!(service_name(Some("pki-east".into()), &roles), "pki-east");
    }
}
