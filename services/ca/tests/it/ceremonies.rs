//! Ceremonies: what may be started, who may approve and with what, and when a gated
//! operation is let through.

use certmesh_ca::Actor;
use certmesh_crypto::ceremony::generate_ed25519;
use certmesh_kit::rbac::Role;
use certmesh_proto::ca::{self as pb, ca_service_server::CaService};
use certmesh_store::{principal_keys, tenants};
use chrono::Duration;
use tonic::Code;

use crate::harness::{
    Harness, child_params, each_backend, refusal, refused, req, root_params, sign_b64, start,
    start_request,
};

#[tokio::test]
async fn starting_a_ceremony_validates_everything_and_stores_nothing_when_refused() {
    for h in each_backend().await {
        h.principal("nina", &[Role::Operator]).await;
        let root = h
            .root(&root_params("corp-root", "Corp Root CA", Some(3)))
            .await
            .ca;
        let all = h.custodian_names();
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let new_root = root_params("new-root", "New Root", None);
        let mut with_ca_id = new_root.clone();
        with_ca_id.ca_id = root.id.to_string();
        let mut too_long = start_request("create_root", 3, all.clone(), &new_root);
        too_long.expires_in = "169h".into();
        let orphan = child_params("orphan", &root, "Orphan", None, &[]);
        let orphan = pb::CaParams {
            parent_ca_id: uuid::Uuid::new_v4().to_string(),
            ..orphan
        };
        let invalid = (Code::InvalidArgument, "REQUEST_INVALID".to_string());
        let cases = [
            (
                "threshold 0",
                start_request("create_root", 0, all.clone(), &new_root),
                invalid.clone(),
            ),
            (
                "threshold 6 of 5",
                start_request("create_root", 6, all.clone(), &new_root),
                invalid.clone(),
            ),
            (
                "duplicate custodian",
                start_request("create_root", 2, names(&["c1", "c2", "c1"]), &new_root),
                invalid.clone(),
            ),
            (
                "unknown principal",
                start_request("create_root", 2, names(&["c1", "c2", "nobody"]), &new_root),
                invalid.clone(),
            ),
            (
                "not a custodian",
                start_request("create_root", 2, names(&["c1", "c2", "nina"]), &new_root),
                invalid.clone(),
            ),
            (
                "ca_id on create_root",
                start_request("create_root", 3, all.clone(), &with_ca_id),
                invalid.clone(),
            ),
            ("open longer than 168h", too_long, invalid.clone()),
            (
                "unknown purpose",
                start_request("delete_root", 3, all.clone(), &new_root),
                invalid.clone(),
            ),
            (
                "unknown parent",
                start_request("create_intermediate", 3, all.clone(), &orphan),
                (Code::NotFound, "CA_NOT_FOUND".into()),
            ),
            (
                "name taken",
                start_request(
                    "create_root",
                    3,
                    all.clone(),
                    &root_params("corp-root", "Another Root", None),
                ),
                (Code::AlreadyExists, "CA_EXISTS".into()),
            ),
        ];
        let before = h.snapshot().await;
        for (what, request, want) in cases {
            assert_eq!(
                refusal(h.ca.start_ceremony(&h.op(), &request).await),
                want,
                "{}: {what}",
                h.backend
            );
        }
        assert_eq!(h.snapshot().await, before, "{}", h.backend);

        // The longest allowed lifetime is accepted, and expiry is what was asked for.
        let mut longest = start_request("create_root", 3, all, &new_root);
        longest.expires_in = "168h".into();
        let c = h.ca.start_ceremony(&h.op(), &longest).await.expect("168h");
        assert_eq!(c.record.expires_at, h.now() + Duration::hours(168));
        assert_eq!(c.record.threshold, 3);
        assert_eq!(c.custodians.len(), 5);
    }
}

