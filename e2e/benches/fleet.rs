//! Many agents against one fleet replica, end to end: the real `certmesh server --dev`
//! (`CERTMESH_BIN`; `make bench` passes the release build) and `BENCH_AGENTS` simulated agents
//! (default 10,000) built on the real agent's client code (`certmesh_agent::channel`, the
//! crypto boundary's host keys and CSRs, the `certmesh.fleet.v1` stream).
//!
//! Each simulated agent enrolls with its own bootstrap token, opens its mTLS stream, says
//! Hello and sends heartbeats; for every job it acks, makes a key and sends the CSR, and reports
//! `installed` for the certificate (it writes no files). Measured:
//!
//! 1. the server's resident memory per open stream (VmRSS after all streams are up, minus
//!    before, divided by the number of streams);
//! 2. a storm: one group binding for every agent, then renew-now for every certificate: the
//!    time until every agent received its job (dispatched) and until every agent reported
//!    (issued and done), per wave.
//!
//! Loopback only; every loop is bounded in count and time. Prints the figures and the machine.

#[allow(dead_code)]
#[path = "../tests/it/support.rs"]
mod support;

use std::{
    env, fs,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use certmesh_agent::channel::{ServerTls, connect};
use certmesh_crypto::{keys::KeySpec, tls::host_key_and_csr};
use certmesh_proto::fleet::{
    self as pb, agent_message::Message as In, agent_service_client::AgentServiceClient,
    fleet_service_client::FleetServiceClient, server_message::Message as Out,
};
use support::DevServer;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, metadata::MetadataValue, transport::Channel};

/// Concurrent enrollments and API calls.
const PARALLEL: usize = 64;
/// The longest any phase may take before the bench gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

