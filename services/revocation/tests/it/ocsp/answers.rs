//! What the responder answers: good only for what the CA key signed, revoked with its time
//! and reason at once, unknown otherwise; error statuses; nonces; CertID hash algorithms;
//! rotated keys; CAs made after the directory was loaded; openssl's verdict.

use certmesh_crypto::{cert::Certificate, ocsp::OcspErrorStatus, serial::Serial};
use certmesh_revocation::ocsp::Answer;
use chrono::Duration;

use super::{SHA1, SHA256, ask, ask_der, error, revoke, status};
use crate::der::{Status, cert_id, request, request_for};
use crate::support::{Fixture, LeafSpec, config, each_backend, openssl, unrecorded_root};

#[tokio::test]
async fn answers_good_revoked_and_unknown() {
    for f in each_backend().await {
        let ca = f.issuing.certificate().clone();
        let leaf = f.leaf(&f.issuing).await;
        let req = request(&ca, &leaf.serial_bytes(), SHA1, None);
        let (answer, reply) = ask_der(&f.responders, &req).await;
        let Answer::Response {
            der,
            this_update,
            next_update,
            cacheable,
            ..
        } = &answer
        else {
            panic!("{}: {answer:?}", f.backend);
        };
        assert!(*cacheable);
        assert_eq!(*this_update, f.now(), "{}", f.backend);
        assert_eq!(*next_update, f.now() + f.config.ocsp_validity);
        assert_eq!(reply.status, 0);
        assert_eq!(reply.nonce, None);
        let single = reply.single();
        assert_eq!(single.status, Status::Good, "{}", f.backend);
        assert_eq!(
            single.cert_id,
            cert_id(&ca, &leaf.serial_bytes(), SHA1),
            "the CertID is echoed"
        );
        assert_eq!(single.this_update, f.now());
        assert_eq!(single.next_update, Some(f.now() + f.config.ocsp_validity));
        assert_eq!(reply.produced_at, Some(f.now()));
        // Signed by a delegated responder of the issuing CA, announced once.
        assert_eq!(reply.certs.len(), 1);
        let responder = Certificate::from_der(reply.certs[0].clone()).expect("responder");
        assert_eq!(responder.issuer(), ca.subject());
        assert_eq!(
            responder.authority_key_id(),
            ca.subject_key_id(),
            "{}",
            f.backend
        );
        assert_eq!(responder.not_after(), f.now() + f.config.responder_validity);

        // Cached: the same bytes again.
        let (again, _) = ask_der(&f.responders, &req).await;
        assert_eq!(again.body(), *der, "{}: answered from the cache", f.backend);
        assert_eq!(f.responders.cached(), 1);
        assert_eq!(f.events("ca.ocsp_responder.issued").await.len(), 1);

        // Revoked with its time and reason, at once.
        f.clock.advance(Duration::minutes(3));
        let revoked_at = f.now();
        revoke(&f, &leaf, "keyCompromise").await;
        assert_eq!(
            status(&f, &ca, &leaf).await,
            Status::Revoked(revoked_at, Some(1)),
            "{}: the cached good was replaced",
            f.backend
        );

        // unspecified is sent without a reason; a hold as certificateHold; a lifted hold is
        // good again.
        let unspecified = f.leaf(&f.issuing).await;
        let held = f.leaf(&f.issuing).await;
        assert_eq!(status(&f, &ca, &unspecified).await, Status::Good);
        assert_eq!(status(&f, &ca, &held).await, Status::Good);
        revoke(&f, &unspecified, "unspecified").await;
        revoke(&f, &held, "certificateHold").await;
        assert_eq!(
            status(&f, &ca, &unspecified).await,
            Status::Revoked(f.now(), None),
            "{}",
            f.backend
        );
        assert_eq!(
            status(&f, &ca, &held).await,
            Status::Revoked(f.now(), Some(6)),
            "{}",
            f.backend
        );
        f.clock.advance(Duration::minutes(1));
        revoke(&f, &held, "removeFromCRL").await;
        assert_eq!(status(&f, &ca, &held).await, Status::Good, "{}", f.backend);
        // A hold made permanent: the new reason at once, the hold's date.
        let held_at = f.now();
        revoke(&f, &held, "certificateHold").await;
        assert_eq!(
            status(&f, &ca, &held).await,
            Status::Revoked(held_at, Some(6))
        );
        f.clock.advance(Duration::minutes(1));
        revoke(&f, &held, "keyCompromise").await;
        assert_eq!(
            status(&f, &ca, &held).await,
            Status::Revoked(held_at, Some(1)),
            "{}",
            f.backend
        );

        // Never issued: unknown.
        let never = Serial::random();
        assert_eq!(
            ask(&f.responders, &ca, never.as_bytes(), SHA1).await.1,
            Status::Unknown,
            "{}",
            f.backend
        );
        // Issued by the root, asked of the issuing CA: unknown; of the root: good.
        let rooted = f.leaf(&f.root).await;
        assert_eq!(
            status(&f, &ca, &rooted).await,
            Status::Unknown,
            "{}",
            f.backend
        );
        assert_eq!(
            status(&f, f.root.certificate(), &rooted).await,
            Status::Good,
            "{}",
            f.backend
        );
        // Recorded as the issuing CA's but signed by the root: unknown either way.
        let misfiled = f.sign_leaf(&f.root, &f.issuing, &LeafSpec::default());
        f.store_leaf(&misfiled.record).await;
        assert_eq!(
            status(&f, &ca, &misfiled).await,
            Status::Unknown,
            "{}",
            f.backend
        );
        assert_eq!(
            status(&f, f.root.certificate(), &misfiled).await,
            Status::Unknown,
            "{}",
            f.backend
        );
        assert_eq!(f.events("ca.ocsp_responder.issued").await.len(), 2);
    }
}

