//! Revocation end to end with real relying-party tools: `openssl ocsp` asks the PKI listener
//! about certificates the dev CA issued (good, then revoked with its reason at once, unknown for
//! a serial never issued), `openssl crl -verify` accepts the CRL its CDP names, `openssl verify
//! -crl_check` rejects the revoked leaf, and pkilint finds nothing wrong with the CRL or the
//! OCSP responses. Bad requests get HTTP 4xx or an OCSP error status, never a crash.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{
    DevServer, assert_eventually, csr, output, pem_blocks, pkilint_bin, run, tool, web_spec, write,
    x509,
};

/// A raw HTTP/1.1 exchange on the plain-HTTP PKI listener: status, headers (lower-cased
/// names), body.
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) to `base` (`http://host:port`) and reads the reply.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let host = base.trim_start_matches("http://");
    let mut stream =
        TcpStream::connect(host).unwrap_or_else(|e| panic!("connecting to {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("setting a read timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("writing the request");
    stream.write_all(body).expect("writing the body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the reply");
    parse_reply(&raw, method == "HEAD")
}

pub fn parse_reply(raw: &[u8], head: bool) -> HttpReply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head_text = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head_text.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head_text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if head {
        Vec::new()
    } else {
        raw[split + 4..].to_vec()
    };
    HttpReply {
        status,
        headers,
        body,
    }
}

struct Pki {
    server: DevServer,
    dir: PathBuf,
    root: PathBuf,
    issuing: PathBuf,
}

impl Pki {
    fn start() -> Pki {
        let server = DevServer::start();
        server.api.create_profile("web", &web_spec());
        let dir = server.path("pki");
        fs::create_dir_all(&dir).expect("creating the test directory");
        let root = server.bundle();
        let issuing = dir.join("issuing.pem");
        Pki {
            server,
            dir,
            root,
            issuing,
        }
    }

    /// Issues a leaf for `dns`; writes leaf.pem and the issuing CA; returns (serial, leaf path).
    fn issue(&self, dns: &str) -> (String, PathBuf) {
        let issued = self
            .server
            .api
            .issue(&csr(&self.dir, dns, "P-256", &[]), "web", None, None)
            .ok();
        let cert = &issued["certificate"];
        let serial = cert["serial"].as_str().expect("serial").to_owned();
        let leaf = write(
            &self.dir.join(format!("{serial}.pem")),
            cert["certificate_pem"].as_str().expect("certificate_pem"),
        );
        let chain = pem_blocks(cert["chain_pem"].as_str().expect("chain_pem"));
        write(&self.issuing, &chain[0]);
        (serial, leaf)
    }

    fn ocsp_url(&self) -> String {
        format!("{}/.well-known/pki/ocsp", self.server.pki)
    }

    /// `openssl ocsp` for `target` (`-cert FILE` or `-serial 0x…`), with the response verified
    /// against the dev root; returns stdout+stderr.
    fn openssl_ocsp(&self, target: &[&str], extra: &[&str]) -> String {
        let mut cmd = Command::new(tool("openssl"));
        cmd.args(["ocsp", "-issuer"])
            .arg(&self.issuing)
            .args(target)
            .args(["-url", &self.ocsp_url(), "-CAfile"])
            .arg(&self.root)
            .args(["-resp_text", "-timeout", "20"])
            .args(extra);
        let out = output(&mut cmd);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        output(&mut self.server.api.cli(args))
    }
}

fn crl_url(leaf: &Path) -> String {
    let text = x509(leaf, &["-ext", "crlDistributionPoints"]);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no CRL URI in {text}"))
        .to_owned()
}

fn path_of(url: &str, base: &str) -> String {
    url.strip_prefix(base)
        .unwrap_or_else(|| panic!("{url} is not under {base}"))
        .to_owned()
}

