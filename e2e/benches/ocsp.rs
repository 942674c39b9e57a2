//! OCSP responder throughput, end to end: the real `certmesh server --dev` (`CERTMESH_BIN`;
//! `make bench` passes the release build) answering a real HTTP load generator, `wrk`, on its
//! PKI listener.
//!
//! One leaf is issued through the API; `openssl ocsp -no_nonce -reqout` makes its DER request,
//! which is sent once by POST and once by GET and the answers checked with `openssl ocsp` (both
//! must say `good`, which also warms the responder's cache). Then `wrk` drives
//! `<pki>/.well-known/pki/ocsp` for `BENCH_SECONDS` (default 10) each way: POST with
//! `Content-Type: application/ocsp-request` (a small Lua script sets the binary body) and GET with
//! the percent-encoded base64 request in the path. `BENCH_CONNECTIONS` (default 32) connections
//! on `BENCH_THREADS` (default 1) wrk threads: the load generator shares the machine's cores with
//! the server. Prints responses/s, p50/p99/max latency, errors, and the machine.
//!
//! Why wrk (Debian's `wrk`, `make bench` installs it): it is C on epoll and spends little CPU per
//! request, which matters when it shares two cores with the server, and it installs in seconds;
//! `oha` from crates.io builds for many minutes on two cores.

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use support::{DevServer, csr, output, pem_blocks, run, scratch, tool, unique, web_spec, write};

const OCSP_PATH: &str = "/.well-known/pki/ocsp";

