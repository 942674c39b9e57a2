//! Roles through the real binary: an admin creates an ra-officer and mints its token with the
//! CLI; the ra-officer writes profiles but is refused issuance, and the refusal is audited.

use serde_json::Value;

use crate::support::{DevServer, certmesh, csr, output, run, web_spec, write};

#[test]
fn an_ra_officer_writes_profiles_but_cannot_issue_and_the_refusal_is_audited() {
    let server = DevServer::start();
    let api = &server.api;
    let created = run(&mut api.cli(&["principal", "create", "rachel", "--role", "ra-officer"]));
    let principal: Value = serde_json::from_slice(&created.stdout).expect("principal JSON");
    assert_eq!(principal["roles"], serde_json::json!(["ra-officer"]));

    let minted = run(&mut api.cli(&[
        "token",
        "create",
        "--principal",
        "rachel",
        "--name",
        "laptop",
        "--expires-in",
        "24h",
    ]));
    let token = String::from_utf8_lossy(&minted.stdout).trim().to_string();
    assert!(token.starts_with("cmt_"), "one token line: {token}");
    let token_file = write(&server.path("rachel.token"), &token);
    let as_rachel = |args: &[&str]| {
        let mut cmd = certmesh();
        cmd.args(args)
            .arg("--gateway")
            .arg(&api.base)
            .arg("--token-file")
            .arg(&token_file)
            .arg("--ca-bundle")
            .arg(&api.ca);
        cmd
    };

    let profile = write(
        &server.path("web.json"),
        serde_json::json!({"name": "web", "spec": web_spec()}).to_string(),
    );
    run(&mut as_rachel(&[
        "profile",
        "create",
        "-f",
        profile.to_str().expect("path"),
    ]));

    let one = csr(server.dir.path(), "ra.example.com", "P-256", &[]);
    let refused = output(&mut as_rachel(&[
        "cert",
        "issue",
        "--csr",
        one.path.to_str().expect("path"),
        "--profile",
        "web",
    ]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "an ra-officer must not issue");
    assert!(
        stderr.contains("PERMISSION_DENIED (PERMISSION_MISSING)"),
        "{stderr}"
    );
    assert_eq!(api.certificate_count(), 0);

    // Over REST too, with the same token.
    let rest = api.send("GET", "/api/v1/tokens", Some(&token), &[], None);
    assert_eq!(rest.status, 200, "{}", rest.body);
    assert_eq!(
        rest.json()["tokens"].as_array().map(Vec::len),
        Some(1),
        "rachel sees her own token"
    );

    let trail = api.get("/api/v1/audit?actor=rachel&outcome=denied");
    assert_eq!(
        trail.status, 400,
        "unknown query fields are refused: {}",
        trail.body
    );
    let trail = api.get("/api/v1/audit?actor=rachel").ok();
    let outcomes: Vec<_> = trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["action"].as_str().unwrap_or(""),
                e["outcome"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        outcomes.contains(&"profiles.create:allowed".to_string()),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&"certs.issue:denied".to_string()),
        "{outcomes:?}"
    );
    let verified = api.get("/api/v1/audit/verify").ok();
    assert_eq!(verified["intact"], true, "{verified}");
}
