//! `certmesh server --dev`: issuance over REST and gRPC on SQLite, checked by openssl and
//! pkilint; idempotency, profile rules, validity capping, profile versions, and a restart that
//! must keep the same CA.

use std::{fs, path::PathBuf};

use chrono::{DateTime, NaiveDateTime, TimeDelta};
use serde_json::{Value, json};

use crate::support::{
    Csr, DevServer, Reply, csr, openssl_verify, output, pem_blocks, pkilint, run, web_spec, write,
    x509,
};

/// One issued certificate, saved as files for openssl and pkilint.
#[derive(Debug)]
struct Saved {
    cert: Value,
    leaf: PathBuf,
    chain: PathBuf,
}

impl Saved {
    /// Save `certificate` (a `Certificate` JSON object) under the server's data directory.
    fn new(server: &DevServer, certificate: &Value) -> Self {
        let serial = certificate["serial"]
            .as_str()
            .expect("certificate.serial is a string");
        assert!(
            !serial.is_empty(),
            "certificate has an empty serial: {certificate}"
        );
        let leaf_pem = certificate["certificate_pem"]
            .as_str()
            .expect("certificate.certificate_pem");
        let chain_pem = certificate["chain_pem"]
            .as_str()
            .expect("certificate.chain_pem");
        assert_eq!(
            pem_blocks(leaf_pem).len(),
            1,
            "certificate_pem must hold exactly the leaf: {leaf_pem}"
        );
        assert!(
            !pem_blocks(chain_pem).is_empty(),
            "chain_pem is empty for serial {serial}"
        );
        Self {
            cert: certificate.clone(),
            leaf: write(&server.path(&format!("{serial}.leaf.pem")), leaf_pem),
            chain: write(&server.path(&format!("{serial}.chain.pem")), chain_pem),
        }
    }

    fn serial(&self) -> &str {
        self.cert["serial"].as_str().unwrap_or_default()
    }
}

fn issued(reply: &Reply) -> Value {
    let body = reply.ok();
    assert!(
        body["certificate"].is_object(),
        "{} has no certificate: {body}",
        reply.request
    );
    body
}

fn timestamp(value: &Value) -> DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp {value} is not an RFC 3339 string"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("timestamp {text:?}: {e}"))
}

/// notBefore/notAfter as the certificate itself states them (openssl, not the API).
fn cert_lifetime(leaf: &std::path::Path) -> TimeDelta {
    let dates = x509(leaf, &["-startdate", "-enddate"]);
    let field = |name: &str| {
        let line = dates
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {dates}"));
        NaiveDateTime::parse_from_str(line.trim().trim_end_matches(" GMT"), "%b %e %H:%M:%S %Y")
            .unwrap_or_else(|e| panic!("{name}{line}: {e}"))
    };
    field("notAfter=") - field("notBefore=")
}

/// Verify with openssl and lint with pkilint: leaf, every CA in the chain, and the root.
fn assert_valid_chain(server: &DevServer, saved: &Saved, how: &str) {
    let bundle = server.bundle();
    openssl_verify(&bundle, &saved.chain, &saved.leaf);
    pkilint(
        &saved.leaf,
        &format!("leaf {} issued over {how}", saved.serial()),
    );
    let root_pem = fs::read_to_string(&bundle).expect("reading the dev CA bundle");
    let roots = pem_blocks(&root_pem);
    let chain_pem = fs::read_to_string(&saved.chain).expect("reading the chain");
    let intermediates: Vec<String> = pem_blocks(&chain_pem)
        .into_iter()
        .filter(|b| !roots.contains(b))
        .collect();
    assert!(
        !intermediates.is_empty(),
        "chain_pem holds no intermediate; the dev CA issues from an intermediate"
    );
    for (i, block) in intermediates.iter().enumerate() {
        let path = write(
            &server.path(&format!("{}.ca{i}.pem", saved.serial())),
            block,
        );
        pkilint(&path, &format!("intermediate #{i} of {}", saved.serial()));
    }
}

