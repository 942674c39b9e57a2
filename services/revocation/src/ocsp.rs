//! The OCSP responder (RFC 6960, RFC 5019 profile): answers from pre-signed responses cached per
//! certificate.
//!
//! A request for one certificate without a nonce (what RFC 5019 clients and caches send) is
//! answered from the cache: the DER signed earlier for exactly that CertID. A miss reads the
//! certificate and its revocation from the store once, signs, and caches. A request with a
//! nonce is signed afresh (the nonce is inside the signature) from the cached status.
//!
//! Freshness: each answer is valid for `validity` and re-signed at half of it by
//! [`Responders::refresh_due`]. A revocation on this replica replaces the cached answers at once
//! ([`Responders::status_changed`]), before the revoke call returns; other replicas see the
//! change within a second ([`Responders::poll_changes`]).
//!
//! Never "good" for a serial the CA did not issue: only a certificate row of that CA, signed
//! by that CA key, is good; anything else is "unknown".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use certmesh_crypto::{
    cert::Certificate,
    ocsp::{
        CertId, CertStatus, OcspErrorStatus, OcspRequestError, Responder, SingleResponse,
        parse_request,
    },
    serial::Serial,
};
use certmesh_kit::{SharedClock, metrics::OcspResult};
use certmesh_store::{CaId, Store, TenantId, certificates, revocations};
use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::{directory::CaKey, directory::Directory, error::RevocationError, revoke::cert_status};

/// Cache shards (by the serial's last byte), so lookups rarely contend.
const SHARDS: usize = 16;
/// Revocation changes read per tenant per poll.
const POLL_BATCH: u64 = 1000;
/// Overlap of successive polls, for clock skew between replicas.
const POLL_OVERLAP: Duration = Duration::seconds(5);
/// Most cached answers re-signed per [`Responders::refresh_due`] call.
const REFRESH_BATCH: usize = 5000;

/// What the responder answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A signed response.
    Response {
        /// DER `OCSPResponse`.
        der: Bytes,
        /// thisUpdate of its (first) single response.
        this_update: DateTime<Utc>,
        /// nextUpdate of its (first) single response.
        next_update: DateTime<Utc>,
        /// Whether HTTP caches may keep it (no nonce).
        cacheable: bool,
        /// The status of its (first) certificate.
        status: CertStatus,
    },
    /// An unsigned error response.
    Error(OcspErrorStatus),
}

impl Answer {
    /// The DER body.
    pub fn body(&self) -> Bytes {
        match self {
            Answer::Response { der, .. } => der.clone(),
            Answer::Error(status) => {
                Bytes::from_static(certmesh_crypto::ocsp::error_response(*status))
            }
        }
    }

    /// What it counts as in `certmesh_ocsp_requests_total`.
    pub fn result(&self) -> OcspResult {
        match self {
            Answer::Response { status, .. } => match status {
                CertStatus::Good => OcspResult::Good,
                CertStatus::Revoked { .. } => OcspResult::Revoked,
                CertStatus::Unknown => OcspResult::Unknown,
            },
            Answer::Error(status) => match status {
                OcspErrorStatus::MalformedRequest => OcspResult::Malformed,
                OcspErrorStatus::InternalError => OcspResult::InternalError,
                OcspErrorStatus::TryLater => OcspResult::TryLater,
                OcspErrorStatus::SigRequired => OcspResult::SigRequired,
                OcspErrorStatus::Unauthorized => OcspResult::Unauthorized,
            },
        }
    }
}

/// A signed answer for one CertID encoding.
#[derive(Debug)]
struct Variant {
    cert_id: CertId,
    der: Bytes,
}

/// One freshly signed answer.
#[derive(Debug)]
struct Signed {
    status: CertStatus,
    der: Bytes,
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
}

/// Everything cached for one certificate.
#[derive(Debug)]
struct Entry {
    status: CertStatus,
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
    refresh_at: DateTime<Utc>,
    variants: Vec<Variant>,
}

type Shard = RwLock<HashMap<uuid::Uuid, HashMap<Box<[u8]>, Entry>>>;