fn lint(tool_name: &str, file: &Path, what: &str) {
    let bin = pkilint_bin().with_file_name(tool_name);
    let mut cmd = Command::new(&bin);
    cmd.arg("lint");
    if tool_name == "lint_crl" {
        cmd.args(["--type", "CRL", "--profile", "PKIX"]);
    }
    cmd.args([
        "--severity",
        "WARNING",
        "--format",
        "JSON",
        "--document-format",
        "DER",
    ])
    .arg(file);
    let out = output(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{tool_name} gave no JSON for {what} ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = report
        .as_object()
        .map(|results| {
            results
                .values()
                .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let failing: Vec<&Value> = findings
        .iter()
        .filter(|f| {
            ["FATAL", "ERROR", "WARNING"]
                .iter()
                .any(|s| f.to_string().contains(&format!("\"{s}\"")))
        })
        .collect();
    assert!(
        failing.is_empty(),
        "{tool_name} on {what}: {failing:#?}\n{report:#}"
    );
}

#[test]
fn openssl_sees_good_then_revoked_at_once_and_the_crl_rejects_the_leaf() {
    let pki = Pki::start();
    let (serial, leaf) = pki.issue("ocsp.example.com");

    // Every leaf points at the OCSP responder and its shard's CRL.
    let aia = x509(&leaf, &["-ext", "authorityInfoAccess"]);
    assert!(
        aia.contains(&format!("OCSP - URI:{}", pki.ocsp_url())),
        "{aia}"
    );
    let crl_url = crl_url(&leaf);
    assert!(
        crl_url.starts_with(&format!("{}/.well-known/pki/crl/", pki.server.pki)),
        "{crl_url}"
    );

    // Good, with a verified signature and the nonce openssl sends by default echoed.
    let good = pki.openssl_ocsp(&["-cert", leaf.to_str().expect("utf-8")], &[]);
    assert!(good.contains("Response verify OK"), "{good}");
    assert!(
        good.contains(&format!("{}: good", leaf.display())),
        "{good}"
    );
    assert!(!good.contains("WARNING: no nonce"), "{good}");
    // A serial this CA never issued is unknown, never good.
    let unknown = pki.openssl_ocsp(&["-serial", "0x5eed5eed5eed5eed5eed"], &[]);
    assert!(unknown.contains("Response verify OK"), "{unknown}");
    assert!(unknown.contains(": unknown"), "{unknown}");

    // The CRL: DER, verifies under the CA, lints clean, cacheable, 304 on a matching ETag.
    let crl_path = path_of(&crl_url, &pki.server.pki);
    let first = http(&pki.server.pki, "GET", &crl_path, &[], b"");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("application/pkix-crl"));
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(
        first
            .header("cache-control")
            .is_some_and(|c| c.contains("max-age"))
    );
    let crl1 = write(&pki.dir.join("crl1.der"), &first.body);
    let verified = crl_verify(&pki, &crl1);
    assert!(!verified.contains(&serial.to_uppercase()), "{verified}");
    let number1 = crl_number(&verified);
    lint("lint_crl", &crl1, "the CRL");
    let again = http(
        &pki.server.pki,
        "GET",
        &crl_path,
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let head = http(&pki.server.pki, "HEAD", &crl_path, &[], b"");
    assert_eq!(head.status, 200);

    // Revoke through the CLI: the reason is required and must be RFC 5280's.
    let missing = pki.cli(&["cert", "revoke", &serial]);
    assert!(!missing.status.success());
    let bad = pki.cli(&["cert", "revoke", &serial, "--reason", "stolen"]);
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("INVALID_ARGUMENT (REVOCATION_REASON_INVALID)")
            && message.contains("keyCompromise")
            && message.contains("aACompromise"),
        "{message}"
    );
    let revoked = run(&mut pki.server.api.cli(&[
        "cert",
        "revoke",
        &serial,
        "--reason",
        "keyCompromise",
        "--text",
        "key found on a paste site",
    ]));
    let revoked: Value = serde_json::from_slice(&revoked.stdout).expect("JSON");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revocation"]["reason"], "keyCompromise");
    assert_eq!(revoked["revocation"]["reason_code"], 1);

    // No stale "good": the very next OCSP answer says revoked, with the reason.
    let now_revoked = pki.openssl_ocsp(&["-cert", leaf.to_str().expect("utf-8")], &[]);
    assert!(now_revoked.contains("Response verify OK"), "{now_revoked}");
    assert!(
        now_revoked.contains(&format!("{}: revoked", leaf.display())),
        "{now_revoked}"
    );
    assert!(
        now_revoked.contains("Reason: keyCompromise"),
        "{now_revoked}"
    );
    // Cached form (no nonce) too, saved for pkilint.
    let respout = pki.dir.join("revoked.ocsp.der");
    let cached = pki.openssl_ocsp(
        &["-cert", leaf.to_str().expect("utf-8")],
        &["-no_nonce", "-respout", respout.to_str().expect("utf-8")],
    );
    assert!(cached.contains("Reason: keyCompromise"), "{cached}");
    lint("lint_ocsp_response", &respout, "the OCSP response");

    // Revoking again returns the first record.
    let twice =
        run(&mut pki
            .server
            .api
            .cli(&["cert", "revoke", &serial, "--reason", "superseded"]));
    let twice: Value = serde_json::from_slice(&twice.stdout).expect("JSON");
    assert_eq!(twice["already_revoked"], true);
    assert_eq!(twice["revocation"]["reason"], "keyCompromise");
    assert_eq!(
        twice["revocation"]["revoked_at"],
        revoked["revocation"]["revoked_at"]
    );

    // The next CRL lists it, with a higher number, and openssl then rejects the leaf.
    let crl2 = assert_eventually(
        "the CRL to list the revoked serial",
        Duration::from_secs(30),
        || {
            let reply = http(&pki.server.pki, "GET", &crl_path, &[], b"");
            let file = write(&pki.dir.join("crl2.der"), &reply.body);
            let text = crl_verify(&pki, &file);
            if text.contains(&serial.to_uppercase()) {
                Ok((file, text))
            } else {
                Err(text)
            }
        },
    );
    assert!(crl_number(&crl2.1) > number1, "{}", crl2.1);
    assert!(crl2.1.contains("Key Compromise"), "{}", crl2.1);
    lint("lint_crl", &crl2.0, "the CRL with an entry");
    let crl_pem = pki.dir.join("crl2.pem");
    run(Command::new(tool("openssl"))
        .args(["crl", "-inform", "DER", "-in"])
        .arg(&crl2.0)
        .arg("-out")
        .arg(&crl_pem));
    let mut verify = Command::new(tool("openssl"));
    verify
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(&pki.root)
        .arg("-untrusted")
        .arg(&pki.issuing)
        .arg("-CRLfile")
        .arg(&crl_pem)
        .arg(&leaf);
    let rejected = output(&mut verify);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&rejected.stdout),
        String::from_utf8_lossy(&rejected.stderr)
    );
    assert!(!rejected.status.success(), "{text}");
    assert!(text.contains("certificate revoked"), "{text}");

    // Status over REST.
    let status = pki
        .server
        .api
        .get(&format!("/api/v1/certificates/{serial}/status"))
        .ok();
    assert_eq!(status["status"], "revoked");
    assert_eq!(status["revocation"]["reason"], "keyCompromise");
}

