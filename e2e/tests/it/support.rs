//! Plumbing shared by the end-to-end tests and the benchmark: locating the `certmesh` binary
//! and the external verifiers, spawning server processes that die with the test, polling
//! instead of sleeping, and thin wrappers over curl (REST), the certmesh CLI (gRPC), openssl
//! and pkilint.
//!
//! Every external tool is required: a missing tool panics with what to install, so a scenario
//! never passes without having run.

use std::{
    env,
    fs::{self, File},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tempfile::TempDir;

/// How long a server gets to answer `/healthz` after it is spawned.
pub const STARTUP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Locating binaries and tools
// ---------------------------------------------------------------------------------------------

/// The `certmesh` binary: `CERTMESH_BIN`, or `target/<profile>/certmesh` next to this test
/// binary (`target/<profile>/deps/<exe>`).
pub fn certmesh_bin() -> PathBuf {
    if let Some(path) = env::var_os("CERTMESH_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CERTMESH_BIN={} does not exist: build it first (`cargo build -p certmesh`, or `make test`)",
            path.display()
        );
        return path;
    }
    let exe = env::current_exe().expect("the path of the running test binary");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("certmesh"))
        .expect("the test binary sits in target/<profile>/deps");
    assert!(
        path.is_file(),
        "CERTMESH_BIN is unset and {} does not exist: run `cargo build -p certmesh` first (`make test` does)",
        path.display()
    );
    path
}

/// An executable on `PATH`, or a loud failure naming it.
pub fn tool(name: &str) -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is required by this end-to-end scenario but is not on PATH; install it"
            )
        })
}

/// pkilint's `lint_pkix_cert`: `CERTMESH_PKILINT` (set by the Makefile after `make tools`), or
/// `lint_pkix_cert` on `PATH`.
pub fn pkilint_bin() -> PathBuf {
    if let Some(path) = env::var_os("CERTMESH_PKILINT") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CERTMESH_PKILINT={} does not exist: run `make tools` (installs pkilint into a venv)",
            path.display()
        );
        return path;
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .map(|dir| dir.join("lint_pkix_cert"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("pkilint is required: run `make tools` and set CERTMESH_PKILINT=<venv>/bin/lint_pkix_cert (the Makefile does)")
        })
}

/// The Python of the verifier venv (`make tools`): beside `lint_pkix_cert`, so it has
/// `cryptography` too.
pub fn python_bin() -> PathBuf {
    let python = pkilint_bin().with_file_name("python3");
    assert!(
        python.is_file(),
        "{} does not exist: run `make tools` (the verifier venv)",
        python.display()
    );
    python
}

/// Validates `leaf` for `dns_name` up to a root in `roots` through `intermediates` with Python
/// `cryptography`'s X.509 path validation (e2e/scripts/verify_path.py); panics with its reason
/// unless the path validates. Returns the path's subjects, leaf first.
pub fn python_verify_path(
    roots: &Path,
    intermediates: &Path,
    leaf: &Path,
    dns_name: &str,
) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_path.py");
    let mut cmd = Command::new(python_bin());
    cmd.arg(script)
        .arg(roots)
        .arg(intermediates)
        .arg(leaf)
        .arg(dns_name);
    let out = run(&mut cmd);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A `certmesh` command that does not inherit `CERTMESH_*` settings from the caller's
/// environment, so only the flags a test passes are in effect.
pub fn certmesh() -> Command {
    let mut cmd = Command::new(certmesh_bin());
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("CERTMESH_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "info").stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------------------------

/// Run `cmd` to completion without judging its exit status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run `cmd`; panic with its stdout and stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Poll `probe` every 100 ms until it returns `Ok`, or panic after `timeout` with its last
/// error. Used instead of sleeps.
pub fn assert_eventually<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 for a free port")
}

/// A scratch directory removed at the end of the test.
pub fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("certmesh-e2e-")
        .tempdir()
        .expect("creating a temporary directory")
}

/// A name unique within this process, for files and databases.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> PathBuf {
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

