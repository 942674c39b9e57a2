//! The permission matrix over every issuance RPC and every role, through the gRPC handlers;
//! refusals are PERMISSION_DENIED with a stable reason and leave a `denied` audit row.

use certmesh_kit::{
    auth::AuthContext,
    rbac::{Permission, Role},
    reason::reason_of,
};
use certmesh_proto::issuance::{
    self as pb, issuance_service_server::IssuanceService, profile_service_server::ProfileService,
};
use certmesh_store::audit::{self, AuditFilter, Outcome, Verification};
use tonic::{Code, Request};

use crate::harness::{Harness, csr, each_backend, web_spec};

fn request<T>(h: &Harness, role: Role, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let auth = AuthContext {
        roles: vec![role],
        principal: format!("as-{role}"),
        ..h.auth.clone()
    };
    request.extensions_mut().insert(auth);
    request
}

fn csr_pem() -> String {
    // The harness CSRs are parsed already; the wire wants PEM, so make one through the
    // crypto boundary's own identity helper.
    let (_, csr) =
        certmesh_crypto::tls::server_identity(&["rbac.example.com".into()], &[]).expect("csr");
    certmesh_crypto::cert::pem_from_der(csr.der()).replace("CERTIFICATE", "CERTIFICATE REQUEST")
}

/// Calls one RPC as `role`; `Ok` or the status code and reason.
async fn call(
    h: &Harness,
    rpc: &str,
    role: Role,
    serial: &str,
) -> Result<(), (Code, Option<String>)> {
    let s = &h.issuance;
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
        .map(|_| ()),
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
        .map(|_| ()),
        "ListCertificates" => IssuanceService::list_certificates(
            s,
            request(h, role, pb::ListCertificatesRequest::default()),
        )
        .await
        .map(|_| ()),
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
        .map(|_| ()),
        "GetProfile" => ProfileService::get_profile(
            s,
            request(h, role, pb::GetProfileRequest { name: "web".into() }),
        )
        .await
        .map(|_| ()),
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
        .map(|_| ()),
        "ListProfiles" => {
            ProfileService::list_profiles(s, request(h, role, pb::ListProfilesRequest {}))
                .await
                .map(|_| ())
        }
        other => panic!("no such RPC {other}"),
    };
    outcome.map_err(|status| (status.code(), reason_of(&status)))
}

const RPCS: &[(&str, Permission)] = &[
    ("Issue", Permission::CertsIssue),
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
                let outcome = call(&h, rpc, *role, &serial).await;
                if role.grants(*permission) {
                    assert!(
                        outcome.is_ok(),
                        "{role} should be allowed {rpc}: {outcome:?}"
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
        // An ra-officer requests, never issues.
        assert!(!Role::RaOfficer.grants(Permission::CertsIssue));
        let denied = audit::query(
            h.store.conn(),
            h.auth.tenant_id,
            &AuditFilter::default(),
            0,
            1000,
        )
        .await
        .expect("audit")
        .into_iter()
        .filter(|r| r.outcome == Outcome::Denied)
        .count();
        assert_eq!(denied, refusals, "every refusal is audited");
        let verification = audit::verify(h.store.conn(), h.auth.tenant_id)
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
        let rows = audit::query(
            h.store.conn(),
            h.auth.tenant_id,
            &AuditFilter::default(),
            0,
            100,
        )
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
            audit::verify(h.store.conn(), h.auth.tenant_id)
                .await
                .expect("verify"),
            Verification::Intact { rows: 3 }
        ));
    }
}
