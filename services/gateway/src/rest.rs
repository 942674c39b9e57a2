//! REST/JSON transcoding, driven by the proto annotations in [`certmesh_proto::ROUTES`].
//!
//! A REST call becomes one unary gRPC call to the same backend a gRPC client would reach: the
//! JSON body, query parameters and path parameters merge into the request message (proto3 JSON,
//! proto field names); `Authorization` and `Idempotency-Key` travel as metadata; the reply is
//! the response message as JSON, or the status as a JSON error body.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, RawQuery},
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use certmesh_kit::{
    Reason,
    metrics::{HttpRequestLabels, Metrics},
    reason::status,
};
use certmesh_proto::{
    HttpRoute, ROUTES, ca, discovery, fleet, iam, issuance as pb, notification, revocation,
};
use futures::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use tonic::Code;

use crate::{
    MAX_REST_BODY,
    backend::Backend,
    error::{code_name, error_response},
};

/// Headers copied onto the gRPC call as metadata. `x-request-id` is the one the span layer
/// settled (the caller's when sane), so the role logs and audits the same id.
const FORWARDED_HEADERS: &[&str] = &["authorization", "idempotency-key", "x-request-id"];

/// A REST request, taken apart.
struct RestCall {
    headers: HeaderMap,
    params: HashMap<String, String>,
    query: Option<String>,
    body: Body,
}

