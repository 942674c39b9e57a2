//! Migrations apply, re-apply as a no-op, and roll all the way down and up again.

use certmesh_migrations::{Migrator, MigratorTrait};
use certmesh_store::ca_certificates::{self, RELATION_PRIMARY};
use certmesh_store::cas::{self, Rotation};
use certmesh_store::certificates::{self, CertificateRecord};
use certmesh_store::revocations::{self, NewRevocation};
use certmesh_store::testing::{TestDb, each_backend};
use certmesh_store::{Backend, CaId, TenantId, crls, leases, truncate_ts};
use sea_orm::ConnectionTrait;

use crate::cas::new_ca;
use crate::{at, t0, tenant};

/// Every table of the schema.
const TABLES: [&str; 33] = [
    "tenants",
    "api_tokens",
    "cas",
    "profiles",
    "profile_versions",
    "certificates",
    "idempotency_keys",
    "outbox",
    "principals",
    "audit_events",
    "audit_heads",
    "approvals",
    "ca_certificates",
    "ceremonies",
    "ceremony_approvals",
    "principal_keys",
    "revocations",
    "crls",
    "crl_counters",
    "leases",
    "agent_identity_cas",
    "bootstrap_tokens",
    "agents",
    "bindings",
    "fleet_jobs",
    "deployments",
    "scan_targets",
    "scans",
    "discovered_certificates",
    "notification_channels",
    "notification_rules",
    "notification_deliveries",
    "expiry_alerts",
];

/// How many of `tables` exist, as the store's own connection sees them.
async fn count_tables(db: &TestDb, tables: &[&str]) -> i64 {
    let names = tables
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = match db.backend() {
        Backend::Sqlite => format!(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ({names})"
        ),
        Backend::Postgres => format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_name IN ({names})"
        ),
    };
    scalar(db.store.conn(), &sql).await
}

async fn table_count(db: &TestDb) -> i64 {
    count_tables(db, &TABLES).await
}

async fn scalar<C: ConnectionTrait>(c: &C, sql: &str) -> i64 {
    let row = c
        .query_one_raw(sea_orm::Statement::from_string(
            c.get_database_backend(),
            sql,
        ))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("row");
    row.try_get::<i64>("", "n").expect("count")
}

#[tokio::test]
async fn apply_reapply_down_up() {
    for db in each_backend().await {
        let b = db.backend();
        assert_eq!(
            table_count(&db).await,
            33,
            "{b:?}: all tables after migrate"
        );
        let tenant_id = tenant(&db, "acme").await;
        db.store.migrate().await.expect("re-apply is a no-op");
        assert_eq!(
            certmesh_store::tenants::by_name(db.owner(), "acme")
                .await
                .expect("by_name"),
            Some(tenant_id),
            "{b:?}: data survives a re-apply"
        );
        db.store.migrate_down_all().await.expect("down all");
        assert_eq!(table_count(&db).await, 0, "{b:?}: no tables after down");
        db.store.migrate().await.expect("up again");
        assert_eq!(
            table_count(&db).await,
            33,
            "{b:?}: all tables after up again"
        );
        certmesh_store::tenants::ensure(db.owner(), "acme", t0())
            .await
            .expect("usable after up again");
    }
}

/// Replicas of a Deployment start together: each applies the migrations at start, and all of
/// them must come up on one schema.
#[tokio::test]
async fn replicas_starting_together_migrate_once_and_all_come_up() {
    for db in each_backend().await {
        let b = db.backend();
        db.store.migrate_down_all().await.expect("down all");
        assert_eq!(table_count(&db).await, 0, "{b:?}: a fresh schema");
        let url = db.url();
        let mut replicas = Vec::new();
        for _ in 0..3 {
            replicas.push(certmesh_store::Store::connect(&url).await.expect("connect"));
        }
        let (a, b2, c) = tokio::join!(
            replicas[0].migrate(),
            replicas[1].migrate(),
            replicas[2].migrate()
        );
        for (i, result) in [a, b2, c].iter().enumerate() {
            assert!(
                result.is_ok(),
                "{b:?}: replica {i} failed to migrate: {result:?}"
            );
        }
        assert_eq!(table_count(&db).await, 33, "{b:?}: one whole schema");
        let pending = Migrator::get_pending_migrations(db.owner())
            .await
            .expect("pending");
        assert!(pending.is_empty(), "{b:?}: nothing left pending");
    }
}

