//! Roles through the real binary: an admin creates an ra-officer and mints its token with the
//! CLI; the ra-officer writes profiles and requests certificates, which wait for a second
//! person's approval; it is refused approving, and the refusal is audited.

use serde_json::Value;

use crate::support::{DevServer, certmesh, csr, output, run, web_spec, write};

#[test]
fn an_ra_officer_requests_but_cannot_approve_and_the_refusal_is_audited() {
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
    let requested = run(&mut as_rachel(&[
        "cert",
        "issue",
        "--csr",
        one.path.to_str().expect("path"),
        "--profile",
        "web",
    ]));
    let requested: Value = serde_json::from_slice(&requested.stdout).expect("issue JSON");
    assert_eq!(requested["status"], "pending_approval", "{requested}");
    assert!(requested.get("certificate").is_none_or(Value::is_null));
    let approval_id = requested["approval_id"].as_str().expect("approval id");
    assert_eq!(api.certificate_count(), 0, "an ra-officer never issues");

    let refused = output(&mut as_rachel(&["approval", "approve", approval_id]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "an ra-officer must not approve");
    assert!(
        stderr.contains("PERMISSION_DENIED (PERMISSION_MISSING)"),
        "{stderr}"
    );
    assert_eq!(api.certificate_count(), 0);

    let approved = run(&mut api.cli(&["approval", "approve", approval_id]));
    let approved: Value = serde_json::from_slice(&approved.stdout).expect("approve JSON");
    assert_eq!(approved["approval"]["status"], "approved", "{approved}");
    assert_eq!(api.certificate_count(), 1);
    let listed = api.get("/api/v1/approvals?status=approved").ok();
    assert_eq!(
        listed["approvals"][0]["certificate_serial"], approved["certificate"]["serial"],
        "{listed}"
    );

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
        outcomes.contains(&"certs.request:allowed".to_string()),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&"approvals.approve:denied".to_string()),
        "{outcomes:?}"
    );
    let verified = api.get("/api/v1/audit/verify").ok();
    assert_eq!(verified["intact"], true, "{verified}");
}
