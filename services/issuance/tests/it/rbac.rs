//! The permission matrix over every issuance RPC and every role, through the gRPC handlers;
//! refusals are PERMISSION_DENIED with a stable reason and leave a `denied` audit row.

use certmesh_issuance::issue::RequestOutcome;
use certmesh_kit::{
    auth::AuthContext,
    rbac::{Permission, Role},
    reason::reason_of,
};
use certmesh_proto::issuance::{
    self as pb, approval_service_server::ApprovalService, issuance_service_server::IssuanceService,
    profile_service_server::ProfileService,
};
use certmesh_store::audit::{self, AuditFilter, Outcome, Verification};
use tonic::{Code, Request};

use crate::harness::{Harness, csr, each_backend, web_spec};

fn request<T>(h: &Harness, role: Role, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let auth = AuthContext {
        roles: vec![role],
        principal: format!("as-{role}"),
        principal_id: principal_id(role),
        ..h.auth.clone()
    };
    request.extensions_mut().insert(auth);
    request
}

/// A distinct id per role, so no caller is taken for another (or for the requester).
fn principal_id(role: Role) -> uuid::Uuid {
    let index = Role::ALL.iter().position(|r| *r == role).expect("a role");
    uuid::Uuid::from_u128(0x100 + index as u128)
}

/// A request held for approval, made by an ra-officer who is none of the callers.
async fn held(h: &Harness) -> String {
    let requester = AuthContext {
        roles: vec![Role::RaOfficer],
        principal: "requester".into(),
        principal_id: uuid::Uuid::from_u128(0x999),
        ..h.auth.clone()
    };
    match h
        .issuance
        .request(&requester, h.command(csr(&["held.example.com"]), "web"))
        .await
        .expect("request")
    {
        RequestOutcome::PendingApproval(a) => a.id.to_string(),
        RequestOutcome::Issued(_) => panic!("an ra-officer's request must be held"),
    }
}

fn csr_pem() -> String {
    // The harness CSRs are parsed already; the wire wants PEM, so make one through the
    // crypto boundary's own identity helper.
    let (_, csr) =
        certmesh_crypto::tls::server_identity(&["rbac.example.com".into()], &[]).expect("csr");
    certmesh_crypto::cert::pem_from_der(csr.der()).replace("CERTIFICATE", "CERTIFICATE REQUEST")
}

/// Calls one RPC as `role`; `Ok` (with the Issue status, else empty) or the status code and
/// reason. `target` is the serial or the approval id the RPC addresses.
async fn call(
    h: &Harness,
    rpc: &str,
    role: Role,
    target: &str,
) -> Result<String, (Code, Option<String>)> {
    let s = &h.issuance;
    let serial = target;
    let outcome = match rpc {
        "Issue" => IssuanceService::issue(
            s,
            request(
                h,
                role,
                pb::IssueRequest {
                    csr: csr_pem(),
                    profile: "web".into(),
                    ..Default::default()
                },
            ),
        )
        .await
        .map(|r| r.into_inner().status),
        "ListApprovals" => ApprovalService::list_approvals(
            s,
            request(h, role, pb::ListApprovalsRequest::default()),
        )
        .await
        .map(|_| String::new()),
        "Approve" => ApprovalService::approve(
            s,
            request(h, role, pb::ApproveRequest { id: target.into() }),
        )
        .await
        .map(|r| r.into_inner().approval.unwrap_or_default().status),
        "Reject" => ApprovalService::reject(
            s,
            request(
                h,
                role,
                pb::RejectRequest {
                    id: target.into(),
                    note: "not ours".into(),
                },
            ),
        )
        .await
        .map(|r| r.into_inner().status),
        "GetCertificate" => IssuanceService::get_certificate(
            s,
            request(
                h,
                role,
                pb::GetCertificateRequest {
                    serial: serial.into(),
                },
            ),
        )
        .await
        .map(|_| String::new()),
        "ListCertificates" => IssuanceService::list_certificates(
            s,
            request(h, role, pb::ListCertificatesRequest::default()),
        )
        .await
        .map(|_| String::new()),
        "CreateProfile" => ProfileService::create_profile(
            s,
            request(
                h,
                role,
                pb::CreateProfileRequest {
                    name: "other".into(),
                    spec: Some(web_spec()),
                },
            ),
        )
        .await
        .map(|_| String::new()),
        "GetProfile" => ProfileService::get_profile(
            s,
            request(h, role, pb::GetProfileRequest { name: "web".into() }),
        )
        .await
        .map(|_| String::new()),
        "GetProfileVersion" => ProfileService::get_profile_version(
            s,
            request(
                h,
                role,
                pb::GetProfileVersionRequest {
                    name: "web".into(),
                    version: 1,
                },
            ),
        )
        .await
        .map(|_| String::new()),
        "ListProfiles" => {
            ProfileService::list_profiles(s, request(h, role, pb::ListProfilesRequest {}))
                .await
                .map(|_| String::new())
        }
        other => panic!("no such RPC {other}"),
    };
    outcome.map_err(|status| (status.code(), reason_of(&status)))
}