/// The OCSP responder state: the directory of CA keys and the answer cache.
#[derive(Debug)]
pub struct Responders {
    directory: Arc<Directory>,
    store: Store,
    clock: SharedClock,
    validity: Duration,
    capacity: usize,
    shards: Vec<Shard>,
    watermarks: Mutex<HashMap<TenantId, DateTime<Utc>>>,
    started: DateTime<Utc>,
    /// Bumped by every status change: an answer built from a status read before a change is
    /// not cached, so a revocation racing a cache miss cannot leave a stale "good" behind.
    epoch: AtomicU64,
}

/// A serial as the cache keys it: the INTEGER's magnitude without leading zero octets (as
/// `Serial::as_bytes` gives it), however the request encoded it.
fn serial_key(bytes: &[u8]) -> &[u8] {
    let mut b = bytes;
    while b.len() > 1 && b[0] == 0 {
        b = &b[1..];
    }
    b
}

fn shard_of(serial: &[u8]) -> usize {
    serial.last().map_or(0, |b| usize::from(*b) % SHARDS)
}

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Responders {
    /// A responder over `directory`, reading statuses from `store` (give it a pool of its own,
    /// made on the runtime that serves OCSP), answers valid for `validity`, at most `capacity`
    /// certificates cached.
    pub fn new(
        directory: Arc<Directory>,
        store: Store,
        clock: SharedClock,
        validity: Duration,
        capacity: usize,
    ) -> Responders {
        let started = clock.now();
        Responders {
            directory,
            store,
            clock,
            validity,
            capacity,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            watermarks: Mutex::default(),
            started,
            epoch: AtomicU64::new(0),
        }
    }

    /// The directory of CA keys.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// How many certificates have cached answers.
    pub fn cached(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock_read(s).values().map(HashMap::len).sum::<usize>())
            .sum()
    }

    /// Answers a DER `OCSPRequest`.
    pub async fn answer(&self, request: &[u8]) -> Answer {
        let parsed = match parse_request(request) {
            Ok(p) => p,
            Err(OcspRequestError::TooLarge)
            | Err(OcspRequestError::Malformed(_))
            | Err(OcspRequestError::BadNonce(_)) => {
                return Answer::Error(OcspErrorStatus::MalformedRequest);
            }
        };
        let Some(key) = self.directory.find_cert_id(&parsed.cert_ids[0]).await else {
            return Answer::Error(OcspErrorStatus::Unauthorized);
        };
        // One response is signed by one responder: every CertID must name the same CA key.
        for id in &parsed.cert_ids[1..] {
            match self.directory.by_cert_id(id) {
                Some(k) if Arc::ptr_eq(&k, &key) => {}
                _ => return Answer::Error(OcspErrorStatus::Unauthorized),
            }
        }
        let single = parsed.cert_ids.len() == 1 && parsed.nonce.is_none();
        if single && let Some(hit) = self.cached_variant(&key, &parsed.cert_ids[0]) {
            return hit;
        }
        let responder = match self.directory.responder(&key).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(ca = %key.ca_id, error = %e, "No OCSP responder for this CA key.");
                return Answer::Error(OcspErrorStatus::TryLater);
            }
        };
        let now = self.now();
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut statuses = Vec::with_capacity(parsed.cert_ids.len());
        for id in &parsed.cert_ids {
            match self.status(&key, id, now).await {
                Ok(s) => statuses.push(s),
                Err(e) => {
                    tracing::error!(error = %e, "Reading a certificate's status for OCSP failed.");
                    return Answer::Error(OcspErrorStatus::InternalError);
                }
            }
        }
        let (this_update, next_update) = self.window(now, &responder);
        let singles: Vec<SingleResponse<'_>> = parsed
            .cert_ids
            .iter()
            .zip(&statuses)
            .map(|(cert_id, status)| SingleResponse {
                cert_id,
                status: status.clone(),
                this_update,
                next_update,
            })
            .collect();
        let der = match responder.sign(&singles, parsed.nonce.as_deref(), now) {
            Ok(d) => Bytes::from(d),
            Err(e) => {
                tracing::error!(error = %e, "Signing an OCSP response failed.");
                return Answer::Error(OcspErrorStatus::InternalError);
            }
        };
        if single {
            self.store_variant(
                &key,
                &parsed.cert_ids[0],
                Signed {
                    status: statuses[0].clone(),
                    der: der.clone(),
                    this_update,
                    next_update,
                },
                Some(epoch),
            );
        }
        Answer::Response {
            der,
            this_update,
            next_update,
            cacheable: parsed.nonce.is_none(),
            status: statuses.swap_remove(0),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let now = self.clock.now();
        now.duration_trunc(Duration::seconds(1)).unwrap_or(now)
    }

    /// thisUpdate and nextUpdate for an answer signed at `now` by `responder`.
    fn window(&self, now: DateTime<Utc>, responder: &Responder) -> (DateTime<Utc>, DateTime<Utc>) {
        let next = (now + self.validity).min(responder.certificate().not_after());
        (now, next)
    }

    fn cached_variant(&self, key: &CaKey, id: &CertId) -> Option<Answer> {
        let serial = serial_key(&id.serial_bytes);
        let shard = lock_read(&self.shards[shard_of(serial)]);
        let entry = shard.get(&key.key_id)?.get(serial)?;
        if entry.refresh_at <= self.clock.now() {
            return None;
        }
        let variant = entry.variants.iter().find(|v| v.cert_id.der == id.der)?;
        Some(Answer::Response {
            der: variant.der.clone(),
            this_update: entry.this_update,
            next_update: entry.next_update,
            cacheable: true,
            status: entry.status.clone(),
        })
    }

    fn cached_status(&self, key: &CaKey, serial: &[u8], now: DateTime<Utc>) -> Option<CertStatus> {
        let shard = lock_read(&self.shards[shard_of(serial)]);
        let entry = shard.get(&key.key_id)?.get(serial)?;
        (entry.refresh_at > now).then(|| entry.status.clone())
    }

    fn store_variant(&self, key: &CaKey, id: &CertId, signed: Signed, epoch: Option<u64>) {
        let Signed {
            status,
            der,
            this_update,
            next_update,
        } = signed;
        let refresh_at = this_update + (next_update - this_update) / 2;
        let full = self.cached() >= self.capacity;
        let serial_bytes = serial_key(&id.serial_bytes);
        let mut shard = lock_write(&self.shards[shard_of(serial_bytes)]);
        // Checked under the shard lock, which status_changed takes after bumping the epoch.
        if epoch.is_some_and(|e| e != self.epoch.load(Ordering::SeqCst)) {
            return;
        }
        let per_key = shard.entry(key.key_id).or_default();
        let serial: Box<[u8]> = serial_bytes.into();
        match per_key.get_mut(&serial) {
            Some(entry) if entry.status == status && entry.refresh_at > this_update => {
                // Same status, still fresh: add this CertID encoding.
                entry.variants.retain(|v| v.cert_id.der != id.der);
                entry.variants.push(Variant {
                    cert_id: id.clone(),
                    der,
                });
            }
            Some(entry) => {
                *entry = Entry {
                    status,
                    this_update,
                    next_update,
                    refresh_at,
                    variants: vec![Variant {
                        cert_id: id.clone(),
                        der,
                    }],
                };
            }
            None if full => {}
            None => {
                per_key.insert(
                    serial,
                    Entry {
                        status,
                        this_update,
                        next_update,
                        refresh_at,
                        variants: vec![Variant {
                            cert_id: id.clone(),
                            der,
                        }],
                    },
                );
            }
        }
    }

    /// The status of the certificate `id` names, from the cache or the store.
    async fn status(
        &self,
        key: &CaKey,
        id: &CertId,
        now: DateTime<Utc>,
    ) -> Result<CertStatus, RevocationError> {
        if let Some(s) = self.cached_status(key, serial_key(&id.serial_bytes), now) {
            return Ok(s);
        }
        let Some(serial) = id.serial() else {
            return Ok(CertStatus::Unknown);
        };
        lookup(&self.store, key, &serial).await
    }

    /// Replaces this replica's cached answers for a certificate whose status changed (a
    /// revocation, a hold lifted): every cached CertID encoding is re-signed with the new status
    /// before this returns, so no stale "good" is served after it.
    pub async fn status_changed(
        &self,
        tenant: TenantId,
        ca: CaId,
        generation: u32,
        serial: &[u8],
        status: CertStatus,
        now: DateTime<Utc>,
    ) {
        let Some(key) = self.directory.by_generation(tenant, ca, generation) else {
            return;
        };
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let ids: Vec<CertId> = {
            let mut shard = lock_write(&self.shards[shard_of(serial)]);
            let Some(entry) = shard.get_mut(&key.key_id).and_then(|m| m.remove(serial)) else {
                return;
            };
            entry.variants.into_iter().map(|v| v.cert_id).collect()
        };
        // The entry is gone now, so nothing stale can be served while we sign.
        let responder = match self.directory.responder(&key).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(ca = %key.ca_id, error = %e, "Cannot re-sign OCSP answers after a status change; they will be signed on the next request.");
                return;
            }
        };
        let now = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
        self.sign_and_store(&key, &responder, &ids, status, now, None);
    }

    fn sign_and_store(
        &self,
        key: &CaKey,
        responder: &Responder,
        ids: &[CertId],
        status: CertStatus,
        now: DateTime<Utc>,
        epoch: Option<u64>,
    ) {
        let (this_update, next_update) = self.window(now, responder);
        for id in ids {
            let single = [SingleResponse {
                cert_id: id,
                status: status.clone(),
                this_update,
                next_update,
            }];
            match responder.sign(&single, None, now) {
                Ok(der) => self.store_variant(
                    key,
                    id,
                    Signed {
                        status: status.clone(),
                        der: Bytes::from(der),
                        this_update,
                        next_update,
                    },
                    epoch,
                ),
                Err(e) => tracing::error!(error = %e, "Re-signing an OCSP answer failed."),
            }
        }
    }

    /// Re-signs cached answers past half their validity (at most a batch per call), so the
    /// cache never serves one near its nextUpdate. Returns how many certificates it re-signed.
    pub async fn refresh_due(&self) -> usize {
        let now = self.now();
        let mut due: Vec<(uuid::Uuid, Box<[u8]>)> = Vec::new();
        for shard in &self.shards {
            let shard = lock_read(shard);
            for (key_id, per_key) in shard.iter() {
                for (serial, entry) in per_key {
                    if entry.refresh_at <= now && due.len() < REFRESH_BATCH {
                        due.push((*key_id, serial.clone()));
                    }
                }
            }
        }
        let mut refreshed = 0;
        for (key_id, serial) in due {
            let Some(key) = self.directory.find_key_id(key_id).await else {
                // The key is gone (expired CA): drop its answers.
                lock_write(&self.shards[shard_of(&serial)]).remove(&key_id);
                continue;
            };
            let Ok(responder) = self.directory.responder(&key).await else {
                continue;
            };
            let epoch = self.epoch.load(Ordering::SeqCst);
            let taken = {
                let mut shard = lock_write(&self.shards[shard_of(&serial)]);
                shard
                    .get_mut(&key_id)
                    .and_then(|m| m.remove(&serial))
                    .filter(|e| e.refresh_at <= now)
            };
            if let Some(entry) = taken {
                // The store's word, not the cached one: a change this replica missed heals here.
                let status = match Serial::from_bytes(&serial) {
                    Ok(s) => match lookup(&self.store, &key, &s).await {
                        Ok(status) => status,
                        Err(e) => {
                            tracing::warn!(error = %e, "Re-reading a status for OCSP failed; the answer will be signed on the next request.");
                            continue;
                        }
                    },
                    Err(_) => CertStatus::Unknown,
                };
                let ids: Vec<CertId> = entry.variants.into_iter().map(|v| v.cert_id).collect();
                self.sign_and_store(&key, &responder, &ids, status, now, Some(epoch));
                refreshed += 1;
            }
            tokio::task::yield_now().await;
        }
        refreshed
    }

    /// Applies revocation changes made by other replicas since the last poll: cached answers
    /// whose status differs from the store's are re-signed. Returns how many were.
    pub async fn poll_changes(&self) -> Result<usize, RevocationError> {
        let mut changed = 0;
        for tenant in self.directory.tenants() {
            let since = {
                let marks = self.watermarks.lock().unwrap_or_else(|p| p.into_inner());
                marks.get(&tenant).copied().unwrap_or(self.started) - POLL_OVERLAP
            };
            // Keyset pages from the overlap on, so a bulk revocation larger than a page is
            // read whole and the mark moves past it.
            let mut cursor = (since, String::new());
            let mut latest = None;
            loop {
                let rows = self
                    .store
                    .in_tenant(tenant, async |tx| {
                        revocations::changed_after(tx, tenant, (cursor.0, &cursor.1), POLL_BATCH)
                            .await
                    })
                    .await?;
                for row in &rows {
                    if self.apply_change(tenant, row).await {
                        changed += 1;
                    }
                }
                let Some(last) = rows.last() else { break };
                latest = Some(last.updated_at);
                cursor = (last.updated_at, last.serial.clone());
                if (rows.len() as u64) < POLL_BATCH {
                    break;
                }
            }
            if let Some(latest) = latest {
                let mut marks = self.watermarks.lock().unwrap_or_else(|p| p.into_inner());
                let mark = marks.entry(tenant).or_insert(latest);
                *mark = (*mark).max(latest);
            }
        }
        Ok(changed)
    }

    /// Re-signs the cached answers of a changed revocation when they say otherwise; true if
    /// it did.
    async fn apply_change(&self, tenant: TenantId, row: &revocations::RevocationRecord) -> bool {
        let Ok(serial) = Serial::from_hex(&row.serial) else {
            return false;
        };
        let Some(key) = self
            .directory
            .by_generation(tenant, row.issuer_ca_id, row.ca_generation)
        else {
            return false;
        };
        let status = cert_status(Some(row));
        let stale = {
            let shard = lock_read(&self.shards[shard_of(serial.as_bytes())]);
            shard
                .get(&key.key_id)
                .and_then(|m| m.get(serial.as_bytes()))
                .is_some_and(|e| e.status != status)
        };
        if stale {
            self.status_changed(
                tenant,
                row.issuer_ca_id,
                row.ca_generation,
                serial.as_bytes(),
                status,
                self.clock.now(),
            )
            .await;
        }
        stale
    }
}