#[tokio::test]
async fn approvals_count_once_per_custodian_and_only_with_a_registered_key() {
    for h in each_backend().await {
        // c1 … c4 are listed; c5 is a custodian but not of this ceremony.
        let params = root_params("corp-root", "Corp Root CA", None);
        let listed: Vec<String> = h.custodian_names().into_iter().take(4).collect();
        let ceremony =
            h.ca.start_ceremony(&h.op(), &start_request("create_root", 3, listed, &params))
                .await
                .expect("started");
        let other = h
            .start("create_root", &root_params("other-root", "Other", None))
            .await;
        let id = ceremony.record.id.to_string();

        let first = h.approve(0, &ceremony).await;
        assert_eq!((first.approvals, first.already_approved), (1, false));
        let again = h.approve(0, &ceremony).await;
        assert_eq!(
            (again.approvals, again.already_approved),
            (1, true),
            "{}",
            h.backend
        );
        assert_eq!(again.ceremony.approved_by, ["c1"]);

        let before = h.snapshot().await;
        let c2 = &h.custodians[1];
        let c5 = &h.custodians[4];
        assert_eq!(
            refusal(h.ca.approve(&c5.actor(), &id, &c5.sign(&ceremony)).await),
            (Code::PermissionDenied, "NOT_A_CUSTODIAN".into()),
            "{}: not listed",
            h.backend
        );
        let stripped = Actor {
            custodian: false,
            ..c2.actor()
        };
        assert_eq!(
            refusal(h.ca.approve(&stripped, &id, &c2.sign(&ceremony)).await),
            (Code::PermissionDenied, "NOT_A_CUSTODIAN".into()),
            "{}: listed, but no longer holds the role",
            h.backend
        );
        let (unregistered, _) = generate_ed25519().expect("key");
        let forged = sign_b64(&unregistered, &ceremony.record.digest);
        assert_eq!(
            refusal(h.ca.approve(&c2.actor(), &id, &forged).await),
            (Code::PermissionDenied, "CEREMONY_SIGNATURE_INVALID".into()),
            "{}: signed by an unregistered key",
            h.backend
        );
        assert_eq!(
            refusal(h.ca.approve(&c2.actor(), &id, &c2.sign(&other)).await),
            (Code::PermissionDenied, "CEREMONY_SIGNATURE_INVALID".into()),
            "{}: signed another ceremony's message",
            h.backend
        );
        let someone_elses = h.custodians[0].sign(&ceremony);
        assert_eq!(
            refusal(h.ca.approve(&c2.actor(), &id, &someone_elses).await),
            (Code::PermissionDenied, "CEREMONY_SIGNATURE_INVALID".into()),
            "{}: c1's signature presented by c2",
            h.backend
        );
        for garbage in ["not base64!", ""] {
            assert_eq!(
                refusal(h.ca.approve(&c2.actor(), &id, garbage).await),
                (Code::InvalidArgument, "REQUEST_INVALID".into()),
                "{}: {garbage:?}",
                h.backend
            );
        }
        let unknown = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            refusal(
                h.ca.approve(&c2.actor(), &unknown, &c2.sign(&ceremony))
                    .await
            ),
            (Code::NotFound, "CEREMONY_NOT_FOUND".into())
        );
        let viewer = pb::ApproveCeremonyRequest {
            id: id.clone(),
            signature: c2.sign(&ceremony),
        };
        assert_eq!(
            refused(CaService::approve_ceremony(&h.ca, req(&h.viewer, viewer)).await),
            (Code::PermissionDenied, "PERMISSION_MISSING".into()),
            "{}: viewer",
            h.backend
        );
        assert_eq!(
            h.snapshot().await,
            before,
            "{}: refusals change nothing",
            h.backend
        );
        assert_eq!(h.ceremony(&id).await.approved_by, ["c1"]);

        // The listed custodian with a P-256 key approves through gRPC, a second later
        // (approvals list oldest first).
        h.clock.advance(Duration::seconds(1));
        let good = pb::ApproveCeremonyRequest {
            id: id.clone(),
            signature: c2.sign(&ceremony),
        };
        let answer = CaService::approve_ceremony(&h.ca, req(&c2.auth, good))
            .await
            .expect("approved")
            .into_inner();
        assert_eq!(
            (answer.approvals, answer.threshold),
            (2, 3),
            "{}",
            h.backend
        );
        assert_eq!(answer.ceremony.expect("ceremony").approved_by, ["c1", "c2"]);
    }
}

/// A 3-of-5 create_root ceremony approved by the first `approvals` custodians.
async fn root_ceremony(h: &Harness, params: &pb::CaParams, approvals: usize) -> String {
    let c = h.start("create_root", params).await;
    for i in 0..approvals {
        h.approve(i, &c).await;
    }
    c.record.id.to_string()
}