fn crl_verify(pki: &Pki, der: &Path) -> String {
    let ca = pki.dir.join("ca-chain.pem");
    let chain = format!(
        "{}{}",
        fs::read_to_string(&pki.issuing).expect("issuing"),
        fs::read_to_string(&pki.root).expect("root")
    );
    write(&ca, chain);
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["crl", "-inform", "DER", "-in"])
        .arg(der)
        .arg("-CAfile")
        .arg(&ca)
        .args(["-verify", "-noout", "-text"]);
    let out = output(&mut cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verify OK"), "openssl crl -verify: {text}");
    text
}

fn crl_number(text: &str) -> u64 {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.contains("X509v3 CRL Number")
            && let Some(value) = lines.next()
        {
            return value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("CRL number {value:?}"));
        }
    }
    panic!("no CRL number in {text}");
}

#[test]
fn a_hold_is_revoked_then_lifted_and_bulk_revocation_counts() {
    let pki = Pki::start();
    let (held, leaf) = pki.issue("hold.example.com");
    let api = &pki.server.api;

    let hold = api.post(
        &format!("/api/v1/certificates/{held}/revoke"),
        json!({"reason": "certificateHold"}).to_string().as_bytes(),
        &[],
    );
    assert_eq!(hold.ok()["revocation"]["reason"], "certificateHold");
    let on_hold = pki.openssl_ocsp(&["-cert", leaf.to_str().expect("utf-8")], &[]);
    assert!(on_hold.contains("Reason: certificateHold"), "{on_hold}");

    let lifted = api.post(
        &format!("/api/v1/certificates/{held}/revoke"),
        json!({"reason": "removeFromCRL"}).to_string().as_bytes(),
        &[],
    );
    let lifted = lifted.ok();
    assert_eq!(lifted["hold_lifted"], true);
    assert_eq!(lifted["status"], "good");
    let good = pki.openssl_ocsp(&["-cert", leaf.to_str().expect("utf-8")], &[]);
    assert!(
        good.contains(&format!("{}: good", leaf.display())),
        "{good}"
    );
    let again = api.post(
        &format!("/api/v1/certificates/{held}/revoke"),
        json!({"reason": "removeFromCRL"}).to_string().as_bytes(),
        &[],
    );
    again.error(412, "FAILED_PRECONDITION", "CERTIFICATE_NOT_ON_HOLD");
    api.post(
        "/api/v1/certificates/00ff/revoke",
        json!({"reason": "keyCompromise"}).to_string().as_bytes(),
        &[],
    )
    .error(404, "NOT_FOUND", "CERTIFICATE_NOT_FOUND");
    api.post(
        &format!("/api/v1/certificates/{held}/revoke"),
        json!({"reason": "bogus"}).to_string().as_bytes(),
        &[],
    )
    .error(400, "INVALID_ARGUMENT", "REVOCATION_REASON_INVALID");

    // Bulk: a filter is required; a dry run changes nothing; then every match is revoked.
    pki.issue("bulk1.example.com");
    pki.issue("bulk2.example.com");
    api.post(
        "/api/v1/certificates:bulk-revoke",
        json!({"reason": "superseded"}).to_string().as_bytes(),
        &[],
    )
    .error(400, "INVALID_ARGUMENT", "BULK_FILTER_EMPTY");
    let dry = api
        .post(
            "/api/v1/certificates:bulk-revoke",
            json!({"profile": "web", "reason": "superseded", "dry_run": true})
                .to_string()
                .as_bytes(),
            &[],
        )
        .ok();
    assert_eq!(dry["matched"], "3", "{dry}");
    assert_eq!(dry["revoked"], "3", "{dry}");
    let status = api.get(&format!("/api/v1/certificates/{held}/status")).ok();
    assert_eq!(status["status"], "good", "a dry run revoked: {status}");
    let bulk = api
        .post(
            "/api/v1/certificates:bulk-revoke",
            json!({"profile": "web", "reason": "superseded"})
                .to_string()
                .as_bytes(),
            &[],
        )
        .ok();
    assert_eq!(bulk["matched"], "3", "{bulk}");
    assert_eq!(bulk["revoked"], "3", "{bulk}");
    let repeat = api
        .post(
            "/api/v1/certificates:bulk-revoke",
            json!({"profile": "web", "reason": "superseded"})
                .to_string()
                .as_bytes(),
            &[],
        )
        .ok();
    assert_eq!(repeat["already_revoked"], "3", "{repeat}");
    assert_eq!(repeat["revoked"], "0", "{repeat}");
    let cli = run(&mut api.cli(&["cert", "status", &held]));
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("JSON");
    assert_eq!(cli["revocation"]["reason"], "superseded");
}

