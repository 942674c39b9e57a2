//! Two-person approval: held requests, approval through the one issuance path, self-approval,
//! rejection, expiry, permissions, tenancy and racing approvers, on every backend.

use certmesh_issuance::{
    IssuanceError,
    issue::{IssueOutcome, RequestOutcome},
};
use certmesh_kit::{auth::AuthContext, rbac::Role, reason::reason_of};
use certmesh_proto::issuance::{self as pb, approval_service_server::ApprovalService};
use certmesh_store::{
    approvals::{ApprovalRecord, ApprovalStatus},
    audit::{self, AuditFilter, Outcome, Verification},
    tenants,
};
use chrono::Duration;
use tonic::{Code, Request, Status};

use crate::harness::{Harness, csr, each_backend, start, web_spec};

fn caller(h: &Harness, name: &str, id: u128, role: Role) -> AuthContext {
    AuthContext {
        principal: name.into(),
        principal_id: uuid::Uuid::from_u128(id),
        roles: vec![role],
        request_id: format!("req-{name}"),
        ..h.auth.clone()
    }
}

fn officer(h: &Harness) -> AuthContext {
    caller(h, "rachel", 1, Role::RaOfficer)
}

fn operator(h: &Harness) -> AuthContext {
    caller(h, "oscar", 2, Role::Operator)
}

fn second_operator(h: &Harness) -> AuthContext {
    caller(h, "olga", 3, Role::Operator)
}

async fn held(h: &Harness, auth: &AuthContext, key: Option<&str>) -> ApprovalRecord {
    let mut cmd = h.command(csr(&["www.example.com"]), "web");
    cmd.idempotency_key = key.map(str::to_string);
    match h.issuance.request(auth, cmd).await.expect("request") {
        RequestOutcome::PendingApproval(a) => a,
        RequestOutcome::Issued(o) => panic!("issued {} instead of holding", o.record.serial),
    }
}

fn refused(err: IssuanceError) -> (Code, Option<String>) {
    let status = Status::from(err);
    (status.code(), reason_of(&status))
}

fn not_pending() -> (Code, Option<String>) {
    (
        Code::FailedPrecondition,
        Some("APPROVAL_NOT_PENDING".into()),
    )
}

async fn status_of(h: &Harness, id: uuid::Uuid) -> ApprovalStatus {
    let all = h.issuance.list_approvals(&h.auth, "").await.expect("list");
    all.iter().find(|a| a.id == id).expect("listed").status
}

#[tokio::test]
async fn an_ra_officer_request_waits_for_approval_and_then_issues_once() {
    for h in each_backend().await {
        let version = h.profile("web", web_spec()).await;
        let requested = held(&h, &officer(&h), Some("order-1")).await;
        assert_eq!(requested.status, ApprovalStatus::Pending);
        assert_eq!(requested.requester, "rachel");
        assert_eq!(requested.expires_at, start() + Duration::hours(168));
        assert_eq!(h.certificate_count().await, 0, "nothing is signed yet");
        // A retry while pending is the same approval, not a second one; the same key with
        // another CSR is refused.
        let same = certmesh_crypto::csr::Csr::from_pem(&requested.csr_pem).expect("csr");
        let mut retry = h.command(same, "web");
        retry.idempotency_key = Some("order-1".into());
        let Ok(RequestOutcome::PendingApproval(again)) =
            h.issuance.request(&officer(&h), retry.clone()).await
        else {
            panic!("the retry must answer with the pending approval")
        };
        assert_eq!(again.id, requested.id);
        let err = h
            .issuance
            .request(&officer(&h), {
                let mut other = h.command(csr(&["www.example.com"]), "web");
                other.idempotency_key = Some("order-1".into());
                other
            })
            .await
            .expect_err("another request under the key");
        assert!(matches!(err, IssuanceError::IdempotencyKeyReused { .. }));

        let (decided, issued) = h
            .issuance
            .approve(&operator(&h), &requested.id.to_string())
            .await
            .expect("approve");
        assert_eq!(decided.status, ApprovalStatus::Approved);
        assert_eq!(decided.decided_by.as_deref(), Some("oscar"));
        assert_eq!(
            decided.certificate_serial.as_deref(),
            Some(issued.record.serial.as_str())
        );
        assert_eq!(issued.record.profile_version, version);
        assert_eq!(h.certificate_count().await, 1);
        let approved = h
            .issuance
            .list_approvals(&h.auth, "approved")
            .await
            .expect("list");
        assert_eq!(approved, vec![decided.clone()]);

        // The original request, retried with its key, answers with the approved certificate.
        let RequestOutcome::Issued(IssueOutcome {
            record, replayed, ..
        }) = h
            .issuance
            .request(&officer(&h), retry)
            .await
            .expect("retry")
        else {
            panic!("the retry must answer with the certificate")
        };
        assert!(replayed);
        assert_eq!(record.certificate_der, issued.record.certificate_der);
        assert_eq!(h.certificate_count().await, 1);
        // Held twice (the request and its retry), refused once (the key reused), issued once
        // on approval, replayed once.
        for (outcome, n) in [
            ("pending_approval", 2.0),
            ("refused", 1.0),
            ("issued", 1.0),
            ("replayed", 1.0),
        ] {
            let labels = [("profile", "web"), ("outcome", outcome)];
            assert_eq!(
                h.issuance_total(&labels),
                n,
                "{outcome}: {}",
                h.metrics.render()
            );
        }

        let rows = h
            .store
            .in_tenant(h.auth.tenant_id, async |tx| {
                audit::query(tx, h.auth.tenant_id, &AuditFilter::default(), 0, 100).await
            })
            .await
            .expect("audit");
        let trail: Vec<_> = rows
            .iter()
            .map(|r| (r.actor.as_str(), r.action.as_str(), r.outcome))
            .collect();
        assert!(trail.contains(&("rachel", "certs.request", Outcome::Allowed)));
        assert!(trail.contains(&("rachel", "certs.issue", Outcome::Allowed)));
        assert!(trail.contains(&("oscar", "approvals.approve", Outcome::Allowed)));
        assert!(matches!(
            h.store
                .in_tenant(h.auth.tenant_id, async |tx| audit::verify(
                    tx,
                    h.auth.tenant_id
                )
                .await)
                .await
                .expect("verify"),
            Verification::Intact { .. }
        ));
    }
}

