//! Certificates: insert, get, conflicts, tenant scoping, keyset pagination, count.

use certmesh_store::certificates::{self, CertificateRecord, Cursor};
use certmesh_store::testing::each_backend;
use certmesh_store::{CaId, StoreError, TenantId};

use crate::{at, tenant};

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