#[tokio::test]
async fn operations_need_the_quorum_the_approved_params_and_an_unused_unexpired_ceremony() {
    for h in each_backend().await {
        let base = h
            .root(&root_params("base-root", "Base Root", None))
            .await
            .ca;
        let params = root_params("corp-root", "Corp Root CA", Some(2));
        let id = root_ceremony(&h, &params, 2).await;

        let before = h.snapshot().await;
        let status =
            h.ca.create_root(&h.op(), &id, &params, None)
                .await
                .map_err(tonic::Status::from)
                .expect_err("below quorum");
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            certmesh_kit::reason::reason_of(&status).as_deref(),
            Some("QUORUM_NOT_MET")
        );
        assert!(status.message().contains("2 of 3"), "{}", status.message());
        assert_eq!(h.snapshot().await, before, "{}", h.backend);

        h.approve(2, &h.ceremony(&id).await).await;
        let before = h.snapshot().await;
        let changed = pb::CaParams {
            subject_cn: "Someone Else's Root".into(),
            ..params.clone()
        };
        assert_eq!(
            refusal(h.ca.create_root(&h.op(), &id, &changed, None).await),
            (Code::FailedPrecondition, "CEREMONY_PARAMS_MISMATCH".into()),
            "{}: subject_cn changed",
            h.backend
        );
        let longer = pb::CaParams {
            validity_days: 7300,
            ..params.clone()
        };
        assert_eq!(
            refusal(h.ca.create_root(&h.op(), &id, &longer, None).await),
            (Code::FailedPrecondition, "CEREMONY_PARAMS_MISMATCH".into()),
            "{}: validity changed",
            h.backend
        );
        let child = child_params("corp-root", &base, "Corp Root CA", Some(1), &[]);
        assert_eq!(
            refusal(
                h.ca.create_intermediate(&h.op(), &base.id.to_string(), &id, &child)
                    .await
            ),
            (Code::FailedPrecondition, "CEREMONY_PARAMS_MISMATCH".into()),
            "{}: a create_root ceremony for create_intermediate",
            h.backend
        );
        assert_eq!(h.snapshot().await, before, "{}", h.backend);

        let root =
            h.ca.create_root(&h.op(), &id, &params, None)
                .await
                .expect("created")
                .ca;
        h.assert_completed(&id, &root).await;
        let before = h.snapshot().await;
        assert_eq!(
            refusal(h.ca.create_root(&h.op(), &id, &params, None).await),
            (Code::FailedPrecondition, "CEREMONY_ALREADY_USED".into()),
            "{}: second use",
            h.backend
        );
        assert_eq!(
            refusal(
                h.ca.approve(
                    &h.custodians[3].actor(),
                    &id,
                    &h.custodians[3].sign(&h.ceremony(&id).await)
                )
                .await
            ),
            (Code::FailedPrecondition, "CEREMONY_ALREADY_USED".into()),
            "{}: approving a used ceremony",
            h.backend
        );
        assert_eq!(h.snapshot().await, before, "{}", h.backend);

        // Expiry: 24 h by default.
        let late = root_params("late-root", "Late Root", None);
        let id = root_ceremony(&h, &late, 2).await;
        let ceremony = h.ceremony(&id).await;
        assert_eq!(ceremony.record.expires_at, h.now() + Duration::hours(24));
        h.clock.advance(Duration::hours(25));
        let before = h.snapshot().await;
        assert_eq!(
            refusal(
                h.ca.approve(
                    &h.custodians[2].actor(),
                    &id,
                    &h.custodians[2].sign(&ceremony)
                )
                .await
            ),
            (Code::FailedPrecondition, "CEREMONY_EXPIRED".into()),
            "{}: approving late",
            h.backend
        );
        assert_eq!(
            refusal(h.ca.create_root(&h.op(), &id, &late, None).await),
            (Code::FailedPrecondition, "CEREMONY_EXPIRED".into()),
            "{}: operating late",
            h.backend
        );
        assert_eq!(h.snapshot().await, before, "{}", h.backend);
        assert_eq!(h.ceremony(&id).await.record.status.as_str(), "expired");
        assert!(h.cas().await.iter().all(|ca| ca.name != "late-root"));
    }
}

