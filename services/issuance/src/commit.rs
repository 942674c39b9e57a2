//! Group commit: concurrent issuances share one database transaction.
//!
//! One synchronous round-trip sequence per certificate caps throughput at the database's
//! commit rate. Instead, each request prepares its certificate and hands it to a committer;
//! a few workers each take whatever is queued (no added wait: a batch is what piled up while
//! the previous one committed) and write it with multi-row inserts in one transaction.
//!
//! Keyless requests arrive signed (signing runs in parallel in the request tasks). Requests with
//! an idempotency key arrive unsigned: the worker claims the key inside the batch transaction
//! and signs only if the claim is fresh, so a lost race never mints a certificate. If a batch
//! fails, each of its requests is retried alone, so one bad request cannot fail its neighbours.

use std::collections::BTreeMap;
use std::sync::Arc;

use certmesh_crypto::{
    csr::{Csr, ExtendedKeyUsage},
    serial::Serial,
};
use certmesh_store::{
    Backend, Store, StoreError, TenantId,
    audit::{self, AuditEntry, Outcome},
    certificates::{self, CertificateRecord},
    idempotency::{self, Claim},
    outbox::{self, NewEvent},
    set_tenant,
};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;
use serde_json::json;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    error::IssuanceError,
    issuer::{Authority, BuiltinCa, Issued, SignRequest},
};

/// Most requests one transaction carries.
const MAX_BATCH: usize = 256;
/// Requests that may wait for a worker before callers feel backpressure.
const QUEUE: usize = 4096;

/// What to sign and who signs it, owned, for signing inside a batch.
#[derive(Debug, Clone)]
pub(crate) struct SignJob {
    pub authority: Authority,
    pub csr: Csr,
    pub serial: Serial,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub ekus: Vec<ExtendedKeyUsage>,
}

impl SignJob {
    /// Sign with the job's authority.
    pub async fn sign(
        &self,
        builtin: &BuiltinCa,
        tenant: TenantId,
    ) -> Result<Issued, IssuanceError> {
        self.authority
            .issuer(builtin)
            .issue(self.request(tenant))
            .await
    }

    fn request(&self, tenant_id: TenantId) -> SignRequest<'_> {
        SignRequest {
            tenant_id,
            csr: &self.csr,
            serial: self.serial.clone(),
            not_before: self.not_before,
            not_after: self.not_after,
            ekus: &self.ekus,
        }
    }
}

/// A certificate ready to store, or to sign once its idempotency key is claimed.
#[derive(Debug)]
pub(crate) enum Prepared {
    Signed(Issued),
    ToSign(SignJob),
}

/// One issuance waiting to commit.
#[derive(Debug)]
pub(crate) struct Pending {
    pub tenant: TenantId,
    /// Idempotency key and request hash.
    pub key: Option<(String, String)>,
    pub cert: Prepared,
    pub profile: String,
    pub profile_version: u32,
    /// The `issuance.profile_evaluated` payload (an allow).
    pub evaluation: serde_json::Value,
    pub principal: String,
    pub request_id: String,
    pub now: DateTime<Utc>,
}

/// How a pending issuance ended.
#[derive(Debug)]
pub(crate) enum Committed {
    /// Stored with its events.
    Stored(Box<CertificateRecord>),
    /// Another request holds the idempotency key; answer from it.
    KeyTaken,
}

type Reply = oneshot::Sender<Result<Committed, IssuanceError>>;

/// Handle to the commit workers; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    queue: mpsc::Sender<(Pending, Reply)>,
}

impl Committer {
    /// Start the workers: several on PostgreSQL, so one batch builds while another commits;
    /// two on SQLite, whose single writer serializes commits anyway.
    pub fn spawn(store: Store, builtin: Arc<BuiltinCa>) -> Self {
        let workers = match store.backend() {
            Backend::Postgres => 4,
            Backend::Sqlite => 2,
        };
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers {
            tokio::spawn(worker(rx.clone(), store.clone(), builtin.clone()));
        }
        Self { queue }
    }

