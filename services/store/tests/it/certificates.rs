//! Certificates: insert, get, conflicts, tenant scoping, keyset pagination (plain and
//! filtered), count, CRL shards, the expiry window and successors.

use certmesh_store::certificates::{self, CertificateFilter, CertificateRecord, Cursor};
use certmesh_store::testing::each_backend;
use certmesh_store::{CaId, StoreError, TenantId};

use crate::{at, tenant, tx};

fn cert(tenant_id: TenantId, serial: &str, created_secs: i64) -> CertificateRecord {
    CertificateRecord {
        tenant_id,
        serial: serial.to_owned(),
        issuer_ca_id: CaId(uuid::Uuid::from_u128(7)),
        profile_name: "web".to_owned(),
        profile_version: 2,
        subject: format!("CN={serial}.example.com"),
        sans: vec![format!("{serial}.example.com"), "10.0.0.1".to_owned()],
        not_before: at(created_secs),
        not_after: at(created_secs + 90 * 86_400),
        fingerprint_sha256: "ab".repeat(32),
        certificate_der: vec![0x30, 0x03, 0x02, 0x01, 0x00],
        chain_pem: "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n".to_owned(),
        created_at: certmesh_store::truncate_ts(at(created_secs)),
        crl_shard: 0,
    }
}

#[tokio::test]
async fn insert_get_conflict_scoping() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let mut rec = cert(acme, "0a1b", 0);
        certificates::insert(c, &rec).await.expect("insert");
        // Stored timestamps are truncated to microseconds.
        rec.not_before = certmesh_store::truncate_ts(rec.not_before);
        rec.not_after = certmesh_store::truncate_ts(rec.not_after);
        let got = certificates::get(c, acme, "0a1b")
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got, rec, "{b:?}: exact round-trip");

        let dup = certificates::insert(c, &rec).await;
        assert!(
            matches!(
                dup,
                Err(StoreError::Conflict {
                    what: "certificate"
                })
            ),
            "{b:?}: {dup:?}"
        );
        let dup_many = certificates::insert_many(c, &[cert(acme, "ffff", 1), rec.clone()]).await;
        assert!(
            matches!(dup_many, Err(StoreError::Conflict { .. })),
            "{b:?}"
        );
        assert_eq!(
            certificates::get(c, acme, "ffff").await.expect("get"),
            None,
            "{b:?}: a failed batch writes nothing"
        );

        let globex = tenant(&db, "globex").await;
        assert_eq!(
            certificates::get(c, globex, "0a1b").await.expect("get"),
            None,
            "{b:?}: tenant B cannot read tenant A's serial"
        );
        certificates::insert(c, &cert(globex, "0a1b", 0))
            .await
            .expect("same serial in another tenant");
        assert_eq!(certificates::count(c, acme).await.expect("count"), 1);
        assert_eq!(certificates::count(c, globex).await.expect("count"), 1);
    }
}

#[tokio::test]
async fn list_paginates_with_cursors() {
    for db in each_backend().await {
        let b = db.backend();
        let c = db.owner();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        // 7 rows; several share a created_at so the serial breaks ties.
        let recs: Vec<_> = [
            ("05", 0),
            ("01", 1),
            ("02", 1),
            ("03", 1),
            ("0f", 2),
            ("0e", 3),
            ("00", 3),
        ]
        .iter()
        .map(|(s, t)| cert(acme, s, *t))
        .collect();
        certificates::insert_many(c, &recs)
            .await
            .expect("insert_many");
        certificates::insert(c, &cert(globex, "99", 1))
            .await
            .expect("other tenant");
        assert_eq!(certificates::count(c, acme).await.expect("count"), 7);

        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        let mut pages = 0;
        loop {
            let token = cursor.as_ref().map(Cursor::encode);
            let decoded = token
                .as_deref()
                .map(Cursor::decode)
                .transpose()
                .expect("decode");
            assert_eq!(decoded, cursor);
            let (page, next) = certificates::list(c, acme, 3, decoded.as_ref())
                .await
                .expect("list");
            pages += 1;
            seen.extend(page.iter().map(|r| r.serial.clone()));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{b:?}");
        assert_eq!(seen, ["05", "01", "02", "03", "0f", "00", "0e"], "{b:?}");

        // An exact multiple of the page size ends without an empty extra page.
        let (page, next) = certificates::list(c, acme, 7, None).await.expect("list");
        assert_eq!((page.len(), next), (7, None));

        for bad in ["", "!!!", "bm90IGEgY3Vyc29y", "MTphYmM6eHg"] {
            assert!(
                matches!(Cursor::decode(bad), Err(StoreError::Invalid { .. })),
                "{bad:?} should be invalid"
            );
        }
        assert!(matches!(
            certificates::list(c, acme, 0, None).await,
            Err(StoreError::Invalid { .. })
        ));
    }
}

#[tokio::test]
async fn crl_shard_round_trips_and_max_crl_shard_is_per_issuer_and_tenant() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let ca = CaId(uuid::Uuid::from_u128(7));
        let other_ca = CaId(uuid::Uuid::from_u128(8));
        let t = tx(&db, acme).await;
        assert_eq!(
            certificates::max_crl_shard(&t, acme, ca)
                .await
                .expect("max"),
            None,
            "{b:?}: no certificates, no shard"
        );
        let mut sharded = cert(acme, "0a", 0);
        sharded.crl_shard = 5;
        let mut other = cert(acme, "0b", 1);
        other.issuer_ca_id = other_ca;
        other.crl_shard = 9;
        certificates::insert(&t, &sharded).await.expect("insert");
        certificates::insert_many(&t, &[cert(acme, "0c", 2), other])
            .await
            .expect("insert_many");
        let got = certificates::get(&t, acme, "0a")
            .await
            .expect("get")
            .expect("found");
        assert_eq!(got.crl_shard, 5, "{b:?}: crl_shard persisted");
        assert_eq!(
            certificates::max_crl_shard(&t, acme, ca)
                .await
                .expect("max"),
            Some(5),
            "{b:?}"
        );
        assert_eq!(
            certificates::max_crl_shard(&t, acme, other_ca)
                .await
                .expect("max"),
            Some(9),
            "{b:?}"
        );
        t.commit().await.expect("commit");
        let t = tx(&db, globex).await;
        assert_eq!(
            certificates::max_crl_shard(&t, globex, ca)
                .await
                .expect("max"),
            None,
            "{b:?}: another tenant's certificates do not count"
        );
        certificates::insert(&t, &cert(globex, "0a", 0))
            .await
            .expect("insert");
        assert_eq!(
            certificates::max_crl_shard(&t, globex, ca)
                .await
                .expect("max"),
            Some(0),
            "{b:?}: shard 0 is a shard"
        );
        t.commit().await.expect("commit");
    }
}

