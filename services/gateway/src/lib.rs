//! The front door: one listener that serves gRPC for every registered service (routed by
//! service name to a role in this process or to a remote role over gRPC), gRPC reflection and
//! health, REST/JSON transcoded from the proto annotations onto the same gRPC handlers, and
//! `/healthz`, `/readyz`, `/metrics`.

mod backend;
mod error;
mod rest;

use std::{collections::BTreeMap, sync::Arc};

use axum::{Router, routing::get};
use certmesh_kit::{
    limit::{RateLimit, RateLimitLayer},
    metrics::Metrics,
    rpc_metrics::{MeteredBody, RpcCatalog, RpcMetricsLayer},
};
use futures::future::BoxFuture;
use tonic::body::Body;

pub use crate::{
    backend::Backend,
    error::{code_name, error_response, http_status},
};

/// Largest REST body accepted; a CSR is a few kilobytes.
pub const MAX_REST_BODY: usize = 1024 * 1024;

/// Answers `/readyz`: true when this process can serve.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// What the gateway routes to.
pub struct GatewayState {
    /// gRPC service full name (`certmesh.issuance.v1.IssuanceService`) → where it is served.
    pub backends: BTreeMap<String, Backend>,
    /// Process metrics, rendered on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Readiness probe.
    pub ready: ReadinessCheck,
    /// Serve REST/JSON routes (the gateway role) or only gRPC (a standalone role).
    pub rest: bool,
    /// Per-caller request rate limit for everything but health and the operational endpoints;
    /// `None` serves unlimited.
    pub rate_limit: Option<RateLimit>,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("rest", &self.rest)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// The router: gRPC services, reflection, health, REST routes and the operational endpoints.
/// With a rate limit, every route but health and the operational endpoints is limited per
/// caller (including unknown paths, so probing them costs the same).
pub async fn router(state: GatewayState) -> Router {
    let rpc = RpcMetricsLayer::new(state.metrics.clone(), rpc_catalog(&state));
    let mut api = api(&state, &rpc);
    if let Some(limit) = state.rate_limit {
        match RateLimitLayer::new(limit) {
            Ok(layer) => api = api.layer(layer),
            // Callers validate the limit up front (`RateLimit::validate`); this is a backstop.
            Err(e) => {
                tracing::error!(error = %e, "Rate limit is invalid; requests are not limited.")
            }
        }
    }
    // Around everything, so unknown paths and refused calls are counted too.
    operational(&state)
        .await
        .merge(api)
        .layer(rpc)
        .layer(certmesh_kit::trace::SpanLayer)
}

/// What the RPC metrics may label a call with: the services this router serves (its backends,
/// health and reflection) and their methods.
fn rpc_catalog(state: &GatewayState) -> RpcCatalog {
    let mut catalog = RpcCatalog::new();
    let sets: [(&[u8], bool); 4] = [
        (certmesh_proto::FILE_DESCRIPTOR_SET, false),
        (tonic_health::pb::FILE_DESCRIPTOR_SET, true),
        (tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET, true),
        (tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET, true),
    ];
    for (set, always) in sets {
        let served = |name: &str| always || state.backends.contains_key(name);
        if let Err(e) = catalog.add_descriptors(set, served) {
            tracing::error!(error = %e, "An API descriptor set does not decode; its RPCs count as unknown.");
        }
    }
    catalog
}

/// The backends as the REST transcoder calls them: each call is one gRPC call, counted in the
/// RPC metrics (direct gRPC calls are counted by the layer around the router instead).
fn metered(
    backends: &BTreeMap<String, Backend>,
    rpc: &RpcMetricsLayer,
) -> BTreeMap<String, Backend> {
    let metered = |backend: &Backend| {
        Backend::local(
            tower::ServiceBuilder::new()
                .map_response(|r: http::Response<MeteredBody<Body>>| r.map(Body::new))
                .layer(rpc.clone())
                .service(backend.clone()),
        )
    };
    backends
        .iter()
        .map(|(name, backend)| (name.clone(), metered(backend)))
        .collect()
}

/// gRPC services, reflection and REST routes, with the JSON 404 for everything else.
fn api(state: &GatewayState, rpc: &RpcMetricsLayer) -> Router {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(certmesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut router = Router::new();
    if let Ok(v1) = reflection().build_v1() {
        router = backend::grpc_route(
            router,
            "grpc.reflection.v1.ServerReflection",
            Backend::local(v1),
        );
    }
    if let Ok(v1alpha) = reflection().build_v1alpha() {
        router = backend::grpc_route(
            router,
            "grpc.reflection.v1alpha.ServerReflection",
            Backend::local(v1alpha),
        );
    }
    for (name, backend) in &state.backends {
        router = backend::grpc_route(router, name, backend.clone());
    }
    if state.rest {
        router = rest::routes(
            router,
            &metered(&state.backends, rpc),
            state.metrics.clone(),
        );
    }
    router.fallback(rest::not_found)
}

/// gRPC health, `/healthz`, `/readyz` and `/metrics`: probes that are never rate limited.
async fn operational(state: &GatewayState) -> Router {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in state.backends.keys() {
        health
            .set_service_status(name.as_str(), tonic_health::ServingStatus::Serving)
            .await;
    }
    let router = backend::grpc_route(
        Router::new(),
        "grpc.health.v1.Health",
        Backend::local(health_service),
    );
    router.merge(ops_router(state.metrics.clone(), state.ready.clone()))
}

/// `/healthz`, `/readyz` and `/metrics` alone: what a separate operations listener
/// (`--ops-listen`) serves in plain HTTP, for kubelet probes and scrapers that hold no mesh
/// certificate.
pub fn ops_router(metrics: Arc<Metrics>, ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready().await {
                        (http::StatusCode::OK, "ready\n")
                    } else {
                        (http::StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
}
