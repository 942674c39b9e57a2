//! Prometheus metrics, rendered on `/metrics` in the OpenMetrics text format.
//!
//! One registry per process; each role registers its own families through the typed handles
//! below, so a metric name is written in exactly one place.

use std::sync::Arc;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// Labels of `certmesh_http_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `grpc` or `rest`.
    pub protocol: &'static str,
    /// The gRPC method path or REST route template.
    pub route: String,
    /// gRPC code name (`Ok`, `InvalidArgument`, …).
    pub code: String,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests served by the gateway, by protocol, route and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Certificates signed and stored.
    pub certificates_issued: Counter,
    /// Issue requests a profile refused.
    pub issuance_denied: Counter,
    /// Idempotent replays answered from the store.
    pub issuance_replayed: Counter,
    /// Time from an Issue request's arrival to its commit.
    pub issue_seconds: Histogram,
}

impl Metrics {
    /// A fresh registry with every certmesh family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("certmesh");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests served, by protocol, route and code",
            requests.clone(),
        );
        let certificates_issued = Counter::default();
        registry.register(
            "certificates_issued",
            "Certificates signed and stored",
            certificates_issued.clone(),
        );
        let issuance_denied = Counter::default();
        registry.register(
            "issuance_denied",
            "Issue requests refused by a profile",
            issuance_denied.clone(),
        );
        let issuance_replayed = Counter::default();
        registry.register(
            "issuance_replayed",
            "Issue requests answered from an idempotency key",
            issuance_replayed.clone(),
        );
        let buckets = [
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
        ];
        let issue_seconds = Histogram::new(buckets);
        registry.register(
            "issue_seconds",
            "Issue latency inside the issuance role",
            issue_seconds.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            certificates_issued,
            issuance_denied,
            issuance_replayed,
            issue_seconds,
        })
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_families() {
        let m = Metrics::new();
        m.certificates_issued.inc();
        m.requests
            .get_or_create(&RequestLabels {
                protocol: "rest",
                route: "/x".into(),
                code: "Ok".into(),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains("certmesh_certificates_issued_total 1"),
            "{text}"
        );
        assert!(
            text.contains("certmesh_requests_total{protocol=\"rest\",route=\"/x\",code=\"Ok\"} 1"),
            "{text}"
        );
    }
}