/// Pages through `list_filtered` 2 rows at a time; the serials in order.
async fn all_filtered<C: sea_orm::ConnectionTrait>(
    c: &C,
    t: TenantId,
    filter: &CertificateFilter,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let (page, next) = certificates::list_filtered(c, t, filter, 2, cursor.as_ref())
            .await
            .expect("list_filtered");
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|r| r.serial));
        match next {
            Some(n) => cursor = Some(n),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn list_filtered_narrows_by_issuer_profile_and_issue_time_and_paginates() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let ca7 = CaId(uuid::Uuid::from_u128(7));
        let ca8 = CaId(uuid::Uuid::from_u128(8));
        let mut recs = Vec::new();
        // (serial, issue time, issuer, profile)
        for (serial, secs, ca, profile) in [
            ("01", 0, ca7, "web"),
            ("02", 10, ca8, "web"),
            ("03", 10, ca7, "mtls"),
            ("04", 20, ca7, "web"),
            ("05", 30, ca8, "mtls"),
            ("06", 30, ca7, "web"),
            ("07", 40, ca7, "web"),
        ] {
            let mut r = cert(acme, serial, secs);
            r.issuer_ca_id = ca;
            r.profile_name = profile.to_owned();
            recs.push(r);
        }
        let t = tx(&db, acme).await;
        certificates::insert_many(&t, &recs).await.expect("insert");
        t.commit().await.expect("commit");
        let t = tx(&db, globex).await;
        certificates::insert(&t, &cert(globex, "99", 10))
            .await
            .expect("other tenant");
        t.commit().await.expect("commit");

        let t = tx(&db, acme).await;
        let by_issuer = CertificateFilter {
            issuer_ca_id: Some(ca7),
            ..CertificateFilter::default()
        };
        let by_profile = CertificateFilter {
            profile_name: Some("mtls".to_owned()),
            ..CertificateFilter::default()
        };
        // `at()` carries nanoseconds: the bounds fall between stored microseconds.
        let after = CertificateFilter {
            issued_after: Some(certmesh_store::truncate_ts(at(20))),
            ..CertificateFilter::default()
        };
        let before = CertificateFilter {
            issued_before: Some(certmesh_store::truncate_ts(at(30))),
            ..CertificateFilter::default()
        };
        let window = CertificateFilter {
            issuer_ca_id: Some(ca7),
            profile_name: Some("web".to_owned()),
            issued_after: Some(at(10)),
            issued_before: Some(at(40)),
        };
        let sub_micro = CertificateFilter {
            // A bound just past a stored instant: `>=` excludes it, `<` includes it.
            issued_after: Some(
                certmesh_store::truncate_ts(at(10)) + chrono::Duration::nanoseconds(1),
            ),
            issued_before: Some(
                certmesh_store::truncate_ts(at(30)) + chrono::Duration::nanoseconds(1),
            ),
            ..CertificateFilter::default()
        };
        for (filter, want) in [
            (
                CertificateFilter::default(),
                vec!["01", "02", "03", "04", "05", "06", "07"],
            ),
            (by_issuer, vec!["01", "03", "04", "06", "07"]),
            (by_profile, vec!["03", "05"]),
            (after, vec!["04", "05", "06", "07"]),
            (before, vec!["01", "02", "03", "04"]),
            // Exact bounds: 10.123456 < at(10) is out, 40.123456 < at(40) is in.
            (window, vec!["04", "06", "07"]),
            (sub_micro, vec!["04", "05", "06"]),
        ] {
            assert_eq!(
                all_filtered(&t, acme, &filter).await,
                want,
                "{b:?}: {filter:?}"
            );
        }
        let none = CertificateFilter {
            issuer_ca_id: Some(CaId(uuid::Uuid::from_u128(9))),
            ..CertificateFilter::default()
        };
        assert!(all_filtered(&t, acme, &none).await.is_empty(), "{b:?}");
        assert!(matches!(
            certificates::list_filtered(&t, acme, &none, 1001, None).await,
            Err(StoreError::Invalid { .. })
        ));
        t.commit().await.expect("commit");
        let t = tx(&db, globex).await;
        let by_issuer = CertificateFilter {
            issuer_ca_id: Some(ca7),
            ..CertificateFilter::default()
        };
        assert_eq!(
            all_filtered(&t, globex, &by_issuer).await,
            ["99"],
            "{b:?}: each tenant its own"
        );
        t.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn expiring_lists_the_inclusive_window_soonest_first() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let expires = |t: TenantId, serial: &str, secs: i64| CertificateRecord {
            not_after: at(secs),
            ..cert(t, serial, 0)
        };
        let t = tx(&db, acme).await;
        certificates::insert_many(
            &t,
            &[
                expires(acme, "01", 99),
                expires(acme, "02", 100),
                expires(acme, "03", 150),
                expires(acme, "04", 200),
                expires(acme, "05", 201),
                // Same notAfter as 03: the serial breaks the tie.
                expires(acme, "00", 150),
            ],
        )
        .await
        .expect("insert");
        t.commit().await.expect("commit");
        let t = tx(&db, globex).await;
        certificates::insert(&t, &expires(globex, "99", 150))
            .await
            .expect("other tenant");
        t.commit().await.expect("commit");

        let t = tx(&db, acme).await;
        let serials = |v: Vec<CertificateRecord>| v.into_iter().map(|c| c.serial).collect();
        let window: Vec<String> = serials(
            certificates::expiring(&t, acme, at(100), at(200), 10)
                .await
                .expect("expiring"),
        );
        assert_eq!(
            window,
            ["02", "00", "03", "04"],
            "{b:?}: both bounds inclusive, soonest first"
        );
        let limited: Vec<String> = serials(
            certificates::expiring(&t, acme, at(100), at(200), 2)
                .await
                .expect("expiring"),
        );
        assert_eq!(limited, ["02", "00"], "{b:?}: limited");
        let instant: Vec<String> = serials(
            certificates::expiring(&t, acme, at(150), at(150), 10)
                .await
                .expect("expiring"),
        );
        assert_eq!(instant, ["00", "03"], "{b:?}: a one-instant window");
        assert!(
            certificates::expiring(&t, acme, at(202), at(300), 10)
                .await
                .expect("expiring")
                .is_empty(),
            "{b:?}"
        );
    }
}

