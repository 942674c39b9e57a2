//! The fleet's records: bootstrap tokens are single-use and expire, the identity CA is made
//! once, agents rotate their identity serials, at most one job is open per binding and agent,
//! and deployments are upserted, found when due and moved by renew-now. Each on SQLite and on
//! PostgreSQL under row-level security.

use certmesh_store::fleet::{
    self, AgentRecord, BindingRecord, DeploymentFilter, DeploymentRecord, HostFacts,
    IdentityCaRecord, JobFilter, state,
};
use certmesh_store::testing::each_backend;
use certmesh_store::{StoreError, TenantId};

use crate::{at, t0, tenant, tx};

fn agent(t: TenantId, id: u128) -> AgentRecord {
    AgentRecord {
        id: uuid::Uuid::from_u128(id),
        tenant_id: t,
        group: "web".to_owned(),
        host: HostFacts {
            hostname: format!("host-{id}"),
            ..HostFacts::default()
        },
        status: fleet::AGENT_ACTIVE.to_owned(),
        identity_serial: format!("{id:02x}"),
        previous_identity_serial: None,
        identity_not_after: at(86_400),
        principal_id: uuid::Uuid::from_u128(id + 1000),
        enrolled_at: t0(),
        last_seen_at: None,
        retired_at: None,
    }
}

fn binding(t: TenantId, name: &str) -> BindingRecord {
    BindingRecord {
        id: uuid::Uuid::new_v4(),
        tenant_id: t,
        name: name.to_owned(),
        agent_id: None,
        group: Some("web".to_owned()),
        spec: "{}".to_owned(),
        created_by: "alice".to_owned(),
        created_at: t0(),
        deleted_at: None,
    }
}

#[tokio::test]
async fn a_bootstrap_token_enrolls_once_and_not_after_it_expires() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let (token, secret) =
            fleet::create_bootstrap_token(&c, acme, "web", "rack 4", "alice", at(60), t0())
                .await
                .expect("create");
        let (_, expiring) =
            fleet::create_bootstrap_token(&c, acme, "web", "", "alice", at(10), t0())
                .await
                .expect("create");
        c.commit().await.expect("commit");
        assert!(secret.starts_with(fleet::BOOTSTRAP_PREFIX));
        assert_eq!(token.used_at, None);

        // Enrollment runs before any tenant is known.
        let agent_id = uuid::Uuid::new_v4();
        let e = db.store.begin().await.expect("begin");
        let claimed = fleet::claim_bootstrap_token(&e, &secret, agent_id, at(1))
            .await
            .expect("claim")
            .expect("a fresh token enrolls");
        assert_eq!(claimed.tenant_id, acme, "{b:?}");
        assert_eq!(claimed.group, "web");
        assert_eq!(claimed.agent_id, Some(agent_id));
        e.commit().await.expect("commit");

        let e = db.store.begin().await.expect("begin");
        for (s, when, why) in [
            (secret.as_str(), at(2), "reused"),
            (expiring.as_str(), at(10), "expired"),
            ("cmb_0000", at(2), "unknown"),
            ("cmt_notabootstraptoken", at(2), "another kind of token"),
        ] {
            assert_eq!(
                fleet::claim_bootstrap_token(&e, s, uuid::Uuid::new_v4(), when)
                    .await
                    .expect("claim"),
                None,
                "{b:?}: {why}"
            );
        }
        drop(e);
        let c = tx(&db, acme).await;
        let listed = fleet::list_bootstrap_tokens(&c, acme).await.expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(
            listed.iter().find(|t| t.id == token.id).map(|t| t.agent_id),
            Some(Some(agent_id)),
            "{b:?}"
        );
        // Another tenant sees none of them.
        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(
            fleet::list_bootstrap_tokens(&g, globex)
                .await
                .expect("list")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn the_identity_ca_is_made_once() {
    for db in each_backend().await {
        let c = db.store.conn();
        let ca = |n: u128| IdentityCaRecord {
            id: uuid::Uuid::from_u128(n),
            cert_pem: format!("pem {n}"),
            key_ref: format!("sealed:{n}"),
            created_at: t0(),
        };
        assert_eq!(fleet::identity_ca(c, "agents").await.expect("get"), None);
        assert!(
            fleet::insert_identity_ca(c, "agents", &ca(1))
                .await
                .expect("first")
        );
        assert!(
            !fleet::insert_identity_ca(c, "agents", &ca(2))
                .await
                .expect("second")
        );
        let got = fleet::identity_ca(c, "agents")
            .await
            .expect("get")
            .expect("made");
        assert_eq!(
            got.key_ref,
            "sealed:1",
            "{:?}: the first one stays",
            db.backend()
        );
    }
}

#[tokio::test]
async fn agents_rotate_identities_are_seen_and_retire() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        fleet::insert_agent(&c, &agent(acme, 1))
            .await
            .expect("insert");
        fleet::insert_agent(&c, &agent(acme, 2))
            .await
            .expect("insert");
        fleet::rotate_identity(&c, acme, uuid::Uuid::from_u128(1), "ff", at(200_000))
            .await
            .expect("rotate");
        let a1 = fleet::get_agent(&c, acme, uuid::Uuid::from_u128(1))
            .await
            .expect("get")
            .expect("agent");
        assert_eq!(a1.identity_serial, "ff", "{b:?}");
        assert_eq!(a1.previous_identity_serial.as_deref(), Some("01"));
        let retired = fleet::retire_agent(&c, acme, uuid::Uuid::from_u128(2), at(5))
            .await
            .expect("retire")
            .expect("agent");
        assert_eq!(retired.status, fleet::AGENT_RETIRED);
        assert!(matches!(
            fleet::rotate_identity(&c, acme, retired.id, "aa", at(9)).await,
            Err(StoreError::NotFound { .. })
        ));
        let ids = [uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2)];
        let told = fleet::touch_agents(&c, acme, &ids, at(7))
            .await
            .expect("touch");
        assert_eq!(told, [retired.id], "{b:?}: the retired one is named");
        let all = fleet::list_agents(&c, acme, Some("web"))
            .await
            .expect("list");
        assert!(
            all.iter()
                .all(|a| a.last_seen_at == Some(certmesh_store::truncate_ts(at(7)))),
            "{b:?}"
        );
        c.commit().await.expect("commit");
        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert_eq!(
            fleet::get_agent(&g, globex, uuid::Uuid::from_u128(1))
                .await
                .expect("get"),
            None,
            "{b:?}: another tenant's agent is invisible"
        );
    }
}

