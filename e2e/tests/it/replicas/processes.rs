//! The processes of the scenario: the replicas (what they share, how each is started, what
//! it logged), the webhook receiver, the TCP fronts before the fleet listeners, the agents.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::{PKI_URL, ROLES};
use crate::fleet::agent_bin;
use crate::support::{
    Api, PgDatabase, Process, certmesh, free_port, health, kek_file, migrated_with_token, output,
    run, tls_identity, tool, write,
};

/// What both replicas share: the database, the key directory and KEK, the TLS identity of
/// their listeners, and an API token.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) db: String,
    pub(super) keys: PathBuf,
    pub(super) kek: PathBuf,
    pub(super) tls_ca: PathBuf,
    pub(super) tls_chain: PathBuf,
    pub(super) tls_key: PathBuf,
    pub(super) token: String,
    pub(super) token_file: PathBuf,
}

impl Shared {
    pub(super) fn prepare(db: &PgDatabase, dir: &Path) -> Shared {
        let (token, token_file) = migrated_with_token(&db.url, dir, None);
        let keys = dir.join("keys");
        fs::create_dir_all(&keys).expect("creating the key directory");
        let (tls_ca, tls_chain, tls_key) = tls_identity(dir);
        Shared {
            dir: dir.to_path_buf(),
            db: db.url.clone(),
            keys,
            kek: kek_file(dir),
            tls_ca,
            tls_chain,
            tls_key,
            token_file,
            token,
        }
    }
}

/// A replica's API, PKI and agent listener ports.
#[derive(Clone, Copy)]
pub(super) struct Ports {
    pub(super) api: u16,
    pub(super) pki: u16,
    pub(super) fleet: u16,
}

impl Ports {
    pub(super) fn new() -> Ports {
        Ports {
            api: free_port(),
            pki: free_port(),
            fleet: free_port(),
        }
    }
}

pub(super) struct Replica {
    process: Process,
    pub(super) api: Api,
    ports: Ports,
}

impl Replica {
    /// `certmesh server` with every role on `ports`, periods made short for the test.
    pub(super) fn start(name: &str, ports: Ports, s: &Shared) -> Replica {
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let mut cmd = certmesh();
        cmd.args(["server", "--services", ROLES, "--log-json"])
            .args([
                "--listen",
                &addr(ports.api),
                "--pki-listen",
                &addr(ports.pki),
            ])
            .args([
                "--fleet-listen",
                &addr(ports.fleet),
                "--pki-public-url",
                PKI_URL,
            ])
            .args(["--database-url", &s.db, "--key-dir"])
            .arg(&s.keys)
            .arg("--kek-file")
            .arg(&s.kek)
            .arg("--tls-cert")
            .arg(&s.tls_chain)
            .arg("--tls-key")
            .arg(&s.tls_key)
            .args([
                "--crl-refresh",
                "3s",
                "--scan-tick",
                "2s",
                "--dangerous-scan-loopback",
            ])
            .args(["--notify-every", "1s", "--notify-retry-base", "1s"])
            .args(["--notify-max-attempts", "100", "--fleet-retry-base", "1s"]);
        let mut process = Process::spawn(&format!("replica-{name}"), cmd, &s.dir);
        let base = format!("https://127.0.0.1:{}", ports.api);
        process.wait_until("/healthz answers 200", || health(&base, &s.tls_ca));
        Replica {
            process,
            api: Api {
                base,
                ca: s.tls_ca.clone(),
                token: s.token.clone(),
                token_file: s.token_file.clone(),
            },
            ports,
        }
    }

