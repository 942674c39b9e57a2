//! Discovery and notification end to end, on the real binaries: an agent reports the
//! certificates it finds on disk (never the keys next to them), a scan finds the certificate a
//! real TLS listener serves, a certificate 5 days from expiry raises one alert that a real
//! webhook receiver (signature checked with `openssl dgst`) and a real SMTP sink (Python
//! aiosmtpd) each get once, and claiming the disk find makes the agent replace it with a
//! certmesh certificate. All through the operator CLI and REST.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    DevServer, Process, assert_eventually, free_port, output, python_bin, run, tool, unique,
};

const WAIT: Duration = Duration::from_secs(90);
const HOOK_SECRET: &str = "e2e-webhook-secret-0123456789";

/// The webhook receiver (e2e/scripts/webhook_recorder.py) writing each request under `dir`.
fn webhook_receiver(dir: &Path) -> (Process, u16) {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/webhook_recorder.py");
    let requests = dir.join("hook");
    fs::create_dir_all(&requests).expect("dir");
    let mut cmd = Command::new(python_bin());
    cmd.arg(script).arg(port.to_string()).arg(&requests);
    let mut p = Process::spawn("webhook-recorder", cmd, dir);
    p.wait_until("the webhook receiver listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    (p, port)
}

fn hook_requests(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("hook"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
        .iter()
        .filter_map(|p| serde_json::from_str(&fs::read_to_string(p).ok()?).ok())
        .collect()
}

/// Python aiosmtpd delivering to a maildir under `dir`.
fn smtp_sink(dir: &Path) -> (Process, u16, PathBuf) {
    let port = free_port();
    let maildir = dir.join("mail");
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let mut cmd = Command::new(python_bin());
    cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir);
    let mut p = Process::spawn("smtp-sink", cmd, dir);
    p.wait_until(
        "aiosmtpd listens (pip install aiosmtpd: make tools)",
        || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    );
    (p, port, maildir)
}

fn mails(maildir: &Path) -> Vec<String> {
    fs::read_dir(maildir.join("new"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `openssl dgst -sha256 -hmac`: the webhook signature, computed independently.
fn openssl_hmac(dir: &Path, secret: &str, signed: &[u8]) -> String {
    let file = dir.join(unique("signed"));
    fs::write(&file, signed).expect("write");
    let out = run(Command::new(tool("openssl"))
        .args(["dgst", "-sha256", "-hmac", secret])
        .arg(&file));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// A PEM file holding a private key and a certificate for `legacy.localhost` that expires in
/// 5 days, the way hand-made certificates sit on servers; returns (file, key base64 body).
fn legacy_pem(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("legacy.key");
    let cert = dir.join("legacy.crt");
    run(Command::new(tool("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "5", "-subj", "/CN=legacy.localhost"])
        .args(["-addext", "subjectAltName=DNS:legacy.localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let key_pem = fs::read_to_string(&key).expect("key");
    let scanned = dir.join("certs");
    fs::create_dir_all(&scanned).expect("dir");
    let bundle = scanned.join("legacy.pem");
    fs::write(
        &bundle,
        format!("{key_pem}{}", fs::read_to_string(&cert).expect("cert")),
    )
    .expect("bundle");
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    (bundle, body)
}

fn cli_json(server: &DevServer, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = server.api.cli(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "certmesh {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

#[test]
fn agents_and_scans_find_certificates_and_expiry_alerts_arrive_once() {
    let server = DevServer::start_with(&[
        "--dangerous-scan-loopback",
        "--notify-every",
        "1s",
        "--notify-expiry-every",
        "2s",
    ]);
    let dir = server.dir.path().to_path_buf();
    let (_hook, hook_port) = webhook_receiver(&dir);
    let (_smtp, smtp_port, maildir) = smtp_sink(&dir);

    // Channels and a rule, through the CLI; the HMAC secret comes from the environment.
    let config = json!({"url": format!("http://127.0.0.1:{hook_port}/certmesh")}).to_string();
    let hook = cli_json(
        &server,
        &[
            "notify",
            "channels",
            "create",
            "ops-hook",
            "--kind",
            "webhook",
            "--config",
            &config,
            "--secret-env",
            "hmac_secret=E2E_HOOK_SECRET",
        ],
        &[("E2E_HOOK_SECRET", HOOK_SECRET)],
    );
    assert!(!hook.to_string().contains(HOOK_SECRET), "{hook}");
    let mail_config = json!({"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "tls": "none",
                             "from": "certmesh@example.test", "to": ["oncall@example.test"]})
    .to_string();
    let mail = cli_json(
        &server,
        &[
            "notify",
            "channels",
            "create",
            "ops-mail",
            "--kind",
            "email",
            "--config",
            &mail_config,
        ],
        &[],
    );
    cli_json(
        &server,
        &[
            "notify",
            "rules",
            "create",
            "expiry",
            "--event",
            "certificate.expiring",
            "--channel",
            &id(&hook),
            "--channel",
            &id(&mail),
        ],
        &[],
    );
    let tested = cli_json(&server, &["notify", "test", &id(&hook)], &[]);
    assert_eq!(tested["delivered"], true, "{tested}");

    // An agent with a discovery path reports the certificate there, not the key beside it.
    let (legacy, key_body) = legacy_pem(&dir);
    let token = String::from_utf8_lossy(
        &run(&mut server.api.cli(&[
            "fleet",
            "token",
            "create",
            "--group",
            "web",
            "--secret-only",
        ]))
        .stdout,
    )
    .trim()
    .to_string();
    let state = dir.join("agent");
    let agent_cmd = |args: &[&str]| {
        let mut cmd = Command::new(crate::fleet::agent_bin());
        cmd.args(args)
            .env("CERTMESH_AGENT_SERVER", &server.fleet)
            .env("CERTMESH_AGENT_CA_BUNDLE", server.bundle())
            .env("CERTMESH_AGENT_STATE_DIR", &state)
            .env("CERTMESH_AGENT_DISCOVERY_PATHS", dir.join("certs"))
            .env("RUST_LOG", "info");
        cmd
    };
    let enrolled = output(agent_cmd(&["enroll"]).env("CERTMESH_AGENT_BOOTSTRAP_TOKEN", &token));
    assert!(
        enrolled.status.success(),
        "{}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    let _agent = Process::spawn("certmesh-agent", agent_cmd(&["run"]), &dir);
    let find = assert_eventually("the agent's disk find is in the inventory", WAIT, || {
        let list = cli_json(
            &server,
            &["discovery", "list", "--source", "filesystem"],
            &[],
        );
        list["certificates"]
            .as_array()
            .and_then(|c| c.first().cloned())
            .ok_or_else(|| list.to_string())
    });
    assert!(
        find["location"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&*legacy.to_string_lossy()),
        "{find}"
    );
    assert_eq!(find["sans"], json!(["legacy.localhost"]));
    assert_eq!(find["self_signed"], true);
    let db = fs::read(dir.join("certmesh.db")).unwrap_or_default();
    let wal = fs::read(dir.join("certmesh.db-wal")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&db).contains(&key_body[..40])
            && !String::from_utf8_lossy(&wal).contains(&key_body[..40]),
        "the key beside the certificate never reached the server"
    );

    // A scan of the server's own API listener finds the certificate it serves.
    let port = server.ports[0].to_string();
    let target = cli_json(
        &server,
        &[
            "discovery",
            "targets",
            "create",
            "self",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ],
        &[],
    );
    let scan = cli_json(&server, &["discovery", "scan", &id(&target)], &[]);
    assert_eq!(
        (scan["state"].as_str(), scan["reachable"].as_u64()),
        (Some("done"), Some(1)),
        "{scan}"
    );
    let network = cli_json(&server, &["discovery", "list", "--source", "network"], &[]);
    assert_eq!(
        network["certificates"][0]["location"],
        format!("tls://127.0.0.1:{port}"),
        "{network}"
    );

    // The 5-day certificate crossed the 7-day threshold: one alert on each channel. (The
    // server's own 30-day serving certificate, found by the scan, has an alert of its own.)
    let fingerprint = find["fingerprint_sha256"].as_str().expect("fp").to_string();
    let legacy_alerts = || -> Vec<Value> {
        hook_requests(&dir)
            .into_iter()
            .filter(|r| r["headers"]["x-certmesh-event-type"] == "certificate.expiring")
            .filter(|r| r["body"].as_str().is_some_and(|b| b.contains(&fingerprint)))
            .collect()
    };
    let alert = assert_eventually("the expiry alert reaches the webhook", WAIT, || {
        legacy_alerts()
            .into_iter()
            .next()
            .ok_or_else(|| format!("{} requests so far", hook_requests(&dir).len()))
    });
    let ts = alert["headers"]["x-certmesh-timestamp"]
        .as_str()
        .expect("timestamp");
    let body = alert["body"].as_str().expect("body");
    let signed = format!("{ts}.{body}");
    assert_eq!(
        alert["headers"]["x-certmesh-signature"],
        format!("v1={}", openssl_hmac(&dir, HOOK_SECRET, signed.as_bytes())),
        "the webhook signature verifies"
    );
    let event: Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(event["data"]["threshold_days"], 7, "{event}");
    let event_id = event["id"].as_str().expect("event id").to_string();
    assert_eventually("the expiry alert reaches the SMTP sink", WAIT, || {
        let got = mails(&maildir);
        if got.iter().any(|m| m.contains(&event_id)) {
            Ok(())
        } else {
            Err(format!("{} mails", got.len()))
        }
    });
    // Several more expiry passes and relays later, still one of each.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(legacy_alerts().len(), 1, "one webhook alert");
    let legacy_mails = mails(&maildir)
        .into_iter()
        .filter(|m| m.contains("legacy.localhost"))
        .count();
    assert_eq!(legacy_mails, 1, "one email");
    let delivered = cli_json(
        &server,
        &[
            "notify",
            "deliveries",
            "--state",
            "delivered",
            "--event",
            &event_id,
        ],
        &[],
    );
    assert_eq!(
        delivered["deliveries"].as_array().map(Vec::len),
        Some(2),
        "{delivered}"
    );

    // Claiming the disk find: the agent replaces it in place with a certmesh certificate.
    server.api.create_profile(
        "claimed",
        &json!({"allowed_key_algorithms": ["ECDSA"], "min_ecdsa_bits": 256, "min_rsa_bits": 2048,
                "allowed_ekus": ["serverAuth"], "max_validity": "720h",
                "permitted_dns_suffixes": ["localhost"], "require_sans": true}),
    );
    let key_path = dir.join("certs/legacy.key");
    let claimed = cli_json(
        &server,
        &[
            "discovery",
            "claim",
            &id(&find),
            "--profile",
            "claimed",
            "--key-path",
            &key_path.to_string_lossy(),
        ],
        &[],
    );
    let binding = claimed["binding_id"]
        .as_str()
        .expect("binding id")
        .to_string();
    assert_eq!(
        claimed["certificate"]["binding_id"],
        binding.as_str(),
        "{claimed}"
    );
    let deployed = assert_eventually("the claimed certificate is installed", WAIT, || {
        let d = server
            .api
            .get(&format!("/api/v1/fleet/deployments?binding_id={binding}"))
            .ok();
        match d["deployments"][0]["outcome"].as_str() {
            Some("installed") => Ok(d["deployments"][0].clone()),
            _ => Err(d.to_string()),
        }
    });
    let now_there = fs::read_to_string(&legacy).expect("the file");
    assert!(
        !now_there.contains("PRIVATE KEY"),
        "only the certificate (and chain) now"
    );
    let subject = run(Command::new(tool("openssl"))
        .args(["x509", "-noout", "-issuer", "-in"])
        .arg(&legacy));
    assert!(
        String::from_utf8_lossy(&subject.stdout).contains("certmesh"),
        "issued by certmesh: {}; {deployed}",
        String::from_utf8_lossy(&subject.stdout)
    );
    let twice = server.api.post(
        &format!("/api/v1/discovery/certificates/{}/claim", id(&find)),
        br#"{"profile": "claimed"}"#,
        &[],
    );
    twice.error(412, "FAILED_PRECONDITION", "CLAIM_INVALID");
}
