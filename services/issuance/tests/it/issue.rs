use certmesh_issuance::IssuanceError;
use chrono::Duration;

use crate::harness::{csr, csr_with_ip, each_backend, start, web_spec};

#[tokio::test]
async fn issue_signs_stores_and_records_events() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let outcome = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "web"))
            .await
            .expect("issued");
        let rec = &outcome.record;
        assert!(!outcome.replayed && !outcome.capped);
        assert_eq!(rec.profile_name, "web");
        assert_eq!(rec.profile_version, 1);
        assert_eq!(rec.sans, vec!["a.example.com".to_string()]);
        assert_eq!(rec.not_before, start() - Duration::seconds(60));
        assert_eq!(
            rec.not_after,
            start() - Duration::seconds(60) + Duration::hours(2160)
        );
        assert!(rec.chain_pem.contains("BEGIN CERTIFICATE"));
        let stored = h
            .issuance
            .get_certificate(&h.auth, &rec.serial)
            .await
            .expect("stored");
        assert_eq!(stored.certificate_der, rec.certificate_der);
        assert_eq!(h.certificate_count().await, 1);
        let issued = h.events("ca.issue").await;
        assert_eq!(issued.len(), 1);
        assert_eq!(issued[0]["serial"], rec.serial.as_str());
        let evaluated = h.events("issuance.profile_evaluated").await;
        assert_eq!(evaluated.len(), 1);
        assert_eq!(evaluated[0]["decision"], "allow");
        let issued = [
            ("profile", "web"),
            ("ca", "builtin-issuing"),
            ("outcome", "issued"),
        ];
        assert_eq!(h.issuance_total(&issued), 1.0, "{}", h.metrics.render());
        assert_eq!(h.issuance_total(&[]), 1.0, "one pass, one count");
        assert_eq!(h.metrics.sample("certmesh_issue_seconds_count", &[]), 1.0);
    }
}

#[tokio::test]
async fn a_denied_request_signs_nothing_but_keeps_its_deny_event() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let cases = [
            (csr(&["a.evil.test"]), "permitted_dns_suffixes"),
            (csr(&[]), "require_sans"),
            (
                csr_with_ip("a.example.com", "192.0.2.1".parse().expect("ip")),
                "allow_ip_sans",
            ),
        ];
        for (i, (csr, rule)) in cases.into_iter().enumerate() {
            let err = h
                .issuance
                .issue(&h.auth, h.command(csr, "web"))
                .await
                .expect_err("denied");
            match err {
                IssuanceError::ProfileDenied {
                    rule: r,
                    version: 1,
                    ..
                } => assert_eq!(r, rule),
                other => panic!("expected denial by {rule}, got {other:?}"),
            }
            let events = h.events("issuance.profile_evaluated").await;
            assert_eq!(events.len(), i + 1);
            assert_eq!(events[i]["decision"], "deny");
            assert_eq!(events[i]["rule"], rule);
        }
        assert_eq!(h.certificate_count().await, 0);
        assert!(h.events("ca.issue").await.is_empty());
        let denied = [("profile", "web"), ("outcome", "denied")];
        assert_eq!(h.issuance_total(&denied), 3.0, "{}", h.metrics.render());
        assert_eq!(h.issuance_total(&[("outcome", "issued")]), 0.0);
        assert_eq!(h.metrics.sample("certmesh_issue_seconds_count", &[]), 0.0);
    }
}

#[tokio::test]
async fn validity_above_the_profile_maximum_is_capped_and_reported() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let mut cmd = h.command(csr(&["a.example.com"]), "web");
        cmd.validity = Some(Duration::hours(9000));
        let outcome = h.issuance.issue(&h.auth, cmd).await.expect("issued");
        assert!(outcome.capped);
        assert_eq!(
            outcome.record.not_after - outcome.record.not_before,
            Duration::hours(2160)
        );
        let mut short = h.command(csr(&["b.example.com"]), "web");
        short.validity = Some(Duration::hours(24));
        let outcome = h.issuance.issue(&h.auth, short).await.expect("issued");
        assert!(!outcome.capped);
        assert_eq!(
            outcome.record.not_after - outcome.record.not_before,
            Duration::hours(24)
        );
    }
}