#[tokio::test]
async fn a_keyless_request_is_approved_under_its_approval_key() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let requested = held(&h, &officer(&h), None).await;
        let (_, issued) = h
            .issuance
            .approve(&operator(&h), &requested.id.to_string())
            .await
            .expect("approve");
        let mut retry = h.command(
            certmesh_crypto::csr::Csr::from_pem(&requested.csr_pem).expect("csr"),
            "web",
        );
        retry.idempotency_key = Some(format!("approval:{}", requested.id));
        let again = h.issuance.issue(&h.auth, retry).await.expect("replay");
        assert!(again.replayed);
        assert_eq!(again.record.certificate_der, issued.record.certificate_der);
    }
}

#[tokio::test]
async fn the_requester_cannot_approve_their_own_request() {
    for h in each_backend().await {
        let mut spec = web_spec();
        spec.requires_approval = true;
        h.profile("web", spec).await;
        // An operator may issue, but this profile holds every request.
        let requested = held(&h, &operator(&h), None).await;
        assert_eq!(h.certificate_count().await, 0);
        let err = h
            .issuance
            .approve(&operator(&h), &requested.id.to_string())
            .await
            .expect_err("self-approval");
        assert_eq!(
            refused(err),
            (
                Code::PermissionDenied,
                Some("SELF_APPROVAL_FORBIDDEN".into())
            )
        );
        assert_eq!(status_of(&h, requested.id).await, ApprovalStatus::Pending);
        assert_eq!(h.certificate_count().await, 0);
        let denied = h
            .store
            .in_tenant(h.auth.tenant_id, async |tx| {
                audit::query(tx, h.auth.tenant_id, &AuditFilter::default(), 0, 100).await
            })
            .await
            .expect("audit")
            .into_iter()
            .filter(|r| r.outcome == Outcome::Denied && r.action == "approvals.approve")
            .count();
        assert_eq!(denied, 1, "the refusal is audited");
        // A second person may.
        h.issuance
            .approve(&second_operator(&h), &requested.id.to_string())
            .await
            .expect("second person approves");
        assert_eq!(h.certificate_count().await, 1);
    }
}

#[tokio::test]
async fn a_rejection_needs_a_note_and_is_final() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let requested = held(&h, &officer(&h), None).await;
        let id = requested.id.to_string();
        let err = h
            .issuance
            .reject(&operator(&h), &id, "  ")
            .await
            .expect_err("no note");
        assert_eq!(
            refused(err),
            (Code::InvalidArgument, Some("REQUEST_INVALID".into()))
        );
        let rejected = h
            .issuance
            .reject(&operator(&h), &id, "wrong team")
            .await
            .expect("reject");
        assert_eq!(rejected.status, ApprovalStatus::Rejected);
        assert_eq!(rejected.note.as_deref(), Some("wrong team"));
        assert_eq!(rejected.decided_by.as_deref(), Some("oscar"));
        let err = h
            .issuance
            .approve(&second_operator(&h), &id)
            .await
            .expect_err("rejected is final");
        assert_eq!(refused(err), not_pending());
        assert_eq!(h.certificate_count().await, 0);
    }
}