#[tokio::test]
async fn sqlite_pragmas_and_memory_store() {
    let db = certmesh_store::testing::sqlite().await;
    let c = db.owner();
    for (pragma, want) in [
        ("journal_mode", "wal"),
        ("foreign_keys", "1"),
        ("synchronous", "1"),
    ] {
        let row = c
            .query_one_raw(sea_orm::Statement::from_string(
                c.get_database_backend(),
                format!("SELECT CAST({pragma} AS TEXT) AS v FROM pragma_{pragma}"),
            ))
            .await
            .expect("pragma")
            .expect("row");
        let got: String = row.try_get("", "v").expect("value");
        assert_eq!(got.to_lowercase(), want, "PRAGMA {pragma}");
    }

    let mem = certmesh_store::Store::connect("sqlite::memory:")
        .await
        .expect("memory store");
    mem.migrate().await.expect("migrate memory store");
    mem.migrate().await.expect("re-apply");
    certmesh_store::tenants::ensure(mem.conn(), "acme", t0())
        .await
        .expect("usable");

    assert!(matches!(
        certmesh_store::Store::connect("mysql://nope").await,
        Err(certmesh_store::StoreError::Invalid { .. })
    ));
}

/// The m0010 tables.
const HIERARCHY_TABLES: [&str; 4] = [
    "ca_certificates",
    "ceremonies",
    "ceremony_approvals",
    "principal_keys",
];

async fn cas_has_column(db: &TestDb, column: &str) -> bool {
    has_column(db, "cas", column).await
}

async fn has_column(db: &TestDb, table: &str, column: &str) -> bool {
    let sql = match db.backend() {
        Backend::Sqlite => format!(
            "SELECT COUNT(*) AS n FROM pragma_table_info('{table}') WHERE name = '{column}'"
        ),
        Backend::Postgres => format!(
            "SELECT COUNT(*) AS n FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = '{table}' \
             AND column_name = '{column}'"
        ),
    };
    scalar(db.owner(), &sql).await == 1
}

async fn has_index(db: &TestDb, index: &str) -> bool {
    let sql = match db.backend() {
        Backend::Sqlite => format!(
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'index' AND name = '{index}'"
        ),
        Backend::Postgres => format!(
            "SELECT COUNT(*) AS n FROM pg_indexes WHERE schemaname = 'public' \
             AND indexname = '{index}'"
        ),
    };
    scalar(db.owner(), &sql).await == 1
}

#[tokio::test]
async fn the_ca_hierarchy_migration_rolls_back_and_backfills_existing_cas() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let root = cas::insert(c, new_ca(acme, "root", None), t0())
            .await
            .expect("root");
        let sub = cas::insert(c, new_ca(acme, "sub", Some(root.id)), at(1))
            .await
            .expect("sub");

        Migrator::down(c, Some(5))
            .await
            .expect("down m0014 to m0010");
        assert_eq!(count_tables(&db, &HIERARCHY_TABLES).await, 0, "{b:?}");
        assert_eq!(count_tables(&db, &REVOCATION_TABLES).await, 0, "{b:?}");
        assert_eq!(table_count(&db).await, 12, "{b:?}: the rest stays");
        for column in ["kind", "path_len", "key_spec", "generation", "key_offline"] {
            assert!(
                !cas_has_column(&db, column).await,
                "{b:?}: cas.{column} dropped"
            );
        }

        Migrator::up(c, None)
            .await
            .expect("up m0010 over existing CAs");
        assert_eq!(table_count(&db).await, 33, "{b:?}");
        let root_after = cas::get(c, acme, root.id)
            .await
            .expect("get")
            .expect("root");
        let sub_after = cas::get(c, acme, sub.id).await.expect("get").expect("sub");
        for (before, after, kind) in [
            (&root, &root_after, cas::KIND_ROOT),
            (&sub, &sub_after, cas::KIND_INTERMEDIATE),
        ] {
            let expected = cas::CaRecord {
                kind: kind.to_owned(),
                // Not backfilled: the CA service reads it from the certificate.
                path_len: None,
                ..before.clone()
            };
            assert_eq!(after, &expected, "{b:?}: backfilled {kind}");
            let certs = ca_certificates::list(c, acme, before.id)
                .await
                .expect("certs");
            assert_eq!(certs.len(), 1, "{b:?}");
            let primary = &certs[0];
            assert_eq!(
                primary.id, before.id.0,
                "{b:?}: the backfilled row reuses the CA's id"
            );
            assert_eq!(
                (
                    primary.relation.as_str(),
                    primary.generation,
                    primary.issuer_ca_id
                ),
                (RELATION_PRIMARY, 1, before.parent_id),
                "{b:?}"
            );
            assert_eq!(primary.certificate_der, before.certificate_der);
            assert_eq!(primary.key_ref, before.key_ref);
            assert_eq!(
                (primary.not_before, primary.not_after, primary.created_at),
                (before.not_before, before.not_after, before.created_at),
                "{b:?}: timestamps copied exactly"
            );
            assert_eq!(primary.superseded_at, None);
        }
        // Backfilled CAs rotate like new ones.
        let rotated = cas::rotate(
            c,
            acme,
            sub.id,
            Rotation {
                from_generation: 1,
                key_ref: "file:keys/sub-2".to_owned(),
                certificate_der: vec![0x30, 0x02],
                subject: "CN=sub".to_owned(),
                key_spec: "ecdsa-p256".to_owned(),
                not_before: at(10),
                not_after: at(20_000),
            },
            at(10),
        )
        .await
        .expect("rotate a backfilled CA");
        assert_eq!(rotated.generation, 2, "{b:?}");
        let children = cas::children(c, acme, root.id).await.expect("children");
        assert_eq!(
            children.iter().map(|r| r.id).collect::<Vec<CaId>>(),
            [sub.id]
        );
    }
}

