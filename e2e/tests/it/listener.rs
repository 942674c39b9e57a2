//! The gateway's one listener: TLS 1.3 only, and gRPC health and reflection on the same port as
//! the API, reached with real clients (openssl s_client, tonic's health and reflection clients).

use std::process::{Command, Stdio};

use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::support::{DevServer, tool};

fn s_client(port: &str, version_flag: &str) -> (bool, String) {
    let output = Command::new(tool("openssl"))
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version_flag,
            "-brief",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success() && text.contains("Protocol version: TLSv1.3"),
        text,
    )
}

#[test]
fn the_listener_refuses_tls_1_2_and_speaks_tls_1_3() {
    let server = DevServer::start();
    let port = server
        .api
        .base
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let (ok13, text13) = s_client(&port, "-tls1_3");
    assert!(ok13, "a TLS 1.3 handshake should succeed:\n{text13}");
    let (ok12, text12) = s_client(&port, "-tls1_2");
    assert!(
        !ok12 && !text12.contains("Protocol version: TLSv1.2"),
        "TLS 1.2 must be refused:\n{text12}"
    );
}

async fn channel(server: &DevServer) -> Channel {
    let bundle = std::fs::read(server.bundle()).expect("bundle");
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(bundle));
    Channel::from_shared(server.api.base.clone())
        .expect("url")
        .tls_config(tls)
        .expect("tls")
        .connect()
        .await
        .expect("connects over TLS")
}

#[test]
fn grpc_health_and_reflection_answer_on_the_api_port() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = DevServer::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let channel = channel(&server).await;
        let mut health = HealthClient::new(channel.clone());
        for service in [
            "certmesh.issuance.v1.IssuanceService",
            "certmesh.issuance.v1.ProfileService",
        ] {
            let reply = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|s| panic!("health check of {service}: {s}"));
            assert_eq!(
                reply.get_ref().status,
                ServingStatus::Serving as i32,
                "{service}"
            );
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await;
        assert_eq!(
            unknown.expect_err("unknown service").code(),
            tonic::Code::NotFound
        );

        let mut reflection = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection stream")
            .into_inner();
        let reply = stream
            .message()
            .await
            .expect("reflection reply")
            .expect("one reply");
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("expected a service list, got {reply:?}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for expected in [
            "certmesh.issuance.v1.IssuanceService",
            "certmesh.issuance.v1.ProfileService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.contains(&expected),
                "reflection lists {names:?}, missing {expected}"
            );
        }
    });
}
