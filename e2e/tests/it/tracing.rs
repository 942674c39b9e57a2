//! Tracing across processes: an in-process OTLP/gRPC collector, the issuance role and a gateway
//! as two real processes exporting to it, and one REST issue with a known `x-request-id`. The
//! gateway's span and the role's span share the trace, the role's parent is a gateway span,
//! both carry the request id, and the role's carries the tenant and principal. The role holds
//! its spans for a long batch delay, so seeing them proves the flush on SIGTERM. A third
//! process started without `OTEL_EXPORTER_OTLP_ENDPOINT` exports nothing.

use std::{
    collections::HashSet,
    fs,
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value::Value},
    trace::v1::{Span, span::SpanKind},
};
use serde_json::json;

use crate::support::{
    Api, PgDatabase, Process, assert_eventually, certmesh, csr, free_port, health, kek_file,
    migrated_with_token, plaintext_health, scratch, tls_identity, web_spec, write,
};

/// A span as the collector received it, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    /// A string or integer attribute, as text.
    fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The collector's OTLP TraceService: keeps every span it is sent.
#[derive(Debug, Clone, Default)]
struct Sink(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| Received {
                    service: service.clone(),
                    span,
                }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC collector on a loopback port, on its own runtime, stopped when dropped.
struct Collector {
    addr: SocketAddr,
    sink: Sink,
    _runtime: tokio::runtime::Runtime,
}

impl Collector {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the collector");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the collector");
        let addr = listener.local_addr().expect("the collector's address");
        let sink = Sink::default();
        let service = TraceServiceServer::new(sink.clone());
        runtime.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = served {
                eprintln!("the OTLP collector stopped: {e}");
            }
        });
        Self {
            addr,
            sink,
            _runtime: runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Received> {
        self.sink
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for a server span of `service` carrying `request_id`.
    fn server_span(&self, service: &str, request_id: &str) -> Received {
        assert_eventually(
            &format!("a {service} span for request {request_id}"),
            Duration::from_secs(20),
            || {
                let spans = self.spans();
                spans
                    .iter()
                    .find(|r| {
                        r.service == service
                            && r.span.kind == SpanKind::Server as i32
                            && r.attr("request_id").as_deref() == Some(request_id)
                    })
                    .cloned()
                    .ok_or_else(|| {
                        let seen: HashSet<_> = spans
                            .iter()
                            .map(|r| format!("{} {}", r.service, r.span.name))
                            .collect();
                        format!("spans so far: {seen:?}")
                    })
            },
        )
    }
}

/// `certmesh` with no OpenTelemetry settings from the caller's environment, exporting to
/// `endpoint` when given, in batches every `delay_ms`.
fn traced(endpoint: Option<(&str, &str)>) -> Command {
    let mut cmd = certmesh();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    if let Some((endpoint, delay_ms)) = endpoint {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", delay_ms);
    }
    cmd
}

/// A gateway process in front of `roles` (h2c) on a free port, serving TLS with `tls`.
fn gateway(
    mut cmd: Command,
    roles: &str,
    tls: &(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf),
    dir: &std::path::Path,
    name: &str,
) -> (Process, String) {
    let port = free_port();
    cmd.args([
        "server",
        "--services",
        "gateway",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .arg("--issuance-endpoint")
    .arg(format!("http://{roles}"))
    .arg("--iam-endpoint")
    .arg(format!("http://{roles}"))
    .arg("--tls-cert")
    .arg(&tls.1)
    .arg("--tls-key")
    .arg(&tls.2);
    let mut process = Process::spawn(name, cmd, dir);
    let base = format!("https://127.0.0.1:{port}");
    process.wait_until("gateway /healthz over TLS", || health(&base, &tls.0));
    (process, base)
}

/// The value of `name` in a curl `--dump-header` file.
fn dumped_header(path: &std::path::Path, name: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// The role process's service name: `certmesh-<roles joined by +>`.
const ROLES: &str = "certmesh-issuance+iam";

#[test]
fn spans_of_one_request_share_a_trace_from_the_gateway_to_the_issuance_role() {
    let db = PgDatabase::create();
    let dir = scratch();
    let collector = Collector::start();
    let (token, token_file) = migrated_with_token(&db.url, dir.path(), Some("tracer"));

    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).expect("creating the key directory");
    let kek = kek_file(dir.path());
    let roles_addr = format!("127.0.0.1:{}", free_port());
    // The role exports only at shutdown (a minute's batch delay, far fewer than 512 spans).
    let endpoint = collector.endpoint();
    let mut cmd = traced(Some((&endpoint, "60000")));
    cmd.args([
        "server",
        "--services",
        "issuance,iam",
        "--listen",
        &roles_addr,
        "--database-url",
        &db.url,
    ])
    .arg("--key-dir")
    .arg(&keys)
    .arg("--kek-file")
    .arg(&kek)
    .arg("--dangerous-plaintext");
    let mut roles = Process::spawn("certmesh-issuance-iam", cmd, dir.path());
    roles.wait_until("/healthz over h2c", || plaintext_health(&roles_addr));

    let tls = tls_identity(dir.path());
    let (mut traced_gateway, base) = gateway(
        traced(Some((&endpoint, "200"))),
        &roles_addr,
        &tls,
        dir.path(),
        "certmesh-gateway",
    );
    let api = Api {
        base,
        ca: tls.0.clone(),
        token: token.clone(),
        token_file: token_file.clone(),
    };
    assert_eq!(api.create_profile("web", &web_spec())["version"], 1);

    // One REST issue with a known request id; the gateway echoes it.
    let request_id = "e2e-trace-7d1c";
    let request = csr(dir.path(), "traced.example.com", "P-256", &[]);
    let body = json!({ "csr": request.pem, "profile": "web" }).to_string();
    let body_file = write(&dir.path().join("issue.json"), body);
    let headers_file = dir.path().join("issue.headers");
    let headers_arg = headers_file.display().to_string();
    api.send_with(
        "POST",
        "/api/v1/certificates",
        Some(&token),
        &[("x-request-id", request_id)],
        Some(&body_file),
        &["--dump-header", &headers_arg],
    )
    .ok();
    assert_eq!(
        dumped_header(&headers_file, "x-request-id").as_deref(),
        Some(request_id),
        "the gateway echoes the request id"
    );

    let edge = collector.server_span("certmesh-gateway", request_id);
    assert_eq!(edge.span.name, "POST /api/v1/certificates", "{edge:?}");
    assert_eq!(
        edge.attr("http.route").as_deref(),
        Some("/api/v1/certificates")
    );
    assert_eq!(
        edge.attr("http.response.status_code").as_deref(),
        Some("200")
    );

    // A gateway without OTEL_EXPORTER_OTLP_ENDPOINT exports nothing (its name is set, so its
    // spans would be recognisable); the role still traces the request, as a new trace.
    let mut cmd = traced(None);
    cmd.env("OTEL_SERVICE_NAME", "certmesh-untraced");
    let (mut untraced_gateway, base) =
        gateway(cmd, &roles_addr, &tls, dir.path(), "certmesh-untraced");
    let quiet = Api {
        base,
        ca: tls.0.clone(),
        token: token.clone(),
        token_file,
    };
    let untraced_id = "e2e-untraced-51aa";
    quiet
        .send(
            "GET",
            "/api/v1/certificates",
            Some(&token),
            &[("x-request-id", untraced_id)],
            None,
        )
        .ok();
    assert!(
        collector.spans().iter().all(|r| r.service != ROLES),
        "the role exported before its batch delay or shutdown"
    );

    // SIGTERM: the role drains, then flushes what it holds.
    untraced_gateway.stop();
    traced_gateway.stop();
    roles.stop();
    let role = collector.server_span(ROLES, request_id);
    assert_eq!(
        role.span.name, "certmesh.issuance.v1.IssuanceService/Issue",
        "{role:?}"
    );
    assert_eq!(role.attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(role.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(
        role.span.trace_id, edge.span.trace_id,
        "the role's span is in the gateway's trace"
    );
    let gateway_span_ids: HashSet<Vec<u8>> = collector
        .spans()
        .into_iter()
        .filter(|r| r.service == "certmesh-gateway" && r.span.trace_id == edge.span.trace_id)
        .map(|r| r.span.span_id)
        .collect();
    assert!(
        gateway_span_ids.contains(&role.span.parent_span_id),
        "the role's parent span {:02x?} is one of the gateway's: {gateway_span_ids:02x?}",
        role.span.parent_span_id
    );
    let tenant = role.attr("tenant").unwrap_or_default();
    assert!(
        uuid_like(&tenant),
        "the role's span names the tenant: {role:?}"
    );
    assert_eq!(
        role.attr("principal").as_deref(),
        Some("tracer"),
        "{role:?}"
    );
    let root = collector.server_span(ROLES, untraced_id);
    assert!(
        root.span.parent_span_id.is_empty(),
        "an untraced gateway sends no trace context: {root:?}"
    );
    let leaked: Vec<_> = collector
        .spans()
        .into_iter()
        .filter(|r| r.service == "certmesh-untraced")
        .map(|r| r.span.name)
        .collect();
    assert!(
        leaked.is_empty(),
        "a process without OTEL_EXPORTER_OTLP_ENDPOINT exported {leaked:?}"
    );
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.bytes().filter(|b| *b == b'-').count() == 4
}
