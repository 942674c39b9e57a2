//! Issuance throughput through the gateway, end to end: the real `certmesh` binary
//! (`CERTMESH_BIN`; `make bench` passes the release build), real TLS, real gRPC clients.
//!
//! Backends: dev mode on SQLite, and, when `CERTMESH_TEST_DATABASE_URL` is set, issuance and
//! gateway in one process on a fresh PostgreSQL database. `BENCH_CLIENTS` concurrent clients
//! (default 64) issue for `BENCH_SECONDS` (default 10) over a few TLS channels, cycling through
//! a fixed set of CSRs (no idempotency keys, so every call signs a fresh certificate). Loopback
//! only. Prints certs/s, p50/p99 latency, errors, and the machine.

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::{
    env, fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use certmesh_proto::issuance::{IssueRequest, issuance_service_client::IssuanceServiceClient};
use support::{
    Api, DevServer, PgDatabase, Process, certmesh, csr, free_port, health, kek_file, run, scratch,
    tls_identity, web_spec, write,
};
use tonic::{
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

/// Distinct CSRs made up front; openssl is too slow to make one per request.
const CSRS: usize = 64;
/// TLS channels shared by the clients (HTTP/2 multiplexes the rest).
const CHANNELS: usize = 4;
/// Upper bound on requests per client, so a misbehaving server cannot loop us forever.
const MAX_REQUESTS_PER_CLIENT: usize = 1_000_000;

fn env_number(name: &str, default: u64) -> u64 {
    match env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[derive(Debug, Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
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

/// A ready-to-load gateway: its REST API (for the profile) and the CA bundle for gRPC.
struct Target {
    api: Api,
    // Kept alive for the duration of the run.
    _guards: Vec<Box<dyn std::any::Any>>,
}

fn dev_target() -> Target {
    let server = DevServer::start();
    let api = server.api.clone();
    Target {
        api,
        _guards: vec![Box::new(server)],
    }
}

fn postgres_target() -> Target {
    let db = PgDatabase::create();
    let dir = scratch();
    let created = run(certmesh().args([
        "token",
        "create",
        "--database-url",
        &db.url,
        "--name",
        "bench",
    ]));
    let token = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let token_file = write(&dir.path().join("token"), &token);
    let keys = dir.path().join("keys");
    fs::create_dir_all(&keys).expect("creating the key directory");
    let kek = kek_file(dir.path());
    let (ca, chain, key) = tls_identity(dir.path());
    let port = free_port();
    let mut cmd = certmesh();
    cmd.args([
        "server",
        "--services",
        "issuance,gateway",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .args(["--database-url", &db.url])
    .arg("--key-dir")
    .arg(&keys)
    .arg("--kek-file")
    .arg(&kek)
    .arg("--tls-cert")
    .arg(&chain)
    .arg("--tls-key")
    .arg(&key);
    let mut process = Process::spawn("certmesh-pg", cmd, dir.path());
    let base = format!("https://127.0.0.1:{port}");
    process.wait_until("/healthz over TLS", || health(&base, &ca));
    let api = Api {
        base,
        ca,
        token,
        token_file,
    };
    // Drop order: process, then directory, then database.
    Target {
        api,
        _guards: vec![Box::new(process), Box::new(dir), Box::new(db)],
    }
}

async fn channel(url: &str, ca: &Path) -> Channel {
    let pem = fs::read(ca).unwrap_or_else(|e| panic!("reading {}: {e}", ca.display()));
    Endpoint::from_shared(url.to_string())
        .expect("gateway URL")
        .tcp_nodelay(true)
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
        .expect("TLS config")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e:?}"))
}

async fn load(
    api: &Api,
    csrs: Arc<Vec<String>>,
    clients: usize,
    seconds: u64,
) -> (Outcome, Duration) {
    let bearer: MetadataValue<_> = format!("Bearer {}", api.token)
        .parse()
        .expect("token fits in a header");
    let mut channels = Vec::new();
    for _ in 0..CHANNELS.min(clients) {
        channels.push(channel(&api.base, &api.ca).await);
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client_index in 0..clients {
        let channel = channels[client_index % channels.len()].clone();
        let bearer = bearer.clone();
        let csrs = csrs.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = IssuanceServiceClient::with_interceptor(
                channel,
                move |mut req: tonic::Request<()>| {
                    req.metadata_mut().insert("authorization", bearer.clone());
                    Ok(req)
                },
            );
            let mut outcome = Outcome::default();
            for n in 0..MAX_REQUESTS_PER_CLIENT {
                if Instant::now() >= deadline {
                    break;
                }
                let request = IssueRequest {
                    csr: csrs[(client_index + n * clients) % csrs.len()].clone(),
                    profile: "bench".into(),
                    validity: "24h".into(),
                    idempotency_key: String::new(),
                };
                let sent = Instant::now();
                match client.issue(request).await {
                    Ok(_) => outcome.latencies.push(sent.elapsed()),
                    Err(status) => {
                        outcome.errors += 1;
                        outcome.first_error.get_or_insert_with(|| {
                            format!("{:?}: {}", status.code(), status.message())
                        });
                    }
                }
            }
            outcome
        }));
    }
    let mut total = Outcome::default();
    for task in tasks {
        let outcome = task.await.expect("a client task panicked");
        total.latencies.extend(outcome.latencies);
        total.errors += outcome.errors;
        if total.first_error.is_none() {
            total.first_error = outcome.first_error;
        }
    }
    (total, start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn bench(
    name: &str,
    target: &Target,
    runtime: &tokio::runtime::Runtime,
    clients: usize,
    seconds: u64,
    dir: &Path,
) {
    target.api.create_profile("bench", &web_spec());
    let csrs: Vec<String> = (0..CSRS)
        .map(|i| csr(dir, &format!("bench-{i}.example.com"), "P-256", &[]).pem)
        .collect();
    let (mut outcome, elapsed) =
        runtime.block_on(load(&target.api, Arc::new(csrs), clients, seconds));
    outcome.latencies.sort();
    let ok = outcome.latencies.len();
    println!("{name}");
    println!(
        "  clients {clients}, {:.1} s, {ok} certificates, {} errors",
        elapsed.as_secs_f64(),
        outcome.errors
    );
    println!(
        "  throughput {:.1} certs/s",
        ok as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&outcome.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&outcome.latencies, 0.99).as_secs_f64() * 1e3,
        outcome
            .latencies
            .last()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3
    );
    if let Some(error) = &outcome.first_error {
        println!("  first error: {error}");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not support.
    if env::args().skip(1).any(|a| a == "--list") {
        return;
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("installing the ring crypto provider");
    let clients = env_number("BENCH_CLIENTS", 64).max(1) as usize;
    let seconds = env_number("BENCH_SECONDS", 10).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "certmesh issuance benchmark: {}",
        support::certmesh_bin().display()
    );
    println!("machine: {}", machine());

    let work = scratch();
    let dev = dev_target();
    bench(
        "sqlite (server --dev)",
        &dev,
        &runtime,
        clients,
        seconds,
        work.path(),
    );
    drop(dev);
    match env::var("CERTMESH_TEST_DATABASE_URL") {
        Ok(_) => {
            let pg = postgres_target();
            bench(
                "postgresql (--services issuance,gateway, one process)",
                &pg,
                &runtime,
                clients,
                seconds,
                work.path(),
            );
        }
        Err(_) => println!("postgresql: skipped (CERTMESH_TEST_DATABASE_URL is unset)"),
    }
}