type Transcoder = fn(Backend, &'static HttpRoute, RestCall) -> BoxFuture<'static, Response>;

/// The typed transcoder for an annotated RPC.
fn transcoder(route: &HttpRoute) -> Option<Transcoder> {
    fn t<Req, Resp>() -> Transcoder
    where
        Req: prost::Message + DeserializeOwned + Default + Send + 'static,
        Resp: prost::Message + Serialize + Default + Send + 'static,
    {
        |backend, route, call| Box::pin(transcode::<Req, Resp>(backend, route, call))
    }
    Some(match (route.service, route.method) {
        ("certmesh.issuance.v1.IssuanceService", "Issue") => {
            t::<pb::IssueRequest, pb::IssueResponse>()
        }
        ("certmesh.issuance.v1.IssuanceService", "GetCertificate") => {
            t::<pb::GetCertificateRequest, pb::GetCertificateResponse>()
        }
        ("certmesh.issuance.v1.IssuanceService", "ListCertificates") => {
            t::<pb::ListCertificatesRequest, pb::ListCertificatesResponse>()
        }
        ("certmesh.issuance.v1.ProfileService", "CreateProfile") => {
            t::<pb::CreateProfileRequest, pb::Profile>()
        }
        ("certmesh.issuance.v1.ProfileService", "GetProfile") => {
            t::<pb::GetProfileRequest, pb::Profile>()
        }
        ("certmesh.issuance.v1.ProfileService", "GetProfileVersion") => {
            t::<pb::GetProfileVersionRequest, pb::Profile>()
        }
        ("certmesh.issuance.v1.ProfileService", "ListProfiles") => {
            t::<pb::ListProfilesRequest, pb::ListProfilesResponse>()
        }
        ("certmesh.issuance.v1.ApprovalService", "ListApprovals") => {
            t::<pb::ListApprovalsRequest, pb::ListApprovalsResponse>()
        }
        ("certmesh.issuance.v1.ApprovalService", "Approve") => {
            t::<pb::ApproveRequest, pb::ApproveResponse>()
        }
        ("certmesh.issuance.v1.ApprovalService", "Reject") => {
            t::<pb::RejectRequest, pb::Approval>()
        }
        ("certmesh.iam.v1.PrincipalService", "CreatePrincipal") => {
            t::<iam::CreatePrincipalRequest, iam::Principal>()
        }
        ("certmesh.iam.v1.PrincipalService", "GetPrincipal") => {
            t::<iam::GetPrincipalRequest, iam::Principal>()
        }
        ("certmesh.iam.v1.PrincipalService", "ListPrincipals") => {
            t::<iam::ListPrincipalsRequest, iam::ListPrincipalsResponse>()
        }
        ("certmesh.iam.v1.PrincipalService", "AddPrincipalKey") => {
            t::<iam::AddPrincipalKeyRequest, iam::PrincipalKey>()
        }
        ("certmesh.iam.v1.PrincipalService", "ListPrincipalKeys") => {
            t::<iam::ListPrincipalKeysRequest, iam::ListPrincipalKeysResponse>()
        }
        ("certmesh.iam.v1.TokenService", "CreateToken") => {
            t::<iam::CreateTokenRequest, iam::CreateTokenResponse>()
        }
        ("certmesh.iam.v1.TokenService", "ListTokens") => {
            t::<iam::ListTokensRequest, iam::ListTokensResponse>()
        }
        ("certmesh.iam.v1.TokenService", "RevokeToken") => {
            t::<iam::RevokeTokenRequest, iam::Token>()
        }
        ("certmesh.iam.v1.AuditService", "ListAuditEvents") => {
            t::<iam::ListAuditEventsRequest, iam::ListAuditEventsResponse>()
        }
        ("certmesh.iam.v1.AuditService", "VerifyAudit") => {
            t::<iam::VerifyAuditRequest, iam::VerifyAuditResponse>()
        }
        ("certmesh.ca.v1.CaService", "StartCeremony") => {
            t::<ca::StartCeremonyRequest, ca::Ceremony>()
        }
        ("certmesh.ca.v1.CaService", "GetCeremony") => t::<ca::GetCeremonyRequest, ca::Ceremony>(),
        ("certmesh.ca.v1.CaService", "ListCeremonies") => {
            t::<ca::ListCeremoniesRequest, ca::ListCeremoniesResponse>()
        }
        ("certmesh.ca.v1.CaService", "ApproveCeremony") => {
            t::<ca::ApproveCeremonyRequest, ca::ApproveCeremonyResponse>()
        }
        ("certmesh.ca.v1.CaService", "CreateRoot") => {
            t::<ca::CreateRootRequest, ca::CaOperationResponse>()
        }
        ("certmesh.ca.v1.CaService", "CreateIntermediate") => {
            t::<ca::CreateIntermediateRequest, ca::CaOperationResponse>()
        }
        ("certmesh.ca.v1.CaService", "RotateCa") => {
            t::<ca::RotateCaRequest, ca::CaOperationResponse>()
        }
        ("certmesh.ca.v1.CaService", "CrossSignCa") => {
            t::<ca::CrossSignCaRequest, ca::CrossSignCaResponse>()
        }
        ("certmesh.ca.v1.CaService", "RetireCa") => t::<ca::RetireCaRequest, ca::Ca>(),
        ("certmesh.ca.v1.CaService", "ListCas") => t::<ca::ListCasRequest, ca::ListCasResponse>(),
        ("certmesh.ca.v1.CaService", "GetCa") => t::<ca::GetCaRequest, ca::Ca>(),
        ("certmesh.ca.v1.CaService", "GetCaChain") => {
            t::<ca::GetCaChainRequest, ca::GetCaChainResponse>()
        }
        ("certmesh.revocation.v1.RevocationService", "Revoke") => {
            t::<revocation::RevokeRequest, revocation::RevokeResponse>()
        }
        ("certmesh.revocation.v1.RevocationService", "BulkRevoke") => {
            t::<revocation::BulkRevokeRequest, revocation::BulkRevokeResponse>()
        }
        ("certmesh.revocation.v1.RevocationService", "GetStatus") => {
            t::<revocation::GetStatusRequest, revocation::CertificateStatus>()
        }
        ("certmesh.fleet.v1.FleetService", "CreateBootstrapToken") => {
            t::<fleet::CreateBootstrapTokenRequest, fleet::CreateBootstrapTokenResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "ListBootstrapTokens") => {
            t::<fleet::ListBootstrapTokensRequest, fleet::ListBootstrapTokensResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "ListAgents") => {
            t::<fleet::ListAgentsRequest, fleet::ListAgentsResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "GetAgent") => {
            t::<fleet::GetAgentRequest, fleet::Agent>()
        }
        ("certmesh.fleet.v1.FleetService", "RetireAgent") => {
            t::<fleet::RetireAgentRequest, fleet::Agent>()
        }
        ("certmesh.fleet.v1.FleetService", "CreateBinding") => {
            t::<fleet::CreateBindingRequest, fleet::Binding>()
        }
        ("certmesh.fleet.v1.FleetService", "ListBindings") => {
            t::<fleet::ListBindingsRequest, fleet::ListBindingsResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "DeleteBinding") => {
            t::<fleet::DeleteBindingRequest, fleet::DeleteBindingResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "ListJobs") => {
            t::<fleet::ListJobsRequest, fleet::ListJobsResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "GetJob") => {
            t::<fleet::GetJobRequest, fleet::FleetJob>()
        }
        ("certmesh.fleet.v1.FleetService", "ListDeployments") => {
            t::<fleet::ListDeploymentsRequest, fleet::ListDeploymentsResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "RenewNow") => {
            t::<fleet::RenewNowRequest, fleet::RenewNowResponse>()
        }
        ("certmesh.fleet.v1.FleetService", "Redeploy") => {
            t::<fleet::RedeployRequest, fleet::RedeployResponse>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "CreateScanTarget") => {
            t::<discovery::CreateScanTargetRequest, discovery::ScanTarget>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "ListScanTargets") => {
            t::<discovery::ListScanTargetsRequest, discovery::ListScanTargetsResponse>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "DeleteScanTarget") => {
            t::<discovery::DeleteScanTargetRequest, discovery::DeleteScanTargetResponse>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "StartScan") => {
            t::<discovery::StartScanRequest, discovery::Scan>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "ListScans") => {
            t::<discovery::ListScansRequest, discovery::ListScansResponse>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "GetScan") => {
            t::<discovery::GetScanRequest, discovery::Scan>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "ListDiscovered") => {
            t::<discovery::ListDiscoveredRequest, discovery::ListDiscoveredResponse>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "GetDiscovered") => {
            t::<discovery::GetDiscoveredRequest, discovery::DiscoveredCertificate>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "ClaimDiscovered") => {
            t::<discovery::ClaimDiscoveredRequest, discovery::ClaimDiscoveredResponse>()
        }
        ("certmesh.discovery.v1.DiscoveryService", "DismissDiscovered") => {
            t::<discovery::DismissDiscoveredRequest, discovery::DiscoveredCertificate>()
        }
        ("certmesh.notification.v1.NotificationService", "CreateChannel") => {
            t::<notification::CreateChannelRequest, notification::Channel>()
        }
        ("certmesh.notification.v1.NotificationService", "ListChannels") => {
            t::<notification::ListChannelsRequest, notification::ListChannelsResponse>()
        }
        ("certmesh.notification.v1.NotificationService", "DeleteChannel") => {
            t::<notification::DeleteChannelRequest, notification::DeleteChannelResponse>()
        }
        ("certmesh.notification.v1.NotificationService", "TestChannel") => {
            t::<notification::TestChannelRequest, notification::TestChannelResponse>()
        }
        ("certmesh.notification.v1.NotificationService", "CreateRule") => {
            t::<notification::CreateRuleRequest, notification::Rule>()
        }
        ("certmesh.notification.v1.NotificationService", "ListRules") => {
            t::<notification::ListRulesRequest, notification::ListRulesResponse>()
        }
        ("certmesh.notification.v1.NotificationService", "DeleteRule") => {
            t::<notification::DeleteRuleRequest, notification::DeleteRuleResponse>()
        }
        ("certmesh.notification.v1.NotificationService", "ListDeliveries") => {
            t::<notification::ListDeliveriesRequest, notification::ListDeliveriesResponse>()
        }
        ("certmesh.notification.v1.NotificationService", "RequeueDelivery") => {
            t::<notification::RequeueDeliveryRequest, notification::Delivery>()
        }
        _ => return None,
    })
}

/// Add every annotated route whose service has a backend.
pub(crate) fn routes(
    mut router: Router,
    backends: &BTreeMap<String, Backend>,
    metrics: Arc<Metrics>,
) -> Router {
    for route in ROUTES {
        let Some(backend) = backends.get(route.service) else {
            continue;
        };
        let Some(transcode) = transcoder(route) else {
            tracing::error!(
                service = route.service,
                method = route.method,
                "Annotated RPC has no transcoder."
            );
            continue;
        };
        let Ok(method) = http::Method::from_bytes(route.http_method.as_bytes()) else {
            continue;
        };
        let Ok(filter) = MethodFilter::try_from(method) else {
            continue;
        };
        let backend = backend.clone();
        let metrics = metrics.clone();
        let handler = move |params: Option<Path<HashMap<String, String>>>,
                            RawQuery(query): RawQuery,
                            headers: HeaderMap,
                            body: Body| {
            let backend = backend.clone();
            let metrics = metrics.clone();
            async move {
                let call = RestCall {
                    headers,
                    params: params.map(|p| p.0).unwrap_or_default(),
                    query,
                    body,
                };
                let mut response = transcode(backend, route, call).await;
                // Set on every error answer (`failure`, `too_large`); never leaves the process.
                let code = response
                    .extensions_mut()
                    .remove::<Code>()
                    .unwrap_or(Code::Ok);
                metrics
                    .http_requests
                    .get_or_create(&HttpRequestLabels {
                        method: route.http_method,
                        route: route.path,
                        code: code_name(code),
                    })
                    .inc();
                response
            }
        };
        router = router.route(route.path, on(filter, handler));
    }
    router
}

async fn transcode<Req, Resp>(
    backend: Backend,
    route: &'static HttpRoute,
    call: RestCall,
) -> Response
where
    Req: prost::Message + DeserializeOwned + Default + Send + 'static,
    Resp: prost::Message + Serialize + Default + Send + 'static,
{
    let RestCall {
        headers,
        params,
        query,
        body,
    } = call;
    let message = match request_message::<Req>(route, body, query.as_deref(), params).await {
        Ok(m) => m,
        Err(response) => return response,
    };
    let mut request = tonic::Request::new(message);
    for name in FORWARDED_HEADERS {
        let value = headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        if let Some(value) = value {
            request.metadata_mut().insert(*name, value);
        }
    }
    let Ok(path) = http::uri::PathAndQuery::try_from(route.grpc_path()) else {
        return failure(&status(Code::Internal, Reason::Internal, "bad route"));
    };
    let mut grpc = tonic::client::Grpc::new(backend);
    if grpc.ready().await.is_err() {
        return failure(&status(
            Code::Unavailable,
            Reason::BackendUnavailable,
            "backend not ready",
        ));
    }
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    match grpc.unary(request, path, codec).await {
        Ok(response) => match serde_json::to_value(response.get_ref()) {
            Ok(json) => (StatusCode::OK, Json(json)).into_response(),
            Err(_) => failure(&status(
                Code::Internal,
                Reason::Internal,
                "response does not serialize",
            )),
        },
        Err(status) => failure(&status),
    }
}

/// Merge body, query and path parameters (in that order of precedence, lowest first) into the
/// request message.
async fn request_message<Req: DeserializeOwned>(
    route: &HttpRoute,
    body: Body,
    query: Option<&str>,
    params: HashMap<String, String>,
) -> Result<Req, Response> {
    let mut fields = if route.body {
        read_json_object(body).await?
    } else {
        serde_json::Map::new()
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err(bad_request(
                "the query string is not valid percent-encoded UTF-8".into(),
            ));
        };
        fields.insert(k, serde_json::Value::String(v));
    }
    for (k, v) in params {
        fields.insert(k, serde_json::Value::String(v));
    }
    // Query strings carry no types: `?weak=true` is the bool `true` where the field is a bool
    // (probed one field at a time), and the string "true" everywhere else.
    for (k, v) in fields.iter_mut() {
        let from_query = query
            .unwrap_or("")
            .split('&')
            .any(|p| p.split('=').next() == Some(k.as_str()));
        if let (true, Some(b @ ("true" | "false"))) = (from_query, v.as_str()) {
            let probe = serde_json::json!({ k.as_str(): true });
            if serde_json::from_value::<Req>(probe).is_ok() {
                *v = serde_json::Value::Bool(b == "true");
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| bad_request(e.to_string()))
}

async fn read_json_object(
    body: Body,
) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    // A declared length over the limit is refused before a byte is read, so an HTTP/1.1
    // client that sent `Expect: 100-continue` gets the 413 without uploading the body (and
    // never writes into a connection the server is closing).
    if axum::body::HttpBody::size_hint(&body).lower() > MAX_REST_BODY as u64 {
        return Err(too_large());
    }
    let bytes = match axum::body::to_bytes(body, MAX_REST_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return Err(too_large()),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request("the request body must be a JSON object".into())),
        Err(e) => Err(bad_request(format!("the request body is not JSON: {e}"))),
    }
}

