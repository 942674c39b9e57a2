//! OCSP: requests made by `openssl ocsp`, parsed; responses signed by a delegated responder,
//! verified by `openssl ocsp` (signature, responder authorization, nonce) and linted by
//! pkilint's `lint_ocsp_response`.

use std::fs;
use std::path::Path;

use certmesh_crypto::CryptoError;
use certmesh_crypto::cert::{Certificate, pem_bundle};
use certmesh_crypto::ocsp::{
    CertId, CertStatus, HashAlgorithm, MAX_REQUEST_LEN, OcspErrorStatus, OcspRequest,
    OcspRequestError, Responder, ResponderKey, ResponderTemplate, SingleResponse, error_response,
    issuer_hashes, parse_request,
};
use certmesh_crypto::revocation::RevocationReason;
use certmesh_crypto::serial::Serial;
use chrono::{DateTime, Duration, Utc};

use crate::support::{
    Hierarchy, at, hierarchy, openssl, openssl_output, openssl_verify, pkilint, pkilint_document,
};

fn responder_template() -> ResponderTemplate {
    ResponderTemplate {
        serial: Serial::random(),
        not_before: at(2029, 12, 1),
        not_after: at(2030, 2, 1),
        common_name: "Test Issuing CA OCSP Responder".to_owned(),
    }
}

fn responder(h: &Hierarchy) -> Responder {
    let key = ResponderKey::generate().expect("key");
    let cert = h
        .intermediate
        .issue_ocsp_responder(&key, &responder_template())
        .expect("responder certificate");
    Responder::new(key, cert).expect("responder")
}

/// Writes the CA and trust files `openssl ocsp` reads.
fn write_cas(dir: &Path, h: &Hierarchy) {
    let ca = h.intermediate.certificate();
    fs::write(dir.join("ca.pem"), ca.to_pem()).expect("write");
    fs::write(
        dir.join("trust.pem"),
        pem_bundle(&[h.root.clone(), ca.clone()]),
    )
    .expect("write");
}

/// `openssl ocsp` request for `serials` (CertID hash `digest`, with or without nonce).
fn openssl_request(
    dir: &Path,
    name: &str,
    digest: &str,
    nonce: bool,
    serials: &[&Serial],
) -> Vec<u8> {
    let out = format!("{name}.der");
    let hexes: Vec<String> = serials
        .iter()
        .map(|s| format!("0x{}", s.to_hex()))
        .collect();
    let mut args = vec!["ocsp", "-issuer", "ca.pem", digest];
    for hex in &hexes {
        args.extend(["-serial", hex]);
    }
    args.extend([if nonce { "-nonce" } else { "-no_nonce" }, "-reqout", &out]);
    openssl(dir, &args);
    fs::read(dir.join(out)).expect("request written")
}

/// Verifies `response` for the request in `req_name`.der (signature, responder authorization
/// and nonce); returns the output with the response text. (openssl prints `0x<serial>: good`
/// summaries only for `-serial` options, which replace `-reqin` and its nonce.)
fn openssl_check(dir: &Path, req_name: &str, response: &[u8]) -> String {
    fs::write(dir.join("resp.der"), response).expect("write");
    let reqin = format!("{req_name}.der");
    let args = [
        "ocsp",
        "-respin",
        "resp.der",
        "-reqin",
        &reqin,
        "-issuer",
        "ca.pem",
        "-CAfile",
        "trust.pem",
        "-attime",
        crate::support::VERIFY_AT,
        // Status times are checked against the wall clock, not -attime.
        "-validity_period",
        "2000000000",
        "-resp_text",
    ];
    let (ok, out) = openssl_output(dir, &args);
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    out
}

fn lint_response(dir: &Path, der: &[u8], what: &str) {
    let notes = pkilint_document(dir, "lint_ocsp_response", &[], der, "WARNING", what);
    println!("lint_ocsp_response notes for {what}:\n{notes}");
}

fn single(id: &CertId, status: CertStatus) -> SingleResponse<'_> {
    SingleResponse {
        cert_id: id,
        status,
        this_update: at(2029, 12, 31),
        next_update: at(2030, 1, 7),
    }
}

fn produced_at() -> DateTime<Utc> {
    at(2029, 12, 31) + Duration::seconds(61) + Duration::milliseconds(250)
}

