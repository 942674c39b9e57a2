//! Discovery's records: targets are named once and come due on their schedule, a scan is
//! finished once (or failed when its server died), and the inventory keeps one find per
//! fingerprint and location whose status no later sighting changes. Each on SQLite and on
//! PostgreSQL under row-level security.

use certmesh_store::discovery::{
    self, FoundFilter, FoundRecord, ScanTally, Sighting, TargetRecord, scan_state, status,
};
use certmesh_store::testing::each_backend;
use certmesh_store::{Backend, StoreError, TenantId, truncate_ts};

use crate::{at, fingerprint, t0, tenant, tx};

fn target(t: TenantId, name: &str, interval: i64, next: Option<i64>) -> TargetRecord {
    TargetRecord {
        id: uuid::Uuid::new_v4(),
        tenant_id: t,
        name: name.to_owned(),
        spec: r#"{"hosts":["10.0.0.0/30"],"ports":[443]}"#.to_owned(),
        interval_seconds: interval,
        next_scan_at: next.map(at),
        last_scan_id: None,
        created_by: "alice".to_owned(),
        created_at: t0(),
    }
}

/// A network sighting of certificate `n` at `location`, seen at `at(seen)`.
fn sighting(t: TenantId, n: u64, location: &str, seen: i64) -> Sighting {
    Sighting {
        tenant_id: t,
        fingerprint_sha256: fingerprint(n),
        location: location.to_owned(),
        source: "network".to_owned(),
        agent_id: None,
        target_id: Some(uuid::Uuid::from_u128(0x7a)),
        serial: format!("{n:02x}"),
        subject: format!("CN=host{n}.example.com"),
        issuer: "CN=Example Issuing CA, O=Example".to_owned(),
        sans: vec![format!("host{n}.example.com"), "10.0.0.1".to_owned()],
        not_before: t0(),
        not_after: at(90 * 86_400),
        key_type: "ecdsa-p256".to_owned(),
        key_bits: 256,
        signature_algorithm: "ecdsa-with-SHA256".to_owned(),
        tls_version: "TLSv1.3".to_owned(),
        self_signed: false,
        is_ca: false,
        weaknesses: Vec::new(),
        status: status::UNMANAGED.to_owned(),
        certificate_der: vec![0x30, 0x03, 0x02, 0x01, n as u8],
        seen_at: at(seen),
    }
}

/// Every find of the tenant, whatever its status.
fn any_status() -> Vec<FoundFilter> {
    status::ALL
        .iter()
        .map(|s| FoundFilter {
            status: Some((*s).to_owned()),
            ..FoundFilter::default()
        })
        .collect()
}

async fn found<C: sea_orm::ConnectionTrait>(c: &C, t: TenantId, f: &FoundFilter) -> Vec<String> {
    discovery::list_found(c, t, f, 100)
        .await
        .expect("list found")
        .into_iter()
        .map(|r| r.sighting.location)
        .collect()
}

async fn only_find<C: sea_orm::ConnectionTrait>(c: &C, t: TenantId, n: u64) -> Vec<FoundRecord> {
    let mut all = Vec::new();
    for f in any_status() {
        let f = FoundFilter {
            fingerprint: Some(fingerprint(n)),
            ..f
        };
        all.extend(discovery::list_found(c, t, &f, 100).await.expect("list"));
    }
    all
}

