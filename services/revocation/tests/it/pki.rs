//! The PKI listener over real HTTP/1.1: health, OCSP by POST and GET (with their transport
//! checks and caching headers), CRLs with ETags, unknown paths and methods; and stopping it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration as StdDuration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use certmesh_crypto::{crl::parse_crl, digest::sha256_hex, ocsp::HashAlgorithm};
use certmesh_kit::{
    metrics::Metrics,
    pki::{CRL_PREFIX, OCSP_PATH},
};
use certmesh_revocation::{
    Deps, Revocations,
    pki::{self, PkiOptions},
};
use certmesh_store::Store;
use chrono::Duration;

use crate::der::{self, Status, request};
use crate::support::{Fixture, LeafSpec, config, unrecorded_root};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), and the reply.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    exchange(addr, &[head.as_bytes(), body].concat())
}

/// Sends `request` as is on a fresh connection and reads the reply until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(StdDuration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {:?}", String::from_utf8_lossy(&raw)));
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn post_ocsp(addr: SocketAddr, req: &[u8]) -> Reply {
    http(
        addr,
        "POST",
        OCSP_PATH,
        &[("Content-Type", "application/ocsp-request")],
        req,
    )
}

fn ocsp_status(reply: &Reply) -> Status {
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/ocsp-response")
    );
    let parsed = der::parse(&reply.body);
    assert_eq!(parsed.status, 0, "not successful");
    parsed.single().status.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pki_listener_serves_ocsp_and_crls_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("pki.db").display());
    let store = Store::connect(&url).await.expect("SQLite");
    store.migrate().await.expect("migrated");
    let f = Fixture::on_store(store, None, "Sqlite".into(), config(2)).await;
    let ca = f.issuing.certificate().clone();
    let in_shard = |shard| LeafSpec {
        shard: Some(shard),
        ..LeafSpec::default()
    };
    let good = f.leaf_with(&f.issuing, &in_shard(0)).await;
    let doomed = f.leaf_with(&f.issuing, &in_shard(1)).await;
    f.publisher.publish_due().await.expect("CRLs");

    let metrics = Metrics::new();
    let handle = pki::start(PkiOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        workers: 1,
        database_url: url,
        keys: f.keys.clone(),
        clock: f.shared_clock(),
        config: f.config.clone(),
        metrics: metrics.clone(),
    })
    .expect("listener started");
    let addr = handle.addr;
    // The API side replaces the listener's cached answers after each revocation.
    let api = Revocations::new(
        Deps {
            store: f.store.clone(),
            clock: f.shared_clock(),
            keys: f.keys.clone(),
            config: f.config.clone(),
        },
        handle.responders.clone(),
        f.publisher.clone(),
    );

    let health = http(addr, "GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok\n"[..]));

    // OCSP by POST.
    let good_req = request(&ca, &good.serial_bytes(), HashAlgorithm::Sha1, None);
    let doomed_req = request(&ca, &doomed.serial_bytes(), HashAlgorithm::Sha1, None);
    let reply = post_ocsp(addr, &good_req);
    assert_eq!(ocsp_status(&reply), Status::Good);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    for content_type in [Some("text/plain"), Some("application/ocsp-response"), None] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| vec![("Content-Type", c)])
            .unwrap_or_default();
        let reply = http(addr, "POST", OCSP_PATH, &headers, &good_req);
        assert_eq!(reply.status, 400, "{content_type:?}");
    }
    let with_params = http(
        addr,
        "POST",
        OCSP_PATH,
        &[("Content-Type", "Application/OCSP-Request; charset=binary")],
        &good_req,
    );
    assert_eq!(ocsp_status(&with_params), Status::Good);
    // Refused on its declared length, before the body is sent.
    let oversized = exchange(
        addr,
        format!(
            "POST {OCSP_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/ocsp-request\r\nContent-Length: 5000\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(oversized.status, 400);
    // Refused while reading a body sent without a length.
    let mut chunked = format!(
        "POST {OCSP_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/ocsp-request\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        chunked.extend_from_slice(b"3e8\r\n");
        chunked.extend_from_slice(&[0x30; 1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(exchange(addr, &chunked).status, 400);

    // OCSP by GET: base64, percent-encoded or URL-safe, with RFC 5019 caching headers.
    let b64 = STANDARD.encode(&doomed_req);
    let encoded = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let reply = http(addr, "GET", &format!("{OCSP_PATH}/{encoded}"), &[], b"");
    assert_eq!(ocsp_status(&reply), Status::Good);
    let max_age = f.config.ocsp_validity.num_seconds() / 2;
    assert_eq!(
        reply.header("cache-control"),
        Some(format!("max-age={max_age}, public, no-transform, must-revalidate").as_str())
    );
    for h in ["etag", "last-modified", "expires"] {
        assert!(
            reply.header(h).is_some(),
            "{h} missing: {:?}",
            reply.headers
        );
    }
    let url_safe = http(
        addr,
        "GET",
        &format!("{OCSP_PATH}/{}", URL_SAFE_NO_PAD.encode(&doomed_req)),
        &[],
        b"",
    );
    assert_eq!(url_safe.body, reply.body, "the same cached answer");
    let garbage = http(addr, "GET", &format!("{OCSP_PATH}/%%%"), &[], b"");
    assert_eq!(garbage.status, 200);
    assert_eq!(der::parse(&garbage.body).status, 1, "malformedRequest");
    let stranger = unrecorded_root(&f.keys).await;
    let reply = post_ocsp(
        addr,
        &request(
            stranger.certificate(),
            &good.serial_bytes(),
            HashAlgorithm::Sha1,
            None,
        ),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(der::parse(&reply.body).status, 6, "unauthorized");
    let with_nonce = request(&ca, &good.serial_bytes(), HashAlgorithm::Sha1, Some(b"n"));
    let reply = http(
        addr,
        "GET",
        &format!("{OCSP_PATH}/{}", URL_SAFE_NO_PAD.encode(&with_nonce)),
        &[],
        b"",
    );
    assert_eq!(ocsp_status(&reply), Status::Good);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("etag"), None);

    // A revocation through the API is served at once.
    api.revoke(&f.actor, doomed.serial(), "keyCompromise", "")
        .await
        .expect("revoked");
    assert_eq!(
        ocsp_status(&post_ocsp(addr, &doomed_req)),
        Status::Revoked(f.now(), Some(1))
    );
    let reply = http(addr, "GET", &format!("{OCSP_PATH}/{encoded}"), &[], b"");
    assert_eq!(ocsp_status(&reply), Status::Revoked(f.now(), Some(1)));
    let never_issued = request(&ca, &[0x7e, 0x57, 0x01], HashAlgorithm::Sha1, None);
    assert_eq!(
        ocsp_status(&post_ocsp(addr, &never_issued)),
        Status::Unknown
    );
    let no_request = http(addr, "GET", OCSP_PATH, &[], b"");
    assert_eq!(no_request.status, 400);

    // Every OCSP request above is counted once, by what it was answered.
    for (result, n) in [
        ("good", 5.0),
        ("revoked", 2.0),
        ("unknown", 1.0),
        ("malformed", 1.0),
        ("unauthorized", 1.0),
        ("bad_request", 6.0),
    ] {
        let counted = metrics.sample("certmesh_ocsp_requests_total", &[("result", result)]);
        assert_eq!(counted, n, "{result}: {}", metrics.render());
    }
    assert_eq!(metrics.sample("certmesh_ocsp_requests_total", &[]), 16.0);

    // CRLs.
    let path = |key: &str, shard: &str| format!("{CRL_PREFIX}{key}/{shard}");
    let key = f.issuing.key_id.to_string();
    let stored = f.crl(&f.issuing, 1).await.expect("CRL");
    let reply = http(addr, "GET", &path(&key, "1"), &[], b"");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/pkix-crl"));
    assert_eq!(reply.body, stored.der);
    let etag = reply.header("etag").expect("ETag").to_owned();
    assert_eq!(etag, format!("\"{}\"", &sha256_hex(&stored.der)[..32]));
    assert_eq!(
        reply.header("cache-control"),
        Some("public, max-age=300, no-transform")
    );
    for h in ["last-modified", "expires"] {
        assert!(
            reply.header(h).is_some(),
            "{h} missing: {:?}",
            reply.headers
        );
    }
    let not_modified = http(
        addr,
        "GET",
        &path(&key, "1"),
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    let other_tag = http(
        addr,
        "GET",
        &path(&key, "1"),
        &[("If-None-Match", "\"something-else\"")],
        b"",
    );
    assert_eq!(other_tag.status, 200);
    let head = http(addr, "HEAD", &path(&key, "1"), &[], b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(stored.der.len().to_string().as_str())
    );
    let root_crl = http(
        addr,
        "GET",
        &path(&f.root.key_id.to_string(), "0"),
        &[],
        b"",
    );
    assert_eq!(root_crl.status, 200);

    // A new CRL is served within seconds, under a new ETag.
    f.clock.advance(Duration::seconds(6));
    let published = f.publisher.publish_due().await.expect("CRLs");
    assert_eq!(published.len(), 1);
    let deadline = Instant::now() + StdDuration::from_secs(10);
    let fresh = loop {
        let reply = http(
            addr,
            "GET",
            &path(&key, "1"),
            &[("If-None-Match", &etag)],
            b"",
        );
        if reply.status == 200 {
            break reply;
        }
        assert_eq!(reply.status, 304);
        assert!(Instant::now() < deadline, "the new CRL is not served");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    };
    assert_ne!(fresh.header("etag"), Some(etag.as_str()));
    let crl = parse_crl(&fresh.body).expect("CRL");
    assert_eq!(crl.entries.len(), 1);
    assert_eq!(crl.entries[0].serial.to_hex(), doomed.serial());

    // What is not there.
    let unknown = uuid::Uuid::new_v4().to_string();
    for (what, p) in [
        ("unknown key", path(&unknown, "0")),
        ("unknown shard", path(&key, "9")),
        ("shard not a number", path(&key, "x")),
        ("key not a UUID", path("issuing", "0")),
        ("extra segment", format!("{}/extra", path(&key, "0"))),
        ("no shard", format!("{CRL_PREFIX}{key}")),
        ("unknown path", "/nothing-here".to_owned()),
    ] {
        assert_eq!(http(addr, "GET", &p, &[], b"").status, 404, "{what}");
    }
    for (method, p, allow) in [
        ("DELETE", path(&key, "0"), "GET, HEAD"),
        ("POST", path(&key, "0"), "GET, HEAD"),
        ("PUT", OCSP_PATH.to_owned(), "GET, POST"),
        ("POST", format!("{OCSP_PATH}/{encoded}"), "GET"),
    ] {
        let reply = http(addr, method, &p, &[], b"");
        assert_eq!(reply.status, 405, "{method} {p}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {p}");
    }
    assert_eq!(http(addr, "GET", OCSP_PATH, &[], b"").status, 400);

    handle.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener is closed after stop"
    );
}