#[test]
fn certificates_issued_over_rest_and_grpc_verify_with_openssl_and_pass_pkilint() {
    let server = DevServer::start();
    let api = &server.api;
    assert_eq!(api.create_profile("web", &web_spec())["version"], 1);

    let rest_csr = csr(server.dir.path(), "rest.example.com", "P-256", &[]);
    let rest = issued(&api.issue(&rest_csr, "web", None, None));
    let rest = Saved::new(&server, &rest["certificate"]);
    assert_eq!(rest.cert["profile"], "web");
    assert_eq!(rest.cert["profile_version"], 1);
    assert!(
        rest.cert["sans"].as_array().is_some_and(|s| s
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("rest.example.com")))),
        "sans should list rest.example.com: {}",
        rest.cert
    );

    let grpc_csr = csr(server.dir.path(), "grpc.example.com", "P-256", &[]);
    let cli = run(&mut api.cli(&[
        "cert",
        "issue",
        "--profile",
        "web",
        "--csr",
        &grpc_csr.path.to_string_lossy(),
    ]));
    let grpc: Value = serde_json::from_slice(&cli.stdout)
        .expect("`certmesh cert issue` prints IssueResponse JSON");
    let grpc = Saved::new(&server, &grpc["certificate"]);
    assert_ne!(
        grpc.serial(),
        rest.serial(),
        "two issuances must get distinct serials"
    );

    let pem_csr = csr(server.dir.path(), "pem.example.com", "P-256", &[]);
    let cli = run(&mut api.cli(&[
        "cert",
        "issue",
        "--profile",
        "web",
        "--pem",
        "--csr",
        &pem_csr.path.to_string_lossy(),
    ]));
    let blocks = pem_blocks(&String::from_utf8_lossy(&cli.stdout));
    assert!(
        blocks.len() >= 2,
        "`cert issue --pem` should print leaf then chain: {blocks:?}"
    );
    let pem_leaf = write(&server.path("pem-leaf.pem"), &blocks[0]);
    let pem_chain = write(&server.path("pem-chain.pem"), blocks[1..].concat());

    assert_valid_chain(&server, &rest, "REST");
    assert_valid_chain(&server, &grpc, "gRPC (certmesh cert issue)");
    openssl_verify(&server.bundle(), &pem_chain, &pem_leaf);
    pkilint(&server.bundle(), "dev root (ca-bundle.pem)");

    // Both protocols read the same store.
    let fetched = run(&mut api.cli(&["cert", "get", rest.serial()]));
    let fetched: Value =
        serde_json::from_slice(&fetched.stdout).expect("`certmesh cert get` prints JSON");
    assert_eq!(
        fetched["certificate"]["certificate_pem"],
        rest.cert["certificate_pem"]
    );
    let over_rest = api
        .get(&format!("/api/v1/certificates/{}", grpc.serial()))
        .ok();
    assert_eq!(
        over_rest["certificate"]["certificate_pem"],
        grpc.cert["certificate_pem"]
    );
    let listed: Vec<Value> = api
        .certificates()
        .iter()
        .map(|c| c["serial"].clone())
        .collect();
    for serial in [rest.serial(), grpc.serial()] {
        assert!(
            listed.contains(&json!(serial)),
            "GET /api/v1/certificates misses {serial}: {listed:?}"
        );
    }
}

