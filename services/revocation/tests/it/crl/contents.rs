//! What a CRL holds: one per CA key and shard, its entries and reasons, its number, issuing
//! distribution point and AKI; shards kept when the count is lowered; rotated keys; openssl's
//! verdict.

use std::collections::{BTreeMap, HashMap};

use certmesh_crypto::revocation::RevocationReason;
use chrono::Duration;
use serde_json::json;

use super::{SHARDS, all_scopes, entries, expect, in_shard, parsed, publish, revoke, scopes};
use crate::support::{Fixture, Leaf, config, each_backend, each_backend_with, openssl};

#[tokio::test]
async fn the_first_round_publishes_one_crl_per_key_and_shard() {
    for f in each_backend_with(config(SHARDS)).await {
        let mut by_shard: HashMap<u32, Vec<Leaf>> = HashMap::new();
        for shard in 0..SHARDS {
            for _ in 0..2 {
                let leaf = f.leaf_with(&f.issuing, &in_shard(shard)).await;
                assert_eq!(leaf.shard(), shard);
                by_shard.entry(shard).or_default().push(leaf);
            }
        }
        let root_leaf = f.leaf_with(&f.root, &in_shard(1)).await;
        revoke(&f, &by_shard[&0][0], "keyCompromise").await;
        revoke(&f, &by_shard[&0][1], "superseded").await;
        revoke(&f, &by_shard[&1][0], "unspecified").await;
        revoke(&f, &by_shard[&2][0], "certificateHold").await;
        revoke(&f, &root_leaf, "privilegeWithdrawn").await;
        let revoked_at = f.now();
        // Past the race margin: a CRL made within 5 s of a change is made again.
        f.clock.advance(Duration::seconds(6));
        let now = f.now();

        let published = publish(&f).await;
        assert_eq!(
            scopes(&published),
            all_scopes(&[&f.root, &f.issuing], SHARDS),
            "{}: one CRL per CA key and shard",
            f.backend
        );
        // Each CRL made is counted and timed once.
        let made = published.len() as f64;
        let generations = "certmesh_crl_generations_total";
        assert_eq!(
            f.metrics.sample(generations, &[("outcome", "published")]),
            made
        );
        assert_eq!(f.metrics.sample(generations, &[("outcome", "failed")]), 0.0);
        assert_eq!(
            f.metrics
                .sample("certmesh_crl_generation_seconds_count", &[]),
            made,
            "{}",
            f.metrics.render()
        );
        for ca in [&f.root, &f.issuing] {
            let numbers: Vec<u64> = published
                .iter()
                .filter(|p| p.ca_id == ca.id())
                .map(|p| p.number)
                .collect();
            assert!(
                numbers.windows(2).all(|w| w[0] < w[1]),
                "{}: numbers of one CA strictly increase: {numbers:?}",
                f.backend
            );
        }
        for p in &published {
            let ca = if p.ca_id == f.root.id() {
                &f.root
            } else {
                &f.issuing
            };
            assert_eq!(p.tenant, f.tenant);
            assert_eq!(
                p.url,
                f.config.urls.crl(ca.key_id, p.shard),
                "{}",
                f.backend
            );
            let record = f.crl(ca, p.shard).await.expect("stored");
            assert_eq!(record.number, p.number);
            assert_eq!(record.der.len(), p.bytes);
            assert_eq!(record.entries, p.entries);
        }

        let want: HashMap<u32, BTreeMap<String, Option<RevocationReason>>> = HashMap::from([
            (
                0,
                expect(&[
                    (&by_shard[&0][0], Some(RevocationReason::KeyCompromise)),
                    (&by_shard[&0][1], Some(RevocationReason::Superseded)),
                ]),
            ),
            (1, expect(&[(&by_shard[&1][0], None)])),
            (
                2,
                expect(&[(&by_shard[&2][0], Some(RevocationReason::CertificateHold))]),
            ),
            (3, BTreeMap::new()),
        ]);
        for shard in 0..SHARDS {
            let crl = parsed(&f, &f.issuing, shard).await;
            assert_eq!(entries(&crl), want[&shard], "{}: shard {shard}", f.backend);
            assert_eq!(
                crl.distribution_point.as_deref(),
                Some(by_shard[&shard][0].crl_url.as_str()),
                "{}: the IDP names the URL the shard's leaves carry",
                f.backend
            );
            assert_eq!(
                crl.authority_key_id.as_deref(),
                f.issuing.certificate().subject_key_id(),
                "{}",
                f.backend
            );
            assert_eq!(crl.issuer_der, f.issuing.certificate().subject_der());
            assert_eq!(crl.this_update, now);
            assert_eq!(crl.next_update, Some(now + f.config.crl_validity));
            for e in &crl.entries {
                assert_eq!(e.revoked_at, revoked_at, "{}", f.backend);
            }
        }
        for shard in 0..SHARDS {
            let crl = parsed(&f, &f.root, shard).await;
            let want = if shard == 1 {
                expect(&[(&root_leaf, Some(RevocationReason::PrivilegeWithdrawn))])
            } else {
                BTreeMap::new()
            };
            assert_eq!(entries(&crl), want, "{}: root shard {shard}", f.backend);
            assert_eq!(
                crl.authority_key_id.as_deref(),
                f.root.certificate().subject_key_id()
            );
            assert_eq!(
                crl.distribution_point,
                Some(f.config.urls.crl(f.root.key_id, shard))
            );
        }

        let events = f.events("ca.crl.published").await;
        assert_eq!(events.len(), 8, "{}", f.backend);
        for p in &published {
            assert!(
                events
                    .iter()
                    .any(|e| e["ca_id"] == json!(p.ca_id.to_string())
                        && e["shard"] == json!(p.shard)
                        && e["number"] == json!(p.number)
                        && e["entries"] == json!(p.entries)
                        && e["url"] == json!(p.url)
                        && e["generation"] == json!(1)),
                "{}: no event for {p:?} in {events:?}",
                f.backend
            );
        }

        assert_eq!(
            publish(&f).await,
            Vec::new(),
            "{}: nothing is due right after a round",
            f.backend
        );
    }
}

