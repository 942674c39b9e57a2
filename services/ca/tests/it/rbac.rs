//! The gRPC API as each role sees it: operators run ceremonies and operations, custodians
//! only approve, viewers only read.

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use certmesh_crypto::{
    ceremony::{sign_with_private_key_pem, signing_message},
    cert::Certificate,
};
use certmesh_kit::{auth::AuthContext, rbac::Role};
use certmesh_proto::ca::{self as pb, ca_service_server::CaService};
use certmesh_store::audit::Outcome;
use chrono::Duration;
use tonic::{Code, Request};

use crate::harness::{Harness, child_params, each_backend, refused, req, root_params};

fn start_request(h: &Harness, purpose: &str, params: &pb::CaParams) -> pb::StartCeremonyRequest {
    crate::harness::start_request(purpose, 3, h.custodian_names(), params)
}

/// Starts a ceremony as `auth` and has c1, c2 and c3 approve it through gRPC, each signing
/// the signing message the API shows them; its id.
async fn grpc_ceremony(
    h: &Harness,
    auth: &AuthContext,
    purpose: &str,
    params: &pb::CaParams,
) -> String {
    let ceremony = CaService::start_ceremony(&h.ca, req(auth, start_request(h, purpose, params)))
        .await
        .expect("started")
        .into_inner();
    assert_eq!(ceremony.status, "open");
    assert_eq!(
        ceremony.signing_message.as_bytes(),
        signing_message(&ceremony.digest).as_slice()
    );
    for (n, c) in h.custodians[..3].iter().enumerate() {
        let signature =
            sign_with_private_key_pem(&c.private_pem, ceremony.signing_message.as_bytes())
                .expect("signs");
        let approve = pb::ApproveCeremonyRequest {
            id: ceremony.id.clone(),
            signature: B64.encode(signature),
        };
        let answer = CaService::approve_ceremony(&h.ca, req(&c.auth, approve))
            .await
            .expect("approved")
            .into_inner();
        assert_eq!(answer.approvals, n as u32 + 1, "{}", h.backend);
    }
    ceremony.id
}