#[test]
fn retry_with_same_idempotency_key_returns_the_same_certificate_and_other_csr_conflicts() {
    let server = DevServer::start();
    let api = &server.api;
    api.create_profile("web", &web_spec());
    let first_csr = csr(server.dir.path(), "idem.example.com", "P-256", &[]);

    let first = issued(&api.issue(&first_csr, "web", None, Some("order-42")));
    let retry = issued(&api.issue(&first_csr, "web", None, Some("order-42")));
    assert_eq!(
        retry["certificate"]["serial"], first["certificate"]["serial"],
        "a retry must not sign again"
    );
    assert_eq!(
        retry["certificate"]["certificate_pem"], first["certificate"]["certificate_pem"],
        "a retry must return byte-identical certificate_pem"
    );
    assert_eq!(
        api.certificate_count(),
        1,
        "retries must not store extra certificates"
    );

    let other_csr = csr(server.dir.path(), "other.example.com", "P-256", &[]);
    api.issue(&other_csr, "web", None, Some("order-42")).error(
        409,
        "ALREADY_EXISTS",
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_eq!(api.certificate_count(), 1, "a refused reuse must not issue");

    // The same key over gRPC finds the REST issuance.
    let cli = run(&mut api.cli(&[
        "cert",
        "issue",
        "--profile",
        "web",
        "--idempotency-key",
        "order-42",
        "--csr",
        &first_csr.path.to_string_lossy(),
    ]));
    let over_grpc: Value = serde_json::from_slice(&cli.stdout).expect("IssueResponse JSON");
    assert_eq!(
        over_grpc["certificate"]["serial"],
        first["certificate"]["serial"]
    );
}

/// Issue `csr` under `profile` and expect 403 PROFILE_DENIED naming `rule`, with nothing stored.
fn assert_denied(server: &DevServer, csr: &Csr, profile: &str, rule: &str) {
    let before = server.api.certificate_count();
    let message = server.api.issue(csr, profile, None, None).error(
        403,
        "PERMISSION_DENIED",
        "PROFILE_DENIED",
    );
    assert!(
        message.contains(rule),
        "the denial should name the rule {rule:?}: {message:?}"
    );
    assert_eq!(
        server.api.certificate_count(),
        before,
        "a denied request must not issue"
    );
}

#[test]
fn dns_name_outside_permitted_suffixes_is_denied() {
    let server = DevServer::start();
    server.api.create_profile("web", &web_spec());
    let outside = csr(server.dir.path(), "www.example.net", "P-256", &[]);
    assert_denied(&server, &outside, "web", "permitted_dns_suffixes");
    // Suffix matching is on label boundaries: "evilexample.com" is not under "example.com".
    let lookalike = csr(server.dir.path(), "evilexample.com", "P-256", &[]);
    assert_denied(&server, &lookalike, "web", "permitted_dns_suffixes");
}

#[test]
fn extended_key_usage_outside_profile_is_denied() {
    let server = DevServer::start();
    server.api.create_profile("web", &web_spec());
    let client_auth = csr(
        server.dir.path(),
        "eku.example.com",
        "P-256",
        &["-addext", "extendedKeyUsage=clientAuth"],
    );
    assert_denied(&server, &client_auth, "web", "allowed_ekus");
}

#[test]
fn ecdsa_key_below_profile_floor_is_denied_and_one_at_the_floor_is_issued() {
    let server = DevServer::start();
    let spec = web_spec_with(json!({ "min_ecdsa_bits": 384 }));
    server.api.create_profile("p384", &spec);
    let p256 = csr(server.dir.path(), "small.example.com", "P-256", &[]);
    assert_denied(&server, &p256, "p384", "min_ecdsa_bits");
    let p384 = csr(server.dir.path(), "big.example.com", "P-384", &[]);
    let body = issued(&server.api.issue(&p384, "p384", None, None));
    let saved = Saved::new(&server, &body["certificate"]);
    openssl_verify(&server.bundle(), &saved.chain, &saved.leaf);
    let key = x509(&saved.leaf, &["-text"]);
    assert!(
        key.contains("384 bit"),
        "the P-384 request should give a P-384 certificate key:\n{key}"
    );
}

/// `web_spec()` with some fields replaced.
fn web_spec_with(overrides: Value) -> Value {
    let mut spec = web_spec();
    for (key, value) in overrides.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    spec
}

#[test]
fn requested_validity_above_profile_maximum_is_capped_to_the_maximum() {
    let server = DevServer::start();
    server.api.create_profile("web", &web_spec());
    let max = TimeDelta::hours(2160);

    let long = csr(server.dir.path(), "long.example.com", "P-256", &[]);
    let body = issued(&server.api.issue(&long, "web", Some("8760h"), None));
    assert_eq!(
        body["validity_capped"], true,
        "8760h exceeds max_validity 2160h: {body}"
    );
    let cert = &body["certificate"];
    let api_lifetime = timestamp(&cert["not_after"]) - timestamp(&cert["not_before"]);
    let saved = Saved::new(&server, cert);
    // max_validity is the longest lifetime granted: a capped certificate lives exactly that
    // long, backdating of notBefore included.
    assert_eq!(
        cert_lifetime(&saved.leaf),
        max,
        "notAfter - notBefore in the certificate must equal max_validity 2160h"
    );
    assert_eq!(api_lifetime, max, "not_after - not_before in the API");

    let short = csr(server.dir.path(), "short.example.com", "P-256", &[]);
    let body = issued(&server.api.issue(&short, "web", Some("720h"), None));
    assert_eq!(
        body["validity_capped"], false,
        "720h is within the profile: {body}"
    );
    let cert = &body["certificate"];
    assert_eq!(
        timestamp(&cert["not_after"]) - timestamp(&cert["not_before"]),
        TimeDelta::hours(720)
    );
}

#[test]
fn new_profile_version_leaves_earlier_versions_and_their_certificates_unchanged() {
    let server = DevServer::start();
    let api = &server.api;
    let v1 = api.create_profile("web", &web_spec());
    assert_eq!(v1["version"], 1);
    let first = csr(server.dir.path(), "v1.example.com", "P-256", &[]);
    let first = issued(&api.issue(&first, "web", None, None));
    let serial = first["certificate"]["serial"]
        .as_str()
        .expect("serial")
        .to_string();

    let v2_spec =
        web_spec_with(json!({ "max_validity": "720h", "permitted_dns_suffixes": ["example.org"] }));
    let v2 = api.create_profile("web", &v2_spec);
    assert_eq!(v2["version"], 2, "a second create makes version 2: {v2}");

    let cert = api.get(&format!("/api/v1/certificates/{serial}")).ok();
    assert_eq!(
        cert["certificate"]["profile_version"], 1,
        "the certificate keeps the version it was issued under"
    );
    let old = api.get("/api/v1/profiles/web/versions/1").ok();
    assert_eq!(old["version"], 1);
    assert_eq!(
        old["spec"]["max_validity"], v1["spec"]["max_validity"],
        "version 1 is immutable: {old}"
    );
    assert_eq!(
        old["spec"]["permitted_dns_suffixes"],
        json!(["example.com"]),
        "version 1 is immutable: {old}"
    );
    let latest = api.get("/api/v1/profiles/web").ok();
    assert_eq!(latest["version"], 2);
    assert_eq!(
        latest["spec"]["permitted_dns_suffixes"],
        json!(["example.org"])
    );
    let cli = run(&mut api.cli(&["profile", "get", "web", "--version", "1"]));
    let over_grpc: Value = serde_json::from_slice(&cli.stdout).expect("Profile JSON");
    assert_eq!(
        over_grpc["spec"]["permitted_dns_suffixes"],
        json!(["example.com"])
    );

    // The latest version governs new requests.
    let stale = csr(server.dir.path(), "v2.example.com", "P-256", &[]);
    assert_denied(&server, &stale, "web", "permitted_dns_suffixes");
    let fresh = csr(server.dir.path(), "v2.example.org", "P-256", &[]);
    let body = issued(&api.issue(&fresh, "web", None, None));
    assert_eq!(body["certificate"]["profile_version"], 2);
}

#[test]
fn restart_on_the_same_data_dir_keeps_the_dev_ca() {
    let server = DevServer::start();
    server.api.create_profile("web", &web_spec());
    let bundle_before = fs::read(server.bundle()).expect("reading ca-bundle.pem");
    let before = csr(server.dir.path(), "before.example.com", "P-256", &[]);
    let before = issued(&server.api.issue(&before, "web", None, None))["certificate"].clone();
    let root_copy = write(&server.path("root-before-restart.pem"), &bundle_before);

    let dir = server.stop();
    let server = DevServer::start_in(dir);
    let bundle_after = fs::read(server.bundle()).expect("reading ca-bundle.pem after restart");
    assert!(
        bundle_after == bundle_before,
        "ca-bundle.pem changed across a restart: the root was rotated"
    );

    let after = csr(server.dir.path(), "after.example.com", "P-256", &[]);
    let after = issued(&server.api.issue(&after, "web", None, None))["certificate"].clone();
    let saved = Saved::new(&server, &after);
    openssl_verify(&root_copy, &saved.chain, &saved.leaf);
    assert_eq!(
        after["issuer_ca_id"], before["issuer_ca_id"],
        "the issuing intermediate changed across a restart"
    );
    assert_eq!(
        after["chain_pem"], before["chain_pem"],
        "the chain changed across a restart"
    );
    let still_there = server.api.get(&format!(
        "/api/v1/certificates/{}",
        before["serial"].as_str().unwrap_or_default()
    ));
    assert_eq!(
        still_there.ok()["certificate"]["certificate_pem"],
        before["certificate_pem"]
    );
}

/// The sum of the samples named `name` (exactly) whose labels include every `key="value"` of
/// `labels`, in Prometheus text format; 0 when none.
pub(crate) fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| Some((l.strip_prefix(name)?, l)))
        .filter(|(rest, _)| rest.starts_with(' ') || rest.starts_with('{'))
        .filter(|(_, line)| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, line)| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn health_readiness_and_metrics_endpoints_answer() {
    let server = DevServer::start();
    let api = &server.api;
    let healthz = api.send("GET", "/healthz", None, &[], None);
    assert_eq!(healthz.status, 200, "/healthz: {}", healthz.body);
    let readyz = api.send("GET", "/readyz", None, &[], None);
    assert_eq!(readyz.status, 200, "/readyz: {}", readyz.body);

    let metrics = api.send("GET", "/metrics", None, &[], None);
    assert_eq!(metrics.status, 200, "/metrics: {}", metrics.body);
    let issued_labels = [
        ("profile", "web"),
        ("ca", "builtin-issuing"),
        ("outcome", "issued"),
    ];
    let issue_rpc = [
        ("service", "certmesh.issuance.v1.IssuanceService"),
        ("method", "Issue"),
    ];
    let ok_issue_rpc = [issue_rpc[0], issue_rpc[1], ("code", "OK")];
    let before = sample(&metrics.body, "certmesh_issuance_total", &issued_labels);
    let rpcs_before = sample(&metrics.body, "certmesh_rpc_requests_total", &ok_issue_rpc);
    api.create_profile("web", &web_spec());
    let one = csr(server.dir.path(), "metrics.example.com", "P-256", &[]);
    issued(&api.issue(&one, "web", None, None));
    let after = api.send("GET", "/metrics", None, &[], None);
    let body = &after.body;
    assert_eq!(
        sample(body, "certmesh_issuance_total", &issued_labels),
        before + 1.0,
        "one issuance should add 1 to certmesh_issuance_total{{outcome=\"issued\"}}:\n{body}"
    );
    // The REST call is one gRPC call to the issuance role, counted and timed under its RPC.
    assert_eq!(
        sample(body, "certmesh_rpc_requests_total", &ok_issue_rpc),
        rpcs_before + 1.0,
        "/metrics lacks the Issue RPC:\n{body}"
    );
    assert!(
        sample(body, "certmesh_rpc_duration_seconds_count", &issue_rpc) >= 1.0,
        "/metrics lacks the Issue RPC's latency:\n{body}"
    );
    assert!(
        body.contains("certmesh_rpc_duration_seconds_bucket{"),
        "no latency buckets:\n{body}"
    );
    let route = [
        ("method", "POST"),
        ("route", "/api/v1/certificates"),
        ("code", "OK"),
    ];
    assert!(
        sample(body, "certmesh_http_requests_total", &route) >= 1.0,
        "/metrics lacks the REST route:\n{body}"
    );
    // The fleet role's gauges and the relay's lag are there from the start in --dev.
    for family in ["certmesh_agent_streams", "certmesh_outbox_lag_seconds"] {
        assert!(
            body.contains(&format!("\n{family} ")),
            "{family} missing:\n{body}"
        );
    }
}

#[test]
fn cli_reports_errors_as_code_and_reason_and_exits_non_zero() {
    let server = DevServer::start();
    let request = csr(server.dir.path(), "cli.example.com", "P-256", &[]);
    let out = output(&mut server.api.cli(&[
        "cert",
        "issue",
        "--profile",
        "missing",
        "--csr",
        &request.path.to_string_lossy(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "issuing under a missing profile must fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("error: NOT_FOUND (PROFILE_NOT_FOUND)"),
        "stderr should read `error: NOT_FOUND (PROFILE_NOT_FOUND): …`, got: {stderr}"
    );
}