    pub(super) fn pki(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.pki)
    }

    /// The JSON log events whose message is `message`.
    fn logged(&self, message: &str) -> Vec<Value> {
        self.process
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| field(e, "message") == message)
            .collect()
    }

    /// The log events of `message` from background work, not from within a request (the
    /// fleet API plans a new binding's jobs at once, whoever holds the lease).
    pub(super) fn logged_in_background(&self, message: &str) -> Vec<Value> {
        let mut events = self.logged(message);
        events.retain(|e| e.get("span").is_none());
        events
    }

    /// Whether it logged `message` with `name` = `value`.
    pub(super) fn logged_with(&self, message: &str, name: &str, value: &str) -> bool {
        self.logged(message)
            .iter()
            .any(|e| field(e, name).as_str() == Some(value))
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`) to the replica.
    pub(super) fn signal(&self, signal: &str) {
        let pid = self.process.id().expect("the replica runs");
        run(Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]));
    }

    /// SIGKILL, and reaps it.
    pub(super) fn kill(&mut self) {
        self.signal("KILL");
        self.process.stop();
    }
}

/// A field of a JSON log event, under `fields` or at the top.
fn field<'a>(event: &'a Value, name: &str) -> &'a Value {
    match &event["fields"][name] {
        Value::Null => &event[name],
        value => value,
    }
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver, the agents' fronts and the agents
// ---------------------------------------------------------------------------------------------

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// A Python helper from e2e/scripts listening on `port`.
fn helper(name: &str, args: &[String], port: u16, dir: &Path) -> Process {
    let mut cmd = Command::new(tool("python3"));
    cmd.arg(script(name)).args(args);
    let mut p = Process::spawn(name, cmd, dir);
    p.wait_until("it listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    p
}

/// e2e/scripts/webhook_recorder.py, recording under `dir`/hook.
pub(super) fn webhook_receiver(dir: &Path) -> (Process, u16) {
    let port = free_port();
    let hook = dir.join("hook");
    fs::create_dir_all(&hook).expect("creating the hook directory");
    let args = [port.to_string(), hook.display().to_string()];
    (helper("webhook_recorder.py", &args, port, dir), port)
}

/// Makes the webhook receiver answer `status` from now on (written whole: it reads the file
/// per request).
pub(super) fn answer_with(dir: &Path, status: u16) {
    let tmp = write(&dir.join("hook/.status.tmp"), status.to_string());
    fs::rename(tmp, dir.join("hook/status")).expect("replacing the status file");
}

/// One request the webhook receiver got.
pub(super) struct Hooked {
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) aggregate_id: String,
    pub(super) status: u64,
}

pub(super) fn hooked(dir: &Path) -> Vec<Hooked> {
    let entries = fs::read_dir(dir.join("hook")).expect("the hook directory");
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| serde_json::from_str::<Value>(&fs::read_to_string(p).ok()?).ok())
        .map(|r| {
            let body: Value =
                serde_json::from_str(r["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
            Hooked {
                event_id: r["headers"]["x-certmesh-event-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                event_type: body["type"].as_str().unwrap_or_default().to_owned(),
                aggregate_id: body["aggregate_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                status: r["status"].as_u64().unwrap_or(0),
            }
        })
        .collect()
}

/// e2e/scripts/tcp_failover.py: a loopback port forwarding to the first of `upstreams` that
/// accepts.
pub(super) fn front(upstreams: &[u16], dir: &Path) -> (Process, u16) {
    let port = free_port();
    let mut args = vec![port.to_string()];
    args.extend(upstreams.iter().map(u16::to_string));
    (helper("tcp_failover.py", &args, port, dir), port)
}

/// An agent's state directory and the front it reaches the fleet role through.
pub(super) struct Agent {
    state: PathBuf,
    server: String,
    bundle: PathBuf,
}

impl Agent {
    pub(super) fn new(dir: &Path, name: &str, front: u16, bundle: &Path) -> Agent {
        Agent {
            state: dir.join(name),
            server: format!("https://127.0.0.1:{front}"),
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

    /// Enrolls with a bootstrap token of group `web` made through `api`; the agent's id.
    pub(super) fn enroll(&self, api: &Api) -> String {
        let made = api.post("/api/v1/fleet/bootstrap-tokens", br#"{"group":"web"}"#, &[]);
        let secret = made.ok()["secret"].as_str().expect("secret").to_owned();
        let out = output(
            self.command(&["enroll"])
                .env("CERTMESH_AGENT_BOOTSTRAP_TOKEN", secret),
        );
        assert!(
            out.status.success(),
            "certmesh-agent enroll: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let facts: Value = serde_json::from_str(
            &fs::read_to_string(self.state.join("agent.json")).expect("agent.json"),
        )
        .expect("agent.json is JSON");
        facts["agent_id"].as_str().expect("agent_id").to_owned()
    }

    pub(super) fn run(&self, dir: &Path) -> Process {
        Process::spawn("certmesh-agent", self.command(&["run"]), dir)
    }
}