#[test]
fn bad_requests_get_an_http_error_or_an_ocsp_error_status_never_a_crash() {
    let pki = Pki::start();
    let (_, leaf) = pki.issue("bad.example.com");
    let base = &pki.server.pki;
    let ocsp = "/.well-known/pki/ocsp";

    // A valid request to reuse: openssl writes it without sending it.
    let req = pki.dir.join("req.der");
    run(Command::new(tool("openssl"))
        .args(["ocsp", "-issuer"])
        .arg(&pki.issuing)
        .arg("-cert")
        .arg(&leaf)
        .arg("-no_nonce")
        .arg("-reqout")
        .arg(&req));
    let valid = fs::read(&req).expect("request");

    let wrong_type = http(
        base,
        "POST",
        ocsp,
        &[("Content-Type", "application/json")],
        &valid,
    );
    assert_eq!(wrong_type.status, 400);
    let no_type = http(base, "POST", ocsp, &[], &valid);
    assert_eq!(no_type.status, 400);
    let oversized = http(
        base,
        "POST",
        ocsp,
        &[("Content-Type", "application/ocsp-request")],
        &vec![0x30; 64 * 1024],
    );
    assert_eq!(oversized.status, 400);
    let put = http(
        base,
        "PUT",
        ocsp,
        &[("Content-Type", "application/ocsp-request")],
        &valid,
    );
    assert_eq!(put.status, 405);

    let garbage = http(
        base,
        "POST",
        ocsp,
        &[("Content-Type", "application/ocsp-request")],
        b"definitely not DER",
    );
    assert_eq!(garbage.status, 200);
    assert_eq!(
        garbage.header("content-type"),
        Some("application/ocsp-response")
    );
    assert_eq!(ocsp_status(&pki, &garbage.body), "malformedrequest");
    let truncated = http(
        base,
        "POST",
        ocsp,
        &[("Content-Type", "application/ocsp-request")],
        &valid[..valid.len() - 3],
    );
    assert_eq!(ocsp_status(&pki, &truncated.body), "malformedrequest");
    let bad_base64 = http(base, "GET", &format!("{ocsp}/%%%not-base64"), &[], b"");
    assert_eq!(ocsp_status(&pki, &bad_base64.body), "malformedrequest");

    // An issuer certmesh does not run: unauthorized.
    let foreign_dir = pki.dir.join("foreign");
    fs::create_dir_all(&foreign_dir).expect("dir");
    let foreign_key = foreign_dir.join("ca.key");
    let foreign_ca = foreign_dir.join("ca.pem");
    run(Command::new(tool("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=Someone Else CA", "-days", "2", "-keyout"])
        .arg(&foreign_key)
        .arg("-out")
        .arg(&foreign_ca));
    let foreign_req = foreign_dir.join("req.der");
    run(Command::new(tool("openssl"))
        .args(["ocsp", "-issuer"])
        .arg(&foreign_ca)
        .args(["-serial", "0x1234", "-no_nonce", "-reqout"])
        .arg(&foreign_req));
    let foreign = http(
        base,
        "POST",
        ocsp,
        &[("Content-Type", "application/ocsp-request")],
        &fs::read(&foreign_req).expect("request"),
    );
    assert_eq!(ocsp_status(&pki, &foreign.body), "unauthorized");

    // The GET form answers the same request, with RFC 5019 caching headers.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(&valid)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let by_get = http(base, "GET", &format!("{ocsp}/{encoded}"), &[], b"");
    assert_eq!(by_get.status, 200);
    assert_eq!(ocsp_status(&pki, &by_get.body), "successful");
    let cache = by_get.header("cache-control").expect("Cache-Control");
    assert!(
        cache.contains("max-age=") && cache.contains("public"),
        "{cache}"
    );
    assert!(by_get.header("expires").is_some() && by_get.header("last-modified").is_some());

    // CRL paths: unknown CA, bad id, bad shard.
    for path in [
        "/.well-known/pki/crl/00000000-0000-4000-8000-000000000000/0".to_owned(),
        "/.well-known/pki/crl/not-a-uuid/0".to_owned(),
        format!(
            "{}/x",
            crl_url(&leaf)
                .rsplit_once('/')
                .map(|(p, _)| path_of(p, base))
                .unwrap_or_default()
        ),
        "/.well-known/pki/nothing".to_owned(),
    ] {
        assert_eq!(http(base, "GET", &path, &[], b"").status, 404, "{path}");
    }
    let post_crl = http(base, "POST", &path_of(&crl_url(&leaf), base), &[], b"");
    assert_eq!(post_crl.status, 405);

    // Still answering properly after all that.
    let fine = pki.openssl_ocsp(&["-cert", leaf.to_str().expect("utf-8")], &[]);
    assert!(fine.contains(": good"), "{fine}");
}

