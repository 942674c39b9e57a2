//! CRL publication (RFC 5280 §5): one CRL per CA key (generation) and shard.
//!
//! A CRL lists the revoked, unexpired certificates its key signed in its shard, with their
//! reasons; it carries the CA's authorityKeyIdentifier, a cRLNumber from one counter per CA
//! (strictly increasing across keys, shards and replicas) and an issuing distribution point
//! naming its own URL, the URL the shard's certificates carry in their CRL distribution points.
//!
//! The publisher regenerates a CRL when it has none, when it is older than `crl_refresh`, or
//! when a revocation in its scope changed since it was made; it runs every few seconds after a
//! revocation ([`Publisher::kick`]) and on a timer otherwise ([`tick`]: half of `crl_refresh`,
//! at most 30 s). One replica publishes at a time: it holds the `crl-publisher` lease in the
//! store while it works, for a few ticks at a time ([`lease_ttl`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use certmesh_crypto::{
    cert::{Certificate, IssuingCa},
    crl::{CrlEntry, CrlTemplate},
    digest::sha256_hex,
    keys::{KeyBackend, KeyRef},
    revocation::RevocationReason,
    serial::Serial,
};
use certmesh_kit::{
    SharedClock,
    metrics::{CrlLabels, CrlOutcome, Metrics},
    pki::MAX_CRL_SHARDS,
};
use certmesh_store::{
    CaId, Store, TenantId, ca_certificates, certificates,
    crls::{self, CrlRecord},
    leases, outbox, revocations, tenants,
};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::json;
use tokio::sync::{Mutex, Notify, watch};

use crate::{Config, error::RevocationError};

/// The lease one publisher holds while it works.
pub const LEASE: &str = "crl-publisher";
/// The longest wait between rounds when nobody wakes the publisher.
const MAX_TICK: StdDuration = StdDuration::from_secs(30);
/// The shortest wait between rounds.
const MIN_TICK: StdDuration = StdDuration::from_secs(1);
/// The lease lasts this many rounds without renewal (every round renews it).
const LEASE_TICKS: u32 = 4;
/// The shortest lease: a round must fit in it.
const MIN_LEASE_TTL: Duration = Duration::seconds(10);
/// After a wake-up, how long to gather further revocations (a bulk revocation) first.
const DEBOUNCE: StdDuration = StdDuration::from_millis(500);
/// A revocation this close before a CRL's thisUpdate may have missed it: regenerate.
const RACE_MARGIN: Duration = Duration::seconds(5);
/// Entries above which signing moves off the async workers.
const BLOCKING_ABOVE: usize = 10_000;

/// One CA key the publisher signs CRLs for.
#[derive(Clone, Debug)]
pub struct CrlScope {
    /// Owner.
    pub tenant: TenantId,
    /// The CA.
    pub ca_id: CaId,
    /// Its generation (key).
    pub generation: u32,
    /// The key's public id (its CRL URLs).
    pub key_id: uuid::Uuid,
    /// The shard.
    pub shard: u32,
}

/// A CRL that was published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Owner.
    pub tenant: TenantId,
    /// The CA.
    pub ca_id: CaId,
    /// Its generation.
    pub generation: u32,
    /// The shard.
    pub shard: u32,
    /// cRLNumber.
    pub number: u64,
    /// Revoked certificates listed.
    pub entries: u64,
    /// Size of the DER.
    pub bytes: usize,
    /// Where it is served.
    pub url: String,
}

/// The CRL publisher.
#[derive(Debug)]
pub struct Publisher {
    store: Store,
    keys: Arc<dyn KeyBackend>,
    clock: SharedClock,
    config: Config,
    metrics: Arc<Metrics>,
    wake: Notify,
    signers: Mutex<HashMap<uuid::Uuid, Arc<IssuingCa>>>,
}

/// A primary CA certificate row, as the publisher needs it.
struct KeyRow {
    ca_id: CaId,
    generation: u32,
    key_id: uuid::Uuid,
    key_ref: String,
    der: Vec<u8>,
}