#[tokio::test]
async fn targets_are_named_once_listed_and_deleted() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let web = target(acme, "web", 3600, Some(0));
        let dmz = target(acme, "dmz", 0, None);
        discovery::insert_target(&c, &web).await.expect("insert");
        discovery::insert_target(&c, &dmz).await.expect("insert");
        let dup = discovery::insert_target(&c, &target(acme, "web", 60, None)).await;
        assert!(
            matches!(
                dup,
                Err(StoreError::Conflict {
                    what: "scan target"
                })
            ),
            "{b:?}: {dup:?}"
        );
        let got = discovery::get_target(&c, acme, web.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            got,
            TargetRecord {
                next_scan_at: Some(truncate_ts(at(0))),
                created_at: truncate_ts(t0()),
                ..web.clone()
            },
            "{b:?}: exact round-trip"
        );
        let names: Vec<_> = discovery::list_targets(&c, acme)
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["dmz", "web"], "{b:?}: by name");

        discovery::delete_target(&c, acme, web.id)
            .await
            .expect("delete");
        assert!(matches!(
            discovery::delete_target(&c, acme, web.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            discovery::get_target(&c, acme, web.id).await.expect("get"),
            None
        );
        // The name is free again.
        discovery::insert_target(&c, &target(acme, "web", 60, None))
            .await
            .expect("insert after delete");
        c.commit().await.expect("commit");

        // Another tenant may use the same name, and sees none of acme's.
        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(
            discovery::list_targets(&g, globex)
                .await
                .expect("list")
                .is_empty()
        );
        discovery::insert_target(&g, &target(globex, "web", 60, None))
            .await
            .expect("same name, another tenant");
        assert!(matches!(
            discovery::delete_target(&g, globex, dmz.id).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            discovery::get_target(&g, acme, dmz.id)
                .await
                .expect("get")
                .is_some(),
            b == Backend::Sqlite,
            "{b:?}: under row-level security even naming acme finds nothing"
        );
    }
}

#[tokio::test]
async fn scheduled_targets_come_due_soonest_first() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let late = target(acme, "late", 60, Some(10));
        let early = target(acme, "early", 60, Some(5));
        let edge = target(acme, "edge", 60, Some(15));
        for t in [
            &late,
            &early,
            &edge,
            &target(acme, "future", 60, Some(16)),
            &target(acme, "on-demand", 0, Some(0)),
            &target(acme, "never-scheduled", 60, None),
        ] {
            discovery::insert_target(&c, t).await.expect("insert");
        }
        let due = |now, limit| {
            let c = &c;
            async move {
                discovery::due_targets(c, acme, now, limit)
                    .await
                    .expect("due")
                    .into_iter()
                    .map(|t| t.name)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            due(at(15), 10).await,
            ["early", "late", "edge"],
            "{b:?}: due at or before now, soonest first"
        );
        assert_eq!(due(at(15), 2).await, ["early", "late"], "{b:?}: limited");
        assert!(due(at(4), 10).await.is_empty(), "{b:?}");

        let scan = uuid::Uuid::from_u128(0x5c);
        discovery::mark_scanned(&c, acme, early.id, scan, Some(at(100)))
            .await
            .expect("mark");
        let moved = discovery::get_target(&c, acme, early.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(moved.next_scan_at, Some(truncate_ts(at(100))), "{b:?}");
        assert_eq!(moved.last_scan_id, Some(scan));
        discovery::mark_scanned(&c, acme, late.id, scan, None)
            .await
            .expect("mark");
        assert_eq!(
            discovery::get_target(&c, acme, late.id)
                .await
                .expect("get")
                .expect("found")
                .next_scan_at,
            None
        );
        assert_eq!(due(at(15), 10).await, ["edge"], "{b:?}");
        assert_eq!(due(at(100), 10).await, ["edge", "future", "early"], "{b:?}");
    }
}

#[tokio::test]
async fn a_scan_finishes_once_and_lists_newest_first() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let (web, dmz) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let s1 = discovery::start_scan(&c, acme, web, "schedule", at(1))
            .await
            .expect("start");
        let s2 = discovery::start_scan(&c, acme, dmz, "manual", at(2))
            .await
            .expect("start");
        let s3 = discovery::start_scan(&c, acme, web, "manual", at(3))
            .await
            .expect("start");
        assert_eq!(s1.state, scan_state::RUNNING);
        assert_eq!(s1.started_at, truncate_ts(at(1)));
        assert_eq!(
            discovery::get_scan(&c, acme, s1.id).await.expect("get"),
            Some(s1.clone()),
            "{b:?}: start returns what it stored"
        );

        let tally = ScanTally {
            endpoints: 12,
            reachable: 9,
            refused: 2,
            certificates: 7,
        };
        discovery::finish_scan(&c, acme, s1.id, scan_state::DONE, &tally, "ok", at(30))
            .await
            .expect("finish");
        discovery::finish_scan(
            &c,
            acme,
            s1.id,
            scan_state::FAILED,
            &ScanTally::default(),
            "late",
            at(40),
        )
        .await
        .expect("finish again");
        let done = discovery::get_scan(&c, acme, s1.id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(done.state, scan_state::DONE, "{b:?}: the first end stays");
        assert_eq!(
            (
                done.endpoints,
                done.reachable,
                done.refused,
                done.certificates
            ),
            (12, 9, 2, 7),
            "{b:?}"
        );
        assert_eq!(done.detail, "ok");
        assert_eq!(done.finished_at, Some(truncate_ts(at(30))));
        assert_eq!((done.trigger.as_str(), done.target_id), ("schedule", web));

        let ids = |scans: Vec<discovery::ScanRecord>| scans.into_iter().map(|s| s.id).collect();
        let all: Vec<_> = ids(discovery::list_scans(&c, acme, None, 10)
            .await
            .expect("list"));
        assert_eq!(all, [s3.id, s2.id, s1.id], "{b:?}: newest first");
        let of_web: Vec<_> = ids(discovery::list_scans(&c, acme, Some(web), 10)
            .await
            .expect("list"));
        assert_eq!(of_web, [s3.id, s1.id], "{b:?}: by target");
        let one: Vec<_> = ids(discovery::list_scans(&c, acme, None, 1)
            .await
            .expect("list"));
        assert_eq!(one, [s3.id], "{b:?}: limited");
        c.commit().await.expect("commit");

        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(
            discovery::list_scans(&g, globex, None, 10)
                .await
                .expect("list")
                .is_empty()
        );
        assert_eq!(
            discovery::get_scan(&g, acme, s1.id)
                .await
                .expect("get")
                .is_some(),
            b == Backend::Sqlite,
            "{b:?}: under row-level security another tenant's scan is invisible"
        );
    }
}