/// A spawned process, killed when dropped. Its stdout and stderr go to a log file that is
/// printed when the test fails.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{}.log", unique(name)));
        let out = File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out.try_clone().expect("cloning the log file handle");
        cmd.stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Err` with the log if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} was stopped", self.name));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status})\n--- log ---\n{}",
                self.name,
                self.log()
            )),
            Err(e) => Err(format!("waiting on {}: {e}", self.name)),
        }
    }

    /// The process id while it runs (the fleet bench reads the server's memory by it).
    #[allow(dead_code)]
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status once the process has exited, `Err` while it runs.
    pub fn try_exit(&mut self) -> Result<std::process::ExitStatus, String> {
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} was stopped", self.name));
        };
        match child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err(format!("{} is still running", self.name)),
            Err(e) => Err(format!("waiting on {}: {e}", self.name)),
        }
    }

    /// Wait until `probe` succeeds, failing at once (with the log) if the process dies.
    pub fn wait_until(&mut self, what: &str, probe: impl Fn() -> Result<(), String>) {
        let name = self.name.clone();
        assert_eventually(&format!("{name}: {what}"), STARTUP, || {
            if let Err(dead) = self.check_alive() {
                panic!("{dead}");
            }
            probe()
        });
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of {} ({}) ---",
                self.name,
                self.log.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// `certmesh server --dev` on a free port, with its data directory.
#[derive(Debug)]
pub struct DevServer {
    pub dir: TempDir,
    pub process: Process,
    pub api: Api,
    /// The PKI listener (CRLs, OCSP), `http://127.0.0.1:<port>`.
    pub pki: String,
    /// The agent listener, `https://127.0.0.1:<port>`.
    pub fleet: String,
    /// The API, PKI and agent listener ports.
    pub ports: [u16; 3],
}

impl DevServer {
    pub fn start() -> Self {
        Self::start_in(scratch())
    }

    /// Start on `dir`, which may hold the state of an earlier run.
    pub fn start_in(dir: TempDir) -> Self {
        Self::start_on(dir, [free_port(), free_port(), free_port()])
    }

    /// Start with extra `certmesh server` flags.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::launch(scratch(), [free_port(), free_port(), free_port()], extra)
    }

    /// Stop and start again on the same data directory and ports (clients keep their URLs).
    pub fn restart(self) -> Self {
        let ports = self.ports;
        Self::start_on(self.stop(), ports)
    }

    /// Start on `dir` with the API, PKI and agent listeners on `ports`.
    pub fn start_on(dir: TempDir, ports: [u16; 3]) -> Self {
        Self::launch(dir, ports, &[])
    }

    fn launch(dir: TempDir, ports: [u16; 3], extra: &[&str]) -> Self {
        tool("curl");
        let [port, pki_port, fleet_port] = ports;
        let mut cmd = certmesh();
        cmd.args([
            "server",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--pki-listen",
            &format!("127.0.0.1:{pki_port}"),
            "--fleet-listen",
            &format!("127.0.0.1:{fleet_port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .args(extra);
        let mut process = Process::spawn("certmesh-dev", cmd, dir.path());
        let bundle = dir.path().join("dev/ca-bundle.pem");
        let base = format!("https://127.0.0.1:{port}");
        process.wait_until("/healthz answers 200", || {
            if !bundle.is_file() {
                return Err(format!("{} not written yet", bundle.display()));
            }
            health(&base, &bundle)
        });
        let token_file = dir.path().join("dev/admin.token");
        let token = fs::read_to_string(&token_file).unwrap_or_else(|e| {
            panic!("reading the dev admin token {}: {e}", token_file.display())
        });
        let api = Api {
            base,
            ca: bundle,
            token: token.trim().to_string(),
            token_file,
        };
        Self {
            dir,
            process,
            api,
            pki: format!("http://127.0.0.1:{pki_port}"),
            fleet: format!("https://127.0.0.1:{fleet_port}"),
            ports,
        }
    }

    pub fn bundle(&self) -> PathBuf {
        self.api.ca.clone()
    }

    /// Stop gracefully and hand back the data directory.
    pub fn stop(mut self) -> TempDir {
        self.process.stop();
        self.dir
    }

    /// A path for a test file in the server's temporary directory (outside `dev/`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `Ok` when GET /healthz answers 200.
pub fn health(base: &str, ca: &Path) -> Result<(), String> {
    let reply =
        curl(ca, "GET", &format!("{base}/healthz"), &[], None).map_err(|e| e.to_string())?;
    if reply.status == 200 {
        Ok(())
    } else {
        Err(format!(
            "/healthz answered {}: {}",
            reply.status, reply.body
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// REST over curl
// ---------------------------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// What was asked, for failure messages.
    pub request: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answered {} with a non-JSON body ({e}): {:?}",
                self.request, self.status, self.body
            )
        })
    }

    /// The JSON body of a 200, or a panic showing what came back.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status, 200,
            "{} answered {}: {}",
            self.request, self.status, self.body
        );
        self.json()
    }

    /// Assert a JSON error body with `status`, `code` and `reason`; returns the message.
    pub fn error(&self, status: u16, code: &str, reason: &str) -> String {
        assert_eq!(
            self.status, status,
            "{} should answer {status} {code} ({reason}) but answered {}: {}",
            self.request, self.status, self.body
        );
        let body = self.json();
        assert_eq!(body["code"], code, "{}: wrong code in {body}", self.request);
        assert_eq!(
            body["reason"], reason,
            "{}: wrong reason in {body}",
            self.request
        );
        body["message"].as_str().unwrap_or_default().to_string()
    }
}