#[tokio::test]
async fn operators_run_ceremonies_custodians_approve_and_viewers_read() {
    for h in each_backend().await {
        let c1 = h.custodians[0].auth.clone();
        let params = root_params("corp-root", "Corp Root CA", Some(1));

        // Starting a ceremony takes cas:manage.
        let before = h.snapshot().await;
        for who in [&h.viewer, &c1] {
            assert_eq!(
                refused(
                    CaService::start_ceremony(
                        &h.ca,
                        req(who, start_request(&h, "create_root", &params))
                    )
                    .await
                ),
                (Code::PermissionDenied, "PERMISSION_MISSING".into()),
                "{}: {}",
                h.backend,
                who.principal
            );
        }
        assert_eq!(h.snapshot().await, before);
        let denied = h.audit("ceremonies.start").await;
        assert_eq!(denied.len(), 2, "{}", h.backend);
        assert!(denied.iter().all(|e| e.outcome == Outcome::Denied));

        let id = grpc_ceremony(&h, &h.operator, "create_root", &params).await;
        let create = pb::CreateRootRequest {
            ceremony_id: id.clone(),
            params: Some(params.clone()),
            import: None,
        };

        // Creating a CA takes cas:manage: a custodian approves, it does not operate.
        let before = h.snapshot().await;
        for who in [&c1, &h.viewer] {
            assert_eq!(
                refused(CaService::create_root(&h.ca, req(who, create.clone())).await),
                (Code::PermissionDenied, "PERMISSION_MISSING".into()),
                "{}: {}",
                h.backend,
                who.principal
            );
        }
        assert_eq!(h.snapshot().await, before);
        assert_eq!(
            refused(CaService::create_root(&h.ca, Request::new(create.clone())).await).0,
            Code::Unauthenticated
        );

        let root = CaService::create_root(&h.ca, req(&h.operator, create))
            .await
            .expect("created")
            .into_inner();
        assert!(!root.validity_capped);
        let root = root.ca.expect("ca");
        assert_eq!(
            (root.kind.as_str(), root.generation, root.path_len),
            ("root", 1, Some(1))
        );
        let root_cert = Certificate::from_pem(&root.certificate_pem).expect("PEM");
        assert_eq!(root.fingerprint_sha256, root_cert.fingerprint_sha256());

        // An operation refused by its ceremony answers with the reason and is audited.
        let root_record = h.cas().await.remove(0);
        let child = child_params("issuing", &root_record, "Corp Issuing CA", None, &[]);
        let unapproved = CaService::start_ceremony(
            &h.ca,
            req(
                &h.operator,
                start_request(&h, "create_intermediate", &child),
            ),
        )
        .await
        .expect("started")
        .into_inner();
        let early = pb::CreateIntermediateRequest {
            parent_id: root.id.clone(),
            ceremony_id: unapproved.id.clone(),
            params: Some(child.clone()),
        };
        let status = CaService::create_intermediate(&h.ca, req(&h.operator, early))
            .await
            .expect_err("no approvals yet");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            certmesh_kit::reason::reason_of(&status).as_deref(),
            Some("QUORUM_NOT_MET")
        );
        assert!(status.message().contains("0 of 3"), "{}", status.message());
        let audited = h.audit("cas.create_intermediate").await;
        assert_eq!(audited.len(), 1, "{}", h.backend);
        assert_eq!(audited[0].outcome, Outcome::Denied);
        assert_eq!(audited[0].details["reason"], "QUORUM_NOT_MET");

        // A minute later, so the CAs list in creation order.
        h.clock.advance(Duration::minutes(1));
        let id = grpc_ceremony(&h, &h.operator, "create_intermediate", &child).await;
        let issuing = CaService::create_intermediate(
            &h.ca,
            req(
                &h.operator,
                pb::CreateIntermediateRequest {
                    parent_id: root.id.clone(),
                    ceremony_id: id.clone(),
                    params: Some(child),
                },
            ),
        )
        .await
        .expect("created")
        .into_inner()
        .ca
        .expect("ca");
        assert_eq!(
            (issuing.parent_id.as_str(), issuing.path_len),
            (root.id.as_str(), Some(0))
        );

        // Viewers read ceremonies and CAs.
        let ceremony =
            CaService::get_ceremony(&h.ca, req(&h.viewer, pb::GetCeremonyRequest { id }))
                .await
                .expect("ceremony")
                .into_inner();
        assert_eq!(
            (ceremony.status.as_str(), ceremony.result_ca_id.as_str()),
            ("completed", issuing.id.as_str())
        );
        let mut approvers = ceremony.approved_by.clone();
        approvers.sort();
        assert_eq!(approvers, ["c1", "c2", "c3"]);
        let listed = CaService::list_ceremonies(
            &h.ca,
            req(
                &h.viewer,
                pb::ListCeremoniesRequest {
                    status: "open".into(),
                },
            ),
        )
        .await
        .expect("ceremonies")
        .into_inner()
        .ceremonies;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, unapproved.id);
        let cas = CaService::list_cas(&h.ca, req(&h.viewer, pb::ListCasRequest {}))
            .await
            .expect("list")
            .into_inner()
            .cas;
        let names: Vec<&str> = cas.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["corp-root", "issuing"], "{}", h.backend);
        let got = CaService::get_ca(
            &h.ca,
            req(
                &h.viewer,
                pb::GetCaRequest {
                    id: issuing.id.clone(),
                },
            ),
        )
        .await
        .expect("get")
        .into_inner();
        assert_eq!(got, issuing);
        let chain = CaService::get_ca_chain(
            &h.ca,
            req(
                &h.viewer,
                pb::GetCaChainRequest {
                    id: issuing.id.clone(),
                },
            ),
        )
        .await
        .expect("chain")
        .into_inner()
        .chain_pem;
        assert_eq!(
            chain,
            format!("{}{}", issuing.certificate_pem, root.certificate_pem)
        );
        assert_eq!(
            refused(
                CaService::get_ca(
                    &h.ca,
                    req(
                        &h.viewer,
                        pb::GetCaRequest {
                            id: uuid::Uuid::new_v4().to_string()
                        }
                    )
                )
                .await
            ),
            (Code::NotFound, "CA_NOT_FOUND".into())
        );

        // Retiring takes cas:manage.
        let retire = pb::RetireCaRequest {
            id: issuing.id.clone(),
            confirm: false,
        };
        let before = h.snapshot().await;
        for who in [&h.viewer, &c1] {
            assert_eq!(
                refused(CaService::retire_ca(&h.ca, req(who, retire.clone())).await),
                (Code::PermissionDenied, "PERMISSION_MISSING".into())
            );
        }
        assert_eq!(h.snapshot().await, before);
        let retired = CaService::retire_ca(&h.ca, req(&h.operator, retire))
            .await
            .expect("drains")
            .into_inner();
        assert_eq!(retired.status, "retiring");

        // Admins may do anything but approve unless they are custodians too.
        let admin = h.principal("ada", &[Role::Admin]).await;
        let approve = pb::ApproveCeremonyRequest {
            id: unapproved.id.clone(),
            signature: B64.encode(b"whatever"),
        };
        assert_eq!(
            refused(CaService::approve_ceremony(&h.ca, req(&admin, approve)).await),
            (Code::PermissionDenied, "NOT_A_CUSTODIAN".into())
        );
        // A listed custodian whose token no longer carries the custodian role.
        let demoted = AuthContext {
            roles: vec![Role::Admin],
            ..c1.clone()
        };
        let signature = h.custodians[0].sign(&h.ceremony(&unapproved.id).await);
        let approve = pb::ApproveCeremonyRequest {
            id: unapproved.id.clone(),
            signature,
        };
        assert_eq!(
            refused(CaService::approve_ceremony(&h.ca, req(&demoted, approve)).await),
            (Code::PermissionDenied, "NOT_A_CUSTODIAN".into())
        );
        assert!(h.ceremony(&unapproved.id).await.approved_by.is_empty());
    }
}