#[tokio::test]
async fn only_old_running_scans_are_failed_as_stale() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let web = uuid::Uuid::from_u128(1);
        let c = tx(&db, acme).await;
        let old = discovery::start_scan(&c, acme, web, "schedule", at(0))
            .await
            .expect("start");
        let at_cutoff = discovery::start_scan(&c, acme, web, "schedule", at(50))
            .await
            .expect("start");
        let young = discovery::start_scan(&c, acme, web, "schedule", at(100))
            .await
            .expect("start");
        let finished = discovery::start_scan(&c, acme, web, "manual", at(1))
            .await
            .expect("start");
        discovery::finish_scan(
            &c,
            acme,
            finished.id,
            scan_state::DONE,
            &ScanTally::default(),
            "",
            at(2),
        )
        .await
        .expect("finish");
        c.commit().await.expect("commit");
        let g = tx(&db, globex).await;
        let theirs = discovery::start_scan(&g, globex, web, "schedule", at(0))
            .await
            .expect("start");
        g.commit().await.expect("commit");

        let c = tx(&db, acme).await;
        let failed = discovery::fail_stale_scans(&c, acme, at(50), at(200))
            .await
            .expect("fail stale");
        assert_eq!(
            failed, 1,
            "{b:?}: only the running scan started before the cutoff"
        );
        let get = |id| {
            let c = &c;
            async move {
                discovery::get_scan(c, acme, id)
                    .await
                    .expect("get")
                    .expect("found")
            }
        };
        let dead = get(old.id).await;
        assert_eq!(dead.state, scan_state::FAILED, "{b:?}");
        assert_eq!(dead.finished_at, Some(truncate_ts(at(200))));
        assert!(!dead.detail.is_empty());
        assert_eq!(get(at_cutoff.id).await.state, scan_state::RUNNING, "{b:?}");
        assert_eq!(get(young.id).await.state, scan_state::RUNNING);
        let kept = get(finished.id).await;
        assert_eq!(
            (kept.state.as_str(), kept.finished_at),
            (scan_state::DONE, Some(truncate_ts(at(2)))),
            "{b:?}: a finished scan is left alone"
        );
        c.commit().await.expect("commit");
        let g = tx(&db, globex).await;
        assert_eq!(
            discovery::get_scan(&g, globex, theirs.id)
                .await
                .expect("get")
                .expect("found")
                .state,
            scan_state::RUNNING,
            "{b:?}: another tenant's scans are not touched"
        );
    }
}

