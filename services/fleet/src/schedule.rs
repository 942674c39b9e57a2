//! The fleet role's periodic work, one loop per replica:
//!
//! - **plan** (every 5 s, one replica at a time by the `fleet-scheduler` lease): for every
//!   binding and each agent it targets, a job when there is none open: `issue` for a target
//!   with no deployment, `renew` for one whose renewal time (its certificate's ARI `renew_at`,
//!   or now after renew-now) has come. At most `schedule_batch` per tenant per pass, so a
//!   renewal storm is spread out.
//! - **offer** (every 2 s, and at once when this replica made jobs): pending and failed jobs
//!   whose time came, down this replica's open streams.
//! - **flush** (every 10 s): heartbeats since the last flush, one statement per tenant; agents
//!   found retired are told and their streams closed.
//! - **sample** (every 15 s, on every replica): jobs by state, every tenant, into
//!   `certmesh_fleet_jobs`.

use std::collections::{HashMap, HashSet};
use std::time::Duration as StdDuration;

use certmesh_kit::metrics::JobStateLabels;
use certmesh_proto::fleet::{self as pb, server_message::Message as Out};
use certmesh_store::fleet::{self, AgentRecord, BindingRecord, DeploymentRecord};
use certmesh_store::{StoreError, TenantId, leases, tenants};
use chrono::Duration;
use tokio::sync::watch;

use crate::session::send;
use crate::{Fleet, FleetError, model::BindingSpec};

/// The scheduler's lease.
pub const SCHEDULER_LEASE: &str = "fleet-scheduler";
const LEASE_TTL: Duration = Duration::seconds(30);
const PLAN_EVERY: u32 = 5;
const OFFER_EVERY: u32 = 2;
const FLUSH_EVERY: u32 = 10;
const SAMPLE_EVERY: u32 = 15;