#[tokio::test]
async fn one_open_job_per_binding_and_agent() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let web = binding(acme, "web");
        fleet::insert_binding(&c, &web).await.expect("binding");
        assert!(matches!(
            fleet::insert_binding(&c, &binding(acme, "web")).await,
            Err(StoreError::Conflict { .. })
        ));
        let a = uuid::Uuid::from_u128(1);
        let job = fleet::insert_job(&c, acme, web.id, a, "issue", 3, t0())
            .await
            .expect("insert")
            .expect("first job");
        assert_eq!(job.state, state::PENDING);
        assert_eq!(job.attempts, 1);
        assert_eq!(
            fleet::insert_job(&c, acme, web.id, a, "renew", 3, at(1))
                .await
                .expect("insert"),
            None,
            "{b:?}: one open job at a time"
        );
        assert!(
            fleet::advance_job(
                &c,
                acme,
                job.id,
                &[state::PENDING],
                state::SENT,
                None,
                at(1)
            )
            .await
            .expect("send")
        );
        assert!(
            !fleet::advance_job(
                &c,
                acme,
                job.id,
                &[state::PENDING],
                state::SENT,
                None,
                at(1)
            )
            .await
            .expect("send again"),
            "{b:?}: only from the named states"
        );
        assert!(
            fleet::retry_job(
                &c,
                acme,
                job.id,
                "mismatch",
                "served another",
                at(60),
                at(2)
            )
            .await
            .expect("retry")
        );
        assert!(
            fleet::offerable_jobs(&c, acme, &[a], at(30))
                .await
                .expect("offer")
                .is_empty(),
            "{b:?}: not before its time"
        );
        let again = fleet::offerable_jobs(&c, acme, &[a], at(60))
            .await
            .expect("offer");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 2, "{b:?}");
        assert_eq!(again[0].state, state::FAILED);
        assert!(
            fleet::finish_job(&c, acme, job.id, state::SUCCEEDED, "verified", "", at(61))
                .await
                .expect("finish")
        );
        assert!(
            !fleet::finish_job(&c, acme, job.id, state::DEAD, "", "", at(62))
                .await
                .expect("finish twice")
        );
        let next = fleet::insert_job(&c, acme, web.id, a, "renew", 3, at(70))
            .await
            .expect("insert")
            .expect("a finished job frees the slot");
        assert_eq!(
            fleet::open_job_targets(&c, acme).await.expect("open"),
            [(web.id, a)]
        );
        assert_eq!(
            fleet::delete_binding(&c, acme, web.id, at(80))
                .await
                .expect("delete"),
            1,
            "{b:?}: its open job is cancelled"
        );
        let cancelled = fleet::get_job(&c, acme, next.id)
            .await
            .expect("get")
            .expect("job");
        assert_eq!(cancelled.state, state::CANCELLED);
        assert!(
            fleet::list_bindings(&c, acme)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(matches!(
            fleet::delete_binding(&c, acme, web.id, at(81)).await,
            Err(StoreError::NotFound { .. })
        ));
        let listed = fleet::list_jobs(
            &c,
            acme,
            &JobFilter {
                agent_id: Some(a),
                limit: 10,
                ..JobFilter::default()
            },
        )
        .await
        .expect("list");
        assert_eq!(
            listed.iter().map(|j| j.id).collect::<Vec<_>>(),
            [next.id, job.id]
        );
    }
}

