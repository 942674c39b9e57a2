//! Per-caller rate limits: REST gets 429 with `Retry-After` and the JSON error body, gRPC gets
//! `RESOURCE_EXHAUSTED` with reason `RATE_LIMITED`; health and the operational endpoints are
//! never limited. Time is tokio's paused clock.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{Router, body::Body};
use certmesh_gateway::{Backend, GatewayState};
use certmesh_kit::{limit::RateLimit, metrics::Metrics, reason::reason_of};
use certmesh_proto::issuance as pb;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use tonic_prost::ProstCodec;
use tower::ServiceExt;

const PROFILES: &str = "certmesh.issuance.v1.ProfileService";
const ONE_PER_SECOND_BURST_TWO: RateLimit = RateLimit {
    per_second: 1.0,
    burst: 2,
};

fn token(c: char) -> String {
    format!("cmt_{}", c.to_string().repeat(64))
}

/// A profile service that answers every `GetProfile` with a profile of the asked-for name.
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

async fn gateway(rate_limit: Option<RateLimit>) -> Router {
    certmesh_gateway::router(GatewayState {
        backends: BTreeMap::from([(PROFILES.to_string(), profiles_backend())]),
        metrics: Metrics::new(),
        ready: Arc::new(|| Box::pin(async { true })),
        rest: true,
        rate_limit,
    })
    .await
}

fn with_token(builder: http::request::Builder, token: Option<&str>) -> http::request::Builder {
    match token {
        Some(t) => builder.header(header::AUTHORIZATION, format!("Bearer {t}")),
        None => builder,
    }
}

fn rest(path: &str, token: Option<&str>) -> Request<Body> {
    with_token(Request::get(path), token)
        .body(Body::empty())
        .expect("request")
}

/// A unary gRPC request carrying `message` in one uncompressed frame.
fn grpc(path: &str, token: Option<&str>, message: &impl prost::Message) -> Request<Body> {
    let payload = message.encode_to_vec();
    let mut frame = vec![0];
    frame.extend(u32::try_from(payload.len()).expect("small").to_be_bytes());
    frame.extend(payload);
    with_token(Request::post(path), token)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(Body::from(frame))
        .expect("request")
}

fn get_profile(token: Option<&str>) -> Request<Body> {
    let message = pb::GetProfileRequest { name: "web".into() };
    grpc(&format!("/{PROFILES}/GetProfile"), token, &message)
}

async fn call(router: &Router, request: Request<Body>) -> Response<Body> {
    router.clone().oneshot(request).await.expect("infallible")
}

/// The `grpc-status` of a response: from its headers (trailers-only) or its trailers.
async fn grpc_status(response: Response<Body>) -> tonic::Status {
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let trailers = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .trailers()
        .cloned()
        .expect("trailers");
    tonic::Status::from_header_map(&trailers).expect("grpc-status")
}

fn retry_after(response: &Response<Body>) -> u64 {
    response.headers()[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds")
}

async fn assert_rest_limited(response: Response<Body>) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&response) >= 1);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["code"], "RESOURCE_EXHAUSTED");
    assert_eq!(json["reason"], "RATE_LIMITED");
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn assert_grpc_limited(response: Response<Body>) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "8");
    assert!(retry_after(&response) >= 1);
    let status = grpc_status(response).await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason_of(&status).as_deref(), Some("RATE_LIMITED"));
}

async fn assert_grpc_ok(response: Response<Body>) {
    assert_eq!(response.status(), StatusCode::OK);
    let status = grpc_status(response).await;
    assert_eq!(status.code(), tonic::Code::Ok, "{status:?}");
}