/// The status of `serial` under `key`, from the store: good only for a certificate of that CA
/// signed by that key; revoked (a hold included) per its record; else unknown.
async fn lookup(
    store: &Store,
    key: &CaKey,
    serial: &Serial,
) -> Result<CertStatus, RevocationError> {
    let hex = serial.to_hex();
    let tenant = key.tenant;
    let (cert, revocation) = store
        .in_tenant(tenant, async |tx| {
            let cert = certificates::get(tx, tenant, &hex).await?;
            let revocation = match &cert {
                Some(_) => revocations::get(tx, tenant, &hex).await?,
                None => None,
            };
            Ok::<_, RevocationError>((cert, revocation))
        })
        .await?;
    let Some(cert) = cert else {
        return Ok(CertStatus::Unknown);
    };
    if cert.issuer_ca_id != key.ca_id {
        return Ok(CertStatus::Unknown);
    }
    let leaf = Certificate::from_der(cert.certificate_der)
        .map_err(|e| RevocationError::Corrupt(format!("stored certificate {hex}: {e}")))?;
    if leaf.authority_key_id().is_none()
        || leaf.authority_key_id() != key.certificate.subject_key_id()
    {
        return Ok(CertStatus::Unknown);
    }
    Ok(cert_status(revocation.as_ref()))
}