/// One HTTPS request with curl, trusting only `ca`. `Err` when curl itself fails (connection
/// refused, TLS failure), with its stderr.
pub fn curl(
    ca: &Path,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Path>,
) -> Result<Reply, String> {
    curl_with(ca, method, url, headers, body, &[])
}

/// [`curl`] with extra curl arguments (e.g. `--http1.1`).
pub fn curl_with(
    ca: &Path,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Path>,
    extra: &[&str],
) -> Result<Reply, String> {
    let mut cmd = Command::new(tool("curl"));
    cmd.args(["--silent", "--show-error", "--max-time", "60", "--cacert"])
        .arg(ca)
        .args(extra)
        .args([
            "--request",
            method,
            "--write-out",
            "\n%{http_code}",
            "--header",
            "Expect:",
        ]);
    for (name, value) in headers {
        cmd.arg("--header").arg(format!("{name}: {value}"));
    }
    if let Some(body) = body {
        cmd.arg("--data-binary").arg(format!("@{}", body.display()));
    }
    cmd.arg(url);
    let out = output(&mut cmd);
    let request = format!("{method} {url}");
    if !out.status.success() {
        return Err(format!(
            "curl {request} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    let status = code
        .trim()
        .parse()
        .map_err(|_| format!("curl {request}: no status code in {stdout:?}"))?;
    Ok(Reply {
        status,
        body: body.to_string(),
        request,
    })
}

/// The REST API of one gateway, with a bearer token.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    /// The CA bundle that signs the gateway's TLS certificate.
    pub ca: PathBuf,
    pub token: String,
    pub token_file: PathBuf,
}

impl Api {
    /// A request with `Authorization: Bearer <token>` unless `token` is `None`.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Path>,
    ) -> Reply {
        self.send_with(method, path, token, headers, body, &[])
    }

    /// [`Api::send`] with extra curl arguments.
    pub fn send_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Path>,
        extra: &[&str],
    ) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = auth.as_deref() {
            all.push(("Authorization", auth));
        }
        if body.is_some() {
            all.push(("Content-Type", "application/json"));
        }
        curl_with(
            &self.ca,
            method,
            &format!("{}{path}", self.base),
            &all,
            body,
            extra,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, Some(&self.token), &[], None)
    }

    /// POST a JSON body (written to a temporary file so any size works).
    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let file = tempfile::NamedTempFile::new().expect("a temporary request body file");
        write(file.path(), body);
        self.send("POST", path, Some(&self.token), headers, Some(file.path()))
    }

    /// POST /api/v1/certificates.
    pub fn issue(
        &self,
        csr: &Csr,
        profile: &str,
        validity: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut body = json!({ "csr": csr.pem, "profile": profile });
        if let Some(validity) = validity {
            body["validity"] = json!(validity);
        }
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|k| ("Idempotency-Key", k))
            .into_iter()
            .collect();
        self.post(
            "/api/v1/certificates",
            body.to_string().as_bytes(),
            &headers,
        )
    }

    /// POST /api/v1/profiles; panics unless it succeeds. Returns the created version.
    pub fn create_profile(&self, name: &str, spec: &Value) -> Value {
        let body = json!({ "name": name, "spec": spec });
        self.post("/api/v1/profiles", body.to_string().as_bytes(), &[])
            .ok()
    }

    /// Every certificate GET /api/v1/certificates lists, following page tokens.
    pub fn certificates(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut token = String::new();
        for _ in 0..1000 {
            let page = self
                .get(&format!(
                    "/api/v1/certificates?page_size=100&page_token={token}"
                ))
                .ok();
            all.extend(page["certificates"].as_array().cloned().unwrap_or_default());
            token = page["next_page_token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if token.is_empty() {
                return all;
            }
        }
        panic!("GET /api/v1/certificates did not end after 1000 pages");
    }

    pub fn certificate_count(&self) -> usize {
        self.certificates().len()
    }

    /// The certmesh CLI pointed at this gateway: `certmesh <args> --gateway … --token-file …
    /// --ca-bundle …`.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = certmesh();
        cmd.args(args)
            .arg("--gateway")
            .arg(&self.base)
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--ca-bundle")
            .arg(&self.ca);
        cmd
    }
}