#[tokio::test]
async fn a_sighting_is_one_find_per_fingerprint_and_location() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let first = sighting(acme, 1, "tls://10.0.0.1:443", 10);
        assert!(
            discovery::record_sighting(&c, &first)
                .await
                .expect("record"),
            "{b:?}: a new find"
        );
        let finds = only_find(&c, acme, 1).await;
        assert_eq!(finds.len(), 1);
        let f = &finds[0];
        assert_eq!(
            f.sighting,
            Sighting {
                not_before: truncate_ts(first.not_before),
                not_after: truncate_ts(first.not_after),
                seen_at: truncate_ts(first.seen_at),
                ..first.clone()
            },
            "{b:?}: exact round-trip"
        );
        assert_eq!(f.binding_id, None);
        assert_eq!(
            (f.first_seen_at, f.last_seen_at),
            (truncate_ts(at(10)), truncate_ts(at(10)))
        );
        assert_eq!(
            discovery::get_found(&c, acme, f.id).await.expect("get"),
            Some(f.clone())
        );

        // Seen again: the same find, later, with what may change on the wire updated.
        let again = Sighting {
            tls_version: "TLSv1.2".to_owned(),
            target_id: Some(uuid::Uuid::from_u128(0x7b)),
            status: status::MANAGED.to_owned(),
            seen_at: at(20),
            ..first.clone()
        };
        assert!(
            !discovery::record_sighting(&c, &again)
                .await
                .expect("record"),
            "{b:?}: the second sighting is not a new find"
        );
        let finds = only_find(&c, acme, 1).await;
        assert_eq!(finds.len(), 1, "{b:?}: still one find");
        let seen = &finds[0];
        assert_eq!(seen.id, f.id);
        assert_eq!(seen.first_seen_at, truncate_ts(at(10)), "{b:?}: kept");
        assert_eq!(seen.last_seen_at, truncate_ts(at(20)), "{b:?}: moved");
        assert_eq!(seen.sighting.tls_version, "TLSv1.2");
        assert_eq!(seen.sighting.target_id, Some(uuid::Uuid::from_u128(0x7b)));
        assert_eq!(
            seen.sighting.status,
            status::UNMANAGED,
            "{b:?}: a sighting does not change the status"
        );

        // The same certificate on another port is another find.
        assert!(
            discovery::record_sighting(&c, &sighting(acme, 1, "tls://10.0.0.1:8443", 30))
                .await
                .expect("record"),
            "{b:?}"
        );
        assert_eq!(only_find(&c, acme, 1).await.len(), 2, "{b:?}");
        c.commit().await.expect("commit");

        // Another tenant finding the same certificate at the same place has its own find.
        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(only_find(&g, globex, 1).await.is_empty());
        assert!(
            discovery::record_sighting(&g, &sighting(globex, 1, "tls://10.0.0.1:443", 40))
                .await
                .expect("record"),
            "{b:?}: the inventory is per tenant"
        );
        g.commit().await.expect("commit");
        let c = tx(&db, acme).await;
        let mine = only_find(&c, acme, 1).await;
        assert!(
            mine.iter()
                .all(|f| f.sighting.tenant_id == acme && f.last_seen_at <= truncate_ts(at(30))),
            "{b:?}: globex's sighting did not move acme's find"
        );
    }
}

#[tokio::test]
async fn a_dismissed_find_stays_dismissed_and_a_claim_stays_put() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let s = sighting(acme, 2, "tls://10.0.0.2:443", 0);
        discovery::record_sighting(&c, &s).await.expect("record");
        let id = only_find(&c, acme, 2).await[0].id;
        discovery::set_status(&c, acme, id, status::DISMISSED)
            .await
            .expect("dismiss");
        let binding = uuid::Uuid::from_u128(0xb1);
        discovery::set_binding(&c, acme, id, binding)
            .await
            .expect("claim");
        assert!(
            found(&c, acme, &FoundFilter::default()).await.is_empty(),
            "{b:?}: dismissed finds are hidden by default"
        );

        let later = Sighting {
            seen_at: at(60),
            ..s.clone()
        };
        assert!(
            !discovery::record_sighting(&c, &later)
                .await
                .expect("record")
        );
        let f = discovery::get_found(&c, acme, id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            f.sighting.status,
            status::DISMISSED,
            "{b:?}: stays dismissed"
        );
        assert_eq!(f.binding_id, Some(binding), "{b:?}: the claim stays");
        assert_eq!(f.last_seen_at, truncate_ts(at(60)));
        assert!(found(&c, acme, &FoundFilter::default()).await.is_empty());
        assert_eq!(
            found(
                &c,
                acme,
                &FoundFilter {
                    status: Some(status::DISMISSED.to_owned()),
                    ..FoundFilter::default()
                }
            )
            .await,
            ["tls://10.0.0.2:443"],
            "{b:?}: shown when asked for"
        );

        let unknown = uuid::Uuid::from_u128(0xdead);
        assert!(matches!(
            discovery::set_status(&c, acme, unknown, status::MANAGED).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            discovery::set_binding(&c, acme, unknown, binding).await,
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            discovery::get_found(&c, acme, unknown).await.expect("get"),
            None
        );
        c.commit().await.expect("commit");

        // Another tenant can neither change nor claim acme's find.
        let globex = tenant(&db, "globex").await;
        let g = tx(&db, globex).await;
        assert!(matches!(
            discovery::set_status(&g, globex, id, status::MANAGED).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            discovery::set_binding(&g, globex, id, binding).await,
            Err(StoreError::NotFound { .. })
        ));
        if b == Backend::Postgres {
            assert!(
                matches!(
                    discovery::set_status(&g, acme, id, status::MANAGED).await,
                    Err(StoreError::NotFound { .. })
                ),
                "row-level security hides the row even when acme is named"
            );
        }
        drop(g);
        let c = tx(&db, acme).await;
        assert_eq!(
            discovery::get_found(&c, acme, id)
                .await
                .expect("get")
                .expect("found")
                .sighting
                .status,
            status::DISMISSED
        );
    }
}

