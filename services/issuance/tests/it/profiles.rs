use certmesh_issuance::IssuanceError;

use crate::harness::{csr, each_backend, web_spec};

#[tokio::test]
async fn a_certificate_keeps_the_profile_version_it_was_issued_under() {
    for h in each_backend().await {
        assert_eq!(h.profile("web", web_spec()).await, 1);
        let first = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "web"))
            .await
            .expect("v1");
        let mut v2 = web_spec();
        v2.max_validity = "24h".into();
        assert_eq!(h.profile("web", v2).await, 2);
        let second = h
            .issuance
            .issue(&h.auth, h.command(csr(&["b.example.com"]), "web"))
            .await
            .expect("v2");
        assert_eq!(second.record.profile_version, 2);
        let reread = h
            .issuance
            .get_certificate(&h.auth, &first.record.serial)
            .await
            .expect("reread");
        assert_eq!(reread.profile_version, 1);
        let v1 = h
            .issuance
            .get_profile(&h.auth, "web", Some(1))
            .await
            .expect("v1 kept");
        assert_eq!(v1.spec["max_validity"], "2160h");
        let latest = h
            .issuance
            .get_profile(&h.auth, "web", None)
            .await
            .expect("latest");
        assert_eq!(latest.version, 2);
        assert_eq!(h.events("profile.version_created").await.len(), 2);
    }
}

#[tokio::test]
async fn an_invalid_spec_is_refused_and_stores_no_version() {
    for h in each_backend().await {
        let mut bad = web_spec();
        bad.min_rsa_bits = 1024;
        let err = h
            .issuance
            .create_profile(&h.auth, "web", Some(bad))
            .await
            .expect_err("weak");
        assert!(
            matches!(
                err,
                IssuanceError::ProfileInvalid {
                    field: "min_rsa_bits",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = h
            .issuance
            .create_profile(&h.auth, "Bad Name", Some(web_spec()))
            .await
            .expect_err("name");
        assert!(
            matches!(err, IssuanceError::InvalidField { field: "name", .. }),
            "{err:?}"
        );
        assert!(
            h.issuance
                .list_profiles(&h.auth)
                .await
                .expect("list")
                .is_empty()
        );
    }
}