fn ocsp_status(pki: &Pki, body: &[u8]) -> String {
    let file = pki
        .dir
        .join(format!("resp-{}.der", crate::support::unique("r")));
    write(&file, body);
    let out = output(
        Command::new(tool("openssl"))
            .args(["ocsp", "-respin"])
            .arg(&file)
            .args(["-resp_text", "-noverify"]),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // openssl prints a successful response's status, and an error status as "Responder Error".
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("OCSP Response Status: ")
                .or_else(|| l.strip_prefix("Responder Error: "))
        })
        .map(|s| s.split(' ').next().unwrap_or_default().to_ascii_lowercase())
        .unwrap_or_else(|| panic!("no response status in {text}"))
}

#[test]
fn ocsp_keeps_answering_while_the_api_is_flooded() {
    let pki = Pki::start();
    let (_, leaf) = pki.issue("flood.example.com");
    let req = pki.dir.join("flood-req.der");
    run(Command::new(tool("openssl"))
        .args(["ocsp", "-issuer"])
        .arg(&pki.issuing)
        .arg("-cert")
        .arg(&leaf)
        .arg("-no_nonce")
        .arg("-reqout")
        .arg(&req));
    let request = fs::read(&req).expect("request");
    let base = pki.server.pki.clone();
    let headers = [("Content-Type", "application/ocsp-request")];
    // Warm: the first answer is signed and cached.
    assert_eq!(
        http(&base, "POST", "/.well-known/pki/ocsp", &headers, &request).status,
        200
    );

    // Flood the API: many clients issuing certificates (each a signature and a write) as fast
    // as the gateway lets them, for the whole measurement.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let api_calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let csr = csr(&pki.dir, "flooder.example.com", "P-256", &[]);
    let mut flooders = Vec::new();
    for _ in 0..12 {
        let stop = stop.clone();
        let calls = api_calls.clone();
        let api = pki.server.api.clone();
        let csr = csr.clone();
        flooders.push(std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = api.issue(&csr, "web", None, None);
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let t = Instant::now();
        let reply = http(&base, "POST", "/.well-known/pki/ocsp", &headers, &request);
        latencies.push(t.elapsed());
        assert_eq!(reply.status, 200);
        assert_eq!(ocsp_status(&pki, &reply.body), "successful");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        f.join().expect("flooder");
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    let calls = api_calls.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "OCSP under API flood: {} answers, p50 {p50:?}, p99 {p99:?}; API calls meanwhile: {calls}",
        latencies.len()
    );
    assert!(calls > 0, "the flood made no API calls");
    assert!(
        latencies.len() >= 20,
        "only {} OCSP answers in 8 s",
        latencies.len()
    );
    // Bounded: generous for a loaded 2-core machine, far below the API's own latency there.
    assert!(
        p99 < Duration::from_millis(500),
        "OCSP p99 {p99:?} under an API flood"
    );
}