fn check_cert_id(req: &OcspRequest, ca: &Certificate, hash: HashAlgorithm, serial: &Serial) {
    assert_eq!(req.cert_ids.len(), 1);
    let id = &req.cert_ids[0];
    assert_eq!(id.hash, hash);
    assert_eq!(id.serial().as_ref(), Some(serial));
    let expected = issuer_hashes(ca)
        .into_iter()
        .find(|ih| ih.hash == hash)
        .expect("every algorithm");
    assert_eq!(id.issuer_name_hash, expected.name_hash);
    assert_eq!(id.issuer_key_hash, expected.key_hash);
    assert!(expected.matches(id));
    assert_eq!(
        issuer_hashes(ca).iter().filter(|ih| ih.matches(id)).count(),
        1
    );
}

#[test]
fn responder_certificate_is_a_valid_delegated_responder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    let r = responder(&h);
    let cert = r.certificate();
    pkilint(dir.path(), cert, "an OCSP responder certificate");
    openssl_verify(
        dir.path(),
        &[&h.root],
        &[h.intermediate.certificate()],
        cert,
    )
    .unwrap_or_else(|e| panic!("responder does not verify:\n{e}"));
    fs::write(dir.path().join("responder.pem"), cert.to_pem()).expect("write");
    let text = openssl(
        dir.path(),
        &["x509", "-in", "responder.pem", "-noout", "-text"],
    );
    for shown in [
        "OCSP Signing",
        "OCSP No Check",
        "Digital Signature",
        "CA:FALSE",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "CN = Test Issuing CA OCSP Responder",
    ] {
        assert!(text.contains(shown), "{shown} missing:\n{text}");
    }
    assert!(!cert.is_ca());
    assert_eq!(cert.issuer(), h.intermediate.certificate().subject());

    let other = ResponderKey::generate().expect("key");
    assert!(matches!(
        Responder::new(other, cert.clone()),
        Err(CryptoError::KeyMismatch)
    ));
    let debug = format!("{r:?}");
    assert!(
        debug.contains("ResponderKey") && !debug.contains("key_pair"),
        "{debug}"
    );
}

#[test]
fn openssl_requests_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    write_cas(dir.path(), &h);
    let ca = h.intermediate.certificate();
    let serial = Serial::random();
    for (name, digest, hash, nonce) in [
        ("sha1-nonce", "-sha1", HashAlgorithm::Sha1, true),
        ("sha1-plain", "-sha1", HashAlgorithm::Sha1, false),
        ("sha256-nonce", "-sha256", HashAlgorithm::Sha256, true),
        ("sha384-plain", "-sha384", HashAlgorithm::Sha384, false),
        ("sha512-plain", "-sha512", HashAlgorithm::Sha512, false),
    ] {
        let der = openssl_request(dir.path(), name, digest, nonce, &[&serial]);
        let req = parse_request(&der).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_cert_id(&req, ca, hash, &serial);
        // The CertID is echoed verbatim: its bytes are part of the request.
        let id = &req.cert_ids[0];
        assert!(der.windows(id.der.len()).any(|w| w == id.der.as_slice()));
        match &req.nonce {
            Some(n) => assert!(nonce && (1..=32).contains(&n.len()), "{name}"),
            None => assert!(!nonce, "{name}"),
        }
    }
    let a = Serial::random();
    let der = openssl_request(dir.path(), "two", "-sha1", true, &[&a, &serial]);
    let req = parse_request(&der).expect("two CertIDs");
    let serials: Vec<Serial> = req.cert_ids.iter().filter_map(CertId::serial).collect();
    assert_eq!(serials, [a, serial]);
}

#[test]
fn signed_responses_verify_with_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    write_cas(dir.path(), &h);
    let r = responder(&h);
    let revoked_at = at(2029, 12, 24) + Duration::seconds(3_723);
    let cases = [
        ("good", "-sha1", true, CertStatus::Good, vec!["good"]),
        (
            "revoked",
            "-sha256",
            true,
            CertStatus::Revoked {
                at: revoked_at,
                reason: Some(RevocationReason::KeyCompromise),
            },
            vec![
                "revoked",
                "Revocation Reason: keyCompromise (0x1)",
                "Revocation Time: Dec 24 01:02:03 2029 GMT",
            ],
        ),
        (
            "revoked-no-reason",
            "-sha1",
            false,
            CertStatus::Revoked {
                at: revoked_at,
                reason: None,
            },
            vec!["revoked"],
        ),
        (
            "unknown",
            "-sha1",
            false,
            CertStatus::Unknown,
            vec!["unknown"],
        ),
    ];
    for (name, digest, with_nonce, status, expect) in cases {
        let serial = Serial::random();
        let req = parse_request(&openssl_request(
            dir.path(),
            name,
            digest,
            with_nonce,
            &[&serial],
        ))
        .expect("request");
        let id = &req.cert_ids[0];
        let resp = r
            .sign(
                &[single(id, status.clone())],
                req.nonce.as_deref(),
                produced_at(),
            )
            .expect("signed");
        let out = openssl_check(dir.path(), name, &resp);
        let serial_line = format!("Serial Number: {}", serial.to_hex().to_uppercase());
        assert!(out.contains(&serial_line), "{serial_line} missing:\n{out}");
        let status_line = format!("Cert Status: {}", expect[0]);
        assert!(out.contains(&status_line), "{status_line} missing:\n{out}");
        for shown in expect {
            assert!(out.contains(shown), "{name}: {shown} missing:\n{out}");
        }
        assert!(
            out.contains("Produced At: Dec 31 00:01:01 2029 GMT"),
            "{out}"
        );
        assert!(out.contains("Responder Id: "), "{out}");
        if with_nonce {
            assert!(
                out.contains("OCSP Nonce"),
                "{name}: nonce not echoed:\n{out}"
            );
        }
        if matches!(status, CertStatus::Revoked { reason: None, .. }) {
            assert!(!out.contains("Reason:"), "{out}");
        }
        lint_response(dir.path(), &resp, name);
    }
}

