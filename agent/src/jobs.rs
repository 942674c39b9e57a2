//! What a job does on the host. One worker takes jobs, certificates and failures in the order
//! the server sent them and works through them one at a time, so two deploys never race on
//! the same files, while the stream keeps heartbeating.
//!
//! Issue and renew jobs make the key here: it is written to `pending/<job>.key` (0600) before
//! the CSR leaves, and a retried job reuses it, because the server issues under an idempotency
//! key derived from the job and must see the same public key again. The job itself is kept in
//! `pending/<job>.job.json`, so a certificate that arrives after a restart still finds its
//! binding. Both files go once the result is sent, or when the server gives up on the job.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use certmesh_crypto::cert::Certificate;
use certmesh_crypto::keys::KeySpec;
use certmesh_crypto::tls::{csr_for_key, host_key_and_csr};
use certmesh_proto::fleet::{
    AgentMessage, Binding, Job, JobCertificate, JobCsr, JobFailed, JobResult, agent_message,
};
use tokio::sync::mpsc;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::deploy::{Deployer, Material, Outcome, OutcomeKind, Target};
use crate::error::{AgentError, Result};
use crate::state::{JobRecord, SafeId, StateDir, StatusBook};

/// Work for the worker, in stream order.
#[derive(Clone, Debug)]
pub enum Work {
    /// A new (or retried) job.
    Job(Box<Job>),
    /// The certificate issued for a job's CSR.
    Certificate(JobCertificate),
    /// The server could not do its part.
    Failed(JobFailed),
}

/// The job worker.
#[derive(Debug)]
pub struct Worker {
    state: StateDir,
    deployer: Deployer,
    status: Arc<StatusBook>,
    out: mpsc::Sender<AgentMessage>,
    jobs: HashMap<String, Job>,
}

impl Worker {
    /// A worker sending its CSRs and results to `out`.
    pub fn new(
        state: StateDir,
        deployer: Deployer,
        status: Arc<StatusBook>,
        out: mpsc::Sender<AgentMessage>,
    ) -> Self {
        Worker {
            state,
            deployer,
            status,
            out,
            jobs: HashMap::new(),
        }
    }

    /// Works until `work` closes.
    pub async fn run(mut self, mut work: mpsc::Receiver<Work>) {
        while let Some(item) = work.recv().await {
            self.handle(item).await;
        }
    }

    /// Handles one item.
    pub async fn handle(&mut self, work: Work) {
        match work {
            Work::Job(job) => self.job(*job).await,
            Work::Certificate(cert) => self.certificate(cert).await,
            Work::Failed(failed) => self.failed(&failed),
        }
    }

    async fn job(&mut self, job: Job) {
        let job_id = job.job_id.clone();
        info!(%job_id, kind = %job.kind, attempt = job.attempt, "Job received.");
        let result = match job.kind.as_str() {
            "issue" | "renew" => self.request_certificate(&job).await,
            "deploy" => {
                self.deploy_current(&job).await;
                Ok(())
            }
            other => Err(AgentError::protocol(format!("unknown job kind {other:?}"))),
        };
        if let Err(e) = result {
            self.report(&job, "", &failed(e)).await;
        }
    }

