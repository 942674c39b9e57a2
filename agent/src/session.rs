//! `certmesh-agent run`: the agent's one stream to the fleet role, kept open for its lifetime.
//!
//! Each connection presents the identity on disk (finishing a half-done identity swap first),
//! opens `Session`, says `Hello`, then heartbeats every `Welcome.heartbeat_seconds` (15 s until
//! the Welcome arrives). Jobs are acknowledged at once and handed to the [`Worker`], which
//! lives across reconnects; its CSRs and results queue while the agent is disconnected and go
//! out on the next stream. The identity is renewed once `Welcome.renew_identity_after` (else
//! two thirds of its lifetime) has passed, checked right after the Welcome and every minute.
//! With discovery paths configured, a [`discover::Reporter`] reports the certificates found
//! on disk while the stream is up.
//!
//! A dropped stream is retried with [`Backoff`]. `Retired`, or a refusal with reason
//! AGENT_RETIRED, ends the run with [`RunEnd::Retired`] (exit status 0, which systemd does not
//! restart). On shutdown the worker's queue is closed and its current job finishes, with its
//! result still sent, within [`DRAIN_DEADLINE`].

use std::sync::Arc;
use std::time::Duration;

use certmesh_proto::fleet::agent_service_client::AgentServiceClient;
use certmesh_proto::fleet::{
    AgentMessage, Heartbeat, Hello, JobAck, RenewIdentity, ServerMessage, Welcome, agent_message,
    server_message,
};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior, interval, interval_at, sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tracing::{error, info, warn};

use crate::backoff::{Backoff, jitter};
use crate::channel::{self, ServerTls};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::deploy::Deployer;
use crate::error::{AgentError, Result};
use crate::jobs::{Work, Worker};
use crate::state::{StateDir, StatusBook};
use crate::{discover, host, identity};

/// Heartbeat period until the Welcome names one.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// How often the identity's age is checked (it reads the small certificate file).
pub const RENEWAL_CHECK: Duration = Duration::from_secs(10);
/// How long to wait for an answer to `RenewIdentity` before asking again.
pub const RENEWAL_RETRY: Duration = Duration::from_secs(600);
/// How long a shutdown waits for the job in progress.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

/// Why `run` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The server retired this agent.
    Retired,
    /// Asked to stop.
    Shutdown,
}

/// How one connection ended.
enum StreamEnd {
    Closed,
    Retired,
    Shutdown,
}

/// Everything that outlives one connection.
struct Agent {
    state: StateDir,
    tls: ServerTls,
    settings: Settings,
    clock: SharedClock,
    status: Arc<StatusBook>,
    work: Option<mpsc::Sender<Work>>,
    from_worker: mpsc::Receiver<AgentMessage>,
    /// A worker message whose stream died before it went out.
    carry: Option<AgentMessage>,
    shutdown: watch::Receiver<bool>,
    /// Set once a shutdown started draining.
    drain_until: Option<Instant>,
}

/// Runs until retired or `shutdown` turns true.
pub async fn run(
    settings: &Settings,
    clock: SharedClock,
    shutdown: watch::Receiver<bool>,
) -> Result<RunEnd> {
    let state = StateDir::new(&settings.state_dir);
    let record = state.load_agent()?;
    let tls = ServerTls {
        server: settings.server.clone().unwrap_or(record.server),
        ca_bundle_pem: settings.ca_bundle_pem()?,
        server_name: settings.server_name.clone(),
    };
    let status = Arc::new(StatusBook::open(state.clone(), clock.clone()));
    let (work_tx, work_rx) = mpsc::channel(64);
    let (to_session, from_worker) = mpsc::channel(64);
    let deployer = Deployer::new(clock.clone());
    let worker = Worker::new(state.clone(), deployer, status.clone(), to_session);
    let worker = tokio::spawn(worker.run(work_rx));
    let mut agent = Agent {
        state,
        tls,
        settings: settings.clone(),
        clock,
        status,
        work: Some(work_tx),
        from_worker,
        carry: None,
        shutdown,
        drain_until: None,
    };
    let end = agent.reconnect_loop().await;
    agent.work = None;
    let deadline = agent
        .drain_until
        .unwrap_or_else(|| Instant::now() + DRAIN_DEADLINE);
    if tokio::time::timeout_at(deadline, worker).await.is_err() {
        warn!("The job in progress did not finish before the drain deadline.");
    }
    end
}