#[tokio::test]
async fn deployments_upsert_come_due_and_renew_now() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let web = uuid::Uuid::from_u128(10);
        let dep = |agent: u128, serial: &str, renew: i64| DeploymentRecord {
            tenant_id: acme,
            binding_id: web,
            agent_id: uuid::Uuid::from_u128(agent),
            serial: serial.to_owned(),
            certificate_sha256: "ab".repeat(32),
            not_after: at(1000),
            renew_at: at(renew),
            outcome: "verified".to_owned(),
            detail: String::new(),
            served_sha256: "ab".repeat(32),
            updated_at: t0(),
        };
        fleet::upsert_deployment(&c, &dep(1, "0a", 500))
            .await
            .expect("upsert");
        fleet::upsert_deployment(&c, &dep(2, "0b", 900))
            .await
            .expect("upsert");
        fleet::upsert_deployment(&c, &dep(1, "0c", 800))
            .await
            .expect("replace");
        let all = fleet::list_deployments(&c, acme, &DeploymentFilter::default())
            .await
            .expect("list");
        assert_eq!(all.len(), 2, "{b:?}: one row per binding and agent");
        assert_eq!(all[0].serial, "0c");
        assert!(
            fleet::due_deployments(&c, acme, at(700), 10)
                .await
                .expect("due")
                .is_empty()
        );
        let moved = fleet::renew_now(&c, acme, "0b", at(10))
            .await
            .expect("renew now");
        assert_eq!(moved.len(), 1);
        assert_eq!(
            moved[0].renew_at,
            certmesh_store::truncate_ts(at(10)),
            "{b:?}"
        );
        let due = fleet::due_deployments(&c, acme, at(10), 10)
            .await
            .expect("due");
        assert_eq!(
            due.iter().map(|d| d.serial.as_str()).collect::<Vec<_>>(),
            ["0b"]
        );
        fleet::record_report(
            &c,
            acme,
            web,
            uuid::Uuid::from_u128(2),
            "mismatch",
            "x",
            "cd",
            at(11),
        )
        .await
        .expect("report");
        let two = fleet::list_deployments(
            &c,
            acme,
            &DeploymentFilter {
                agent_id: Some(uuid::Uuid::from_u128(2)),
                ..DeploymentFilter::default()
            },
        )
        .await
        .expect("list");
        assert_eq!(two[0].outcome, "mismatch", "{b:?}");
        assert_eq!(two[0].updated_at, certmesh_store::truncate_ts(at(11)));
    }
}

#[tokio::test]
async fn jobs_are_counted_by_state_within_their_tenant() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let c = tx(&db, acme).await;
        let web = binding(acme, "web");
        fleet::insert_binding(&c, &web).await.expect("binding");
        let mut jobs = Vec::new();
        for n in 1..=3 {
            let agent = uuid::Uuid::from_u128(n);
            let job = fleet::insert_job(&c, acme, web.id, agent, "issue", 3, t0())
                .await
                .expect("insert")
                .expect("job");
            jobs.push(job);
        }
        fleet::advance_job(
            &c,
            acme,
            jobs[0].id,
            &[state::PENDING],
            state::SENT,
            None,
            at(1),
        )
        .await
        .expect("send");
        fleet::finish_job(&c, acme, jobs[1].id, state::DEAD, "", "", at(2))
            .await
            .expect("dead");
        let mut counts = fleet::count_jobs_by_state(&c, acme).await.expect("count");
        counts.sort();
        assert_eq!(
            counts,
            [
                ("dead".to_owned(), 1),
                ("pending".to_owned(), 1),
                ("sent".to_owned(), 1)
            ],
            "{b:?}"
        );
        assert!(
            counts.iter().all(|(s, _)| state::ALL.contains(&s.as_str())),
            "{b:?}"
        );
        c.commit().await.expect("commit");
        let other = tx(&db, globex).await;
        assert!(
            fleet::count_jobs_by_state(&other, globex)
                .await
                .expect("count")
                .is_empty(),
            "{b:?}: another tenant's jobs are not counted"
        );
    }
}
