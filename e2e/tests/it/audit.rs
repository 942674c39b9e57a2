//! The audit trail from the operator's side: `certmesh audit verify` and `export` against the
//! dev server's database, tampering by someone who can bypass the append-only triggers, and
//! secrets that must appear in no audit row and no log line.

use std::process::Command;

use crate::support::{DevServer, certmesh, csr, output, run, tool, web_spec};

fn database_url(server_dir: &std::path::Path) -> String {
    format!("sqlite://{}", server_dir.join("certmesh.db").display())
}

#[test]
fn audit_verify_passes_then_names_the_first_tampered_row() {
    let server = DevServer::start();
    let api = server.api.clone();
    api.create_profile("web", &web_spec());
    let one = csr(server.dir.path(), "audit.example.com", "P-256", &[]);
    api.issue(&one, "web", None, None).ok();
    let refused = csr(server.dir.path(), "audit.evil.test", "P-256", &[]);
    let denied = api.issue(&refused, "web", None, None);
    assert_eq!(denied.status, 403, "{}", denied.body);

    // Secrets planted in requests: the real token on every call, and a bogus one.
    let planted = format!("cmt_{}", "5ec7e7".repeat(10) + "abcd");
    let bogus = api.send("GET", "/api/v1/certificates", Some(&planted), &[], None);
    assert_eq!(bogus.status, 401, "{}", bogus.body);
    let log = server.process.log();
    let dir = server.stop();
    let url = database_url(dir.path());

    let verified = run(certmesh().args(["audit", "verify", "--database-url", &url]));
    let text = String::from_utf8_lossy(&verified.stdout);
    // The dev CA's two 1-of-1 ceremonies (start, approval, creation each) come first.
    assert!(text.contains("tenant default: intact, 9 events"), "{text}");

    let jsonl = run(certmesh().args([
        "audit",
        "export",
        "--database-url",
        &url,
        "--format",
        "jsonl",
    ]));
    let jsonl = String::from_utf8_lossy(&jsonl.stdout).to_string();
    let actions: Vec<String> = jsonl
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("jsonl");
            format!(
                "{}:{}",
                v["action"].as_str().unwrap_or(""),
                v["outcome"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "ceremonies.start:allowed",
            "ceremonies.approve:allowed",
            "cas.create_root:allowed",
            "ceremonies.start:allowed",
            "ceremonies.approve:allowed",
            "cas.create_intermediate:allowed",
            "profiles.create:allowed",
            "certs.issue:allowed",
            "certs.issue:denied"
        ]
    );
    let csv = run(certmesh().args(["audit", "export", "--database-url", &url, "--format", "csv"]));
    let csv = String::from_utf8_lossy(&csv.stdout).to_string();
    assert_eq!(csv.lines().count(), 10, "header and nine rows:\n{csv}");
    for secret in [&api.token, &planted] {
        let body = &secret[4..];
        assert!(
            !jsonl.contains(body) && !csv.contains(body),
            "a token reached the audit trail"
        );
        assert!(!log.contains(body), "a token reached the server log");
    }

    // Tamper as the database owner: drop the append-only trigger, rewrite row 2.
    let db = dir.path().join("certmesh.db");
    let script = format!(
        "import sqlite3; c = sqlite3.connect({db:?}); \
         c.execute('DROP TRIGGER IF EXISTS audit_events_no_update'); \
         n = c.execute(\"UPDATE audit_events SET action = 'certs.read' WHERE seq = 2\").rowcount; \
         c.commit(); print(n)",
        db = db.display().to_string()
    );
    let tampered = Command::new(tool("python3"))
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        tampered.status.success(),
        "{}",
        String::from_utf8_lossy(&tampered.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&tampered.stdout).trim(),
        "1",
        "one row rewritten"
    );

    let after = output(certmesh().args(["audit", "verify", "--database-url", &url]));
    let text = String::from_utf8_lossy(&after.stdout);
    assert!(
        !after.status.success(),
        "verify must fail on a tampered trail:\n{text}"
    );
    assert!(text.contains("tenant default: BROKEN at seq 2"), "{text}");
}