#[tokio::test]
async fn an_unknown_profile_is_not_found_and_writes_nothing() {
    for h in each_backend().await {
        let err = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "nope"))
            .await
            .expect_err("unknown");
        assert!(
            matches!(err, IssuanceError::ProfileNotFound { .. }),
            "{err:?}"
        );
        assert_eq!(h.certificate_count().await, 0);
        assert!(h.events("issuance.profile_evaluated").await.is_empty());
        // The caller's made-up name never becomes a label value.
        let refused = [("profile", ""), ("ca", ""), ("outcome", "refused")];
        assert_eq!(h.issuance_total(&refused), 1.0, "{}", h.metrics.render());
        assert!(!h.metrics.render().contains("nope"));
    }
}

#[tokio::test]
async fn certificates_page_in_order_and_stay_in_their_tenant() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let mut serials = Vec::new();
        for i in 0..5 {
            h.clock.advance(Duration::seconds(1));
            let name = format!("h{i}.example.com");
            let out = h
                .issuance
                .issue(&h.auth, h.command(csr(&[&name]), "web"))
                .await
                .expect("issued");
            serials.push(out.record.serial);
        }
        let (page1, next) = h
            .issuance
            .list_certificates(&h.auth, 2, "")
            .await
            .expect("page 1");
        let next = next.expect("more");
        let (page2, next) = h
            .issuance
            .list_certificates(&h.auth, 2, &next)
            .await
            .expect("page 2");
        let (page3, last) = h
            .issuance
            .list_certificates(&h.auth, 2, &next.expect("more"))
            .await
            .expect("page 3");
        assert!(last.is_none());
        let listed: Vec<_> = page1
            .iter()
            .chain(&page2)
            .chain(&page3)
            .map(|r| r.serial.clone())
            .collect();
        assert_eq!(listed, serials);
        let err = h
            .issuance
            .list_certificates(&h.auth, 2, "garbage!")
            .await
            .expect_err("bad token");
        assert!(matches!(err, IssuanceError::PageTokenInvalid));

        let other_tenant = certmesh_store::tenants::ensure(h.store.conn(), "other", start())
            .await
            .expect("tenant");
        let other = certmesh_kit::auth::AuthContext {
            tenant_id: other_tenant,
            ..h.auth.clone()
        };
        let err = h
            .issuance
            .get_certificate(&other, &serials[0])
            .await
            .expect_err("other tenant");
        assert!(matches!(err, IssuanceError::CertificateNotFound { .. }));
        let err = h
            .issuance
            .get_certificate(&h.auth, "zz")
            .await
            .expect_err("bad serial");
        assert!(matches!(err, IssuanceError::SerialInvalid { .. }));
    }
}

#[tokio::test]
async fn a_new_tenant_gets_its_own_built_in_ca_on_its_first_issuance() {
    for h in each_backend().await {
        let b = h.store.backend();
        h.profile("web", web_spec()).await;
        let first = h
            .issuance
            .issue(&h.auth, h.command(csr(&["a.example.com"]), "web"))
            .await
            .expect("issued in the bootstrapped tenant")
            .record;
        let globex = certmesh_store::tenants::ensure(h.store.conn(), "globex", start())
            .await
            .expect("tenant");
        let other = certmesh_kit::auth::AuthContext {
            tenant_id: globex,
            ..h.auth.clone()
        };
        h.issuance
            .create_profile(&other, "web", Some(web_spec()))
            .await
            .expect("profile");
        let theirs = h
            .issuance
            .issue(&other, h.command(csr(&["b.example.com"]), "web"))
            .await
            .expect("a tenant without a CA issues: its built-in CA is made on first use")
            .record;
        assert_ne!(
            theirs.issuer_ca_id, first.issuer_ca_id,
            "{b:?}: one CA per tenant"
        );
        assert_ne!(theirs.chain_pem, first.chain_pem, "{b:?}");
        let again = h
            .issuance
            .issue(&other, h.command(csr(&["c.example.com"]), "web"))
            .await
            .expect("second issuance")
            .record;
        assert_eq!(again.issuer_ca_id, theirs.issuer_ca_id, "{b:?}: made once");
    }
}