#[tokio::test]
async fn a_certificate_has_a_successor_only_with_the_same_names_expiring_later() {
    for db in each_backend().await {
        let b = db.backend();
        let acme = tenant(&db, "acme").await;
        let globex = tenant(&db, "globex").await;
        let web = |t: TenantId, serial: &str, expires: i64, sans: &[&str]| CertificateRecord {
            subject: "CN=www.example.com".to_owned(),
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            not_after: at(expires),
            ..cert(t, serial, 0)
        };
        let names = ["www.example.com", "example.com"];
        let old = web(acme, "01", 100, &names);
        let same_time = web(acme, "02", 100, &names);
        let t = tx(&db, acme).await;
        certificates::insert_many(
            &t,
            &[
                old.clone(),
                same_time.clone(),
                // Later, but for fewer names, or for another subject.
                web(acme, "03", 500, &["www.example.com"]),
                CertificateRecord {
                    subject: "CN=api.example.com".to_owned(),
                    ..web(acme, "04", 500, &names)
                },
            ],
        )
        .await
        .expect("insert");
        t.commit().await.expect("commit");
        // Another tenant's renewal is not acme's.
        let t = tx(&db, globex).await;
        certificates::insert(&t, &web(globex, "05", 900, &names))
            .await
            .expect("other tenant");
        t.commit().await.expect("commit");

        let t = tx(&db, acme).await;
        let has = |rec: CertificateRecord| {
            let t = &t;
            async move {
                certificates::has_successor(t, acme, &rec)
                    .await
                    .expect("has successor")
            }
        };
        assert!(
            !has(old.clone()).await,
            "{b:?}: no other names, subject or tenant count, nor the same notAfter"
        );
        assert!(!has(same_time.clone()).await, "{b:?}");
        certificates::insert(&t, &web(acme, "06", 200, &names))
            .await
            .expect("renewal");
        assert!(has(old.clone()).await, "{b:?}: renewed");
        assert!(has(same_time).await, "{b:?}");
        assert!(
            !has(web(acme, "06", 200, &names)).await,
            "{b:?}: the renewal itself has none"
        );
    }
}