#[tokio::test(start_paused = true)]
async fn rest_callers_over_the_limit_get_429_until_the_bucket_refills() {
    let router = gateway(Some(ONE_PER_SECOND_BURST_TWO)).await;
    let (a, b) = (token('a'), token('b'));
    for _ in 0..2 {
        let response = call(&router, rest("/api/v1/profiles/web", Some(&a))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = call(&router, rest("/api/v1/profiles/web", Some(&a))).await;
    assert_eq!(retry_after(&refused), 1);
    assert_rest_limited(refused).await;
    let other = call(&router, rest("/api/v1/profiles/web", Some(&b))).await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another token is unaffected"
    );
    for path in ["/healthz", "/readyz", "/metrics"] {
        for _ in 0..5 {
            let response = call(&router, rest(path, Some(&a))).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    let again = call(&router, rest("/api/v1/profiles/web", Some(&a))).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_rest_limited(call(&router, rest("/api/v1/profiles/web", Some(&a))).await).await;
}

#[tokio::test(start_paused = true)]
async fn grpc_callers_over_the_limit_get_resource_exhausted() {
    let router = gateway(Some(ONE_PER_SECOND_BURST_TWO)).await;
    let (a, b) = (token('a'), token('b'));
    for _ in 0..2 {
        assert_grpc_ok(call(&router, get_profile(Some(&a))).await).await;
    }
    assert_grpc_limited(call(&router, get_profile(Some(&a))).await).await;
    assert_grpc_ok(call(&router, get_profile(Some(&b))).await).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_grpc_ok(call(&router, get_profile(Some(&a))).await).await;
}

#[tokio::test(start_paused = true)]
async fn rest_and_grpc_draw_from_the_same_bucket() {
    let router = gateway(Some(ONE_PER_SECOND_BURST_TWO)).await;
    let a = token('a');
    assert_grpc_ok(call(&router, get_profile(Some(&a))).await).await;
    let response = call(&router, rest("/api/v1/profiles/web", Some(&a))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_grpc_limited(call(&router, get_profile(Some(&a))).await).await;
    assert_rest_limited(call(&router, rest("/api/v1/profiles/web", Some(&a))).await).await;
}

#[tokio::test(start_paused = true)]
async fn callers_without_a_token_shaped_credential_share_one_bucket() {
    let router = gateway(Some(ONE_PER_SECOND_BURST_TWO)).await;
    let response = call(&router, rest("/api/v1/profiles/web", None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(&router, rest("/api/v1/profiles/web", Some("garbage"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    for junk in [None, Some("cmt_short"), Some("another-garbage-value")] {
        assert_rest_limited(call(&router, rest("/api/v1/profiles/web", junk)).await).await;
    }
    let response = call(&router, rest("/api/v1/profiles/web", Some(&token('a')))).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a real token has its own bucket"
    );
}

#[tokio::test(start_paused = true)]
async fn health_and_operational_endpoints_are_never_limited() {
    let router = gateway(Some(ONE_PER_SECOND_BURST_TWO)).await;
    for _ in 0..2 {
        assert_grpc_ok(call(&router, get_profile(None)).await).await;
    }
    assert_grpc_limited(call(&router, get_profile(None)).await).await;
    let check = tonic_health::pb::HealthCheckRequest::default();
    for _ in 0..10 {
        let response = call(&router, grpc("/grpc.health.v1.Health/Check", None, &check)).await;
        assert_grpc_ok(response).await;
        for path in ["/healthz", "/readyz", "/metrics"] {
            let response = call(&router, rest(path, None)).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_paths_are_limited_too() {
    let router = gateway(Some(ONE_PER_SECOND_BURST_TWO)).await;
    let a = token('a');
    for _ in 0..2 {
        let response = call(&router, rest("/no/such/route", Some(&a))).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    assert_rest_limited(call(&router, rest("/no/such/route", Some(&a))).await).await;
    assert_rest_limited(call(&router, rest("/api/v1/profiles/web", Some(&a))).await).await;
}

#[tokio::test(start_paused = true)]
async fn without_a_rate_limit_nothing_is_limited() {
    let router = gateway(None).await;
    for _ in 0..20 {
        let response = call(&router, rest("/api/v1/profiles/web", Some(&token('a')))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_grpc_ok(call(&router, get_profile(None)).await).await;
    }
}