/// The profile spec most tests use: ECDSA P-256+, serverAuth, DNS names under example.com.
pub fn web_spec() -> Value {
    json!({
        "allowed_key_algorithms": ["ECDSA"],
        "min_ecdsa_bits": 256,
        "min_rsa_bits": 2048,
        "allowed_ekus": ["serverAuth"],
        "max_validity": "2160h",
        "permitted_dns_suffixes": ["example.com"],
        "require_sans": true,
        "allow_ip_sans": false,
    })
}

// ---------------------------------------------------------------------------------------------
// openssl and pkilint
// ---------------------------------------------------------------------------------------------

/// A CSR and its private key on disk.
#[derive(Debug, Clone)]
pub struct Csr {
    pub pem: String,
    pub path: PathBuf,
}

/// A fresh key on `curve` (P-256, P-384) and a CSR for `/CN=<dns>` with SAN `DNS:<dns>`, plus
/// any extra `openssl req` arguments (e.g. `-addext extendedKeyUsage=clientAuth`).
pub fn csr(dir: &Path, dns: &str, curve: &str, extra: &[&str]) -> Csr {
    let stem = unique("csr");
    let path = dir.join(format!("{stem}.csr.pem"));
    let key = dir.join(format!("{stem}.key.pem"));
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .arg(format!("ec_paramgen_curve:{curve}"))
        .args(["-nodes", "-subj"])
        .arg(format!("/CN={dns}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{dns}"))
        .args(extra)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&path);
    run(&mut cmd);
    let pem =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Csr { pem, path }
}

/// The PEM blocks in `pem`, each with its BEGIN/END lines.
pub fn pem_blocks(pem: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN ") {
            current = Some(String::new());
        }
        if let Some(block) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(current.take());
        }
    }
    blocks
}

/// `openssl verify -x509_strict -check_ss_sig` of `leaf` up to a root in `ca_file`, with
/// `untrusted` intermediates; panics with openssl's output unless it prints OK.
pub fn openssl_verify(ca_file: &Path, untrusted: &Path, leaf: &Path) {
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["verify", "-x509_strict", "-check_ss_sig", "-CAfile"])
        .arg(ca_file)
        .arg("-untrusted")
        .arg(untrusted)
        .arg(leaf);
    let out = run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim_end().ends_with(": OK"),
        "openssl verify did not say OK: {stdout}"
    );
}

/// `openssl x509 -noout <args>` of one certificate.
pub fn x509(cert: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(tool("openssl"));
    cmd.args(["x509", "-noout", "-in"]).arg(cert).args(args);
    String::from_utf8_lossy(&run(&mut cmd).stdout).to_string()
}

/// Severities that fail the lint. pkilint's scale is FATAL > ERROR > WARNING > NOTICE > INFO;
/// WARNING marks something RFC 5280 says SHOULD NOT happen, which a private CA has no reason
/// to do, so it fails too. NOTICE and INFO are printed, never fatal.
pub const PKILINT_FAILING: &[&str] = &["FATAL", "ERROR", "WARNING"];