#[tokio::test]
async fn the_inventory_filters_by_expiry_status_weakness_issuer_source_and_fingerprint() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let c = tx(&db, acme).await;
        let day = 86_400;
        let finds = [
            Sighting {
                not_after: at(5 * day),
                weaknesses: vec!["rsa-1024".to_owned(), "sha1".to_owned()],
                key_type: "rsa".to_owned(),
                key_bits: 1024,
                issuer: "CN=Let's Encrypt R3, O=Let's Encrypt".to_owned(),
                ..sighting(acme, 1, "tls://a:443", 0)
            },
            Sighting {
                not_after: at(30 * day),
                self_signed: true,
                issuer: "CN=host2.example.com".to_owned(),
                ..sighting(acme, 2, "tls://b:443", 0)
            },
            Sighting {
                not_after: at(60 * day),
                source: "filesystem".to_owned(),
                agent_id: Some(uuid::Uuid::from_u128(0xa9)),
                target_id: None,
                issuer: "CN=corp_issuing_100%, O=Corp!".to_owned(),
                ..sighting(acme, 3, "file://a9/etc/ssl/c.pem", 0)
            },
            Sighting {
                not_after: at(10 * day),
                status: status::MANAGED.to_owned(),
                ..sighting(acme, 4, "tls://d:443", 0)
            },
            Sighting {
                not_after: at(day),
                weaknesses: vec!["expired-soon".to_owned()],
                ..sighting(acme, 5, "tls://e:443", 0)
            },
        ];
        for s in &finds {
            assert!(discovery::record_sighting(&c, s).await.expect("record"));
        }
        let dismissed = only_find(&c, acme, 5).await[0].id;
        discovery::set_status(&c, acme, dismissed, status::DISMISSED)
            .await
            .expect("dismiss");
        let filter = FoundFilter::default;

        assert_eq!(
            found(&c, acme, &filter()).await,
            [
                "tls://a:443",
                "tls://d:443",
                "tls://b:443",
                "file://a9/etc/ssl/c.pem"
            ],
            "{b:?}: soonest to expire first, dismissed left out"
        );
        for (f, want, why) in [
            (
                FoundFilter {
                    expiring_before: Some(at(10 * day)),
                    ..filter()
                },
                &["tls://a:443", "tls://d:443"][..],
                "expiring at or before the bound",
            ),
            (
                FoundFilter {
                    expiring_before: Some(at(10 * day) - chrono::Duration::seconds(1)),
                    ..filter()
                },
                &["tls://a:443"][..],
                "expiring before the bound",
            ),
            (
                FoundFilter {
                    status: Some(status::MANAGED.to_owned()),
                    ..filter()
                },
                &["tls://d:443"][..],
                "managed",
            ),
            (
                FoundFilter {
                    status: Some(status::DISMISSED.to_owned()),
                    ..filter()
                },
                &["tls://e:443"][..],
                "dismissed",
            ),
            (
                FoundFilter {
                    weak: Some(true),
                    ..filter()
                },
                &["tls://a:443"][..],
                "weak",
            ),
            (
                FoundFilter {
                    weak: Some(false),
                    ..filter()
                },
                &["tls://d:443", "tls://b:443", "file://a9/etc/ssl/c.pem"][..],
                "not weak",
            ),
            (
                FoundFilter {
                    self_signed: Some(true),
                    ..filter()
                },
                &["tls://b:443"][..],
                "self-signed",
            ),
            (
                FoundFilter {
                    self_signed: Some(false),
                    ..filter()
                },
                &["tls://a:443", "tls://d:443", "file://a9/etc/ssl/c.pem"][..],
                "not self-signed",
            ),
            (
                FoundFilter {
                    issuer: Some("ENCRYPT r3".to_owned()),
                    ..filter()
                },
                &["tls://a:443"][..],
                "issuer, case-insensitively",
            ),
            (
                FoundFilter {
                    issuer: Some("example".to_owned()),
                    ..filter()
                },
                &["tls://d:443", "tls://b:443"][..],
                "issuer substring",
            ),
            (
                FoundFilter {
                    issuer: Some("corp_issuing_100%".to_owned()),
                    ..filter()
                },
                &["file://a9/etc/ssl/c.pem"][..],
                "issuer with LIKE wildcards taken literally",
            ),
            (
                FoundFilter {
                    issuer: Some("let_s".to_owned()),
                    ..filter()
                },
                &[][..],
                "an underscore is not a wildcard",
            ),
            (
                FoundFilter {
                    issuer: Some("0%, o".to_owned()),
                    ..filter()
                },
                &["file://a9/etc/ssl/c.pem"][..],
                "a percent sign is not a wildcard",
            ),
            (
                FoundFilter {
                    issuer: Some("corp!".to_owned()),
                    ..filter()
                },
                &["file://a9/etc/ssl/c.pem"][..],
                "the escape character taken literally too",
            ),
            (
                FoundFilter {
                    issuer: Some("nobody".to_owned()),
                    ..filter()
                },
                &[][..],
                "no such issuer",
            ),
            (
                FoundFilter {
                    source: Some("filesystem".to_owned()),
                    ..filter()
                },
                &["file://a9/etc/ssl/c.pem"][..],
                "source",
            ),
            (
                FoundFilter {
                    fingerprint: Some(fingerprint(2)),
                    ..filter()
                },
                &["tls://b:443"][..],
                "fingerprint",
            ),
            (
                FoundFilter {
                    weak: Some(false),
                    issuer: Some("example".to_owned()),
                    self_signed: Some(false),
                    ..filter()
                },
                &["tls://d:443"][..],
                "filters combine",
            ),
        ] {
            assert_eq!(found(&c, acme, &f).await, want, "{b:?}: {why}");
        }
        let two = discovery::list_found(&c, acme, &filter(), 2)
            .await
            .expect("list");
        assert_eq!(two.len(), 2, "{b:?}: limited");
        let fs = &only_find(&c, acme, 3).await[0].sighting;
        assert_eq!(fs.agent_id, Some(uuid::Uuid::from_u128(0xa9)), "{b:?}");
        assert_eq!(fs.weaknesses, Vec::<String>::new());
        assert_eq!(
            only_find(&c, acme, 1).await[0].sighting.weaknesses,
            ["rsa-1024", "sha1"]
        );
    }
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_inventory() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let c = tx(&db, acme).await;
        for n in 1..=3 {
            discovery::record_sighting(&c, &sighting(acme, n, &format!("tls://a{n}:443"), 0))
                .await
                .expect("record");
        }
        c.commit().await.expect("commit");
        let c = tx(&db, acme).await;
        let id = only_find(&c, acme, 1).await[0].id;
        drop(c);

        let g = tx(&db, globex).await;
        assert!(found(&g, globex, &FoundFilter::default()).await.is_empty());
        assert_eq!(
            found(&g, acme, &FoundFilter::default()).await.len(),
            if b == Backend::Sqlite { 3 } else { 0 },
            "{b:?}: under row-level security naming acme finds nothing"
        );
        assert_eq!(
            discovery::get_found(&g, acme, id)
                .await
                .expect("get")
                .is_some(),
            b == Backend::Sqlite,
            "{b:?}"
        );
        assert_eq!(
            discovery::get_found(&g, globex, id).await.expect("get"),
            None,
            "{b:?}"
        );
        if b == Backend::Postgres {
            // Planting a find in acme's inventory from globex's transaction is refused.
            let planted = discovery::record_sighting(&g, &sighting(acme, 9, "tls://x:443", 0))
                .await
                .expect_err("a row for another tenant is refused");
            assert!(
                planted.to_string().contains("row-level security"),
                "{planted}"
            );
        }
    }
}
