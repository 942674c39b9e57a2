//! Request metrics for every gRPC call a process serves: `certmesh_rpc_requests_total` by
//! service, method and code, and `certmesh_rpc_duration_seconds` by service and method.
//!
//! [`RpcMetricsLayer`] goes around a whole router, so calls to unknown paths and calls the rate
//! limiter refuses are counted too, and around the backends the REST transcoder calls (a REST
//! request is one gRPC call to its backend). Only gRPC requests (`content-type:
//! application/grpc…`) are counted; anything else passes through untouched.
//!
//! The code is the `grpc-status` of the response headers (a trailers-only answer, which is how
//! tonic sends most errors) or of the trailers. A response that ends without one counts as the
//! code gRPC maps its HTTP status to (404 → `UNIMPLEMENTED`, 503 → `UNAVAILABLE`, …, anything
//! else `UNKNOWN`); one whose body is dropped before its end (the client went away) counts as
//! `CANCELLED`. The duration runs from the request to the end of the response, so for a stream
//! it is the stream's life.
//!
//! Labels come from an [`RpcCatalog`] of the services and methods the process serves: a path
//! outside it counts as `service="unknown", method="unknown"`, an unknown method of a known
//! service as `method="unknown"`, so a scanner cannot mint new series.

use std::{
    collections::{HashMap, HashSet},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use prost::Message as _;
use tonic::Code;
use tower::{Layer, Service};

use crate::{
    metrics::{Metrics, RpcLabels, RpcMethodLabels},
    reason::code_name,
};

/// The label value of a service or method outside the catalog.
pub const UNKNOWN: &str = "unknown";

/// The gRPC services and methods a process serves: the only values the RPC labels take.
#[derive(Clone, Debug, Default)]
pub struct RpcCatalog {
    services: HashMap<String, HashSet<String>>,
}

impl RpcCatalog {
    /// An empty catalog: every path counts as unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `service` (its full name, e.g. `certmesh.issuance.v1.IssuanceService`) with
    /// `methods`.
    pub fn add_service<'a>(&mut self, service: &str, methods: impl IntoIterator<Item = &'a str>) {
        self.services
            .entry(service.to_owned())
            .or_default()
            .extend(methods.into_iter().map(str::to_owned));
    }

    /// Adds every service of the serialized `FileDescriptorSet` `set` for which `served` is
    /// true, with all its methods.
    pub fn add_descriptors(
        &mut self,
        set: &[u8],
        served: impl Fn(&str) -> bool,
    ) -> Result<(), prost::DecodeError> {
        let set = prost_types::FileDescriptorSet::decode(set)?;
        for file in &set.file {
            for service in &file.service {
                let name = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                if served(&name) {
                    self.add_service(&name, service.method.iter().map(|m| m.name()));
                }
            }
        }
        Ok(())
    }

    /// The (service, method) labels of the request path `/service/method`.
    fn labels(&self, path: &str) -> RpcMethodLabels {
        let known = |service: &str, method: &str| RpcMethodLabels {
            service: service.to_owned(),
            method: method.to_owned(),
        };
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return known(UNKNOWN, UNKNOWN);
        };
        match self.services.get(service) {
            None => known(UNKNOWN, UNKNOWN),
            Some(methods) if methods.contains(method) => known(service, method),
            Some(_) => known(service, UNKNOWN),
        }
    }
}

/// Counts and times every gRPC request through the service it wraps.
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    metrics: Arc<Metrics>,
    catalog: Arc<RpcCatalog>,
}