#[tokio::test]
async fn an_approval_stops_counting_when_its_key_is_revoked() {
    for h in each_backend().await {
        let params = root_params("corp-root", "Corp Root CA", None);
        let id = h.approved("create_root", &params).await;
        let tenant = h.tenant;
        let c2 = &h.custodians[1];
        let key = h
            .store
            .in_tenant(tenant, async |tx| {
                let keys = principal_keys::active_for(tx, tenant, c2.auth.principal_id).await?;
                principal_keys::revoke(tx, tenant, keys[0].id, h.now()).await
            })
            .await
            .expect("revoked");
        assert!(key);
        let before = h.snapshot().await;
        let status =
            h.ca.create_root(&h.op(), &id, &params, None)
                .await
                .map_err(tonic::Status::from)
                .expect_err("c2's approval no longer counts");
        assert_eq!(
            certmesh_kit::reason::reason_of(&status).as_deref(),
            Some("QUORUM_NOT_MET"),
            "{}",
            h.backend
        );
        assert!(status.message().contains("2 of 3"), "{}", status.message());
        assert_eq!(h.snapshot().await, before);
        // A fourth custodian makes up the quorum again.
        h.approve(3, &h.ceremony(&id).await).await;
        h.ca.create_root(&h.op(), &id, &params, None)
            .await
            .expect("quorum of valid approvals");
    }
}

#[tokio::test]
async fn another_tenant_sees_none_of_the_ceremonies_or_cas() {
    for h in each_backend().await {
        let params = root_params("corp-root", "Corp Root CA", None);
        let id = h.approved("create_root", &params).await;
        let globex = tenants::ensure(h.store.conn(), "globex", start())
            .await
            .expect("tenant");
        let outsider = Actor {
            tenant: globex,
            ..h.op()
        };
        let custodian = Actor {
            tenant: globex,
            ..h.custodians[3].actor()
        };
        let before = h.snapshot().await;
        assert_eq!(
            refusal(h.ca.create_root(&outsider, &id, &params, None).await),
            (Code::NotFound, "CEREMONY_NOT_FOUND".into()),
            "{}",
            h.backend
        );
        let signature = h.custodians[3].sign(&h.ceremony(&id).await);
        assert_eq!(
            refusal(h.ca.approve(&custodian, &id, &signature).await),
            (Code::NotFound, "CEREMONY_NOT_FOUND".into()),
            "{}",
            h.backend
        );
        assert_eq!(h.snapshot().await, before);
        assert!(
            h.ca.ceremonies(&outsider, "")
                .await
                .expect("list")
                .is_empty()
        );

        let root =
            h.ca.create_root(&h.op(), &id, &params, None)
                .await
                .expect("created")
                .ca;
        let root_id = root.id.to_string();
        assert!(h.ca.list(&outsider).await.expect("list").is_empty());
        assert_eq!(
            refusal(h.ca.get(&outsider, &root_id).await),
            (Code::NotFound, "CA_NOT_FOUND".into())
        );
        assert_eq!(
            refusal(h.ca.chain(&outsider, &root_id).await),
            (Code::NotFound, "CA_NOT_FOUND".into())
        );
        assert_eq!(
            refusal(h.ca.retire(&outsider, &root_id, false).await),
            (Code::NotFound, "CA_NOT_FOUND".into())
        );
        assert_eq!(h.get(&root).await.status, "active");
    }
}

#[tokio::test]
async fn two_operations_racing_for_one_ceremony_make_one_ca_and_leave_no_orphan_key() {
    for h in each_backend().await {
        let params = root_params("corp-root", "Corp Root CA", None);
        let id = h.approved("create_root", &params).await;
        let op = h.op();
        let (one, two) = tokio::join!(
            h.ca.create_root(&op, &id, &params, None),
            h.ca.create_root(&op, &id, &params, None),
        );
        let outcomes = [one.map(|_| ()), two.map(|_| ())];
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(won, 1, "{}: {outcomes:?}", h.backend);
        if h.backend == "Postgres" {
            // The loser finds the ceremony completed, or (when both got past the gate) the
            // name taken. SQLite answers it "database is locked" (a deferred transaction
            // cannot take the write lock), which is a refusal too.
            let lost = outcomes.into_iter().find_map(Result::err).expect("a loser");
            let reason = refusal::<()>(Err(lost));
            assert!(
                [
                    (
                        Code::FailedPrecondition,
                        "CEREMONY_ALREADY_USED".to_string()
                    ),
                    (Code::AlreadyExists, "CA_EXISTS".to_string()),
                ]
                .contains(&reason),
                "{reason:?}"
            );
        }
        assert_eq!(h.cas().await.len(), 1, "{}", h.backend);
        assert_eq!(
            h.key_count(),
            1,
            "{}: the loser's key is destroyed",
            h.backend
        );
        assert_eq!(h.events("ca.root.created").await.len(), 1);
        assert_eq!(h.events("ceremony.completed").await.len(), 1);
        assert_eq!(h.audit("cas.create_root").await.len(), 1);
    }
}