/// The m0011 tables.
const REVOCATION_TABLES: [&str; 4] = ["revocations", "crls", "crl_counters", "leases"];

fn certificate(tenant_id: TenantId, crl_shard: u32) -> CertificateRecord {
    CertificateRecord {
        tenant_id,
        serial: "0a".to_owned(),
        issuer_ca_id: CaId(uuid::Uuid::from_u128(7)),
        profile_name: "web".to_owned(),
        profile_version: 1,
        subject: "CN=a".to_owned(),
        sans: vec!["a.example.com".to_owned()],
        not_before: truncate_ts(t0()),
        not_after: truncate_ts(at(86_400)),
        fingerprint_sha256: "ab".repeat(32),
        certificate_der: vec![0x30, 0x00],
        chain_pem: String::new(),
        created_at: truncate_ts(t0()),
        crl_shard,
    }
}

#[tokio::test]
async fn the_revocation_migration_rolls_back_and_keeps_certificates() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let ca = CaId(uuid::Uuid::from_u128(7));
        certificates::insert(c, &certificate(acme, 3))
            .await
            .expect("certificate");
        revocations::insert(
            c,
            &NewRevocation {
                tenant_id: acme,
                serial: "0a".to_owned(),
                issuer_ca_id: ca,
                ca_generation: 1,
                crl_shard: 3,
                reason: "keyCompromise".to_owned(),
                reason_text: String::new(),
                revoked_at: at(1),
                revoked_by: "alice".to_owned(),
                cert_not_after: at(86_400),
            },
        )
        .await
        .expect("revocation");
        crls::next_number(c, acme, ca).await.expect("counter");
        leases::try_acquire(c, "job", "a", t0(), chrono::Duration::seconds(5))
            .await
            .expect("lease");
        assert!(has_index(&db, "idx_certificates_issuer").await, "{b:?}");
        assert!(has_column(&db, "certificates", "crl_shard").await, "{b:?}");

        Migrator::down(c, Some(4))
            .await
            .expect("down m0014 to m0011");
        assert_eq!(count_tables(&db, &REVOCATION_TABLES).await, 0, "{b:?}");
        assert_eq!(table_count(&db).await, 16, "{b:?}: the rest stays");
        assert!(
            !has_column(&db, "certificates", "crl_shard").await,
            "{b:?}: certificates.crl_shard dropped"
        );
        assert!(!has_index(&db, "idx_certificates_issuer").await, "{b:?}");

        Migrator::up(c, None)
            .await
            .expect("up m0011 and m0012 again");
        assert_eq!(table_count(&db).await, 33, "{b:?}");
        assert!(has_index(&db, "idx_certificates_issuer").await, "{b:?}");
        assert_eq!(
            certificates::get(c, acme, "0a").await.expect("get"),
            Some(certificate(acme, 0)),
            "{b:?}: the certificate survives, in shard 0 like every older certificate"
        );
        assert_eq!(
            revocations::get(c, acme, "0a").await.expect("get"),
            None,
            "{b:?}"
        );
        assert_eq!(
            crls::next_number(c, acme, ca).await.expect("counter"),
            1,
            "{b:?}: counters start over with the table"
        );
    }
}
