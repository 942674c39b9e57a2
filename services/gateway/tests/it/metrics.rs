//! The RPC metrics of the router: a gRPC call and a REST call are each counted once under the
//! RPC they reach, health too; unknown paths collapse to `unknown`; refused calls count with
//! their code; REST requests also count by route.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc};

use axum::{Router, body::Body};
use certmesh_gateway::{Backend, GatewayState};
use certmesh_kit::{limit::RateLimit, metrics::Metrics};
use certmesh_proto::issuance as pb;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tonic_prost::ProstCodec;
use tower::ServiceExt;

const PROFILES: &str = "certmesh.issuance.v1.ProfileService";

/// A profile service that answers every call as `GetProfile`, with a profile of the asked-for
/// name.
fn profiles_backend() -> Backend {
    Backend::local(tower::service_fn(
        |request: Request<tonic::body::Body>| async move {
            let get_profile =
                tower::service_fn(|req: tonic::Request<pb::GetProfileRequest>| async move {
                    Ok::<_, tonic::Status>(tonic::Response::new(pb::Profile {
                        name: req.into_inner().name,
                        ..Default::default()
                    }))
                });
            let codec = ProstCodec::<pb::Profile, pb::GetProfileRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok::<_, Infallible>(grpc.unary(get_profile, request).await)
        },
    ))
}

async fn gateway(metrics: &Arc<Metrics>, rate_limit: Option<RateLimit>) -> Router {
    certmesh_gateway::router(GatewayState {
        backends: BTreeMap::from([(PROFILES.to_string(), profiles_backend())]),
        metrics: metrics.clone(),
        ready: Arc::new(|| Box::pin(async { true })),
        rest: true,
        rate_limit,
    })
    .await
}

/// A unary gRPC request carrying `message` in one uncompressed frame.
fn grpc(path: &str, message: &impl prost::Message) -> Request<Body> {
    let payload = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend(u32::try_from(payload.len()).expect("small").to_be_bytes());
    frame.extend(payload);
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(Body::from(frame))
        .expect("request")
}

/// Sends `request` and reads the whole answer, trailers included; its HTTP status.
async fn call(router: &Router, request: Request<Body>) -> StatusCode {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    response.into_body().collect().await.expect("body");
    status
}

fn rpcs(m: &Metrics, service: &str, method: &str, code: &str) -> f64 {
    let labels = [("service", service), ("method", method), ("code", code)];
    m.sample("certmesh_rpc_requests_total", &labels)
}

#[tokio::test]
async fn grpc_and_rest_calls_are_each_counted_once_under_their_rpc() {
    let m = Metrics::new();
    let router = gateway(&m, None).await;
    let get = pb::GetProfileRequest { name: "web".into() };
    call(&router, grpc(&format!("/{PROFILES}/GetProfile"), &get)).await;
    assert_eq!(
        rpcs(&m, PROFILES, "GetProfile", "OK"),
        1.0,
        "{}",
        m.render()
    );

    let rest = Request::get("/api/v1/profiles/web")
        .body(Body::empty())
        .expect("request");
    assert_eq!(call(&router, rest).await, StatusCode::OK);
    assert_eq!(
        rpcs(&m, PROFILES, "GetProfile", "OK"),
        2.0,
        "{}",
        m.render()
    );
    assert_eq!(m.sample("certmesh_rpc_requests_total", &[]), 2.0);
    let route = [
        ("method", "GET"),
        ("route", "/api/v1/profiles/{name}"),
        ("code", "OK"),
    ];
    assert_eq!(m.sample("certmesh_http_requests_total", &route), 1.0);
    let timed = [("service", PROFILES), ("method", "GetProfile")];
    assert_eq!(m.sample("certmesh_rpc_duration_seconds_count", &timed), 2.0);

    let health = tonic_health::pb::HealthCheckRequest {
        service: PROFILES.into(),
    };
    call(&router, grpc("/grpc.health.v1.Health/Check", &health)).await;
    assert_eq!(rpcs(&m, "grpc.health.v1.Health", "Check", "OK"), 1.0);

    // The operational endpoints are not gRPC: not counted.
    let scrape = Request::get("/metrics")
        .body(Body::empty())
        .expect("request");
    assert_eq!(call(&router, scrape).await, StatusCode::OK);
    assert_eq!(m.sample("certmesh_rpc_requests_total", &[]), 3.0);
}

#[tokio::test]
async fn unknown_paths_collapse_and_rest_errors_count_their_code() {
    let m = Metrics::new();
    let router = gateway(&m, None).await;
    let get = pb::GetProfileRequest::default();
    for path in [
        "/scanner.v1.Probe/Enumerate",
        "/certmesh.ca.v1.CaService/ListCas",
        "/x/y",
    ] {
        call(&router, grpc(path, &get)).await;
    }
    assert_eq!(
        rpcs(&m, "unknown", "unknown", "UNIMPLEMENTED"),
        3.0,
        "a service this router does not serve is unknown too: {}",
        m.render()
    );
    assert!(!m.render().contains("scanner"));

    let bad = Request::post("/api/v1/profiles")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("not json"))
        .expect("request");
    assert_eq!(call(&router, bad).await, StatusCode::BAD_REQUEST);
    let route = [
        ("method", "POST"),
        ("route", "/api/v1/profiles"),
        ("code", "INVALID_ARGUMENT"),
    ];
    assert_eq!(m.sample("certmesh_http_requests_total", &route), 1.0);
}

#[tokio::test(start_paused = true)]
async fn calls_the_rate_limiter_refuses_are_counted_as_resource_exhausted() {
    let m = Metrics::new();
    let limit = RateLimit {
        per_second: 1.0,
        burst: 1,
    };
    let router = gateway(&m, Some(limit)).await;
    let get = pb::GetProfileRequest { name: "web".into() };
    for _ in 0..3 {
        call(&router, grpc(&format!("/{PROFILES}/GetProfile"), &get)).await;
    }
    assert_eq!(
        rpcs(&m, PROFILES, "GetProfile", "OK"),
        1.0,
        "{}",
        m.render()
    );
    assert_eq!(rpcs(&m, PROFILES, "GetProfile", "RESOURCE_EXHAUSTED"), 2.0);
}