impl RpcMetricsLayer {
    /// Records into `metrics`, labelled from `catalog`.
    pub fn new(metrics: Arc<Metrics>, catalog: RpcCatalog) -> Self {
        Self {
            metrics,
            catalog: Arc::new(catalog),
        }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RpcMetricsLayer`] produces.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
    layer: RpcMetricsLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Body + Unpin + Send + 'static,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let call = is_grpc(request.headers()).then(|| Call {
            metrics: self.layer.metrics.clone(),
            labels: Some(self.layer.catalog.labels(request.uri().path())),
            started: Instant::now(),
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            // A call dropped before its response (the client went away) counts as CANCELLED.
            let response = response.await;
            Ok(match call {
                None => response?.map(|inner| MeteredBody {
                    inner,
                    call: None,
                    fallback: Code::Unknown,
                }),
                Some(mut call) => {
                    let response = match response {
                        Ok(response) => response,
                        Err(e) => {
                            call.finish(Code::Unknown);
                            return Err(e);
                        }
                    };
                    let fallback = http_code(response.status());
                    let call = match grpc_status(response.headers()) {
                        Some(code) => {
                            call.finish(code);
                            None
                        }
                        None => Some(call),
                    };
                    response.map(|inner| MeteredBody {
                        inner,
                        call,
                        fallback,
                    })
                }
            })
        })
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The code in a `grpc-status` header or trailer (an unknown number is `UNKNOWN`).
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(
        value
            .trim()
            .parse::<i32>()
            .map_or(Code::Unknown, Code::from_i32),
    )
}

/// The code of a response that carries no `grpc-status`, from its HTTP status, as gRPC's
/// "HTTP to gRPC status code mapping" gives it.
fn http_code(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// One gRPC request being measured; recorded once, at its first end.
#[derive(Debug)]
struct Call {
    metrics: Arc<Metrics>,
    /// Taken when the call is recorded.
    labels: Option<RpcMethodLabels>,
    started: Instant,
}

impl Call {
    fn finish(&mut self, code: Code) {
        let Some(labels) = self.labels.take() else {
            return;
        };
        self.metrics
            .rpc_duration_seconds
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        let RpcMethodLabels { service, method } = labels;
        self.metrics
            .rpc_requests
            .get_or_create(&RpcLabels {
                service,
                method,
                code: code_name(code),
            })
            .inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// A response body that records its call when its trailers arrive or it ends.
pub struct MeteredBody<B: Body> {
    inner: B,
    /// `None` when the request is not gRPC or its code came in the headers.
    call: Option<Call>,
    /// The code if the body ends without a `grpc-status`.
    fallback: Code,
}

impl<B: Body> std::fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredBody")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(call) = this.call.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        call.finish(grpc_status(trailers).unwrap_or(this.fallback));
                    }
                }
                Poll::Ready(Some(Err(_)) | None) => call.finish(this.fallback),
                Poll::Pending => {}
            }
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

impl<B: Body> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // A body that was over before anyone polled it (an empty 404) ended; any other body
        // dropped early was abandoned, and `Call` records that as CANCELLED.
        if let Some(call) = self.call.as_mut()
            && self.inner.is_end_stream()
        {
            call.finish(self.fallback);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, StreamBody};
    use tower::ServiceExt;

    use super::*;

    type Frames =
        StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    const ECHO: &str = "test.v1.Echo";

    fn catalog() -> RpcCatalog {
        let mut c = RpcCatalog::new();
        c.add_service(ECHO, ["Say", "Stream"]);
        c
    }

    fn grpc_request(path: &str) -> Request<()> {
        Request::builder()
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(())
            .expect("request")
    }

    /// A 200 whose body is one message and then trailers with `status`, if any.
    fn streamed(status: Option<&str>) -> Response<Frames> {
        let mut frames = vec![Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0")))];
        if let Some(status) = status {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", status.parse().expect("value"));
            frames.push(Ok(Frame::trailers(trailers)));
        }
        Response::new(StreamBody::new(futures::stream::iter(frames)))
    }

    /// Serves `response` behind the layer and reads the whole answer.
    async fn serve<B>(metrics: &Arc<Metrics>, request: Request<()>, response: Response<B>)
    where
        B: Body + Unpin + Send + 'static,
        B::Error: std::fmt::Debug,
    {
        let response = std::sync::Mutex::new(Some(response));
        let inner = tower::service_fn(move |_: Request<()>| {
            let r = response.lock().expect("lock").take().expect("one call");
            async move { Ok::<_, Infallible>(r) }
        });
        let layer = RpcMetricsLayer::new(metrics.clone(), catalog());
        let answer = layer
            .layer(inner)
            .oneshot(request)
            .await
            .expect("infallible");
        answer.into_body().collect().await.expect("body");
    }

    fn count(m: &Metrics, service: &str, method: &str, code: &str) -> f64 {
        m.sample(
            "certmesh_rpc_requests_total",
            &[("service", service), ("method", method), ("code", code)],
        )
    }

    #[tokio::test]
    async fn an_ok_call_is_counted_and_timed_once() {
        let m = Metrics::new();
        serve(&m, grpc_request("/test.v1.Echo/Say"), streamed(Some("0"))).await;
        assert_eq!(count(&m, ECHO, "Say", "OK"), 1.0, "{}", m.render());
        assert_eq!(m.sample("certmesh_rpc_requests_total", &[]), 1.0);
        assert_eq!(
            m.sample(
                "certmesh_rpc_duration_seconds_count",
                &[("service", ECHO), ("method", "Say")]
            ),
            1.0
        );
    }

    #[tokio::test]
    async fn the_code_comes_from_the_trailers_or_a_trailers_only_answer() {
        let m = Metrics::new();
        serve(&m, grpc_request("/test.v1.Echo/Say"), streamed(Some("5"))).await;
        assert_eq!(count(&m, ECHO, "Say", "NOT_FOUND"), 1.0, "{}", m.render());
        let mut trailers_only = Response::new(Empty::<Bytes>::new());
        trailers_only
            .headers_mut()
            .insert("grpc-status", "16".parse().expect("value"));
        serve(&m, grpc_request("/test.v1.Echo/Say"), trailers_only).await;
        assert_eq!(count(&m, ECHO, "Say", "UNAUTHENTICATED"), 1.0);
        assert_eq!(m.sample("certmesh_rpc_requests_total", &[]), 2.0);
    }

    #[tokio::test]
    async fn a_stream_that_ends_without_a_status_counts_its_http_code() {
        let m = Metrics::new();
        serve(&m, grpc_request("/test.v1.Echo/Stream"), streamed(None)).await;
        assert_eq!(count(&m, ECHO, "Stream", "UNKNOWN"), 1.0, "{}", m.render());
        let mut not_found = Response::new(Empty::<Bytes>::new());
        *not_found.status_mut() = StatusCode::NOT_FOUND;
        serve(&m, grpc_request("/test.v1.Echo/Say"), not_found).await;
        assert_eq!(count(&m, ECHO, "Say", "UNIMPLEMENTED"), 1.0);
    }

    #[tokio::test]
    async fn an_abandoned_response_counts_as_cancelled() {
        let m = Metrics::new();
        let inner =
            tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(streamed(Some("0"))) });
        let layer = RpcMetricsLayer::new(m.clone(), catalog());
        let answer = layer
            .layer(inner)
            .oneshot(grpc_request("/test.v1.Echo/Stream"))
            .await
            .expect("infallible");
        assert_eq!(m.sample("certmesh_rpc_requests_total", &[]), 0.0, "not yet");
        drop(answer);
        assert_eq!(
            count(&m, ECHO, "Stream", "CANCELLED"),
            1.0,
            "{}",
            m.render()
        );
    }

    #[tokio::test]
    async fn unknown_paths_collapse_to_one_series() {
        let m = Metrics::new();
        for path in ["/scanner.Probe/A", "/x.Y/Z", "/no-method", "/wp-login.php"] {
            serve(&m, grpc_request(path), streamed(Some("12"))).await;
        }
        serve(
            &m,
            grpc_request("/test.v1.Echo/Guess"),
            streamed(Some("12")),
        )
        .await;
        assert_eq!(
            count(&m, UNKNOWN, UNKNOWN, "UNIMPLEMENTED"),
            4.0,
            "{}",
            m.render()
        );
        assert_eq!(count(&m, ECHO, UNKNOWN, "UNIMPLEMENTED"), 1.0);
        let text = m.render();
        let series = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(series("certmesh_rpc_requests_total{"), 2, "{text}");
        assert_eq!(series("certmesh_rpc_duration_seconds_count{"), 2, "{text}");
    }

    #[tokio::test]
    async fn requests_that_are_not_grpc_are_not_counted() {
        let m = Metrics::new();
        let rest = Request::builder()
            .uri("/test.v1.Echo/Say")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(())
            .expect("request");
        serve(&m, rest, streamed(Some("0"))).await;
        assert_eq!(m.sample("certmesh_rpc_requests_total", &[]), 0.0);
    }

    #[test]
    fn the_catalog_reads_services_and_methods_from_descriptors() {
        use prost_types::{
            FileDescriptorProto, FileDescriptorSet, MethodDescriptorProto, ServiceDescriptorProto,
        };
        let service = |name: &str, methods: &[&str]| ServiceDescriptorProto {
            name: Some(name.into()),
            method: methods
                .iter()
                .map(|m| MethodDescriptorProto {
                    name: Some((*m).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let set = FileDescriptorSet {
            file: vec![FileDescriptorProto {
                package: Some("test.v1".into()),
                service: vec![service("Echo", &["Say"]), service("Hidden", &["Peek"])],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let mut c = RpcCatalog::new();
        c.add_descriptors(&set, |name| name == ECHO)
            .expect("decodes");
        let labels = |path| {
            let l = c.labels(path);
            (l.service, l.method)
        };
        assert_eq!(labels("/test.v1.Echo/Say"), (ECHO.into(), "Say".into()));
        assert_eq!(
            labels("/test.v1.Hidden/Peek"),
            (UNKNOWN.into(), UNKNOWN.into())
        );
        assert!(c.add_descriptors(b"\xff\xff", |_| true).is_err());
    }
}
