//! The job worker without a server: deploy jobs, server-side failures, and jobs it must refuse.

use std::sync::Arc;

use certmesh_agent::clock::TestClock;
use certmesh_agent::deploy::Deployer;
use certmesh_agent::jobs::{Work, Worker};
use certmesh_agent::state::{SafeId, StateDir, StatusBook};
use certmesh_proto::fleet::{
    AgentMessage, Binding, DeployTarget, Job, JobCertificate, JobFailed, JobResult,
    agent_message::Message as Up,
};
use tokio::sync::mpsc;

use crate::support::{Pki, install_provider, not_before};

struct Bench {
    dir: tempfile::TempDir,
    state: StateDir,
    worker: Worker,
    out: mpsc::Receiver<AgentMessage>,
}

impl Bench {
    fn new() -> Bench {
        install_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path().join("state"));
        state.create().expect("state");
        let clock = Arc::new(TestClock::at(not_before()));
        let status = Arc::new(StatusBook::open(state.clone(), clock.clone()));
        let (tx, out) = mpsc::channel(8);
        let worker = Worker::new(state.clone(), Deployer::new(clock), status, tx);
        Bench {
            dir,
            state,
            worker,
            out,
        }
    }

    fn job(&self, id: &str, kind: &str) -> Job {
        Job {
            job_id: id.into(),
            kind: kind.into(),
            binding: Some(Binding {
                id: "bd-1".into(),
                target: Some(DeployTarget {
                    cert_path: self.dir.path().join("cert.pem").display().to_string(),
                    key_path: self.dir.path().join("key.pem").display().to_string(),
                    ..DeployTarget::default()
                }),
                ..Binding::default()
            }),
            ..Job::default()
        }
    }

    async fn result(&mut self) -> JobResult {
        match self.out.recv().await.and_then(|m| m.message) {
            Some(Up::Result(result)) => result,
            other => panic!("expected a result, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_deploy_job_installs_with_the_key_already_on_the_host() {
    let mut bench = Bench::new();
    let pki = Pki::new("CA");
    let (key, cert) = pki.leaf(&["www.example.test"], &[]);
    std::fs::write(bench.dir.path().join("key.pem"), &key).expect("key");
    let mut job = bench.job("jb-d1", "deploy");
    job.certificate_pem = cert.to_pem();
    bench.worker.handle(Work::Job(Box::new(job))).await;
    let result = bench.result().await;
    assert_eq!(result.outcome, "installed", "{}", result.detail);
    assert_eq!(result.certificate_sha256, cert.fingerprint_sha256());
    let status = bench.state.load_status().expect("status");
    assert_eq!(status.results["bd-1"].serial, cert.serial().to_hex());

    // A certificate for another key is refused.
    let (_, other) = pki.leaf(&["www.example.test"], &[]);
    let mut job = bench.job("jb-d2", "deploy");
    job.certificate_pem = other.to_pem();
    bench.worker.handle(Work::Job(Box::new(job))).await;
    let result = bench.result().await;
    assert_eq!(result.outcome, "failed");
    assert!(
        result.detail.contains("not for the key"),
        "{}",
        result.detail
    );
}

#[tokio::test]
async fn a_final_server_failure_drops_the_pending_key_a_retryable_one_keeps_it() {
    let mut bench = Bench::new();
    for (id, will_retry) in [("jb-r", true), ("jb-f", false)] {
        bench
            .worker
            .handle(Work::Job(Box::new(bench.job(id, "issue"))))
            .await;
        assert!(matches!(
            bench.out.recv().await.and_then(|m| m.message),
            Some(Up::Csr(_))
        ));
        let key = bench
            .state
            .pending_key(&SafeId::parse("job", id).expect("id"));
        assert!(key.is_file());
        let failed = JobFailed {
            job_id: id.into(),
            reason: "PROFILE_DENIED".into(),
            message: "no".into(),
            will_retry,
        };
        bench.worker.handle(Work::Failed(failed)).await;
        assert_eq!(key.is_file(), will_retry, "{id}");
    }
}

#[tokio::test]
async fn jobs_it_cannot_act_on_are_reported_failed() {
    let mut bench = Bench::new();
    bench
        .worker
        .handle(Work::Job(Box::new(bench.job("jb-1", "rotate"))))
        .await;
    assert!(bench.result().await.detail.contains("unknown job kind"));

    bench
        .worker
        .handle(Work::Job(Box::new(bench.job("../../etc/passwd", "issue"))))
        .await;
    let result = bench.result().await;
    assert_eq!(result.outcome, "failed");
    assert!(
        result.detail.contains("not a plain identifier"),
        "{}",
        result.detail
    );

    let mut relative = bench.job("jb-2", "issue");
    if let Some(t) = relative.binding.as_mut().and_then(|b| b.target.as_mut()) {
        t.cert_path = "cert.pem".into();
    }
    bench.worker.handle(Work::Job(Box::new(relative))).await;
    assert!(bench.result().await.detail.contains("absolute"));

    let stray = JobCertificate {
        job_id: "jb-unknown".into(),
        ..JobCertificate::default()
    };
    bench.worker.handle(Work::Certificate(stray)).await;
    let result = bench.result().await;
    assert_eq!(result.outcome, "failed");
    assert!(
        result.detail.contains("no pending job"),
        "{}",
        result.detail
    );
}