    /// Commit `pending`, in a batch with whatever else is waiting.
    pub async fn commit(&self, pending: Pending) -> Result<Committed, IssuanceError> {
        let (reply, answer) = oneshot::channel();
        let closed = || {
            IssuanceError::Store(StoreError::Invalid {
                detail: "commit workers stopped".into(),
            })
        };
        self.queue
            .send((pending, reply))
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn worker(
    rx: Arc<Mutex<mpsc::Receiver<(Pending, Reply)>>>,
    store: Store,
    builtin: Arc<BuiltinCa>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
        }
        let (pending, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match write(&store, &builtin, &pending).await {
            Ok(outcomes) => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) if pending.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = pending.len(), "Batch commit failed; retrying its requests one by one.");
                for (one, reply) in pending.iter().zip(replies) {
                    let outcome = write(&store, &builtin, std::slice::from_ref(one))
                        .await
                        .and_then(|mut v| {
                            v.pop()
                                .unwrap_or(Err(IssuanceError::Store(StoreError::NotFound {
                                    what: "outcome",
                                })))
                        });
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}

/// Write `batch` in one transaction: for each tenant in it, in turn, act for that tenant (the
/// row-level security setting), claim keys, sign what waits for a claim, insert the
/// certificates, complete the keys and append the events; then commit once. Every statement
/// writes, so on SQLite the transaction takes the write lock at its first statement.
async fn write(
    store: &Store,
    builtin: &BuiltinCa,
    batch: &[Pending],
) -> Result<Vec<Result<Committed, IssuanceError>>, IssuanceError> {
    // Tenants in a fixed (sorted) order, so concurrent batches lock audit chain heads in the
    // same order and cannot deadlock.
    let mut by_tenant: BTreeMap<TenantId, Vec<usize>> = BTreeMap::new();
    for (i, p) in batch.iter().enumerate() {
        by_tenant.entry(p.tenant).or_default().push(i);
    }
    let tx = store.begin().await?;
    let mut outcomes: Vec<Option<Result<Committed, IssuanceError>>> =
        batch.iter().map(|_| None).collect();
    for (tenant, indices) in by_tenant {
        set_tenant(&tx, tenant).await?;
        let group = indices.iter().map(|&i| (i, &batch[i]));
        for (i, outcome) in write_tenant(&tx, builtin, tenant, group).await? {
            outcomes[i] = Some(outcome);
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(Err(IssuanceError::Store(StoreError::NotFound {
                what: "outcome",
            })))
        })
        .collect())
}

/// One tenant's share of a batch, inside the batch transaction acting for `tenant`; returns
/// each request's outcome with its index in the batch.
async fn write_tenant<'a>(
    tx: &DatabaseTransaction,
    builtin: &BuiltinCa,
    tenant: TenantId,
    group: impl Iterator<Item = (usize, &'a Pending)>,
) -> Result<Vec<(usize, Result<Committed, IssuanceError>)>, IssuanceError> {
    let mut outcomes = Vec::new();
    let mut records = Vec::new();
    let mut events = Vec::new();
    let mut keys = Vec::new();
    let mut trail = Vec::new();
    for (i, p) in group {
        if let Some((key, hash)) = &p.key
            && let Claim::Existing { .. } = idempotency::claim(tx, tenant, key, hash, p.now).await?
        {
            outcomes.push((i, Ok(Committed::KeyTaken)));
            continue;
        }
        let issued = match &p.cert {
            Prepared::Signed(issued) => issued.clone(),
            // A signing failure fails the batch; retried alone it fails only this request,
            // and its claim rolls back with it.
            Prepared::ToSign(job) => job.sign(builtin, tenant).await?,
        };
        let record = record(p, issued);
        events.push(event(
            p,
            "issuance.profile_evaluated",
            &p.profile,
            p.evaluation.clone(),
        ));
        events.push(event(
            p,
            "ca.issue",
            &record.serial,
            issue_payload(&record, &p.principal),
        ));
        if let Some((key, _)) = &p.key {
            keys.push((key.as_str(), record.serial.clone()));
        }
        trail.push(AuditEntry {
            actor: p.principal.clone(),
            action: "certs.issue".into(),
            resource: format!("certificate:{}", record.serial),
            request_id: p.request_id.clone(),
            outcome: Outcome::Allowed,
            details: issue_payload(&record, &p.principal),
            at: p.now,
        });
        records.push(record.clone());
        outcomes.push((i, Ok(Committed::Stored(Box::new(record)))));
    }
    if !records.is_empty() {
        certificates::insert_many(tx, &records).await?;
    }
    for (key, serial) in keys {
        idempotency::complete(tx, tenant, key, &serial).await?;
    }
    if !events.is_empty() {
        outbox::append_many(tx, &events).await?;
    }
    audit::append(tx, tenant, &trail).await?;
    Ok(outcomes)
}

fn record(p: &Pending, issued: Issued) -> CertificateRecord {
    let cert = &issued.certificate;
    CertificateRecord {
        tenant_id: p.tenant,
        serial: cert.serial().to_hex(),
        issuer_ca_id: issued.issuer_ca_id,
        profile_name: p.profile.clone(),
        profile_version: p.profile_version,
        subject: cert.subject().to_string(),
        sans: cert.sans().to_vec(),
        not_before: cert.not_before(),
        not_after: cert.not_after(),
        fingerprint_sha256: cert.fingerprint_sha256(),
        certificate_der: cert.der().to_vec(),
        chain_pem: issued.chain_pem,
        created_at: p.now,
        crl_shard: issued.crl_shard,
    }
}

fn event(
    p: &Pending,
    event_type: &str,
    aggregate_id: &str,
    payload: serde_json::Value,
) -> NewEvent {
    NewEvent {
        tenant_id: p.tenant,
        event_type: event_type.to_string(),
        aggregate_id: aggregate_id.to_string(),
        payload,
        created_at: p.now,
    }
}

fn issue_payload(record: &CertificateRecord, principal: &str) -> serde_json::Value {
    json!({
        "serial": record.serial,
        "issuer_ca_id": record.issuer_ca_id.to_string(),
        "profile": record.profile_name,
        "profile_version": record.profile_version,
        "subject": record.subject,
        "sans": record.sans,
        "not_before": record.not_before.to_rfc3339(),
        "not_after": record.not_after.to_rfc3339(),
        "fingerprint_sha256": record.fingerprint_sha256,
        "principal": principal,
    })
}