impl Publisher {
    /// A publisher over `store`, counting what it makes in `metrics`.
    pub fn new(
        store: Store,
        keys: Arc<dyn KeyBackend>,
        clock: SharedClock,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> Arc<Publisher> {
        Arc::new(Publisher {
            store,
            keys,
            clock,
            config,
            metrics,
            wake: Notify::new(),
            signers: Mutex::default(),
        })
    }

    /// Asks for a publication round soon (after a revocation).
    pub fn kick(&self) {
        self.wake.notify_one();
    }

    /// The wait between rounds nobody asked for ([`tick`] of `crl_refresh`).
    pub fn tick(&self) -> StdDuration {
        tick(self.config.crl_refresh)
    }

    /// How long the lease lasts without renewal ([`lease_ttl`] of the tick).
    pub fn lease_ttl(&self) -> Duration {
        lease_ttl(self.tick())
    }

    /// Publishes due CRLs until `shutdown` turns true: on every wake-up and every
    /// [`Publisher::tick`].
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.publish_due().await {
                Ok(published) if !published.is_empty() => {
                    tracing::debug!(count = published.len(), "Published CRLs.");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "Publishing CRLs failed; retrying on the next round.")
                }
            }
            tokio::select! {
                _ = self.wake.notified() => tokio::time::sleep(DEBOUNCE).await,
                _ = tokio::time::sleep(self.tick()) => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        if let Err(e) = leases::release(self.store.conn(), LEASE, &self.config.replica).await {
            tracing::warn!(error = %e, "Releasing the CRL publisher lease failed; it expires by itself.");
        }
    }

    /// Publishes every due CRL of every tenant, if this replica holds (or takes) the lease.
    /// Returns what it published; empty when another replica holds the lease.
    pub async fn publish_due(&self) -> Result<Vec<Published>, RevocationError> {
        let now = self.clock.now();
        if !leases::try_acquire(
            self.store.conn(),
            LEASE,
            &self.config.replica,
            now,
            self.lease_ttl(),
        )
        .await?
        {
            return Ok(Vec::new());
        }
        let mut published = Vec::new();
        for (tenant, _, _) in tenants::list(self.store.conn()).await? {
            for scope in self.due_scopes(tenant).await? {
                match self.publish(&scope).await {
                    Ok(p) => published.push(p),
                    Err(e) => {
                        tracing::error!(ca = %scope.ca_id, generation = scope.generation, shard = scope.shard, error = %e, "Publishing a CRL failed.");
                    }
                }
            }
            // Long rounds keep the lease.
            leases::try_acquire(
                self.store.conn(),
                LEASE,
                &self.config.replica,
                self.clock.now(),
                self.lease_ttl(),
            )
            .await?;
        }
        Ok(published)
    }

    /// Every scope of the tenant that needs a new CRL now.
    async fn due_scopes(&self, tenant: TenantId) -> Result<Vec<CrlScope>, RevocationError> {
        let now = self.clock.now();
        let refresh = self.config.crl_refresh;
        let configured = self.config.crl_shards.clamp(1, MAX_CRL_SHARDS);
        self.store
            .in_tenant(tenant, async |tx| {
                let heads: HashMap<(CaId, u32, u32), crls::CrlHead> = crls::heads(tx, tenant)
                    .await?
                    .into_iter()
                    .map(|h| ((h.ca_id, h.generation, h.shard), h))
                    .collect();
                let mut shard_counts: HashMap<CaId, u32> = HashMap::new();
                let mut due = Vec::new();
                for row in ca_certificates::primaries(tx, tenant).await? {
                    if row.not_after <= now {
                        continue;
                    }
                    let shards = match shard_counts.get(&row.ca_id) {
                        Some(n) => *n,
                        None => {
                            let used = certificates::max_crl_shard(tx, tenant, row.ca_id)
                                .await?
                                .map_or(0, |m| m.saturating_add(1));
                            let n = configured.max(used.min(MAX_CRL_SHARDS));
                            shard_counts.insert(row.ca_id, n);
                            n
                        }
                    };
                    for shard in 0..shards {
                        let stale = match heads.get(&(row.ca_id, row.generation, shard)) {
                            None => true,
                            Some(head) => {
                                now >= head.this_update + refresh
                                    || head.next_update - now <= refresh
                                    || stale_since(head, tx, tenant, &row, shard).await?
                            }
                        };
                        if stale {
                            due.push(CrlScope {
                                tenant,
                                ca_id: row.ca_id,
                                generation: row.generation,
                                key_id: row.id,
                                shard,
                            });
                        }
                    }
                }
                Ok::<_, RevocationError>(due)
            })
            .await
    }