/// Lint one PEM certificate with `lint_pkix_cert lint --severity INFO --format JSON`, print
/// every finding, and panic on any finding in [`PKILINT_FAILING`].
pub fn pkilint(cert: &Path, what: &str) {
    let mut cmd = Command::new(pkilint_bin());
    cmd.args([
        "lint",
        "--severity",
        "INFO",
        "--format",
        "JSON",
        "--document-format",
        "PEM",
    ])
    .arg(cert);
    // The exit status is the number of reported findings (INFO included), so it is not the
    // verdict; the JSON is.
    let out = output(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "pkilint gave no JSON report for {what} ({e}); status {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut findings = Vec::new();
    let mut failing = Vec::new();
    for result in report["results"].as_array().into_iter().flatten() {
        for finding in result["finding_descriptions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let severity = finding["severity"].as_str().unwrap_or("?");
            let line = format!(
                "{severity} {} at {} ({}){}",
                finding["code"].as_str().unwrap_or("?"),
                result["node_path"].as_str().unwrap_or("?"),
                result["validator"].as_str().unwrap_or("?"),
                finding["message"]
                    .as_str()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
            );
            if PKILINT_FAILING.contains(&severity) {
                failing.push(line.clone());
            }
            findings.push(line);
        }
    }
    eprintln!(
        "pkilint {what}: {} finding(s)\n  {}",
        findings.len(),
        findings.join("\n  ")
    );
    assert!(
        failing.is_empty(),
        "pkilint reports {} finding(s) at {PKILINT_FAILING:?} for {what} ({}):\n  {}\nall findings:\n  {}",
        failing.len(),
        cert.display(),
        failing.join("\n  "),
        findings.join("\n  ")
    );
}

/// A throwaway TLS identity for a split-mode gateway: a CA, and a leaf for 127.0.0.1 and
/// localhost signed by it (EC P-256). Returns (ca.pem, chain.pem, key.pem).
pub fn tls_identity(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = tool("openssl");
    let cnf = write(
        &dir.join("tls.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = certmesh-e2e\n\
         [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [v3_leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    );
    let (ca, ca_key) = (dir.join("tls-ca.pem"), dir.join("tls-ca.key"));
    let (leaf, key, req) = (
        dir.join("tls-leaf.pem"),
        dir.join("tls.key"),
        dir.join("tls.csr"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(Command::new(&openssl)
        .args(["req", "-x509", "-new", "-config"])
        .arg(&cnf)
        .args([
            "-extensions",
            "v3_ca",
            "-days",
            "2",
            "-subj",
            "/CN=certmesh e2e TLS CA",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(Command::new(&openssl)
        .args(["req", "-new", "-config"])
        .arg(&cnf)
        .args(["-subj", "/CN=127.0.0.1"])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&req));
    run(Command::new(&openssl)
        .args(["x509", "-req", "-in"])
        .arg(&req)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .args(["-set_serial", "4242", "-days", "2", "-extfile"])
        .arg(&cnf)
        .args(["-extensions", "v3_leaf", "-out"])
        .arg(&leaf));
    let chain = dir.join("tls-chain.pem");
    let chain_pem = fs::read_to_string(&leaf).expect("reading the TLS leaf")
        + &fs::read_to_string(&ca).expect("reading the TLS CA");
    write(&chain, chain_pem);
    (ca, chain, key)
}

/// A base64 key-encryption key file (32 random bytes), as `openssl rand -base64 32` makes it.
pub fn kek_file(dir: &Path) -> PathBuf {
    let out = run(Command::new(tool("openssl")).args(["rand", "-base64", "32"]));
    write(&dir.join("kek"), out.stdout)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// A migrated database with one bootstrap token (`certmesh migrate`, then `certmesh token
/// create --database-url` for tenant `default`, as `principal` when given): the token and a
/// file holding it under `dir`.
pub fn migrated_with_token(url: &str, dir: &Path, principal: Option<&str>) -> (String, PathBuf) {
    run(certmesh().args(["migrate", "--database-url", url]));
    let mut create = certmesh();
    create.args([
        "token",
        "create",
        "--database-url",
        url,
        "--tenant",
        "default",
        "--name",
        "e2e",
    ]);
    if let Some(principal) = principal {
        create.args(["--principal", principal]);
    }
    let token = String::from_utf8_lossy(&run(&mut create).stdout)
        .trim()
        .to_string();
    let file = write(&dir.join("token"), format!("{token}\n"));
    (token, file)
}

/// `Ok` once a cleartext (h2c) listener answers /healthz with 200.
pub fn plaintext_health(addr: &str) -> Result<(), String> {
    let out = output(Command::new(tool("curl")).args([
        "--silent",
        "--show-error",
        "--http2-prior-knowledge",
        "--max-time",
        "5",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        &format!("http://{addr}/healthz"),
    ]));
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() && code == "200" {
        Ok(())
    } else {
        Err(format!(
            "http://{addr}/healthz: {code} {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A fresh PostgreSQL database, dropped `WITH (FORCE)` when this value is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// Create `certmesh_e2e_<unique>` on the server `CERTMESH_TEST_DATABASE_URL` names.
    pub fn create() -> Self {
        let admin_url = env::var("CERTMESH_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!("CERTMESH_TEST_DATABASE_URL is unset: the PostgreSQL scenarios need a server (e.g. postgres://postgres@127.0.0.1:5432/postgres; the Makefile sets it)")
        });
        let name = format!("{}_{:x}", unique("certmesh_e2e_"), random_u64());
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) if !server.ends_with('/') && !admin_url.contains('?') => {
                format!("{server}/{name}")
            }
            _ => panic!(
                "CERTMESH_TEST_DATABASE_URL={admin_url} must be postgres://…/<database> without a query"
            ),
        };
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        Self {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let out = output(
            Command::new(tool("psql"))
                .arg(&self.admin_url)
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
                .arg(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                )),
        );
        if !out.status.success() {
            eprintln!(
                "dropping database {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Run one SQL statement with psql; panics on failure.
pub fn psql(url: &str, sql: &str) {
    run(Command::new(tool("psql"))
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql]));
}

/// 64 random bits (std seeds every `RandomState` from the OS), so names stay unique across
/// runs and concurrent test processes without reading the wall clock.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