#[tokio::test]
async fn requests_that_cannot_be_answered_get_error_statuses() {
    for f in each_backend().await {
        let ca = f.issuing.certificate().clone();
        let good = f.leaf(&f.issuing).await;
        let revoked = f.leaf(&f.issuing).await;
        revoke(&f, &revoked, "superseded").await;

        let stranger = unrecorded_root(&f.keys).await;
        let (answer, reply) = ask_der(
            &f.responders,
            &request(stranger.certificate(), &good.serial_bytes(), SHA1, None),
        )
        .await;
        assert_eq!(
            error(&answer),
            Some(OcspErrorStatus::Unauthorized),
            "{}",
            f.backend
        );
        assert_eq!(reply.status, 6);
        assert!(reply.singles.is_empty());

        let valid = request(&ca, &good.serial_bytes(), SHA1, None);
        let too_many: Vec<Vec<u8>> = (0..17)
            .map(|_| cert_id(&ca, &good.serial_bytes(), SHA1))
            .collect();
        let malformed: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"hello, responder".to_vec()),
            ("empty", Vec::new()),
            ("truncated", valid[..valid.len() - 3].to_vec()),
            ("trailing", [valid.clone(), vec![0]].concat()),
            (
                "empty nonce",
                request(&ca, &good.serial_bytes(), SHA1, Some(&[])),
            ),
            (
                "33-byte nonce",
                request(&ca, &good.serial_bytes(), SHA1, Some(&[7; 33])),
            ),
            ("no CertID", request_for(&[], None)),
            ("17 CertIDs", request_for(&too_many, None)),
            ("oversized", vec![0x30; 5000]),
        ];
        for (what, req) in malformed {
            let (answer, reply) = ask_der(&f.responders, &req).await;
            assert_eq!(
                error(&answer),
                Some(OcspErrorStatus::MalformedRequest),
                "{}: {what}",
                f.backend
            );
            assert_eq!(reply.status, 1, "{what}");
        }
        // A 32-byte nonce is fine.
        let (answer, reply) = ask_der(
            &f.responders,
            &request(&ca, &good.serial_bytes(), SHA1, Some(&[7; 32])),
        )
        .await;
        assert_eq!(error(&answer), None, "{}", f.backend);
        assert_eq!(reply.nonce, Some(vec![7; 32]));

        // Several CertIDs of one CA key: one answer each, in order.
        let both = request_for(
            &[
                cert_id(&ca, &good.serial_bytes(), SHA1),
                cert_id(&ca, &revoked.serial_bytes(), SHA256),
            ],
            None,
        );
        let (_, reply) = ask_der(&f.responders, &both).await;
        assert_eq!(reply.status, 0, "{}", f.backend);
        assert_eq!(reply.singles.len(), 2);
        assert_eq!(reply.singles[0].status, Status::Good);
        assert_eq!(
            reply.singles[0].cert_id,
            cert_id(&ca, &good.serial_bytes(), SHA1)
        );
        assert!(matches!(
            reply.singles[1].status,
            Status::Revoked(_, Some(4))
        ));
        assert_eq!(
            reply.singles[1].cert_id,
            cert_id(&ca, &revoked.serial_bytes(), SHA256)
        );
        // … but not of two CA keys.
        let mixed = request_for(
            &[
                cert_id(&ca, &good.serial_bytes(), SHA1),
                cert_id(f.root.certificate(), &good.serial_bytes(), SHA1),
            ],
            None,
        );
        let (answer, _) = ask_der(&f.responders, &mixed).await;
        assert_eq!(
            error(&answer),
            Some(OcspErrorStatus::Unauthorized),
            "{}",
            f.backend
        );
    }
}