impl Agent {
    async fn reconnect_loop(&mut self) -> Result<RunEnd> {
        let mut backoff = Backoff::new();
        loop {
            if *self.shutdown.borrow() {
                return Ok(RunEnd::Shutdown);
            }
            let opened = Instant::now();
            let mut stop = self.shutdown.clone();
            let opening = tokio::select! {
                opening = self.open() => opening,
                _ = stop.changed() => return Ok(RunEnd::Shutdown),
            };
            let (result, up_for) = match opening {
                Ok((tx, inbound)) => {
                    let connected = Instant::now();
                    let result = self.serve(tx, inbound).await;
                    (result, connected.elapsed())
                }
                Err(e) => (Err(e), Duration::ZERO),
            };
            if up_for > Duration::ZERO
                && let Err(e) = self.status.set_connected(false)
            {
                warn!(error = %e, "Writing status.json failed.");
            }
            match result {
                Ok(StreamEnd::Retired) => return Ok(RunEnd::Retired),
                Ok(StreamEnd::Shutdown) => return Ok(RunEnd::Shutdown),
                Err(e) if e.is_retired() => {
                    info!(error = %e, "The server refused this agent as retired; stopping.");
                    return Ok(RunEnd::Retired);
                }
                Err(e @ (AgentError::NotEnrolled { .. } | AgentError::WorkerStopped)) => {
                    return Err(e);
                }
                Ok(StreamEnd::Closed) => info!("The server closed the stream."),
                Err(e) => warn!(error = %e, "The stream failed."),
            }
            let wait = backoff.after_stream(up_for, jitter());
            info!(
                wait_ms = wait.as_millis() as u64,
                attempt = backoff.failures(),
                since_open_ms = opened.elapsed().as_millis() as u64,
                "Reconnecting after a pause."
            );
            tokio::select! {
                () = sleep(wait) => {}
                _ = self.shutdown.changed() => return Ok(RunEnd::Shutdown),
            }
        }
    }

    /// Connects with the identity on disk and opens the stream with `Hello`.
    async fn open(&mut self) -> Result<(mpsc::Sender<AgentMessage>, Streaming<ServerMessage>)> {
        if identity::finish_swap(&self.state)? {
            info!("A renewed identity certificate was installed.");
        }
        let id = identity::load(&self.state)?;
        if id.cert.not_after() <= self.clock.now() {
            error!(not_after = %id.cert.not_after(), "The identity certificate has expired; enroll again with --force.");
        }
        let channel = channel::connect(&self.tls, Some((&id.cert_pem, &id.key_pem))).await?;
        let (tx, rx) = mpsc::channel(64);
        let hello = message(agent_message::Message::Hello(Hello {
            host: Some(host::facts()),
        }));
        tx.send(hello)
            .await
            .map_err(|_| AgentError::protocol("the outgoing stream closed"))?;
        let mut client = AgentServiceClient::new(channel);
        let inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
        if let Err(e) = self.status.set_connected(true) {
            warn!(error = %e, "Writing status.json failed.");
        }
        info!(server = %self.tls.server, "Connected.");
        if let Some(carried) = self.carry.take() {
            send(&tx, carried).await?;
        }
        Ok((tx, inbound))
    }