#[test]
fn one_response_answers_several_cert_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    write_cas(dir.path(), &h);
    let r = responder(&h);
    let (a, b) = (Serial::random(), Serial::random());
    let req = parse_request(&openssl_request(
        dir.path(),
        "pair",
        "-sha1",
        true,
        &[&a, &b],
    ))
    .expect("request");
    let status = CertStatus::Revoked {
        at: at(2029, 12, 2),
        reason: Some(RevocationReason::CertificateHold),
    };
    let responses = [
        single(&req.cert_ids[0], CertStatus::Good),
        single(&req.cert_ids[1], status),
    ];
    let resp = r
        .sign(&responses, req.nonce.as_deref(), produced_at())
        .expect("signed");
    let out = openssl_check(dir.path(), "pair", &resp);
    assert!(
        out.contains("Cert Status: good") && out.contains("Cert Status: revoked"),
        "{out}"
    );
    assert!(
        out.contains("Revocation Reason: certificateHold (0x6)"),
        "{out}"
    );
    lint_response(dir.path(), &resp, "two responses");
}

#[test]
fn a_wrong_nonce_is_caught_by_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    write_cas(dir.path(), &h);
    let r = responder(&h);
    let serial = Serial::random();
    let req = parse_request(&openssl_request(dir.path(), "n", "-sha1", true, &[&serial]))
        .expect("request");
    let resp = r
        .sign(
            &[single(&req.cert_ids[0], CertStatus::Good)],
            Some(&[1; 16]),
            produced_at(),
        )
        .expect("signed");
    fs::write(dir.path().join("resp.der"), &resp).expect("write");
    let (_, out) = openssl_output(
        dir.path(),
        &[
            "ocsp",
            "-respin",
            "resp.der",
            "-reqin",
            "n.der",
            "-issuer",
            "ca.pem",
            "-CAfile",
            "trust.pem",
            "-attime",
            crate::support::VERIFY_AT,
            "-validity_period",
            "2000000000",
        ],
    );
    assert!(out.contains("Nonce Verify error"), "{out}");
}

#[test]
fn responses_that_cannot_be_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    write_cas(dir.path(), &h);
    let r = responder(&h);
    let req = parse_request(&openssl_request(
        dir.path(),
        "x",
        "-sha1",
        false,
        &[&Serial::random()],
    ))
    .expect("request");
    let id = &req.cert_ids[0];
    let signing = |responses: &[SingleResponse<'_>], nonce: Option<&[u8]>| {
        r.sign(responses, nonce, produced_at())
    };
    assert!(matches!(
        signing(&[], None),
        Err(CryptoError::Signing { .. })
    ));
    assert!(signing(&[single(id, CertStatus::Good)], Some(&[])).is_err());
    assert!(signing(&[single(id, CertStatus::Good)], Some(&[0; 33])).is_err());
    let remove = CertStatus::Revoked {
        at: at(2029, 1, 1),
        reason: Some(RevocationReason::RemoveFromCrl),
    };
    assert!(matches!(
        signing(&[single(id, remove)], None),
        Err(CryptoError::RevocationReasonRefused { .. })
    ));
    let mut backwards = single(id, CertStatus::Good);
    backwards.next_update = backwards.this_update;
    assert!(signing(&[backwards], None).is_err());
    let forged = CertId {
        der: vec![0x04, 0x00],
        ..id.clone()
    };
    assert!(signing(&[single(&forged, CertStatus::Good)], None).is_err());
}