fn env_number(name: &str, default: u64) -> u64 {
    match env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{cpus} CPU(s), {model}, Linux {kernel}")
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews the figures.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Base64 percent-encoded for a URL path segment (RFC 6960 Appendix A.1).
fn percent_encode_base64(der: &[u8]) -> String {
    B64.encode(der)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// What the bench needs from the running server: the request, its files and the URLs.
struct Setup {
    request: PathBuf,
    issuing: PathBuf,
    leaf: PathBuf,
    root: PathBuf,
    post_url: String,
    get_url: String,
}

/// Issues one leaf, writes it and its issuing CA, and makes the DER OCSP request for it.
fn setup(server: &DevServer, dir: &Path) -> Setup {
    server.api.create_profile("web", &web_spec());
    let issued = server
        .api
        .issue(
            &csr(dir, "ocsp-bench.example.com", "P-256", &[]),
            "web",
            None,
            None,
        )
        .ok();
    let cert = &issued["certificate"];
    let leaf = write(
        &dir.join("leaf.pem"),
        cert["certificate_pem"].as_str().expect("certificate_pem"),
    );
    let chain = pem_blocks(cert["chain_pem"].as_str().expect("chain_pem"));
    let issuing = write(&dir.join("issuing.pem"), &chain[0]);
    let request = dir.join("req.der");
    run(Command::new(tool("openssl"))
        .args(["ocsp", "-issuer"])
        .arg(&issuing)
        .arg("-cert")
        .arg(&leaf)
        .args(["-no_nonce", "-reqout"])
        .arg(&request));
    let der = fs::read(&request).expect("reading the OCSP request");
    let post_url = format!("{}{OCSP_PATH}", server.pki);
    let get_url = format!("{post_url}/{}", percent_encode_base64(&der));
    Setup {
        request,
        issuing,
        leaf,
        root: server.bundle(),
        post_url,
        get_url,
    }
}

/// Sends the request once with curl (POST or GET) and checks with `openssl ocsp` that the
/// answer is a verified `good` for the leaf. The first call also fills the responder's cache.
fn check_answer(s: &Setup, dir: &Path, method: &str) {
    let response = dir.join(unique("resp"));
    let mut curl = Command::new(tool("curl"));
    curl.args(["-sS", "--fail", "-o"]).arg(&response);
    match method {
        "POST" => curl
            .args([
                "-H",
                "Content-Type: application/ocsp-request",
                "--data-binary",
            ])
            .arg(format!("@{}", s.request.display()))
            .arg(&s.post_url),
        _ => curl.arg(&s.get_url),
    };
    run(&mut curl);
    let out = output(
        Command::new(tool("openssl"))
            .args(["ocsp", "-respin"])
            .arg(&response)
            .arg("-issuer")
            .arg(&s.issuing)
            .arg("-cert")
            .arg(&s.leaf)
            .arg("-CAfile")
            .arg(&s.root),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains(": good") && text.contains("verify OK"),
        "the {method} answer is not a verified `good`:\n{text}"
    );
}

/// What wrk reported.
#[derive(Debug, Default)]
struct WrkReport {
    requests: u64,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// "Non-2xx or 3xx responses" (the responder never answers 3xx without If-None-Match).
    non_2xx: u64,
    /// "Socket errors: connect …, read …, write …, timeout …", summed.
    socket_errors: u64,
}

/// A wrk duration (`512.00us`, `1.20ms`, `2.00s`, `1.00m`) in milliseconds.
fn wrk_ms(s: &str) -> f64 {
    let (number, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or_else(|| panic!("wrk duration {s:?} has no unit"));
    let n: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("wrk duration {s:?}"));
    n * match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => panic!("wrk duration {s:?} has an unknown unit"),
    }
}

fn parse_wrk(text: &str) -> WrkReport {
    let mut r = WrkReport::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Latency", _avg, _stdev, max, ..] => r.max_ms = wrk_ms(max),
            ["50%", v] => r.p50_ms = wrk_ms(v),
            ["99%", v] => r.p99_ms = wrk_ms(v),
            [n, "requests", "in", secs, ..] => {
                r.requests = n.parse().unwrap_or_default();
                r.seconds = wrk_ms(secs.trim_end_matches(',')) / 1e3;
            }
            ["Requests/sec:", v] => r.per_second = v.parse().unwrap_or_default(),
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().unwrap_or_default(),
            ["Socket", "errors:", rest @ ..] => {
                r.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    assert!(
        r.requests > 0 && r.per_second > 0.0,
        "could not read wrk's report:\n{text}"
    );
    r
}

/// Runs wrk against `url`, with `script` (a Lua file) if given.
fn wrk(url: &str, script: Option<&Path>, threads: u64, connections: u64, seconds: u64) -> String {
    let mut cmd = Command::new(tool("wrk"));
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", "5s", "--latency"]);
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(url);
    String::from_utf8_lossy(&run(&mut cmd).stdout).into_owned()
}

fn report(name: &str, text: &str, threads: u64, connections: u64) {
    let r = parse_wrk(text);
    println!("{name}");
    println!(
        "  wrk: {threads} thread(s), {connections} connections, {:.1} s, {} responses",
        r.seconds, r.requests
    );
    println!("  throughput {:.0} responses/s", r.per_second);
    println!(
        "  latency p50 {:.3} ms, p99 {:.3} ms, max {:.2} ms",
        r.p50_ms, r.p99_ms, r.max_ms
    );
    println!(
        "  errors: {} non-2xx, {} socket errors",
        r.non_2xx, r.socket_errors
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `--list` asks for the names of tests, of which we have none.
    if env::args().skip(1).any(|a| a == "--list") {
        return;
    }
    let seconds = env_number("BENCH_SECONDS", 10).max(1);
    let connections = env_number("BENCH_CONNECTIONS", 32).max(1);
    let threads = env_number("BENCH_THREADS", 1).clamp(1, connections);
    tool("wrk");
    println!(
        "certmesh OCSP benchmark: {}",
        support::certmesh_bin().display()
    );
    println!("machine: {}", machine());
    println!("load average at start: {}", load_average());

    let server = DevServer::start();
    let work = scratch();
    let s = setup(&server, work.path());
    check_answer(&s, work.path(), "POST");
    check_answer(&s, work.path(), "GET");
    println!(
        "request: {} bytes DER, no nonce (answered from the responder's cache); GET path {} bytes",
        fs::metadata(&s.request).map(|m| m.len()).unwrap_or(0),
        s.get_url.len() - s.post_url.len()
    );

    // wrk sends the body as a Lua string: read it in binary mode.
    let script = write(
        &work.path().join("post.lua"),
        format!(
            "wrk.method = \"POST\"\n\
             wrk.body = io.open({:?}, \"rb\"):read(\"*a\")\n\
             wrk.headers[\"Content-Type\"] = \"application/ocsp-request\"\n",
            s.request.display().to_string()
        ),
    );
    let post = wrk(&s.post_url, Some(&script), threads, connections, seconds);
    report("POST /.well-known/pki/ocsp", &post, threads, connections);
    let get = wrk(&s.get_url, None, threads, connections, seconds);
    report(
        "GET /.well-known/pki/ocsp/{base64}",
        &get,
        threads,
        connections,
    );
    // The server must still be up and answering correctly after the load.
    check_answer(&s, work.path(), "GET");
    drop(server);
}