#[tokio::test]
async fn a_pending_request_expires_after_a_week() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let requested = held(&h, &officer(&h), None).await;
        h.clock.advance(Duration::hours(169));
        let err = h
            .issuance
            .approve(&operator(&h), &requested.id.to_string())
            .await
            .expect_err("expired");
        assert_eq!(refused(err), not_pending());
        assert_eq!(status_of(&h, requested.id).await, ApprovalStatus::Expired);
        let expired = h
            .issuance
            .list_approvals(&h.auth, "expired")
            .await
            .expect("list");
        assert_eq!(expired.len(), 1);
        assert!(
            h.issuance
                .list_approvals(&h.auth, "pending")
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(h.certificate_count().await, 0);
    }
}

#[tokio::test]
async fn a_viewer_cannot_approve_or_reject() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let requested = held(&h, &officer(&h), None).await;
        let viewer = caller(&h, "victor", 4, Role::Viewer);
        let mut approve = Request::new(pb::ApproveRequest {
            id: requested.id.to_string(),
        });
        approve.extensions_mut().insert(viewer.clone());
        let status = ApprovalService::approve(&h.issuance, approve)
            .await
            .expect_err("viewer");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(reason_of(&status).as_deref(), Some("PERMISSION_MISSING"));
        assert!(status.message().contains("approvals:decide"), "{status:?}");
        let mut reject = Request::new(pb::RejectRequest {
            id: requested.id.to_string(),
            note: "no".into(),
        });
        reject.extensions_mut().insert(viewer);
        let status = ApprovalService::reject(&h.issuance, reject)
            .await
            .expect_err("viewer");
        assert_eq!(reason_of(&status).as_deref(), Some("PERMISSION_MISSING"));
        assert_eq!(status_of(&h, requested.id).await, ApprovalStatus::Pending);
    }
}

#[tokio::test]
async fn another_tenant_cannot_see_or_decide_an_approval() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let requested = held(&h, &officer(&h), None).await;
        let beta = tenants::ensure(h.store.conn(), "beta", start())
            .await
            .expect("tenant");
        let outsider = AuthContext {
            tenant_id: beta,
            ..caller(&h, "mallory", 9, Role::Admin)
        };
        assert!(
            h.issuance
                .list_approvals(&outsider, "")
                .await
                .expect("list")
                .is_empty()
        );
        let not_found = (Code::NotFound, Some("APPROVAL_NOT_FOUND".into()));
        let id = requested.id.to_string();
        let err = h
            .issuance
            .approve(&outsider, &id)
            .await
            .expect_err("other tenant");
        assert_eq!(refused(err), not_found);
        let err = h
            .issuance
            .reject(&outsider, &id, "mine now")
            .await
            .expect_err("other tenant");
        assert_eq!(refused(err), not_found);
        assert_eq!(status_of(&h, requested.id).await, ApprovalStatus::Pending);
    }
}

#[tokio::test]
async fn racing_approvers_mint_exactly_one_certificate() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let requested = held(&h, &officer(&h), None).await;
        let mut tasks = Vec::new();
        for n in 0..4u128 {
            let issuance = h.issuance.clone();
            let approver = caller(&h, &format!("op-{n}"), 100 + n, Role::Operator);
            let id = requested.id.to_string();
            tasks.push(tokio::spawn(async move {
                issuance.approve(&approver, &id).await
            }));
        }
        let mut won = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok((decided, issued)) => won.push((decided, issued.record.serial)),
                Err(e) => {
                    let (code, reason) = refused(e);
                    assert!(
                        matches!(
                            reason.as_deref(),
                            Some("APPROVAL_NOT_PENDING") | Some("IDEMPOTENCY_KEY_REUSED")
                        ),
                        "{code:?} {reason:?}"
                    );
                }
            }
        }
        assert_eq!(won.len(), 1, "one approver wins");
        assert_eq!(h.certificate_count().await, 1, "one certificate");
        assert_eq!(h.events("ca.issue").await.len(), 1);
        let (decided, serial) = &won[0];
        assert_eq!(decided.certificate_serial.as_ref(), Some(serial));
        assert_eq!(status_of(&h, requested.id).await, ApprovalStatus::Approved);
    }
}

#[tokio::test]
async fn a_denied_request_holds_nothing() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let err = h
            .issuance
            .request(&officer(&h), h.command(csr(&["a.evil.test"]), "web"))
            .await
            .expect_err("denied");
        assert!(
            matches!(err, IssuanceError::ProfileDenied { .. }),
            "{err:?}"
        );
        assert!(
            h.issuance
                .list_approvals(&h.auth, "")
                .await
                .expect("list")
                .is_empty()
        );
    }
}