#[test]
fn error_responses_are_understood_by_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (status, name) in [
        (OcspErrorStatus::MalformedRequest, "malformedRequest"),
        (OcspErrorStatus::InternalError, "internalError"),
        (OcspErrorStatus::TryLater, "tryLater"),
        (OcspErrorStatus::SigRequired, "sigRequired"),
        (OcspErrorStatus::Unauthorized, "unauthorized"),
    ] {
        fs::write(dir.path().join("err.der"), error_response(status)).expect("write");
        let (_, out) = openssl_output(dir.path(), &["ocsp", "-respin", "err.der", "-resp_text"]);
        // openssl 3.0 prints the status in lower case ("malformedrequest (1)").
        assert!(
            out.to_ascii_lowercase()
                .contains(&name.to_ascii_lowercase()),
            "{name}:\n{out}"
        );
        lint_response(dir.path(), error_response(status), name);
    }
    assert_eq!(
        error_response(OcspErrorStatus::MalformedRequest),
        [0x30, 0x03, 0x0a, 0x01, 0x01]
    );
}

/// DER TLV with a definite length, for hand-made requests.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A request for `cert_id` whose nonce extension has `extn_value` as its extnValue content.
fn request_with_nonce_value(cert_id: &[u8], extn_value: &[u8]) -> Vec<u8> {
    let nonce_oid = [
        0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
    ];
    let ext = tlv(0x30, &[&nonce_oid[..], &tlv(0x04, extn_value)].concat());
    let exts = tlv(0xa2, &tlv(0x30, &ext));
    let list = tlv(0x30, &tlv(0x30, cert_id));
    tlv(0x30, &tlv(0x30, &[list, exts].concat()))
}

#[test]
fn hostile_requests_are_refused_without_panicking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    write_cas(dir.path(), &h);
    let valid = openssl_request(dir.path(), "v", "-sha1", true, &[&Serial::random()]);
    let req = parse_request(&valid).expect("valid");
    let cert_id = &req.cert_ids[0].der;

    let nonce = |n: &[u8]| request_with_nonce_value(cert_id, &tlv(0x04, n));
    assert!(parse_request(&nonce(&[5; 32])).is_ok());
    for bad in [
        nonce(&[5; 33]),
        nonce(&[]),
        request_with_nonce_value(cert_id, &[5; 8]),
    ] {
        assert!(
            matches!(parse_request(&bad), Err(OcspRequestError::BadNonce(_))),
            "{:?}",
            parse_request(&bad)
        );
    }

    assert_eq!(
        parse_request(&vec![0x30; MAX_REQUEST_LEN + 1]),
        Err(OcspRequestError::TooLarge)
    );
    for garbage in [
        &b""[..],
        b"GET / HTTP/1.1\r\n",
        &[0x30, 0x80, 0, 0],
        &[0xff; 64],
    ] {
        assert!(matches!(
            parse_request(garbage),
            Err(OcspRequestError::Malformed(_))
        ));
    }
    for len in 0..valid.len() {
        assert!(parse_request(&valid[..len]).is_err(), "truncated to {len}");
    }
    let mut trailing = valid.clone();
    trailing.push(0);
    assert!(parse_request(&trailing).is_err());
    for bit in 0..valid.len() * 8 {
        let mut flipped = valid.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let _ = parse_request(&flipped);
    }
    // A deterministic pseudo-random byte soup of every length up to a few hundred.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for len in 0..600 {
        let soup: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let _ = parse_request(&soup);
        let mut framed = tlv(0x30, &soup);
        let _ = parse_request(&framed);
        framed.truncate(framed.len() / 2);
        let _ = parse_request(&framed);
    }
}

/// Parse-and-sign throughput on one thread; run with
/// `cargo test --release -p certmesh-crypto --test it -- --ignored --nocapture ocsp_throughput`.
#[test]
#[ignore = "benchmark"]
fn ocsp_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = hierarchy();
    write_cas(dir.path(), &h);
    let r = responder(&h);
    let der = openssl_request(dir.path(), "bench", "-sha1", true, &[&Serial::random()]);
    let n = 20_000u32;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let req = parse_request(&der).expect("request");
        r.sign(
            &[single(&req.cert_ids[0], CertStatus::Good)],
            req.nonce.as_deref(),
            produced_at(),
        )
        .expect("signed");
    }
    let rate = f64::from(n) / start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    for _ in 0..n {
        parse_request(&der).expect("request");
    }
    let parse = f64::from(n) / start.elapsed().as_secs_f64();
    println!("one thread: parse_request {parse:.0}/s, parse + sign {rate:.0}/s");
}