/// Lowering the shard count never orphans a URL a certificate carries: shards up to the
/// highest one in use keep their CRLs.
#[tokio::test]
async fn shards_in_use_keep_their_crls_when_the_count_is_lowered() {
    for f in each_backend_with(config(SHARDS)).await {
        let leaf = f.leaf_with(&f.issuing, &in_shard(2)).await;
        revoke(&f, &leaf, "keyCompromise").await;
        let fewer = certmesh_revocation::crl::Publisher::new(
            f.store.clone(),
            f.keys.clone(),
            f.shared_clock(),
            config(1),
            certmesh_kit::metrics::Metrics::new(),
        );
        let published = fewer.publish_due().await.expect("round");
        let mut want = vec![
            (f.issuing.id(), 1, 0),
            (f.issuing.id(), 1, 1),
            (f.issuing.id(), 1, 2),
            (f.root.id(), 1, 0),
        ];
        want.sort();
        assert_eq!(scopes(&published), want, "{}", f.backend);
        assert_eq!(
            entries(&parsed(&f, &f.issuing, 2).await),
            expect(&[(&leaf, Some(RevocationReason::KeyCompromise))])
        );
    }
}

#[tokio::test]
async fn rotated_keys_keep_their_own_crls() {
    for f in each_backend().await {
        let old = f.leaf(&f.issuing).await;
        let rotated = f.rotate(&f.issuing, &f.root).await;
        assert_eq!(rotated.generation, 2);
        assert_ne!(rotated.key_id, f.issuing.id().0, "{}", f.backend);
        let new = f.leaf(&rotated).await;
        f.responders.directory().refresh().await.expect("refresh");
        revoke(&f, &old, "keyCompromise").await;
        revoke(&f, &new, "superseded").await;
        assert_eq!(
            f.revocation(old.serial()).await.expect("row").ca_generation,
            1
        );
        assert_eq!(
            f.revocation(new.serial()).await.expect("row").ca_generation,
            2
        );

        let published = publish(&f).await;
        let mut want = vec![
            (f.issuing.id(), 1, 0),
            (f.issuing.id(), 2, 0),
            (f.root.id(), 1, 0),
        ];
        want.sort();
        assert_eq!(scopes(&published), want, "{}", f.backend);
        let numbers: Vec<u64> = published
            .iter()
            .filter(|p| p.ca_id == f.issuing.id())
            .map(|p| p.number)
            .collect();
        assert_eq!(numbers.len(), 2);
        assert_ne!(numbers[0], numbers[1], "{}: one counter per CA", f.backend);

        let gen1 = parsed(&f, &f.issuing, 0).await;
        assert_eq!(
            entries(&gen1),
            expect(&[(&old, Some(RevocationReason::KeyCompromise))]),
            "{}",
            f.backend
        );
        assert_eq!(
            gen1.authority_key_id.as_deref(),
            f.issuing.certificate().subject_key_id()
        );
        assert_eq!(
            gen1.distribution_point.as_deref(),
            Some(old.crl_url.as_str())
        );
        let gen2 = parsed(&f, &rotated, 0).await;
        assert_eq!(
            entries(&gen2),
            expect(&[(&new, Some(RevocationReason::Superseded))]),
            "{}",
            f.backend
        );
        assert_eq!(
            gen2.authority_key_id.as_deref(),
            rotated.certificate().subject_key_id()
        );
        assert_eq!(
            gen2.distribution_point.as_deref(),
            Some(new.crl_url.as_str())
        );
        assert!(new.crl_url.contains(&rotated.key_id.to_string()));
    }
}