    /// Serves one open stream until it ends.
    async fn serve(
        &mut self,
        tx: mpsc::Sender<AgentMessage>,
        mut inbound: Streaming<ServerMessage>,
    ) -> Result<StreamEnd> {
        let mut heartbeat = heartbeat_every(DEFAULT_HEARTBEAT);
        let mut renew_check = interval(RENEWAL_CHECK);
        renew_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renewal = Renewal::default();
        // Runs beside the stream and stops with it (dropped on return).
        let _discovery = discover::spawn(&self.settings.discovery, tx.clone());
        loop {
            tokio::select! {
                incoming = inbound.message() => {
                    let Some(incoming) = incoming? else { return Ok(StreamEnd::Closed) };
                    let Some(incoming) = incoming.message else { continue };
                    if let Some(end) = self.on_message(incoming, &tx, &mut heartbeat, &mut renewal).await? {
                        return Ok(end);
                    }
                }
                _ = heartbeat.tick() => {
                    send(&tx, message(agent_message::Message::Heartbeat(Heartbeat { host: Some(host::facts()) }))).await?;
                }
                _ = renew_check.tick() => self.maybe_renew(&tx, &mut renewal).await?,
                out = self.from_worker.recv() => match out {
                    Some(out) => {
                        if let Err(e) = tx.send(out).await {
                            self.carry = Some(e.0);
                            return Err(AgentError::protocol("the outgoing stream closed"));
                        }
                    }
                    // The worker finished after a shutdown closed its queue.
                    None if self.drain_until.is_some() => return Ok(StreamEnd::Shutdown),
                    None => return Err(AgentError::WorkerStopped),
                },
                changed = self.shutdown.changed(), if self.drain_until.is_none() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        info!("Shutting down: finishing the job in progress.");
                        self.work = None;
                        self.drain_until = Some(Instant::now() + DRAIN_DEADLINE);
                    }
                }
                () = sleep_until_or_never(self.drain_until) => {
                    warn!("The job in progress did not finish before the drain deadline.");
                    return Ok(StreamEnd::Shutdown);
                }
            }
        }
    }

    async fn on_message(
        &mut self,
        incoming: server_message::Message,
        tx: &mpsc::Sender<AgentMessage>,
        heartbeat: &mut Interval,
        renewal: &mut Renewal,
    ) -> Result<Option<StreamEnd>> {
        match incoming {
            server_message::Message::Welcome(welcome) => {
                self.on_welcome(&welcome, heartbeat, renewal);
                self.maybe_renew(tx, renewal).await?;
            }
            server_message::Message::Job(job) => {
                let Some(work) = &self.work else {
                    return Ok(None); // draining: leave it for the next run
                };
                let ack = JobAck {
                    job_id: job.job_id.clone(),
                };
                send(tx, message(agent_message::Message::Ack(ack))).await?;
                self.queue(work.clone(), Work::Job(Box::new(job))).await;
            }
            server_message::Message::Certificate(cert) => {
                if let Some(work) = &self.work {
                    self.queue(work.clone(), Work::Certificate(cert)).await;
                }
            }
            server_message::Message::JobFailed(failed) => {
                if let Some(work) = &self.work {
                    self.queue(work.clone(), Work::Failed(failed)).await;
                }
            }
            server_message::Message::IdentityRenewed(renewed) => {
                match identity::install_renewed(&self.state, &renewed.certificate_pem) {
                    Ok(cert) => {
                        info!(not_after = %cert.not_after(), "The identity was renewed; the next connection presents it.");
                        *renewal = Renewal::default();
                    }
                    Err(e) => error!(error = %e, "Installing the renewed identity failed."),
                }
            }
            server_message::Message::Retired(retired) => {
                info!(message = %retired.message, "The server retired this agent; stopping.");
                return Ok(Some(StreamEnd::Retired));
            }
        }
        Ok(None)
    }

    fn on_welcome(&self, welcome: &Welcome, heartbeat: &mut Interval, renewal: &mut Renewal) {
        info!(agent_id = %welcome.agent_id, heartbeat_seconds = welcome.heartbeat_seconds, "Welcomed by the server.");
        if welcome.heartbeat_seconds > 0 {
            *heartbeat = heartbeat_every(Duration::from_secs(u64::from(welcome.heartbeat_seconds)));
        }
        renewal.after = welcome
            .renew_identity_after
            .and_then(|t| DateTime::<Utc>::try_from(t).ok());
    }

    async fn queue(&self, work: mpsc::Sender<Work>, item: Work) {
        if work.send(item).await.is_err() {
            error!("The job worker stopped; the job was dropped.");
        }
    }

    /// Sends `RenewIdentity` when the identity is due and no request is outstanding. Only a
    /// closed stream is an error; a renewal that cannot be prepared is logged and retried at
    /// the next check, the stream stays up.
    async fn maybe_renew(
        &self,
        tx: &mpsc::Sender<AgentMessage>,
        renewal: &mut Renewal,
    ) -> Result<()> {
        if renewal.sent.is_some_and(|at| at.elapsed() < RENEWAL_RETRY) {
            return Ok(());
        }
        match self.renewal_request(renewal) {
            Ok(Some(request)) => {
                send(tx, message(agent_message::Message::RenewIdentity(request))).await?;
                renewal.sent = Some(Instant::now());
            }
            Ok(None) => {}
            Err(e) => error!(error = %e, "Preparing the identity renewal failed."),
        }
        Ok(())
    }

    /// A `RenewIdentity` if the identity is due for renewal.
    fn renewal_request(&self, renewal: &Renewal) -> Result<Option<RenewIdentity>> {
        let current = identity::load(&self.state)?.cert;
        let now = self.clock.now();
        if !identity::renewal_due(
            current.not_before(),
            current.not_after(),
            renewal.after,
            now,
        ) {
            return Ok(None);
        }
        let csr = identity::renewal_csr(&self.state, self.settings.key_type, &host::hostname())?;
        info!(not_after = %current.not_after(), "Renewing the identity certificate.");
        Ok(Some(RenewIdentity { csr: csr.to_pem() }))
    }
}

/// Identity renewal state of one stream.
#[derive(Default)]
struct Renewal {
    /// `Welcome.renew_identity_after`, for the certificate this stream presented.
    after: Option<DateTime<Utc>>,
    /// When `RenewIdentity` went out.
    sent: Option<Instant>,
}

async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn heartbeat_every(period: Duration) -> Interval {
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    heartbeat
}

fn message(message: agent_message::Message) -> AgentMessage {
    AgentMessage {
        message: Some(message),
    }
}

async fn send(tx: &mpsc::Sender<AgentMessage>, message: AgentMessage) -> Result<()> {
    tx.send(message)
        .await
        .map_err(|_| AgentError::protocol("the outgoing stream closed"))
}