#[tokio::test]
async fn nonces_are_echoed_in_freshly_signed_answers() {
    let f = Fixture::on_test_db(certmesh_store::testing::sqlite().await, config(1)).await;
    let ca = f.issuing.certificate().clone();
    let leaf = f.leaf(&f.issuing).await;
    let mut bodies = Vec::new();
    for nonce in [&b"first nonce"[..], b"second nonce", b"x"] {
        let (answer, reply) = ask_der(
            &f.responders,
            &request(&ca, &leaf.serial_bytes(), SHA1, Some(nonce)),
        )
        .await;
        let Answer::Response { cacheable, .. } = &answer else {
            panic!("{answer:?}");
        };
        assert!(!cacheable, "an answer with a nonce is not for caches");
        assert_eq!(reply.nonce.as_deref(), Some(nonce));
        assert_eq!(reply.single().status, Status::Good);
        bodies.push(answer.body());
    }
    assert_ne!(bodies[0], bodies[1]);
    assert_ne!(bodies[1], bodies[2]);

    // Without a nonce: cached, the same bytes each time, no nonce inside.
    let plain = request(&ca, &leaf.serial_bytes(), SHA1, None);
    let (first, reply) = ask_der(&f.responders, &plain).await;
    assert_eq!(reply.nonce, None);
    let (second, _) = ask_der(&f.responders, &plain).await;
    assert_eq!(first.body(), second.body());
    assert!(!bodies.contains(&first.body()));

    // A nonce answer after a revocation carries the new status.
    revoke(&f, &leaf, "keyCompromise").await;
    let (_, reply) = ask_der(
        &f.responders,
        &request(&ca, &leaf.serial_bytes(), SHA1, Some(b"after")),
    )
    .await;
    assert_eq!(reply.single().status, Status::Revoked(f.now(), Some(1)));
    assert_eq!(reply.nonce.as_deref(), Some(&b"after"[..]));
}

#[tokio::test]
async fn sha1_and_sha256_cert_ids_are_answered_and_replaced_together() {
    for f in each_backend().await {
        let ca = f.issuing.certificate().clone();
        let leaf = f.leaf(&f.issuing).await;
        let mut first = Vec::new();
        for hash in [SHA1, SHA256] {
            let req = request(&ca, &leaf.serial_bytes(), hash, None);
            let (answer, reply) = ask_der(&f.responders, &req).await;
            assert_eq!(
                reply.single().status,
                Status::Good,
                "{}: {hash:?}",
                f.backend
            );
            assert_eq!(
                reply.single().cert_id,
                cert_id(&ca, &leaf.serial_bytes(), hash)
            );
            first.push(answer.body());
        }
        assert_ne!(first[0], first[1]);
        assert_eq!(f.responders.cached(), 1, "{}: one certificate", f.backend);
        for (hash, body) in [SHA1, SHA256].into_iter().zip(&first) {
            let (answer, _) = ask(&f.responders, &ca, &leaf.serial_bytes(), hash).await;
            assert_eq!(answer.body(), *body, "{}: {hash:?} cached", f.backend);
        }
        revoke(&f, &leaf, "cessationOfOperation").await;
        for hash in [SHA1, SHA256] {
            assert_eq!(
                ask(&f.responders, &ca, &leaf.serial_bytes(), hash).await.1,
                Status::Revoked(f.now(), Some(5)),
                "{}: {hash:?}",
                f.backend
            );
        }
    }
}

