//! Split roles on PostgreSQL: `certmesh migrate` and `certmesh token create` against a fresh
//! database, the issuance role and the gateway as two processes, and a gateway that fails
//! closed (503) when issuance goes away.

use std::{fs, path::Path, process::Command};

use serde_json::Value;

use crate::support::{
    Api, PgDatabase, Process, certmesh, csr, free_port, health, kek_file, output, pem_blocks,
    pkilint, plaintext_health, run, scratch, tls_identity, tool, web_spec, write,
};

/// `openssl verify -partial_chain`: the leaf chains to a certificate in `chain` (the split
/// gateway does not publish its root yet).
fn verify_partial_chain(chain: &Path, leaf: &Path) {
    let out = run(Command::new(tool("openssl"))
        .args([
            "verify",
            "-x509_strict",
            "-check_ss_sig",
            "-partial_chain",
            "-CAfile",
        ])
        .arg(chain)
        .arg(leaf));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with(": OK"),
        "openssl verify -partial_chain did not say OK: {stdout}"
    );
}

#[test]
fn split_roles_on_postgres_issue_through_the_gateway_and_fail_closed_without_issuance() {
    // Declared first, dropped last: the database outlives the processes using it.
    let db = PgDatabase::create();
    let dir = scratch();
    let migrated = run(certmesh().args(["migrate", "--database-url", &db.url]));
    assert!(
        String::from_utf8_lossy(&migrated.stdout).contains("migrations applied"),
        "certmesh migrate: {}",
        String::from_utf8_lossy(&migrated.stdout)
    );
    let created = run(certmesh().args([
        "token",
        "create",
        "--database-url",
        &db.url,
        "--tenant",
        "default",
        "--name",
        "e2e",
    ]));
    let token = String::from_utf8_lossy(&created.stdout).trim().to_string();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "`certmesh token create` should print one token line, got {token:?}"
    );
    let token_file = write(&dir.path().join("token"), format!("{token}\n"));

    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).expect("creating the key directory");
    let kek = kek_file(dir.path());
    let issuance_addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = certmesh();
    cmd.args([
        "server",
        "--services",
        "issuance",
        "--listen",
        &issuance_addr,
        "--database-url",
        &db.url,
    ])
    .arg("--key-dir")
    .arg(&keys)
    .arg("--kek-file")
    .arg(&kek)
    .arg("--dangerous-plaintext");
    let mut issuance = Process::spawn("certmesh-issuance", cmd, dir.path());
    issuance.wait_until("issuance /healthz over h2c", || {
        plaintext_health(&issuance_addr)
    });

    let (tls_ca, tls_chain, tls_key) = tls_identity(dir.path());
    let gateway_port = free_port();
    let mut cmd = certmesh();
    cmd.args([
        "server",
        "--services",
        "gateway",
        "--listen",
        &format!("127.0.0.1:{gateway_port}"),
    ])
    .arg("--issuance-endpoint")
    .arg(format!("http://{issuance_addr}"))
    .arg("--tls-cert")
    .arg(&tls_chain)
    .arg("--tls-key")
    .arg(&tls_key);
    let mut gateway = Process::spawn("certmesh-gateway", cmd, dir.path());
    let base = format!("https://127.0.0.1:{gateway_port}");
    gateway.wait_until("gateway /healthz over TLS", || health(&base, &tls_ca));
    let api = Api {
        base,
        ca: tls_ca,
        token,
        token_file,
    };

    // Issue over REST through the gateway.
    assert_eq!(api.create_profile("web", &web_spec())["version"], 1);
    let request = csr(dir.path(), "split.example.com", "P-256", &[]);
    let body = api.issue(&request, "web", None, Some("split-1")).ok();
    let cert = &body["certificate"];
    let serial = cert["serial"]
        .as_str()
        .expect("certificate.serial")
        .to_string();
    let leaf = write(
        &dir.path().join("leaf.pem"),
        cert["certificate_pem"].as_str().expect("certificate_pem"),
    );
    let chain_pem = cert["chain_pem"].as_str().expect("chain_pem");
    assert!(
        !pem_blocks(chain_pem).is_empty(),
        "chain_pem is empty: {body}"
    );
    let chain = write(&dir.path().join("chain.pem"), chain_pem);
    verify_partial_chain(&chain, &leaf);
    pkilint(&leaf, "split-mode leaf");

    // The same certificate over gRPC, through the gateway.
    let got = run(&mut api.cli(&["cert", "get", &serial]));
    let got: Value = serde_json::from_slice(&got.stdout).expect("`certmesh cert get` prints JSON");
    assert_eq!(got["certificate"]["serial"], serial.as_str());
    assert_eq!(
        got["certificate"]["certificate_pem"],
        cert["certificate_pem"]
    );

    // Without the issuance role the gateway answers 503, not a hang or a 500.
    issuance.stop();
    let unavailable = |reply: &crate::support::Reply| {
        if reply.status == 503 {
            Ok(reply.clone())
        } else {
            Err(format!(
                "{} answered {}: {}",
                reply.request, reply.status, reply.body
            ))
        }
    };
    let listing = crate::support::assert_eventually(
        "the gateway to notice issuance is down",
        std::time::Duration::from_secs(30),
        || unavailable(&api.get("/api/v1/certificates")),
    );
    listing.error(503, "UNAVAILABLE", "BACKEND_UNAVAILABLE");
    api.issue(&request, "web", None, None)
        .error(503, "UNAVAILABLE", "BACKEND_UNAVAILABLE");
    let cli = output(&mut api.cli(&["cert", "get", &serial]));
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(
        !cli.status.success(),
        "`certmesh cert get` must fail while issuance is down"
    );
    assert!(
        stderr.contains("error: UNAVAILABLE (BACKEND_UNAVAILABLE)"),
        "CLI stderr: {stderr}"
    );
}
