//! Pull-based agents end to end: the real `certmesh server --dev`, the real `certmesh-agent`
//! and a real nginx on a free loopback port.
//!
//! The agent enrolls with a one-time bootstrap token, holds its mTLS stream, receives a
//! binding, makes its key on the host, installs certificate and key, runs `nginx -t`, reloads
//! nginx and verifies that nginx serves the new certificate. renew-now replaces it; a failing
//! validate command rolls back and nginx keeps serving what it served; a wrong endpoint is
//! reported. The private key never reaches the server. Refused at the agent listener: a client
//! certificate of another CA, a retired agent, and an agent of another tenant sees none of this
//! tenant's work.

use std::{
    env, fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine;
use serde_json::{Value, json};

use crate::dev_mode::sample;
use crate::support::{
    DevServer, Process, assert_eventually, certmesh, free_port, output, run, tool, unique, write,
};

/// How long an agent gets to finish a job end to end.
const JOB: Duration = Duration::from_secs(60);

/// The `certmesh-agent` binary: `CERTMESH_AGENT_BIN`, or next to `certmesh`.
pub(crate) fn agent_bin() -> PathBuf {
    if let Some(path) = env::var_os("CERTMESH_AGENT_BIN") {
        return PathBuf::from(path);
    }
    let path = crate::support::certmesh_bin().with_file_name("certmesh-agent");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build -p certmesh-agent` first (`make test` does)",
        path.display()
    );
    path
}

/// A real nginx serving TLS on a loopback port from files under its own prefix.
struct Nginx {
    prefix: PathBuf,
    conf: PathBuf,
    port: u16,
}

impl Nginx {
    /// Starts nginx with a self-signed placeholder certificate for `localhost`.
    fn start(dir: &Path) -> Nginx {
        let nginx = tool("nginx");
        let prefix = dir.join("nginx");
        let tls = prefix.join("tls");
        for sub in ["logs", "tmp", "tls"] {
            fs::create_dir_all(prefix.join(sub)).expect("nginx dirs");
        }
        run(Command::new(tool("openssl"))
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=placeholder",
                "-keyout",
            ])
            .arg(tls.join("web.key"))
            .arg("-out")
            .arg(tls.join("web.pem")));
        let port = free_port();
        let conf = write(
            &prefix.join("nginx.conf"),
            format!(
                "worker_processes 1;\n\
                 daemon on;\n\
                 pid {p}/nginx.pid;\n\
                 error_log {p}/logs/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n\
                   access_log off;\n\
                   client_body_temp_path {p}/tmp/body;\n\
                   proxy_temp_path {p}/tmp/proxy;\n\
                   fastcgi_temp_path {p}/tmp/fastcgi;\n\
                   uwsgi_temp_path {p}/tmp/uwsgi;\n\
                   scgi_temp_path {p}/tmp/scgi;\n\
                   server {{\n\
                     listen 127.0.0.1:{port} ssl;\n\
                     server_name localhost;\n\
                     ssl_certificate {p}/tls/web.pem;\n\
                     ssl_certificate_key {p}/tls/web.key;\n\
                     location / {{ return 200 \"ok\\n\"; }}\n\
                   }}\n\
                 }}\n",
                p = prefix.display()
            ),
        );
        run(Command::new(&nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf));
        let n = Nginx { prefix, conf, port };
        assert_eventually("nginx serves TLS", Duration::from_secs(10), || {
            n.served().map(|_| ())
        });
        n
    }

    fn command(&self, args: &str) -> String {
        format!(
            "{} -p {} -c {} {args}",
            tool("nginx").display(),
            self.prefix.display(),
            self.conf.display()
        )
    }

    fn cert_path(&self) -> PathBuf {
        self.prefix.join("tls/web.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.prefix.join("tls/web.key")
    }

    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until nginx serves the certificate whose SHA-256 is `sha256` (a reload is
    /// graceful: old workers finish first).
    fn serves(&self, sha256: &Value) -> String {
        let want = sha256.as_str().expect("a fingerprint").to_string();
        assert_eventually(
            "nginx serves the deployed certificate",
            Duration::from_secs(15),
            || {
                let now = self.served()?;
                if now == want {
                    Ok(now)
                } else {
                    Err(format!("serves {now}, not {want}"))
                }
            },
        )
    }

    /// SHA-256 (lower-case hex) of the leaf nginx serves now.
    fn served(&self) -> Result<String, String> {
        let out = output(
            Command::new(tool("openssl"))
                .args([
                    "s_client",
                    "-connect",
                    &self.endpoint(),
                    "-servername",
                    "localhost",
                ])
                .stdin(std::process::Stdio::null()),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let begin = text.find("-----BEGIN CERTIFICATE-----");
        let end = text.find("-----END CERTIFICATE-----");
        let (Some(b), Some(e)) = (begin, end) else {
            return Err(format!(
                "no certificate from nginx: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        };
        Ok(pem_sha256(&text[b..e + "-----END CERTIFICATE-----".len()]))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(self.command("-s stop"))
            .status();
    }
}

/// SHA-256 of the DER of the first certificate in `pem`, lower-case hex.
fn pem_sha256(pem: &str) -> String {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("certificate base64");
    let out =
        run(Command::new(tool("sha256sum")).arg(write(&env::temp_dir().join(unique("der")), der)));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// An agent's state directory and how to run it against `server`.
struct Agent {
    state: PathBuf,
    server: String,
    bundle: PathBuf,
}

impl Agent {
    fn new(dir: &Path, name: &str, server: &DevServer) -> Agent {
        Agent {
            state: dir.join(name),
            server: server.fleet.clone(),
            bundle: server.bundle(),
        }
    }

    fn to(server: &str, bundle: &Path, state: PathBuf) -> Agent {
        Agent {
            state,
            server: server.to_string(),
            bundle: bundle.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(agent_bin());
        cmd.args(args)
            .env("CERTMESH_AGENT_SERVER", &self.server)
            .env("CERTMESH_AGENT_CA_BUNDLE", &self.bundle)
            .env("CERTMESH_AGENT_STATE_DIR", &self.state)
            .env("RUST_LOG", "info");
        cmd
    }

    fn enroll(&self, token: &str) -> std::process::Output {
        output(
            self.command(&["enroll"])
                .env("CERTMESH_AGENT_BOOTSTRAP_TOKEN", token),
        )
    }

    fn id(&self) -> String {
        let facts: Value = serde_json::from_str(
            &fs::read_to_string(self.state.join("agent.json")).expect("agent.json"),
        )
        .expect("agent.json is JSON");
        facts["agent_id"].as_str().expect("agent_id").to_string()
    }

    fn run(&self, dir: &Path) -> Process {
        Process::spawn("certmesh-agent", self.command(&["run"]), dir)
    }
}

/// Enrolls an agent (state under `dir`) at the agent listener `server` with `token`; its id.
pub fn enroll_with(server: &str, bundle: &Path, dir: &Path, token: &str) -> String {
    let agent = Agent::to(server, bundle, dir.join(unique("agent")));
    let out = agent.enroll(token);
    assert!(
        out.status.success(),
        "certmesh-agent enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    agent.id()
}

fn bootstrap_token(server: &DevServer, group: &str) -> String {
    let out = run(&mut server.api.cli(&[
        "fleet",
        "token",
        "create",
        "--group",
        group,
        "--secret-only",
    ]));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        token.starts_with("cmb_"),
        "a bootstrap secret, got {token:?}"
    );
    token
}

fn post(server: &DevServer, path: &str, body: &Value) -> Value {
    server.api.post(path, body.to_string().as_bytes(), &[]).ok()
}

fn deployments(server: &DevServer, binding: &str) -> Vec<Value> {
    let body = server
        .api
        .get(&format!("/api/v1/fleet/deployments?binding_id={binding}"))
        .ok();
    body["deployments"].as_array().cloned().unwrap_or_default()
}

/// Waits until `binding`'s deployment on its agent satisfies `done`; returns it.
fn deployment_where(
    server: &DevServer,
    binding: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    assert_eventually(what, JOB, || {
        let all = deployments(server, binding);
        match all.first() {
            Some(d) if done(d) => Ok(d.clone()),
            other => Err(format!("{other:?}")),
        }
    })
}

/// The newest job of `binding` once it has left the open states.
fn finished_job(server: &DevServer, binding: &str, outcome: &str) -> Value {
    assert_eventually(
        &format!("a job of {binding} reports {outcome}"),
        JOB,
        || {
            let body = server
                .api
                .get(&format!("/api/v1/fleet/jobs?binding_id={binding}"))
                .ok();
            let jobs = body["jobs"].as_array().cloned().unwrap_or_default();
            jobs.into_iter()
                .find(|j| j["outcome"] == outcome)
                .ok_or_else(|| format!("{body}"))
        },
    )
}

fn binding(name: &str, nginx: &Nginx, validate: &str, verify: &str) -> Value {
    json!({
        "name": name,
        "group": "web",
        "certificate": {"dns_names": ["localhost"], "profile": "fleet-web", "validity": "720h"},
        "target": {
            "cert_path": nginx.cert_path(),
            "key_path": nginx.key_path(),
            "mode": "0644",
            "validate_command": validate,
            "reload_command": nginx.command("-s reload"),
            "verify_endpoint": verify,
            "verify_sni": "localhost",
        }
    })
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn an_agent_enrolls_deploys_to_nginx_verifies_renews_and_rolls_back() {
    let mut server = DevServer::start();
    let dir = server.dir.path().to_path_buf();
    let spec = json!({
        "allowed_key_algorithms": ["ECDSA"], "min_ecdsa_bits": 256, "min_rsa_bits": 2048,
        "allowed_ekus": ["serverAuth"], "max_validity": "2160h",
        "permitted_dns_suffixes": ["localhost"], "require_sans": true,
    });
    server.api.create_profile("fleet-web", &spec);
    let nginx = Nginx::start(&dir);
    let placeholder = nginx.served().expect("nginx serves the placeholder");

    // Enrollment: the token works once.
    let token = bootstrap_token(&server, "web");
    let agent = Agent::new(&dir, "agent-a", &server);
    let enrolled = agent.enroll(&token);
    assert!(
        enrolled.status.success(),
        "enroll failed: {}",
        String::from_utf8_lossy(&enrolled.stderr)
    );
    assert_eq!(mode(&agent.state.join("identity.key")), 0o600);
    // What the DaemonSet's init container runs at every pod start: a no-op once enrolled,
    // needing no token (the used one would be refused).
    let identity = fs::read(agent.state.join("identity.key")).expect("identity key");
    let rerun = output(&mut agent.command(&["enroll", "--if-not-enrolled"]));
    assert!(
        rerun.status.success(),
        "enroll --if-not-enrolled on an enrolled host: {}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(
        fs::read(agent.state.join("identity.key")).expect("identity key"),
        identity,
        "the identity is kept"
    );
    let again = Agent::new(&dir, "agent-reuse", &server).enroll(&token);
    assert!(
        !again.status.success(),
        "a used bootstrap token enrolls nobody"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("BOOTSTRAP_TOKEN_INVALID"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let agent_id = agent.id();
    let mut running = agent.run(&dir);
    assert_eventually("the agent is online", JOB, || {
        let a = server
            .api
            .get(&format!("/api/v1/fleet/agents/{agent_id}"))
            .ok();
        if a["status"] == "online" && a["host"]["hostname"] != "" {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    });

    // A binding: issued, installed, validated, reloaded, verified.
    let web = post(
        &server,
        "/api/v1/fleet/bindings",
        &binding("web", &nginx, &nginx.command("-t"), &nginx.endpoint()),
    );
    let web_id = web["id"].as_str().expect("binding id").to_string();
    let first = deployment_where(&server, &web_id, "the first deployment is verified", |d| {
        d["outcome"] == "verified"
    });
    let served = nginx.serves(&first["served_sha256"]);
    assert_ne!(served, placeholder);
    assert_eq!(first["served_sha256"], served, "{first}");
    assert_eq!(first["certificate_sha256"], served);
    assert_eq!(
        pem_sha256(&fs::read_to_string(nginx.cert_path()).expect("cert")),
        served
    );
    assert_eq!(mode(&nginx.key_path()), 0o600, "the key is written 0600");
    assert_eq!(mode(&nginx.cert_path()), 0o644);
    let serial = first["serial"].as_str().expect("serial").to_string();
    let by_agent = server
        .api
        .get(&format!("/api/v1/fleet/deployments?agent_id={agent_id}"))
        .ok();
    assert_eq!(by_agent["deployments"][0]["serial"], serial.as_str());

    // The private key never reached the server: not in its database, WAL or log.
    key_never_reached_the_server(&server, &nginx.key_path(), &running);

    // renew-now: a new certificate, and nginx serves it.
    let renewed = post(
        &server,
        &format!("/api/v1/certificates/{serial}/renew-now"),
        &json!({}),
    );
    assert_eq!(renewed["deployments"], 1, "{renewed}");
    let second = deployment_where(&server, &web_id, "the renewal is verified", |d| {
        d["serial"] != serial.as_str() && d["outcome"] == "verified"
    });
    let served_after = nginx.serves(&second["served_sha256"]);
    assert_ne!(served_after, served, "the renewal replaced the certificate");
    assert_eq!(second["served_sha256"], served_after);

    // The server restarts: the agent reconnects by itself, and the deployment and its jobs are
    // still there; a renewal after the restart reaches the agent.
    server = server.restart();
    assert_eventually("the agent is back online", JOB, || {
        let a = server
            .api
            .get(&format!("/api/v1/fleet/agents/{agent_id}"))
            .ok();
        let log = running.log();
        // Online again only after a new stream (Welcome logged twice).
        if a["status"] == "online" && log.matches("Welcomed by the server").count() >= 2 {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    let serial2 = second["serial"].as_str().expect("serial").to_string();
    let kept = deployments(&server, &web_id);
    assert_eq!(
        kept[0]["serial"],
        serial2.as_str(),
        "the deployment survived the restart"
    );
    post(
        &server,
        &format!("/api/v1/certificates/{serial2}/renew-now"),
        &json!({}),
    );
    let third = deployment_where(
        &server,
        &web_id,
        "a renewal after the restart is verified",
        |d| d["serial"] != serial2.as_str() && d["outcome"] == "verified",
    );
    let served_after = nginx.serves(&third["served_sha256"]);

    // Redeploy: files edited by hand get the current certificate back, with no new issuance.
    redeploy_restores_the_files(&server, &nginx, &web_id, &third, &served_after);

    // A failing validate command: nothing live changes, the files are restored byte for byte.
    let cert_before = fs::read(nginx.cert_path()).expect("cert");
    let key_before = fs::read(nginx.key_path()).expect("key");
    let bad = post(
        &server,
        "/api/v1/fleet/bindings",
        &binding("web-bad-validate", &nginx, "exit 3", &nginx.endpoint()),
    );
    let bad_id = bad["id"].as_str().expect("id").to_string();
    let failed = finished_job(&server, &bad_id, "failed");
    assert!(
        failed["detail"].as_str().unwrap_or_default().contains('3'),
        "{failed}"
    );
    assert_eq!(fs::read(nginx.cert_path()).expect("cert"), cert_before);
    assert_eq!(fs::read(nginx.key_path()).expect("key"), key_before);
    assert_eq!(
        nginx.served().expect("nginx serves"),
        served_after,
        "nginx kept its certificate"
    );
    delete_binding(&server, &bad_id);

    // A wrong endpoint: nothing there, or something serving another certificate.
    let other = dir.join("other");
    fs::create_dir_all(&other).expect("dir");
    let mut wrong = binding(
        "web-closed-port",
        &nginx,
        "",
        &format!("127.0.0.1:{}", free_port()),
    );
    wrong["target"]["cert_path"] = json!(other.join("a.pem"));
    wrong["target"]["key_path"] = json!(other.join("a.key"));
    wrong["target"]["reload_command"] = json!("true");
    let closed = post(&server, "/api/v1/fleet/bindings", &wrong);
    let closed_id = closed["id"].as_str().expect("id").to_string();
    let unreachable = finished_job(&server, &closed_id, "unreachable");
    assert!(
        !unreachable["detail"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    delete_binding(&server, &closed_id);
    let mut mismatch = wrong.clone();
    mismatch["name"] = json!("web-wrong-server");
    mismatch["target"]["cert_path"] = json!(other.join("b.pem"));
    mismatch["target"]["key_path"] = json!(other.join("b.key"));
    mismatch["target"]["verify_endpoint"] = json!(nginx.endpoint());
    let wrong_server = post(&server, "/api/v1/fleet/bindings", &mismatch);
    let wrong_id = wrong_server["id"].as_str().expect("id").to_string();
    let mismatched = finished_job(&server, &wrong_id, "mismatch");
    assert!(mismatched["detail"].as_str().is_some(), "{mismatched}");
    assert!(
        !other.join("b.pem").exists(),
        "a mismatch rolls back: the file did not exist before"
    );
    delete_binding(&server, &wrong_id);

    listener_refuses_foreign_certificates(&server, &dir, &agent);
    another_tenant_sees_none_of_it(&server, &dir, &agent_id);

    // Retiring the agent: its stream is told and the agent exits 0; it cannot come back.
    let retired = post(
        &server,
        &format!("/api/v1/fleet/agents/{agent_id}/retire"),
        &json!({}),
    );
    assert_eq!(retired["status"], "retired");
    let status = assert_eventually("the retired agent exits", JOB, || running.try_exit());
    assert!(status.success(), "a retired agent exits 0, got {status}");
    let back = output(&mut agent.command(&["run"]));
    assert!(
        back.status.success(),
        "a retired agent's run exits 0 at once"
    );
    assert_eq!(
        server
            .api
            .get(&format!("/api/v1/fleet/agents/{agent_id}"))
            .ok()["status"],
        "retired"
    );
    nginx_serves_the_verified_certificate(&nginx, &served_after);
}

fn redeploy_restores_the_files(
    server: &DevServer,
    nginx: &Nginx,
    binding: &str,
    current: &Value,
    served: &str,
) {
    let pristine = fs::read(nginx.cert_path()).expect("cert");
    let mut edited = pristine.clone();
    edited.extend_from_slice(b"\n# edited by hand\n");
    fs::write(nginx.cert_path(), &edited).expect("edit");
    let issued_before = server.api.certificate_count();
    let made = post(
        server,
        &format!("/api/v1/fleet/bindings/{binding}/redeploy"),
        &json!({}),
    );
    let jobs = made["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), 1, "one deploy job per deployment: {made}");
    assert_eq!(jobs[0]["kind"], "deploy");
    let job_id = jobs[0]["id"].as_str().expect("job id").to_string();
    let done = assert_eventually("the deploy job is verified", JOB, || {
        let job = server.api.get(&format!("/api/v1/fleet/jobs/{job_id}")).ok();
        if job["state"] == "succeeded" {
            Ok(job)
        } else {
            Err(job.to_string())
        }
    });
    assert_eq!(done["outcome"], "verified", "{done}");
    assert_eq!(done["serial"], current["serial"], "the same certificate");
    assert_eq!(fs::read(nginx.cert_path()).expect("cert"), pristine);
    assert_eq!(nginx.served().expect("nginx serves"), served);
    assert_eq!(
        server.api.certificate_count(),
        issued_before,
        "nothing was issued"
    );
    let after = deployments(server, binding);
    assert_eq!(after[0]["serial"], current["serial"], "{after:?}");

    // Bad input changes nothing.
    server
        .api
        .post(
            &format!("/api/v1/fleet/bindings/{}/redeploy", uuid_like(9)),
            b"{}",
            &[],
        )
        .error(404, "NOT_FOUND", "BINDING_NOT_FOUND");
    server
        .api
        .post(
            &format!("/api/v1/fleet/bindings/{binding}/redeploy"),
            br#"{"agent_id": "not-an-id"}"#,
            &[],
        )
        .error(400, "INVALID_ARGUMENT", "REQUEST_INVALID");
}

fn nginx_serves_the_verified_certificate(nginx: &Nginx, expected: &str) {
    assert_eq!(nginx.served().expect("nginx serves"), expected);
}

fn delete_binding(server: &DevServer, id: &str) {
    let reply = server.api.send(
        "DELETE",
        &format!("/api/v1/fleet/bindings/{id}"),
        Some(&server.api.token),
        &[],
        None,
    );
    reply.ok();
}

fn key_never_reached_the_server(server: &DevServer, key: &Path, agent: &Process) {
    let pem = fs::read_to_string(key).expect("the installed key");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("key base64");
    // The private scalar: in the PKCS#8 ECPrivateKey, `INTEGER 1, OCTET STRING <scalar>`
    // (the rest of the DER holds the public key, which certificates carry anyway). Any
    // 16-byte window of the scalar would show.
    let at = der
        .windows(4)
        .position(|w| w[..3] == [0x02, 0x01, 0x01] && w[3] == 0x04)
        .expect("an ECPrivateKey in the PKCS#8");
    let len = usize::from(der[at + 4]);
    let scalar = &der[at + 5..at + 5 + len];
    assert!(len >= 32, "a P-256 or P-384 scalar");
    let needles: Vec<&[u8]> = scalar.windows(16).step_by(4).collect();
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in fs::read_dir(server.dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            haystacks.push((
                path.display().to_string(),
                fs::read(&path).unwrap_or_default(),
            ));
        }
    }
    haystacks.push(("server log".into(), server.process.log().into_bytes()));
    for name in ["certmesh.db", "certmesh.db-wal"] {
        assert!(
            haystacks.iter().any(|(p, _)| p.ends_with(name)) || name.ends_with("-wal"),
            "{name} was searched"
        );
    }
    for (name, bytes) in &haystacks {
        if name.contains("certmesh-agent") {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(&body[..40]), "{name} holds the key's base64");
        for needle in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == *needle),
                "{name} holds bytes of the agent's private key"
            );
        }
    }
    assert!(
        !agent.log().contains(&body[..40]),
        "the agent logged its key"
    );
}

/// The agent listener refuses a client certificate from another CA at the handshake, and a
/// request without one gets no stream.
fn listener_refuses_foreign_certificates(server: &DevServer, dir: &Path, agent: &Agent) {
    let openssl = tool("openssl");
    let key = dir.join("foreign.key");
    let cert = dir.join("foreign.pem");
    run(Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=intruder", "-addext"])
        .arg(format!(
            "subjectAltName=URI:spiffe://certmesh.local/tenant/{}/agent/{}",
            uuid_like(1),
            uuid_like(2)
        ))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let session = format!("{}/certmesh.fleet.v1.AgentService/Session", server.fleet);
    let call = |identity: Option<(&Path, &Path)>| {
        let mut cmd = Command::new(tool("curl"));
        cmd.args([
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--max-time",
            "5",
        ])
        .arg("--cacert")
        .arg(server.bundle())
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["--data-binary", ""]);
        if let Some((c, k)) = identity {
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        cmd.arg(&session);
        output(&mut cmd)
    };
    let foreign = call(Some((&cert, &key)));
    assert!(
        !String::from_utf8_lossy(&foreign.stdout).contains("grpc-status: 0"),
        "a certificate of another CA opened a stream"
    );
    assert!(
        !foreign.status.success() || !String::from_utf8_lossy(&foreign.stdout).contains("200"),
        "the handshake with a foreign client certificate succeeded: {}",
        String::from_utf8_lossy(&foreign.stdout)
    );
    let anonymous = call(None);
    let headers = String::from_utf8_lossy(&anonymous.stdout).to_lowercase();
    assert!(
        headers.contains("grpc-status: 16"),
        "no client certificate: UNAUTHENTICATED, got {headers}"
    );
    // The real identity opens the same door (so the refusals above are about the certificate).
    let own = call(Some((
        &agent.state.join("identity.pem"),
        &agent.state.join("identity.key"),
    )));
    let own_headers = String::from_utf8_lossy(&own.stdout).to_lowercase();
    assert!(own_headers.contains("200"), "{own_headers}");
    assert!(!own_headers.contains("grpc-status: 16"), "{own_headers}");
}

fn uuid_like(n: u8) -> String {
    format!("00000000-0000-4000-8000-0000000000{n:02x}")
}

/// An agent enrolled into another tenant gets its own identity; that tenant's admin cannot see
/// this tenant's agent, and the other agent is never given this tenant's bindings.
fn another_tenant_sees_none_of_it(server: &DevServer, dir: &Path, our_agent: &str) {
    let db = format!(
        "sqlite://{}",
        server.dir.path().join("certmesh.db").display()
    );
    run(certmesh().args(["tenant", "create", "--database-url", &db, "globex"]));
    let out = run(certmesh().args([
        "token",
        "create",
        "--database-url",
        &db,
        "--tenant",
        "globex",
        "--principal",
        "gina",
        "--role",
        "admin",
    ]));
    let gina_token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let gina = crate::support::Api {
        token: gina_token.clone(),
        token_file: write(&dir.join("gina.token"), &gina_token),
        ..server.api.clone()
    };
    let created = gina.post(
        "/api/v1/fleet/bootstrap-tokens",
        json!({"group": "web"}).to_string().as_bytes(),
        &[],
    );
    let secret = created.ok()["secret"].as_str().expect("secret").to_string();
    let theirs = Agent::new(dir, "agent-globex", server);
    assert!(theirs.enroll(&secret).status.success());
    let their_id = theirs.id();
    let mut their_run = theirs.run(dir);
    assert_eventually("globex's agent is online", JOB, || {
        let a = gina.get(&format!("/api/v1/fleet/agents/{their_id}")).ok();
        (a["status"] == "online")
            .then_some(())
            .ok_or_else(|| a.to_string())
    });
    gina.get(&format!("/api/v1/fleet/agents/{our_agent}"))
        .error(404, "NOT_FOUND", "AGENT_NOT_FOUND");
    server
        .api
        .get(&format!("/api/v1/fleet/agents/{their_id}"))
        .error(404, "NOT_FOUND", "AGENT_NOT_FOUND");
    let jobs = gina.get("/api/v1/fleet/jobs").ok();
    assert_eq!(
        jobs["jobs"],
        json!([]),
        "globex's agent got none of acme's group bindings"
    );
    let listed = gina.get("/api/v1/fleet/agents").ok();
    assert_eq!(
        listed["agents"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    their_run.stop();
}

/// An agent renews its identity certificate over its stream before it expires (lifetime 30 s,
/// renewed after two thirds), and the server then knows the new certificate.
#[test]
fn an_agent_renews_its_identity_over_the_stream() {
    let server = DevServer::start_with(&["--agent-identity-validity", "30s"]);
    let dir = server.dir.path().to_path_buf();
    let agent = Agent::new(&dir, "agent-renewing", &server);
    let token = bootstrap_token(&server, "web");
    assert!(agent.enroll(&token).status.success());
    let id = agent.id();
    let first = fs::read_to_string(agent.state.join("identity.pem")).expect("identity");
    let before = server.api.get(&format!("/api/v1/fleet/agents/{id}")).ok();
    let running = agent.run(&dir);
    let renewed = assert_eventually("the identity is renewed", JOB, || {
        let now = fs::read_to_string(agent.state.join("identity.pem")).unwrap_or_default();
        let seen = server.api.get(&format!("/api/v1/fleet/agents/{id}")).ok();
        if now != first && seen["identity_not_after"] != before["identity_not_after"] {
            Ok(seen)
        } else {
            Err(format!("{seen}"))
        }
    });
    assert_eq!(renewed["status"], "online", "{renewed}");
    assert_eq!(
        mode(&agent.state.join("identity.key")),
        0o600,
        "the new identity key is private"
    );
    assert_ne!(
        pem_sha256(&first),
        pem_sha256(&fs::read_to_string(agent.state.join("identity.pem")).expect("identity"))
    );
    // One stream open while the agent runs; none once it is gone, and its Session call is
    // counted on the agent listener.
    let scrape = || server.api.send("GET", "/metrics", None, &[], None).body;
    let session = [
        ("service", "certmesh.fleet.v1.AgentService"),
        ("method", "Session"),
    ];
    assert_eventually("one stream is counted open", JOB, || {
        let body = scrape();
        if sample(&body, "certmesh_agent_streams", &[]) == 1.0 {
            Ok(())
        } else {
            Err(body)
        }
    });
    drop(running);
    assert_eventually("the stream is counted closed", JOB, || {
        let body = scrape();
        let closed = sample(&body, "certmesh_agent_streams", &[]) == 0.0
            && sample(&body, "certmesh_rpc_requests_total", &session) >= 1.0;
        if closed { Ok(()) } else { Err(body) }
    });
}

/// Work waits for an offline agent, and an agent killed in the middle of a job picks it up
/// again when it comes back: the same job, finished on its first attempt, with the key it kept.
#[test]
fn jobs_wait_for_offline_agents_and_survive_an_agent_killed_mid_job() {
    let server = DevServer::start();
    let dir = server.dir.path().to_path_buf();
    let spec = json!({
        "allowed_key_algorithms": ["ECDSA"], "min_ecdsa_bits": 256, "min_rsa_bits": 2048,
        "allowed_ekus": ["serverAuth"], "max_validity": "2160h",
        "permitted_dns_suffixes": ["localhost"], "require_sans": true,
    });
    server.api.create_profile("fleet-web", &spec);
    let agent = Agent::new(&dir, "agent-offline", &server);
    assert!(
        agent
            .enroll(&bootstrap_token(&server, "batch"))
            .status
            .success()
    );
    let id = agent.id();
    let target = dir.join("batch-target");
    fs::create_dir_all(&target).expect("dir");
    let created = post(
        &server,
        "/api/v1/fleet/bindings",
        &json!({
            "name": "batch",
            "agent_id": id,
            "certificate": {"dns_names": ["batch.localhost"], "profile": "fleet-web"},
            "target": {"cert_path": target.join("tls.pem"), "key_path": target.join("tls.key"),
                       "reload_command": "true"},
        }),
    );
    let binding = created["id"].as_str().expect("binding id").to_string();
    let job = assert_eventually("the job is planned", JOB, || {
        let jobs = server
            .api
            .get(&format!("/api/v1/fleet/jobs?binding_id={binding}"))
            .ok();
        jobs["jobs"][0]
            .as_object()
            .cloned()
            .ok_or_else(|| jobs.to_string())
    });
    std::thread::sleep(Duration::from_secs(3));
    let waiting = server
        .api
        .get(&format!(
            "/api/v1/fleet/jobs/{}",
            job["id"].as_str().expect("id")
        ))
        .ok();
    assert_eq!(
        waiting["state"], "pending",
        "the job waits for its agent: {waiting}"
    );

    // The agent comes online, takes the job, and is killed (SIGKILL) as soon as it has it.
    let mut first = agent.run(&dir);
    let job_id = job["id"].as_str().expect("id").to_string();
    assert_eventually("the agent took the job", JOB, || {
        let j = server.api.get(&format!("/api/v1/fleet/jobs/{job_id}")).ok();
        if j["state"] != "pending" {
            Ok(())
        } else {
            Err(j.to_string())
        }
    });
    if let Some(pid) = first.id() {
        run(Command::new("kill").args(["-KILL", &pid.to_string()]));
    }
    first.stop();

    // Back again: the same job finishes, on its first attempt.
    let _second = agent.run(&dir);
    let done = assert_eventually("the job finishes after the restart", JOB, || {
        let j = server.api.get(&format!("/api/v1/fleet/jobs/{job_id}")).ok();
        if j["state"] == "succeeded" {
            Ok(j)
        } else {
            Err(j.to_string())
        }
    });
    assert_eq!(done["outcome"], "installed", "{done}");
    assert_eq!(done["attempts"], 1, "resumed, not retried: {done}");
    let deployed = deployments(&server, &binding);
    assert_eq!(deployed[0]["serial"], done["serial"], "{deployed:?}");
    let installed = fs::read_to_string(target.join("tls.pem")).expect("installed");
    assert_eq!(
        pem_sha256(&installed),
        deployed[0]["certificate_sha256"].as_str().expect("sha")
    );
    assert_eq!(mode(&target.join("tls.key")), 0o600);
}