    /// Makes, signs, stores and announces the CRL of one scope; counted in
    /// `certmesh_crl_generations_total` and, when published, timed in
    /// `certmesh_crl_generation_seconds`.
    pub async fn publish(&self, scope: &CrlScope) -> Result<Published, RevocationError> {
        let started = Instant::now();
        let made = self.make(scope).await;
        let outcome = match &made {
            Ok(_) => {
                self.metrics
                    .crl_generation_seconds
                    .observe(started.elapsed().as_secs_f64());
                CrlOutcome::Published
            }
            Err(_) => CrlOutcome::Failed,
        };
        self.metrics
            .crl_generations
            .get_or_create(&CrlLabels { outcome })
            .inc();
        made
    }

    async fn make(&self, scope: &CrlScope) -> Result<Published, RevocationError> {
        let tenant = scope.tenant;
        let key = self
            .store
            .in_tenant(tenant, async |tx| {
                let row = ca_certificates::primaries(tx, tenant)
                    .await?
                    .into_iter()
                    .find(|r| r.id == scope.key_id)
                    .ok_or_else(|| RevocationError::CaNotFound {
                        id: scope.ca_id.to_string(),
                    })?;
                Ok::<_, RevocationError>(KeyRow {
                    ca_id: row.ca_id,
                    generation: row.generation,
                    key_id: row.id,
                    key_ref: row.key_ref,
                    der: row.certificate_der,
                })
            })
            .await?;
        let ca = self.signer(&key).await?;
        let url = self.config.urls.crl(key.key_id, scope.shard);
        let now = self.clock.now();
        let this_update = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
        let next_update = this_update + self.config.crl_validity;
        let published = self
            .store
            .in_tenant(tenant, async |tx| {
                // A write first: on SQLite it takes the write lock before the reads.
                let number = crls::next_number(tx, tenant, key.ca_id).await?;
                let rows = revocations::for_crl(
                    tx,
                    tenant,
                    key.ca_id,
                    key.generation,
                    scope.shard,
                    this_update,
                )
                .await?;
                let entries = rows
                    .into_iter()
                    .map(|r| {
                        let serial = Serial::from_hex(&r.serial).map_err(|_| {
                            RevocationError::Corrupt(format!("revocation serial {:?}", r.serial))
                        })?;
                        let reason = RevocationReason::parse(&r.reason)
                            .filter(|r| *r != RevocationReason::RemoveFromCrl)
                            .unwrap_or(RevocationReason::Unspecified);
                        Ok(CrlEntry {
                            serial,
                            revoked_at: r.revoked_at,
                            reason,
                        })
                    })
                    .collect::<Result<Vec<_>, RevocationError>>()?;
                let count = entries.len();
                let der = sign(
                    ca.clone(),
                    number,
                    this_update,
                    next_update,
                    url.clone(),
                    entries,
                )
                .await?;
                let record = CrlRecord {
                    tenant_id: tenant,
                    ca_id: key.ca_id,
                    generation: key.generation,
                    shard: scope.shard,
                    number,
                    this_update,
                    next_update,
                    sha256: sha256_hex(&der),
                    entries: count as u64,
                    created_at: now,
                    der,
                };
                crls::upsert(tx, &record).await?;
                outbox::append(
                    tx,
                    tenant,
                    "ca.crl.published",
                    &key.ca_id.to_string(),
                    json!({
                        "ca_id": key.ca_id.to_string(),
                        "generation": key.generation,
                        "shard": scope.shard,
                        "number": number,
                        "this_update": this_update,
                        "next_update": next_update,
                        "entries": count,
                        "bytes": record.der.len(),
                        "url": url,
                    }),
                    now,
                )
                .await?;
                Ok::<_, RevocationError>(Published {
                    tenant,
                    ca_id: key.ca_id,
                    generation: key.generation,
                    shard: scope.shard,
                    number,
                    entries: count as u64,
                    bytes: record.der.len(),
                    url: url.clone(),
                })
            })
            .await?;
        tracing::info!(ca = %published.ca_id, generation = published.generation, shard = published.shard, number = published.number, entries = published.entries, bytes = published.bytes, "Published a CRL.");
        Ok(published)
    }