#[tokio::test]
async fn crls_verify_with_openssl() {
    let f = Fixture::on_test_db(certmesh_store::testing::sqlite().await, config(1)).await;
    let revoked = f.leaf(&f.issuing).await;
    let good = f.leaf(&f.issuing).await;
    revoke(&f, &revoked, "keyCompromise").await;
    publish(&f).await;
    let dir = tempfile::tempdir().expect("tempdir");
    f.write_cas(dir.path());
    let record = f.crl(&f.issuing, 0).await.expect("CRL");
    std::fs::write(dir.path().join("crl.der"), &record.der).expect("write");
    let (ok, out) = openssl(
        dir.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "crl.der",
            "-CAfile",
            "chain.pem",
            "-noout",
            "-verify",
        ],
    );
    assert!(ok && out.contains("verify OK"), "{out}");
    let (ok, text) = openssl(
        dir.path(),
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(ok, "{text}");
    for shown in [
        "Key Compromise",
        "X509v3 Issuing Distribution Point: critical",
        "Only User Certificates",
        revoked.crl_url.as_str(),
        "X509v3 CRL Number",
        &revoked.serial().to_uppercase(),
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }

    // A relying party checking the CRL its certificate points at.
    let (ok, pem) = openssl(
        dir.path(),
        &["crl", "-inform", "DER", "-in", "crl.der", "-outform", "PEM"],
    );
    assert!(ok, "{pem}");
    std::fs::write(dir.path().join("crl.pem"), pem).expect("write");
    let at = f.now().timestamp().to_string();
    for (leaf, name, want_ok) in [(&revoked, "revoked.pem", false), (&good, "good.pem", true)] {
        std::fs::write(dir.path().join(name), leaf.cert.to_pem()).expect("write");
        let (ok, out) = openssl(
            dir.path(),
            &[
                "verify",
                "-attime",
                &at,
                "-crl_check",
                "-CAfile",
                "chain.pem",
                "-CRLfile",
                "crl.pem",
                name,
            ],
        );
        assert_eq!(ok, want_ok, "{name}: {out}");
        if !want_ok {
            assert!(out.contains("certificate revoked"), "{out}");
        }
    }
}
