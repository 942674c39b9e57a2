//! Where a gRPC service is served: in this process, or by a remote role over a channel. Both
//! are the same type, so routing, REST transcoding and tests do not care which.

use std::convert::Infallible;

use axum::Router;
use tonic::{Code, body::Body};
use tower::{Layer, Service, ServiceExt, util::BoxCloneSyncService};

use certmesh_kit::{Reason, reason::status, trace::ClientLayer};

/// A gRPC service: HTTP/2 requests in, gRPC responses out, never an error (transport failures
/// become `UNAVAILABLE` statuses).
#[derive(Clone)]
pub struct Backend(BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>);

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend")
    }
}

impl Backend {
    /// A service served by this process (a tonic server, possibly wrapped in layers).
    pub fn local<S>(service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self(BoxCloneSyncService::new(service))
    }

    /// A service in another process, reached over `channel`. Every call gets a client span
    /// whose trace context goes along (`traceparent`), so the role's span joins the trace.
    pub fn remote(channel: tonic::transport::Channel) -> Self {
        let channel = ClientLayer.layer(channel);
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let channel = channel.clone();
            async move {
                Ok::<_, Infallible>(match channel.oneshot(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(e) => {
                        tracing::warn!(error = %e, "Backend role unreachable.");
                        status(
                            Code::Unavailable,
                            Reason::BackendUnavailable,
                            "backend role unreachable",
                        )
                        .into_http()
                    }
                })
            }
        });
        Self(BoxCloneSyncService::new(service))
    }
}

impl Service<http::Request<Body>> for Backend {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future =
        <BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible> as Service<
            http::Request<Body>,
        >>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        self.0.call(request)
    }
}

/// Route `/{service}/*` to `backend`.
pub(crate) fn grpc_route(router: Router, service: &str, backend: Backend) -> Router {
    let svc = tower::service_fn(move |request: http::Request<axum::body::Body>| {
        let backend = backend.clone();
        async move {
            let response = backend.oneshot(request.map(Body::new)).await?;
            Ok::<_, Infallible>(response.map(axum::body::Body::new))
        }
    });
    router.route_service(&format!("/{service}/{{*method}}"), svc)
}