    /// issue / renew: keep (or reuse) the key, send the CSR.
    async fn request_certificate(&mut self, job: &Job) -> Result<()> {
        let id = SafeId::parse("job id", &job.job_id)?;
        let binding = binding_of(job)?;
        target_of(binding)?;
        let spec = binding.certificate.clone().unwrap_or_default();
        let key_type = match spec.key_type.trim() {
            "" => KeySpec::EcdsaP256,
            other => KeySpec::from_str(other).map_err(|_| {
                AgentError::protocol(format!("binding key_type {other:?} is not supported"))
            })?,
        };
        let ips = spec
            .ip_addresses
            .iter()
            .map(|ip| {
                IpAddr::from_str(ip)
                    .map_err(|_| AgentError::protocol(format!("{ip:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>>>()?;
        let cn = Some(spec.common_name.as_str()).filter(|cn| !cn.is_empty());
        self.state.create_pending()?;
        self.state.write_json(&self.state.pending_job(&id), job)?;
        let key_path = self.state.pending_key(&id);
        let csr = match self.state.read_text(&key_path)?.map(Zeroizing::new) {
            Some(key) => csr_for_key(&key, cn, &spec.dns_names, &ips)
                .map_err(|e| AgentError::crypto("making the CSR", e))?,
            None => {
                let (key, csr) = host_key_and_csr(key_type, cn, &spec.dns_names, &ips)
                    .map_err(|e| AgentError::crypto("making the key and CSR", e))?;
                // The key is on disk before anything is sent, so a retry finds it.
                self.state.write_private(&key_path, key.as_bytes())?;
                csr
            }
        };
        self.jobs.insert(job.job_id.clone(), job.clone());
        self.send(agent_message::Message::Csr(JobCsr {
            job_id: job.job_id.clone(),
            csr: csr.to_pem(),
        }))
        .await;
        Ok(())
    }

    /// deploy: install the current certificate with the key already at the key path.
    async fn deploy_current(&mut self, job: &Job) {
        let outcome = match self.try_deploy_current(job).await {
            Ok(outcome) => outcome,
            Err(e) => failed(e),
        };
        self.report(job, &serial_of(&job.certificate_pem, ""), &outcome)
            .await;
    }

    async fn try_deploy_current(&self, job: &Job) -> Result<Outcome> {
        let binding = binding_of(job)?;
        let target = target_of(binding)?;
        let key = std::fs::read_to_string(&target.key_path)
            .map(Zeroizing::new)
            .map_err(|e| {
                AgentError::io(
                    format!("reading the key at {}", target.key_path.display()),
                    e,
                )
            })?;
        let material = Material {
            leaf_pem: &job.certificate_pem,
            chain_pem: &job.chain_pem,
            key_pem: &key,
        };
        let backups = self
            .state
            .backups(&SafeId::parse("binding id", &binding.id)?);
        Ok(self.deployer.deploy(&target, material, &backups).await)
    }

    async fn certificate(&mut self, cert: JobCertificate) {
        let job = match self.pending_job(&cert.job_id) {
            Ok(job) => job,
            Err(e) => {
                warn!(job_id = %cert.job_id, error = %e, "A certificate arrived for an unknown job.");
                let outcome = failed(e);
                let unknown = Job {
                    job_id: cert.job_id.clone(),
                    ..Job::default()
                };
                self.report(&unknown, &cert.serial, &outcome).await;
                return;
            }
        };
        let outcome = match self.install_issued(&job, &cert).await {
            Ok(outcome) => outcome,
            Err(e) => failed(e),
        };
        let serial = serial_of(&cert.certificate_pem, &cert.serial);
        self.report(&job, &serial, &outcome).await;
        self.forget(&cert.job_id);
    }

    async fn install_issued(&self, job: &Job, cert: &JobCertificate) -> Result<Outcome> {
        let id = SafeId::parse("job id", &job.job_id)?;
        let binding = binding_of(job)?;
        let target = target_of(binding)?;
        let key = self
            .state
            .read_text(&self.state.pending_key(&id))?
            .map(Zeroizing::new)
            .ok_or_else(|| AgentError::protocol("no pending key for this job"))?;
        let material = Material {
            leaf_pem: &cert.certificate_pem,
            chain_pem: &cert.chain_pem,
            key_pem: &key,
        };
        let backups = self
            .state
            .backups(&SafeId::parse("binding id", &binding.id)?);
        // Deploy refuses a certificate that is not for the pending key before touching files.
        Ok(self.deployer.deploy(&target, material, &backups).await)
    }

    fn failed(&mut self, failed: &JobFailed) {
        warn!(
            job_id = %failed.job_id,
            reason = %failed.reason,
            message = %failed.message,
            will_retry = failed.will_retry,
            "The server could not complete the job."
        );
        if !failed.will_retry {
            self.forget(&failed.job_id);
        }
    }

    fn pending_job(&self, job_id: &str) -> Result<Job> {
        if let Some(job) = self.jobs.get(job_id) {
            return Ok(job.clone());
        }
        let id = SafeId::parse("job id", job_id)?;
        self.state
            .read_json(&self.state.pending_job(&id))?
            .ok_or_else(|| AgentError::protocol("no pending job with this id"))
    }

    /// Drops a job's key and record.
    fn forget(&mut self, job_id: &str) {
        self.jobs.remove(job_id);
        let Ok(id) = SafeId::parse("job id", job_id) else {
            return;
        };
        for path in [self.state.pending_key(&id), self.state.pending_job(&id)] {
            if let Err(e) = self.state.remove(&path) {
                warn!(%job_id, error = %e, "Removing a pending job file failed.");
            }
        }
    }

    async fn report(&self, job: &Job, serial: &str, outcome: &Outcome) {
        let binding_id = job.binding.as_ref().map(|b| b.id.as_str()).unwrap_or("");
        let kind = outcome.kind.as_str();
        match outcome.kind {
            OutcomeKind::Verified | OutcomeKind::Installed | OutcomeKind::Unchanged => {
                info!(job_id = %job.job_id, %binding_id, %serial, outcome = kind, detail = %outcome.detail, "Job done.");
            }
            OutcomeKind::Mismatch | OutcomeKind::Unreachable | OutcomeKind::Failed => {
                warn!(job_id = %job.job_id, %binding_id, %serial, outcome = kind, detail = %outcome.detail, "Job did not succeed.");
            }
        }
        if !binding_id.is_empty() {
            let record = JobRecord {
                job_id: job.job_id.clone(),
                kind: job.kind.clone(),
                serial: serial.to_owned(),
                outcome: kind.to_owned(),
                detail: outcome.detail.clone(),
                certificate_sha256: outcome.certificate_sha256.clone(),
                at: self.status.now(),
            };
            if let Err(e) = self.status.record(binding_id, record) {
                warn!(error = %e, "Writing status.json failed.");
            }
        }
        self.send(agent_message::Message::Result(JobResult {
            job_id: job.job_id.clone(),
            outcome: kind.to_owned(),
            detail: outcome.detail.clone(),
            certificate_sha256: outcome.certificate_sha256.clone(),
            served_sha256: outcome.served_sha256.clone(),
        }))
        .await;
    }

    async fn send(&self, message: agent_message::Message) {
        let message = AgentMessage {
            message: Some(message),
        };
        if self.out.send(message).await.is_err() {
            warn!("The session is gone; a job message was dropped.");
        }
    }
}

fn binding_of(job: &Job) -> Result<&Binding> {
    job.binding
        .as_ref()
        .ok_or_else(|| AgentError::protocol("the job has no binding"))
}

fn target_of(binding: &Binding) -> Result<Target> {
    let target = binding
        .target
        .as_ref()
        .ok_or_else(|| AgentError::protocol("the binding has no deploy target"))?;
    Target::try_from(target)
}

/// The serial the server named, else the certificate's own (hex).
fn serial_of(pem: &str, named: &str) -> String {
    if !named.is_empty() {
        return named.to_owned();
    }
    Certificate::from_pem(pem)
        .map(|c| c.serial().to_hex())
        .unwrap_or_default()
}

fn failed(e: AgentError) -> Outcome {
    Outcome {
        kind: OutcomeKind::Failed,
        detail: e.to_string(),
        certificate_sha256: String::new(),
        served_sha256: String::new(),
    }
}
