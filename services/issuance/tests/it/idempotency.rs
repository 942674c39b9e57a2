use certmesh_issuance::IssuanceError;

use crate::harness::{csr, each_backend, web_spec};

#[tokio::test]
async fn the_same_key_and_request_return_the_same_certificate_byte_for_byte() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let request = csr(&["a.example.com"]);
        let mut cmd = h.command(request, "web");
        cmd.idempotency_key = Some("order-1".into());
        let first = h.issuance.issue(&h.auth, cmd.clone()).await.expect("first");
        // Even after the profile tightens, the replay answers from the store.
        let mut strict = web_spec();
        strict.permitted_dns_suffixes = vec!["other.org".into()];
        h.profile("web", strict).await;
        let again = h
            .issuance
            .issue(&h.auth, cmd.clone())
            .await
            .expect("replay");
        assert!(again.replayed);
        assert_eq!(again.record.serial, first.record.serial);
        assert_eq!(again.record.certificate_der, first.record.certificate_der);
        assert_eq!(h.certificate_count().await, 1);

        let mut other = h.command(csr(&["b.example.com"]), "web");
        other.idempotency_key = Some("order-1".into());
        let err = h.issuance.issue(&h.auth, other).await.expect_err("reused");
        assert!(
            matches!(err, IssuanceError::IdempotencyKeyReused { .. }),
            "{err:?}"
        );
        assert_eq!(h.certificate_count().await, 1);
        let replayed = [
            ("profile", "web"),
            ("ca", "builtin-issuing"),
            ("outcome", "replayed"),
        ];
        assert_eq!(h.issuance_total(&replayed), 1.0, "{}", h.metrics.render());
        assert_eq!(h.issuance_total(&[("outcome", "issued")]), 1.0);
        assert_eq!(h.issuance_total(&[("outcome", "refused")]), 1.0);
    }
}

#[tokio::test]
async fn concurrent_requests_with_one_key_mint_exactly_one_certificate() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let mut cmd = h.command(csr(&["a.example.com"]), "web");
        cmd.idempotency_key = Some("burst".into());
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let issuance = h.issuance.clone();
            let auth = h.auth.clone();
            let cmd = cmd.clone();
            tasks.push(tokio::spawn(
                async move { issuance.issue(&auth, cmd).await },
            ));
        }
        let mut serials = std::collections::HashSet::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(outcome) => {
                    serials.insert(outcome.record.serial);
                }
                // A request that lost the race before the winner committed may be told to retry.
                Err(IssuanceError::IdempotencyKeyInFlight { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(serials.len(), 1, "one serial for one key");
        assert_eq!(h.certificate_count().await, 1);
        assert_eq!(h.events("ca.issue").await.len(), 1);
    }
}

#[tokio::test]
async fn a_concurrent_mix_commits_in_batches_with_every_event() {
    for h in each_backend().await {
        h.profile("web", web_spec()).await;
        let keyed = h.command(csr(&["k.example.com"]), "web");
        let mut tasks = Vec::new();
        for i in 0..64 {
            let issuance = h.issuance.clone();
            let auth = h.auth.clone();
            let mut cmd = if i % 4 == 0 {
                // 16 requests over 4 keys: 4 certificates.
                let mut c = keyed.clone();
                c.idempotency_key = Some(format!("key-{}", i % 16));
                c
            } else {
                h.command(csr(&[&format!("h{i}.example.com")]), "web")
            };
            if i % 4 != 0 {
                cmd.idempotency_key = None;
            }
            tasks.push(tokio::spawn(
                async move { issuance.issue(&auth, cmd).await },
            ));
        }
        let mut serials = std::collections::HashSet::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(outcome) => {
                    serials.insert(outcome.record.serial);
                }
                Err(IssuanceError::IdempotencyKeyInFlight { .. }) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        // 48 keyless certificates and one per key.
        assert_eq!(serials.len(), 48 + 4);
        assert_eq!(h.certificate_count().await, 52);
        assert_eq!(h.events("ca.issue").await.len(), 52);
        assert_eq!(h.events("issuance.profile_evaluated").await.len(), 52);
    }
}