fn bad_request(message: String) -> Response {
    failure(&status(Code::InvalidArgument, Reason::BodyInvalid, message))
}

/// The JSON error response for `status`, tagged with its code for the request metric.
fn failure(status: &tonic::Status) -> Response {
    let mut response = error_response(status);
    response.extensions_mut().insert(status.code());
    response
}

/// `application/x-www-form-urlencoded` decoding of one query component.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Unknown paths: a JSON 404 with a stable reason.
pub(crate) async fn not_found() -> Response {
    let body = serde_json::json!({
        "code": "NOT_FOUND",
        "message": "no route for this method and path",
        "reason": Reason::RouteNotFound.as_str(),
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// The 413 answer for bodies over [`MAX_REST_BODY`]: a transport-level refusal by the gateway
/// itself, so it does not go through the gRPC code table.
fn too_large() -> Response {
    let body = serde_json::json!({
        "code": "INVALID_ARGUMENT",
        "message": format!("request body exceeds {MAX_REST_BODY} bytes"),
        "reason": Reason::BodyTooLarge.as_str(),
    });
    let mut response = (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
    response.extensions_mut().insert(Code::InvalidArgument);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_annotated_rpc_has_a_transcoder() {
        for route in ROUTES {
            assert!(
                transcoder(route).is_some(),
                "{}.{} has no transcoder",
                route.service,
                route.method
            );
        }
    }

    #[tokio::test]
    async fn query_booleans_fill_bool_fields_and_stay_strings_elsewhere() {
        let route = ROUTES
            .iter()
            .find(|r| r.method == "ListDiscovered")
            .expect("annotated");
        let req: discovery::ListDiscoveredRequest = request_message(
            route,
            Body::empty(),
            Some("weak=true&issuer=true&limit=5"),
            HashMap::new(),
        )
        .await
        .expect("parses");
        assert!(req.weak);
        assert_eq!(req.issuer, "true");
        assert_eq!(req.limit, 5);
        let bad = request_message::<discovery::ListDiscoveredRequest>(
            route,
            Body::empty(),
            Some("weak=maybe"),
            HashMap::new(),
        )
        .await;
        assert!(bad.is_err());
    }

    #[test]
    fn query_components_decode() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
