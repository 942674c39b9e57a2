//! Approvals: tenant-scoped, decided once (racing deciders get `Conflict`), expired on read.

use certmesh_store::{
    StoreError,
    approvals::{self, ApprovalRecord, ApprovalStatus, Decision},
    testing::each_backend,
};
use chrono::Duration;

use crate::{at, t0, tenant};

fn pending(tenant: certmesh_store::TenantId, key: Option<&str>) -> ApprovalRecord {
    ApprovalRecord {
        id: uuid::Uuid::new_v4(),
        tenant_id: tenant,
        requester_id: uuid::Uuid::from_u128(1),
        requester: "rachel".into(),
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        profile: "web".into(),
        validity_seconds: Some(3600),
        idempotency_key: key.map(str::to_string),
        status: ApprovalStatus::Pending,
        decided_by: None,
        note: None,
        certificate_serial: None,
        created_at: t0(),
        expires_at: t0() + Duration::hours(168),
        decided_at: None,
    }
}

fn approve(by: &str, serial: &str) -> Decision {
    Decision {
        status: ApprovalStatus::Approved,
        decided_by: by.into(),
        note: None,
        certificate_serial: Some(serial.into()),
    }
}

#[tokio::test]
async fn an_approval_is_decided_once_and_only_in_its_tenant() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let beta = tenant(&db, "beta").await;
        let stored = approvals::create(c, &pending(acme, Some("k1")))
            .await
            .expect("create");
        assert_eq!(
            stored.created_at,
            certmesh_store::truncate_ts(t0()),
            "{b:?}"
        );
        assert_eq!(
            approvals::get(c, acme, stored.id, at(1))
                .await
                .expect("get"),
            Some(stored.clone())
        );
        assert_eq!(
            approvals::get(c, beta, stored.id, at(1))
                .await
                .expect("get"),
            None
        );
        assert_eq!(
            approvals::pending_by_key(c, acme, "k1", at(1))
                .await
                .expect("by key")
                .map(|a| a.id),
            Some(stored.id)
        );
        assert!(matches!(
            approvals::decide(c, beta, stored.id, &approve("mallory", "01"), at(2)).await,
            Err(StoreError::NotFound { .. })
        ));
        approvals::decide(c, acme, stored.id, &approve("oscar", "0a"), at(2))
            .await
            .expect("first decision");
        assert!(
            matches!(
                approvals::decide(c, acme, stored.id, &approve("olga", "0b"), at(3)).await,
                Err(StoreError::Conflict { .. })
            ),
            "{b:?}: the second decider loses"
        );
        let decided = approvals::get(c, acme, stored.id, at(4))
            .await
            .expect("get")
            .expect("row");
        assert_eq!(decided.status, ApprovalStatus::Approved);
        assert_eq!(decided.decided_by.as_deref(), Some("oscar"));
        assert_eq!(decided.certificate_serial.as_deref(), Some("0a"));
        assert_eq!(decided.decided_at, Some(certmesh_store::truncate_ts(at(2))));
        assert!(
            approvals::pending_by_key(c, acme, "k1", at(4))
                .await
                .expect("by key")
                .is_none()
        );
        assert_eq!(
            approvals::list(c, acme, Some(ApprovalStatus::Approved), at(4))
                .await
                .expect("list")
                .len(),
            1
        );
        assert!(
            approvals::list(c, beta, None, at(4))
                .await
                .expect("list")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_pending_approval_expires_at_its_deadline() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let stored = approvals::create(c, &pending(acme, None))
            .await
            .expect("create");
        let deadline = stored.expires_at;
        let before = deadline - Duration::microseconds(1);
        assert_eq!(
            approvals::get(c, acme, stored.id, before)
                .await
                .expect("get")
                .expect("row")
                .status,
            ApprovalStatus::Pending,
            "{b:?}"
        );
        let read = approvals::get(c, acme, stored.id, deadline)
            .await
            .expect("get")
            .expect("row");
        assert_eq!(read.status, ApprovalStatus::Expired, "{b:?}");
        assert!(
            approvals::list(c, acme, Some(ApprovalStatus::Pending), deadline)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(matches!(
            approvals::decide(c, acme, stored.id, &approve("oscar", "0a"), deadline).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(
            approvals::expire(c, acme, stored.id, deadline)
                .await
                .expect("expire")
        );
        assert!(
            !approvals::expire(c, acme, stored.id, deadline)
                .await
                .expect("expire again")
        );
        // Once written down, it stays expired whatever the clock says.
        assert_eq!(
            approvals::list(c, acme, Some(ApprovalStatus::Expired), before)
                .await
                .expect("list")
                .len(),
            1,
            "{b:?}"
        );
    }
}
