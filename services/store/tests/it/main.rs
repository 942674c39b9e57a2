//! The store suite: every test runs on SQLite and on PostgreSQL
//! (`CERTMESH_TEST_DATABASE_URL` must be set).

mod approvals;
mod audit;
mod cas;
mod ceremonies;
mod certificates;
mod crls;
mod discovery;
mod fleet;
mod idempotency;
mod leases;
mod migrations;
mod notification;
mod outbox;
mod principal_keys;
mod profiles;
mod revocations;
mod rls;
mod tenants;
mod tokens;

use certmesh_store::TenantId;
use certmesh_store::testing::TestDb;
use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseTransaction;

/// A fixed instant with nanoseconds, to exercise truncation to microseconds.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid timestamp")
}

/// `t0` plus `secs` seconds.
pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

/// A fresh tenant in `db`.
pub async fn tenant(db: &TestDb, name: &str) -> TenantId {
    certmesh_store::tenants::ensure(db.owner(), name, t0())
        .await
        .expect("ensure tenant")
}

/// A transaction acting for `t` as servers run it (on PostgreSQL: the app role, under
/// row-level security).
pub async fn tx(db: &TestDb, t: TenantId) -> DatabaseTransaction {
    db.store.begin_tenant(t).await.expect("begin for tenant")
}

/// A well-formed key fingerprint (64 lower-case hex digits) made from `n`.
pub fn fingerprint(n: u64) -> String {
    format!("{n:064x}")
}