    async fn signer(&self, key: &KeyRow) -> Result<Arc<IssuingCa>, RevocationError> {
        let mut signers = self.signers.lock().await;
        if let Some(ca) = signers.get(&key.key_id) {
            return Ok(ca.clone());
        }
        let key_ref: KeyRef = key.key_ref.parse()?;
        let signer = self.keys.signer(&key_ref).await?;
        let cert = Certificate::from_der(key.der.clone())?;
        let ca = Arc::new(IssuingCa::new(cert, signer)?);
        signers.insert(key.key_id, ca.clone());
        Ok(ca)
    }
}

/// The wait between publisher rounds nobody asked for: half of `refresh`, so a CRL is never
/// more than one and a half refresh periods old, between 1 s and 30 s.
pub fn tick(refresh: Duration) -> StdDuration {
    (refresh / 2)
        .to_std()
        .unwrap_or(MAX_TICK)
        .clamp(MIN_TICK, MAX_TICK)
}

/// How long the publisher's lease lasts without renewal: four rounds of `tick` (two minutes at
/// the longest tick), at least 10 s. A replica that dies is replaced that long after its last
/// round.
pub fn lease_ttl(tick: StdDuration) -> Duration {
    Duration::from_std(tick * LEASE_TICKS)
        .unwrap_or(MIN_LEASE_TTL)
        .max(MIN_LEASE_TTL)
}

/// Whether a revocation in the scope changed at or after the CRL's thisUpdate (less the race
/// margin) — the CRL may not list it.
async fn stale_since<C: sea_orm::ConnectionTrait>(
    head: &crls::CrlHead,
    tx: &C,
    tenant: TenantId,
    row: &ca_certificates::CaCertificate,
    shard: u32,
) -> Result<bool, RevocationError> {
    Ok(
        revocations::last_change(tx, tenant, row.ca_id, row.generation, shard)
            .await?
            .is_some_and(|changed| changed >= head.this_update - RACE_MARGIN),
    )
}

/// Signs a CRL, off the async workers when it is large.
async fn sign(
    ca: Arc<IssuingCa>,
    number: u64,
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
    url: String,
    entries: Vec<CrlEntry>,
) -> Result<Vec<u8>, RevocationError> {
    let large = entries.len() > BLOCKING_ABOVE;
    let work = move || {
        ca.sign_crl(&CrlTemplate {
            number,
            this_update,
            next_update,
            distribution_point: Some(&url),
            entries: &entries,
        })
    };
    if large {
        return Ok(tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| RevocationError::Corrupt(format!("CRL signing task: {e}")))??);
    }
    Ok(work()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_is_half_the_refresh_within_bounds_and_the_lease_four_ticks() {
        let secs = StdDuration::from_secs;
        let cases = [
            (Duration::hours(1), secs(30), Duration::minutes(2)),
            (Duration::seconds(40), secs(20), Duration::seconds(80)),
            (Duration::seconds(4), secs(2), Duration::seconds(10)),
            (Duration::seconds(1), secs(1), Duration::seconds(10)),
            (Duration::zero(), secs(1), Duration::seconds(10)),
        ];
        for (refresh, want_tick, want_ttl) in cases {
            assert_eq!(tick(refresh), want_tick, "{refresh}");
            assert_eq!(lease_ttl(tick(refresh)), want_ttl, "{refresh}");
        }
    }
}