impl Fleet {
    /// Runs the periodic work until `shutdown` turns true, then gives up the lease.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(StdDuration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    n = n.wrapping_add(1);
                    if n.is_multiple_of(PLAN_EVERY) {
                        self.plan_if_leader().await;
                    }
                    if n.is_multiple_of(OFFER_EVERY) {
                        self.offer_connected().await;
                    }
                    if n.is_multiple_of(FLUSH_EVERY) {
                        self.flush_heartbeats().await;
                    }
                    if n.is_multiple_of(SAMPLE_EVERY)
                        && let Err(e) = self.sample_jobs().await
                    {
                        tracing::warn!(error = %e, "Counting fleet jobs failed.");
                    }
                }
                () = self.wake.notified() => self.offer_connected().await,
                _ = shutdown.changed() => break,
            }
        }
        let _ = leases::release(self.store().conn(), SCHEDULER_LEASE, &self.config().replica).await;
    }

    /// Sets `certmesh_fleet_jobs` to the jobs in each state, summed over every tenant (each
    /// counted in its own transaction: under row-level security no statement sees two).
    pub async fn sample_jobs(&self) -> Result<(), FleetError> {
        let mut jobs: HashMap<&'static str, i64> =
            fleet::state::ALL.iter().map(|s| (*s, 0)).collect();
        for (tenant, _, _) in tenants::list(self.store().conn()).await? {
            let tx = self.store().begin_tenant(tenant).await?;
            for (state, n) in fleet::count_jobs_by_state(&tx, tenant).await? {
                if let Some(total) = jobs.get_mut(state.as_str()) {
                    *total += i64::try_from(n).unwrap_or(i64::MAX);
                }
            }
        }
        for (state, n) in jobs {
            self.deps
                .metrics
                .fleet_jobs
                .get_or_create(&JobStateLabels { state })
                .set(n);
        }
        Ok(())
    }

    async fn plan_if_leader(&self) {
        let holder = &self.config().replica;
        match leases::try_acquire(
            self.store().conn(),
            SCHEDULER_LEASE,
            holder,
            self.now(),
            LEASE_TTL,
        )
        .await
        {
            Ok(true) => {
                if let Err(e) = self.plan().await {
                    tracing::warn!(error = %e, "Planning fleet jobs failed.");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "Taking the fleet scheduler lease failed."),
        }
    }

    /// One planning pass over every tenant; returns the jobs made.
    pub async fn plan(&self) -> Result<u64, FleetError> {
        let mut made = 0;
        for (tenant, _, _) in tenants::list(self.store().conn()).await? {
            made += self.plan_tenant(tenant).await?;
        }
        if made > 0 {
            self.wake.notify_one();
        }
        Ok(made)
    }

    async fn plan_tenant(&self, tenant: TenantId) -> Result<u64, FleetError> {
        let now = self.now();
        let due = self.due_targets(tenant, now).await?;
        if due.is_empty() {
            return Ok(0);
        }
        // The reads ran in their own transaction; the inserts are safe against a racing
        // planner or renew-now (one open job per target is a unique index).
        let tx = self.store().begin_tenant(tenant).await?;
        let mut made = 0;
        for (binding, agent, kind) in due {
            if fleet::insert_job(
                &tx,
                tenant,
                binding,
                agent,
                kind,
                self.config().max_attempts,
                now,
            )
            .await?
            .is_some()
            {
                made += 1;
            }
        }
        tx.commit().await.map_err(StoreError::from)?;
        if made > 0 {
            tracing::info!(%tenant, jobs = made, "Fleet jobs planned.");
        }
        Ok(made)
    }

    /// The targets that need a job at `now`, with its kind, at most `schedule_batch`.
    async fn due_targets(
        &self,
        tenant: TenantId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(uuid::Uuid, uuid::Uuid, &'static str)>, FleetError> {
        let tx = self.store().begin_tenant(tenant).await?;
        let bindings = fleet::list_bindings(&tx, tenant).await?;
        if bindings.is_empty() {
            return Ok(Vec::new());
        }
        let agents: Vec<AgentRecord> = fleet::list_agents(&tx, tenant, None)
            .await?
            .into_iter()
            .filter(|a| a.status == fleet::AGENT_ACTIVE)
            .collect();
        let deployments: HashMap<(uuid::Uuid, uuid::Uuid), DeploymentRecord> =
            fleet::list_deployments(&tx, tenant, &fleet::DeploymentFilter::default())
                .await?
                .into_iter()
                .map(|d| ((d.binding_id, d.agent_id), d))
                .collect();
        let open: HashSet<(uuid::Uuid, uuid::Uuid)> = fleet::open_job_targets(&tx, tenant)
            .await?
            .into_iter()
            .collect();
        drop(tx);
        let limit = usize::try_from(self.config().schedule_batch).unwrap_or(usize::MAX);
        Ok(targets(&bindings, &agents)
            .into_iter()
            .filter(|t| !open.contains(t))
            .filter_map(|(binding, agent)| {
                let kind = match deployments.get(&(binding, agent)) {
                    None => "issue",
                    Some(d) if d.renew_at > now => return None,
                    Some(d) if d.serial.is_empty() => "issue",
                    Some(_) => "renew",
                };
                Some((binding, agent, kind))
            })
            .take(limit)
            .collect())
    }

    async fn offer_connected(&self) {
        for (tenant, agents) in self.registry.connected() {
            match self.offer_batch(tenant, &agents).await {
                Ok(jobs) => {
                    for (agent, job) in jobs {
                        if let Some(tx) = self.registry.sender(agent) {
                            let _ = send(&tx, Out::Job(job)).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(%tenant, error = %e, "Offering jobs failed."),
            }
        }
    }

    /// The pending and failed-and-due jobs of `agents`, marked sent in one transaction, with
    /// their messages.
    async fn offer_batch(
        &self,
        tenant: TenantId,
        agents: &[uuid::Uuid],
    ) -> Result<Vec<(uuid::Uuid, pb::Job)>, FleetError> {
        let now = self.now();
        let tx = self.store().begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let jobs: Vec<_> = fleet::offerable_jobs(&tx, tenant, agents, now)
            .await?
            .into_iter()
            .filter(|j| {
                matches!(
                    j.state.as_str(),
                    fleet::state::PENDING | fleet::state::FAILED
                )
            })
            .collect();
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut bindings: HashMap<uuid::Uuid, (BindingRecord, BindingSpec)> = HashMap::new();
        let wanted: HashSet<uuid::Uuid> = jobs.iter().map(|j| j.binding_id).collect();
        for id in wanted {
            let b = fleet::get_binding(&tx, tenant, id)
                .await?
                .ok_or_else(|| FleetError::Corrupt(format!("jobs of a missing binding {id}")))?;
            let spec = BindingSpec::from_json(&b.spec)?;
            bindings.insert(id, (b, spec));
        }
        let mut material = HashMap::new();
        for job in jobs.iter().filter(|j| j.kind == "deploy") {
            material.insert(
                job.id,
                crate::jobs::deploy_material(&tx, tenant, job).await?,
            );
        }
        let ids: Vec<uuid::Uuid> = jobs.iter().map(|j| j.id).collect();
        fleet::mark_sent(&tx, tenant, &ids, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(jobs
            .into_iter()
            .filter_map(|job| {
                let (b, spec) = bindings.get(&job.binding_id)?;
                let (certificate_pem, chain_pem) = material.remove(&job.id).unwrap_or_default();
                Some((
                    job.agent_id,
                    pb::Job {
                        job_id: job.id.to_string(),
                        kind: job.kind.clone(),
                        binding: Some(crate::admin::binding_message(b, spec)),
                        attempt: job.attempts,
                        certificate_pem,
                        chain_pem,
                    },
                ))
            })
            .collect())
    }

    async fn flush_heartbeats(&self) {
        for (tenant, agents) in self.registry.take_seen() {
            let result = async {
                let tx = self.store().begin_tenant(tenant).await?;
                let retired = fleet::touch_agents(&tx, tenant, &agents, self.now()).await?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok::<_, FleetError>(retired)
            }
            .await;
            match result {
                Ok(retired) => {
                    for agent in retired {
                        self.tell_retired(agent).await;
                    }
                }
                Err(e) => tracing::warn!(%tenant, error = %e, "Flushing heartbeats failed."),
            }
        }
    }

    /// Tells `agent`'s stream on this replica, if any, that it is retired, and closes it.
    pub(crate) async fn tell_retired(&self, agent: uuid::Uuid) {
        if let Some(tx) = self.registry.remove(agent) {
            let _ = send(
                &tx,
                Out::Retired(pb::Retired {
                    message: "this agent was retired by an operator".to_owned(),
                }),
            )
            .await;
        }
    }
}

/// Every (binding, agent) pair the bindings target among `agents`.
fn targets(bindings: &[BindingRecord], agents: &[AgentRecord]) -> Vec<(uuid::Uuid, uuid::Uuid)> {
    let mut out = Vec::new();
    for b in bindings {
        match (&b.agent_id, &b.group) {
            (Some(agent), _) => {
                if agents.iter().any(|a| a.id == *agent) {
                    out.push((b.id, *agent));
                }
            }
            (None, Some(group)) => {
                out.extend(
                    agents
                        .iter()
                        .filter(|a| &a.group == group)
                        .map(|a| (b.id, a.id)),
                );
            }
            (None, None) => {}
        }
    }
    out
}