fn env_number(name: &str, default: u64) -> u64 {
    env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|i| {
            i.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {mem}")
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Counters the simulated agents bump.
#[derive(Default)]
struct Tally {
    online: AtomicUsize,
    jobs: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicUsize,
}

/// Adds the admin's bearer token to every call.
#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

type Admin = FleetServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

fn admin(channel: Channel, token: &str) -> Admin {
    let bearer = format!("Bearer {token}").parse().expect("token header");
    FleetServiceClient::with_interceptor(channel, Bearer(bearer))
}

/// Retries a call refused by the gateway's rate limit.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    for _ in 0..100 {
        match call().await {
            Err(s) if s.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
    call().await
}

/// One simulated agent: enroll, then hold the stream until the process ends.
async fn agent(
    tls: ServerTls,
    secret: String,
    tally: Arc<Tally>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<(), String> {
    let mut ready = Some(ready);
    let (key, csr) =
        host_key_and_csr(KeySpec::EcdsaP256, Some("bench"), &[], &[]).map_err(|e| e.to_string())?;
    let plain = connect(&tls, None).await.map_err(|e| e.to_string())?;
    let enrolled = AgentServiceClient::new(plain)
        .enroll(pb::EnrollRequest {
            bootstrap_token: secret,
            csr: csr.to_pem(),
            host: Some(pb::HostFacts {
                hostname: "bench".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                version: "bench".into(),
            }),
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let channel = connect(&tls, Some((&enrolled.certificate_pem, &key)))
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(8);
    let say = |m: In| pb::AgentMessage { message: Some(m) };
    tx.send(say(In::Hello(pb::Hello::default())))
        .await
        .map_err(|e| e.to_string())?;
    let mut inbound = AgentServiceClient::new(channel)
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let heartbeat = tx.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            let beat = pb::AgentMessage {
                message: Some(In::Heartbeat(pb::Heartbeat::default())),
            };
            if heartbeat.send(beat).await.is_err() {
                return;
            }
        }
    });
    while let Some(message) = inbound.message().await.map_err(|e| e.to_string())? {
        match message.message {
            Some(Out::Welcome(_)) => {
                tally.online.fetch_add(1, Ordering::Relaxed);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Some(Out::Job(job)) => {
                tally.jobs.fetch_add(1, Ordering::Relaxed);
                let names = job
                    .binding
                    .and_then(|b| b.certificate)
                    .map(|c| c.dns_names)
                    .unwrap_or_default();
                let (_, csr) = host_key_and_csr(KeySpec::EcdsaP256, None, &names, &[])
                    .map_err(|e| e.to_string())?;
                let ack = In::Ack(pb::JobAck {
                    job_id: job.job_id.clone(),
                });
                let csr = In::Csr(pb::JobCsr {
                    job_id: job.job_id,
                    csr: csr.to_pem(),
                });
                for m in [ack, csr] {
                    tx.send(say(m)).await.map_err(|e| e.to_string())?;
                }
            }
            Some(Out::Certificate(cert)) => {
                let result = In::Result(pb::JobResult {
                    job_id: cert.job_id,
                    outcome: "installed".into(),
                    ..pb::JobResult::default()
                });
                tx.send(say(result)).await.map_err(|e| e.to_string())?;
                tally.done.fetch_add(1, Ordering::Relaxed);
            }
            Some(Out::JobFailed(_)) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
            }
            Some(Out::Retired(_)) => return Ok(()),
            Some(Out::IdentityRenewed(_)) | None => {}
        }
    }
    Ok(())
}

async fn wait_for(what: &str, target: usize, count: impl Fn() -> usize) {
    let start = Instant::now();
    while count() < target {
        assert!(
            start.elapsed() < PHASE_LIMIT,
            "{what}: {} of {target} after {PHASE_LIMIT:?}",
            count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn main() {
    if env::args().skip(1).any(|a| a == "--list") {
        return;
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("installing the ring crypto provider");
    let agents = env_number("BENCH_AGENTS", 10_000).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!("certmesh fleet benchmark: {agents} simulated agents against one fleet replica");
    println!("machine: {}", machine());
    let server = DevServer::start();
    let pid = server.process.id().expect("the server's pid");
    runtime.block_on(run(&server, pid, agents));
}

async fn run(server: &DevServer, pid: u32, agents: usize) {
    let bundle = fs::read(server.bundle()).expect("the dev CA bundle");
    let gateway = connect(
        &ServerTls {
            server: server.api.base.clone(),
            ca_bundle_pem: bundle.clone(),
            server_name: None,
        },
        None,
    )
    .await
    .expect("the gateway");
    let mut fleet = admin(gateway.clone(), &server.api.token);
    server.api.create_profile(
        "bench",
        &serde_json::json!({
            "allowed_key_algorithms": ["ECDSA"], "min_ecdsa_bits": 256, "min_rsa_bits": 2048,
            "allowed_ekus": ["serverAuth"], "max_validity": "2160h",
            "permitted_dns_suffixes": ["bench.test"], "require_sans": true,
        }),
    );

    let started = Instant::now();
    let mut secrets = Vec::with_capacity(agents);
    for _ in 0..agents {
        let request = pb::CreateBootstrapTokenRequest {
            group: "bench".into(),
            expires_in: "2h".into(),
            description: String::new(),
        };
        let reply = patiently(|| {
            let mut f = fleet.clone();
            let r = request.clone();
            async move { f.create_bootstrap_token(r).await }
        })
        .await
        .expect("a bootstrap token");
        secrets.push(reply.into_inner().secret);
    }
    println!("bootstrap tokens: {agents} in {:.1?}", started.elapsed());

    let rss_before = rss_kib(pid);
    let tally = Arc::new(Tally::default());
    let tls = ServerTls {
        server: server.fleet.clone(),
        ca_bundle_pem: bundle,
        server_name: None,
    };
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for secret in secrets {
        let (tls, tally, errors) = (tls.clone(), tally.clone(), errors.clone());
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let (ready, online) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            // The permit is held until this agent is online (or failed): at most PARALLEL
            // enrollments and handshakes overlap.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(60), online).await;
                drop(permit);
            });
            if let Err(e) = agent(tls, secret, tally, ready).await
                && errors.fetch_add(1, Ordering::Relaxed) < 3
            {
                eprintln!("agent failed: {e}");
            }
        });
    }
    wait_for("streams open", agents, || {
        tally.online.load(Ordering::Relaxed) + errors.load(Ordering::Relaxed)
    })
    .await;
    let up = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid);
    let streams = tally.online.load(Ordering::Relaxed);
    println!(
        "streams: {streams} open ({} failed) in {up:.1?} (enroll + mTLS + Hello, {PARALLEL} at a time)",
        errors.load(Ordering::Relaxed)
    );
    println!(
        "server RSS: {:.1} MiB before, {:.1} MiB with {streams} streams: {:.1} KiB per stream",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / streams.max(1) as f64
    );

    // Wave 1: one binding for the whole group: an issue job per agent.
    let started = Instant::now();
    fleet
        .create_binding(pb::CreateBindingRequest {
            name: "bench".into(),
            agent_id: String::new(),
            group: "bench".into(),
            certificate: Some(pb::CertificateSpec {
                dns_names: vec!["www.bench.test".into()],
                profile: "bench".into(),
                ..pb::CertificateSpec::default()
            }),
            target: Some(pb::DeployTarget {
                cert_path: "/nonexistent/bench.pem".into(),
                key_path: "/nonexistent/bench.key".into(),
                ..pb::DeployTarget::default()
            }),
        })
        .await
        .expect("the group binding");
    wait_for("issue jobs dispatched", streams, || {
        tally.jobs.load(Ordering::Relaxed)
    })
    .await;
    let dispatched = started.elapsed();
    // Done when the server recorded every report.
    let deployments = loop {
        let all = fleet
            .list_deployments(pb::ListDeploymentsRequest::default())
            .await
            .expect("deployments")
            .into_inner()
            .deployments;
        let installed = all.iter().filter(|d| d.outcome == "installed").count();
        if installed + tally.failed.load(Ordering::Relaxed) >= streams {
            break all;
        }
        assert!(
            started.elapsed() < PHASE_LIMIT,
            "wave 1: {installed} of {streams} recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "wave 1 (group binding, issue): {streams} jobs dispatched in {dispatched:.1?}, all reported and recorded in {:.1?} ({} failed)",
        started.elapsed(),
        tally.failed.load(Ordering::Relaxed)
    );

    // Wave 2: renew-now for every certificate: a renew job per agent, pushed down the streams.
    let (jobs_before, done_before) = (
        tally.jobs.load(Ordering::Relaxed),
        tally.done.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    let serials: Vec<String> = deployments.into_iter().map(|d| d.serial).collect();
    let renews = serials.len();
    let gate = Arc::new(Semaphore::new(PARALLEL));
    let mut calls = Vec::with_capacity(renews);
    for serial in serials {
        let permit = gate.clone().acquire_owned().await.expect("semaphore");
        let f = fleet.clone();
        calls.push(tokio::spawn(async move {
            let r = patiently(|| {
                let mut f = f.clone();
                let s = serial.clone();
                async move { f.renew_now(pb::RenewNowRequest { serial: s }).await }
            })
            .await;
            drop(permit);
            r.map_err(|e| eprintln!("renew-now failed: {e}")).is_ok()
        }));
    }
    let mut accepted = 0;
    for call in calls {
        accepted += usize::from(call.await.unwrap_or(false));
    }
    let requested = started.elapsed();
    wait_for("renew jobs dispatched", jobs_before + accepted, || {
        tally.jobs.load(Ordering::Relaxed)
    })
    .await;
    let dispatched = started.elapsed();
    wait_for("renew jobs done", done_before + accepted, || {
        tally.done.load(Ordering::Relaxed)
    })
    .await;
    println!(
        "wave 2 (renew-now x{accepted}): requested in {requested:.1?}, dispatched in {dispatched:.1?}, all reported in {:.1?}",
        started.elapsed()
    );
    let _ = &mut fleet;
}
