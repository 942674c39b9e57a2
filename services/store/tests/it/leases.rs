//! Leases: acquire, contention, renewal, takeover after expiry, release by the holder only; on
//! the bare pool (no tenant: on PostgreSQL the app role's own grants) and inside a tenant
//! transaction; racing acquirers.

use std::sync::Arc;

use certmesh_store::leases;
use certmesh_store::testing::each_backend;
use chrono::Duration;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::Barrier;

use crate::{at, tenant, tx};

const JOB: &str = "crl-publisher";

#[tokio::test]
async fn acquire_contend_renew_expire_release() {
    for db in each_backend().await {
        let b = db.backend();
        // The bare pool: servers take leases before and outside any tenant.
        let c = db.store.conn();
        let ttl = Duration::seconds(30);
        assert_eq!(leases::holder(c, JOB, at(0)).await.expect("holder"), None);
        assert!(
            leases::try_acquire(c, JOB, "a", at(0), ttl)
                .await
                .expect("acquire"),
            "{b:?}"
        );
        assert_eq!(
            leases::holder(c, JOB, at(0))
                .await
                .expect("holder")
                .as_deref(),
            Some("a")
        );
        assert!(
            !leases::try_acquire(c, JOB, "b", at(10), ttl)
                .await
                .expect("contend"),
            "{b:?}: held by a"
        );
        assert!(
            leases::try_acquire(c, "other-job", "b", at(10), ttl)
                .await
                .expect("acquire"),
            "{b:?}: leases are per name"
        );
        // Renewal extends the lease from now.
        assert!(
            leases::try_acquire(c, JOB, "a", at(20), ttl)
                .await
                .expect("renew"),
            "{b:?}"
        );
        assert!(
            !leases::try_acquire(c, JOB, "b", at(40), ttl)
                .await
                .expect("contend"),
            "{b:?}: renewed until 50"
        );
        assert_eq!(
            leases::holder(c, JOB, at(49))
                .await
                .expect("holder")
                .as_deref(),
            Some("a")
        );
        // Expired at 50: nobody holds it, b takes it over.
        assert_eq!(
            leases::holder(c, JOB, at(50)).await.expect("holder"),
            None,
            "{b:?}"
        );
        assert!(
            leases::try_acquire(c, JOB, "b", at(50), ttl)
                .await
                .expect("take over"),
            "{b:?}"
        );
        assert!(
            !leases::try_acquire(c, JOB, "a", at(51), ttl)
                .await
                .expect("contend"),
            "{b:?}: a lost it"
        );
        // Only the holder releases.
        leases::release(c, JOB, "a")
            .await
            .expect("release by a stranger");
        assert_eq!(
            leases::holder(c, JOB, at(52))
                .await
                .expect("holder")
                .as_deref(),
            Some("b"),
            "{b:?}: a's release did nothing"
        );
        leases::release(c, JOB, "b").await.expect("release");
        assert_eq!(
            leases::holder(c, JOB, at(52)).await.expect("holder"),
            None,
            "{b:?}"
        );
        assert!(
            leases::try_acquire(c, JOB, "a", at(53), ttl)
                .await
                .expect("acquire"),
            "{b:?}"
        );
        assert!(matches!(
            leases::try_acquire(c, JOB, "a", at(53), Duration::zero()).await,
            Err(certmesh_store::StoreError::Invalid { .. })
        ));

        // Inside a tenant transaction too (leases are global).
        let acme = tenant(&db, "acme").await;
        let t = tx(&db, acme).await;
        assert_eq!(
            leases::holder(&t, JOB, at(54))
                .await
                .expect("holder")
                .as_deref(),
            Some("a"),
            "{b:?}"
        );
        assert!(
            leases::try_acquire(&t, "tenant-job", "a", at(54), ttl)
                .await
                .expect("acquire")
        );
        t.commit().await.expect("commit");
        assert_eq!(
            leases::holder(c, "tenant-job", at(55))
                .await
                .expect("holder")
                .as_deref(),
            Some("a"),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn renewal_keeps_the_acquisition_time_and_a_takeover_resets_it() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.store.conn();
        let ttl = Duration::seconds(30);
        let acquired_at = async |name: &str| -> String {
            let sql = match c.get_database_backend() {
                DbBackend::Postgres => {
                    format!("SELECT acquired_at::text FROM leases WHERE name = '{name}'")
                }
                _ => format!("SELECT acquired_at FROM leases WHERE name = '{name}'"),
            };
            c.query_one_raw(Statement::from_string(c.get_database_backend(), sql))
                .await
                .expect("query")
                .expect("row")
                .try_get_by_index::<String>(0)
                .expect("text")
        };
        assert!(
            leases::try_acquire(c, JOB, "a", at(0), ttl)
                .await
                .expect("acquire")
        );
        let first = acquired_at(JOB).await;
        assert!(
            leases::try_acquire(c, JOB, "a", at(10), ttl)
                .await
                .expect("renew")
        );
        assert_eq!(acquired_at(JOB).await, first, "{b:?}: renewal keeps it");
        assert!(
            leases::try_acquire(c, JOB, "b", at(100), ttl)
                .await
                .expect("take over")
        );
        assert_ne!(acquired_at(JOB).await, first, "{b:?}: a takeover resets it");
    }
}

#[tokio::test]
async fn of_racing_acquirers_exactly_one_wins() {
    const RACERS: usize = 8;
    for db in each_backend().await {
        let b = db.backend();
        for round in 0..5 {
            let name = format!("race-{round}");
            // Round 0 races to create; later rounds race to take over an expired lease.
            if round > 0 {
                assert!(
                    leases::try_acquire(db.store.conn(), &name, "old", at(0), Duration::seconds(1))
                        .await
                        .expect("seed")
                );
            }
            let start = Arc::new(Barrier::new(RACERS));
            let mut racers = Vec::new();
            for i in 0..RACERS {
                let store = db.store.clone();
                let start = start.clone();
                let name = name.clone();
                racers.push(tokio::spawn(async move {
                    start.wait().await;
                    leases::try_acquire(
                        store.conn(),
                        &name,
                        &format!("r{i}"),
                        at(10),
                        Duration::seconds(30),
                    )
                    .await
                    .expect("try_acquire")
                }));
            }
            let mut winners = 0;
            for r in racers {
                winners += usize::from(r.await.expect("racer"));
            }
            assert_eq!(winners, 1, "{b:?}: round {round}");
        }
    }
}