/// Issue needs certs:request (holding the request) or certs:issue; the matrix names
/// certs:request, and the loop also allows certs:issue alone (the agent role).
const RPCS: &[(&str, Permission)] = &[
    ("Issue", Permission::CertsRequest),
    ("ListApprovals", Permission::ApprovalsRead),
    ("Approve", Permission::ApprovalsDecide),
    ("Reject", Permission::ApprovalsDecide),
    ("GetCertificate", Permission::CertsRead),
    ("ListCertificates", Permission::CertsRead),
    ("CreateProfile", Permission::ProfilesWrite),
    ("GetProfile", Permission::ProfilesRead),
    ("GetProfileVersion", Permission::ProfilesRead),
    ("ListProfiles", Permission::ProfilesRead),
];

#[tokio::test]
async fn every_rpc_enforces_the_matrix_for_every_role_and_audits_refusals() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let issued = h
            .issuance
            .issue(&h.auth, h.command(csr(&["seed.example.com"]), "web"))
            .await
            .expect("seed");
        let serial = issued.record.serial;
        let mut refusals = 0;
        for (rpc, permission) in RPCS {
            for role in Role::ALL {
                let target = match *rpc {
                    "Approve" | "Reject" => held(&h).await,
                    _ => serial.clone(),
                };
                let outcome = call(&h, rpc, *role, &target).await;
                let issues = *rpc == "Issue" && role.grants(Permission::CertsIssue);
                if role.grants(*permission) || issues {
                    let expected = match *rpc {
                        // An ra-officer requests; the request waits for a second person.
                        "Issue" if !role.grants(Permission::CertsIssue) => "pending_approval",
                        "Issue" => "issued",
                        "Approve" => "approved",
                        "Reject" => "rejected",
                        _ => "",
                    };
                    assert_eq!(
                        outcome.as_deref(),
                        Ok(expected),
                        "{role} should be allowed {rpc}"
                    );
                } else {
                    refusals += 1;
                    assert_eq!(
                        outcome,
                        Err((Code::PermissionDenied, Some("PERMISSION_MISSING".into()))),
                        "{role} must be refused {rpc}"
                    );
                }
            }
        }
        // An ra-officer requests, never issues: its Issue above was held, not signed.
        assert!(!Role::RaOfficer.grants(Permission::CertsIssue));
        assert!(Role::RaOfficer.grants(Permission::CertsRequest));
        let denied = h
            .store
            .in_tenant(h.auth.tenant_id, async |tx| {
                audit::query(tx, h.auth.tenant_id, &AuditFilter::default(), 0, 1000).await
            })
            .await
            .expect("audit")
            .into_iter()
            .filter(|r| r.outcome == Outcome::Denied)
            .count();
        assert_eq!(denied, refusals, "every refusal is audited");
        let verification = h
            .store
            .in_tenant(h.auth.tenant_id, async |tx| {
                audit::verify(tx, h.auth.tenant_id).await
            })
            .await
            .expect("verify");
        assert!(
            matches!(verification, Verification::Intact { .. }),
            "{verification:?}"
        );
    }
}

#[tokio::test]
async fn state_changes_and_profile_denials_are_in_the_audit_trail() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let ok = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "web"))
            .await
            .expect("issued");
        let _ = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.evil.test"]), "web"))
            .await
            .expect_err("denied");
        let rows = h
            .store
            .in_tenant(h.auth.tenant_id, async |tx| {
                audit::query(tx, h.auth.tenant_id, &AuditFilter::default(), 0, 100).await
            })
            .await
            .expect("audit");
        let summary: Vec<_> = rows
            .iter()
            .map(|r| (r.action.as_str(), r.outcome, r.resource.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "profiles.create",
                    Outcome::Allowed,
                    "profile:web".to_string()
                ),
                (
                    "certs.issue",
                    Outcome::Allowed,
                    format!("certificate:{}", ok.record.serial)
                ),
                ("certs.issue", Outcome::Denied, "profile:web".to_string()),
            ]
        );
        assert!(
            rows.iter()
                .all(|r| r.actor == "tester" && r.request_id == "test-request")
        );
        assert_eq!(rows[2].details["rule"], "permitted_dns_suffixes");
        assert!(matches!(
            h.store
                .in_tenant(h.auth.tenant_id, async |tx| audit::verify(
                    tx,
                    h.auth.tenant_id
                )
                .await)
                .await
                .expect("verify"),
            Verification::Intact { rows: 3 }
        ));
    }
}