#[tokio::test]
async fn a_ca_created_after_loading_is_answered_for() {
    for f in each_backend().await {
        let late = f.intermediate(&f.root, "late").await;
        let leaf = f.leaf(&late).await;
        assert_eq!(
            status(&f, late.certificate(), &leaf).await,
            Status::Good,
            "{}: the directory is rebuilt on a miss",
            f.backend
        );
        revoke(&f, &leaf, "keyCompromise").await;
        assert_eq!(
            status(&f, late.certificate(), &leaf).await,
            Status::Revoked(f.now(), Some(1)),
            "{}",
            f.backend
        );
    }
}

#[tokio::test]
async fn each_key_of_a_rotated_ca_answers_for_its_own_certificates() {
    for f in each_backend().await {
        let old = f.leaf(&f.issuing).await;
        let rotated = f.rotate(&f.issuing, &f.root).await;
        let new = f.leaf(&rotated).await;
        f.responders.directory().refresh().await.expect("refresh");
        let gen1 = f.issuing.certificate();
        let gen2 = rotated.certificate();
        assert_eq!(status(&f, gen1, &old).await, Status::Good, "{}", f.backend);
        assert_eq!(
            status(&f, gen2, &old).await,
            Status::Unknown,
            "{}",
            f.backend
        );
        assert_eq!(status(&f, gen2, &new).await, Status::Good, "{}", f.backend);
        assert_eq!(
            status(&f, gen1, &new).await,
            Status::Unknown,
            "{}",
            f.backend
        );
        revoke(&f, &old, "keyCompromise").await;
        revoke(&f, &new, "superseded").await;
        assert_eq!(
            status(&f, gen1, &old).await,
            Status::Revoked(f.now(), Some(1)),
            "{}",
            f.backend
        );
        assert_eq!(
            status(&f, gen2, &new).await,
            Status::Revoked(f.now(), Some(4)),
            "{}",
            f.backend
        );
    }
}

#[tokio::test]
async fn responses_verify_with_openssl() {
    let f = Fixture::on_test_db(certmesh_store::testing::sqlite().await, config(1)).await;
    let ca = f.issuing.certificate().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    f.write_cas(dir.path());
    let good = f.leaf(&f.issuing).await;
    let revoked = f.leaf(&f.issuing).await;
    revoke(&f, &revoked, "keyCompromise").await;
    let at = f.now().timestamp().to_string();
    let cases = [
        ("good", &good, SHA1, None, vec!["Cert Status: good"]),
        (
            "revoked",
            &revoked,
            SHA256,
            Some(&b"0123456789abcdef"[..]),
            vec![
                "Cert Status: revoked",
                "Revocation Reason: keyCompromise (0x1)",
            ],
        ),
    ];
    for (name, leaf, hash, nonce, shown) in cases {
        let req = request(&ca, &leaf.serial_bytes(), hash, nonce);
        let answer = f.responders.answer(&req).await;
        let req_file = format!("{name}-req.der");
        let resp_file = format!("{name}-resp.der");
        std::fs::write(dir.path().join(&req_file), &req).expect("write");
        std::fs::write(dir.path().join(&resp_file), answer.body()).expect("write");
        let (ok, out) = openssl(
            dir.path(),
            &[
                "ocsp",
                "-reqin",
                &req_file,
                "-respin",
                &resp_file,
                "-issuer",
                "ca.pem",
                "-CAfile",
                "chain.pem",
                "-attime",
                &at,
                // Status times are checked against the wall clock, not -attime.
                "-validity_period",
                "2000000000",
                "-resp_text",
            ],
        );
        assert!(ok, "{name}: {out}");
        assert!(out.contains("Response verify OK"), "{name}: {out}");
        assert!(!out.contains("WARNING"), "{name}: {out}");
        for s in shown {
            assert!(out.contains(s), "{name}: {s} missing:\n{out}");
        }
        if nonce.is_some() {
            assert!(out.contains("OCSP Nonce"), "{name}: {out}");
        }
    }
}
