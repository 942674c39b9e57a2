//! Every CA key (CA generation) of every tenant that can still have valid certificates, found by
//! its OCSP CertID hashes (issuer name and key, per hash algorithm) or by its public key id (the
//! id in its CRL URLs), each with its delegated OCSP responder.
//!
//! The directory is read on every OCSP request, so lookups take a read lock on an immutable
//! snapshot and clone an `Arc`. It is rebuilt from the store periodically, and at once (at most
//! once a second) when a request names a key it does not know, so a CA created a moment ago is
//! answered for. A responder is a P-256 key made in memory (never stored) with a short-lived
//! certificate from the CA key, made on first use and again at half its lifetime.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use certmesh_crypto::{
    cert::{Certificate, IssuingCa},
    keys::{KeyBackend, KeyRef},
    ocsp::{CertId, HashAlgorithm, Responder, ResponderKey, ResponderTemplate, issuer_hashes},
    serial::Serial,
};
use certmesh_kit::SharedClock;
use certmesh_store::{CaId, Store, TenantId, ca_certificates, cas, outbox, tenants};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::error::RevocationError;

/// Least time between two rebuilds forced by unknown keys.
const MISS_REFRESH_INTERVAL: StdDuration = StdDuration::from_secs(1);
/// A responder certificate starts this long before it is made, for relying parties' clock skew.
const BACKDATE: Duration = Duration::minutes(1);
/// RFC 5280 ub-common-name.
const MAX_CN: usize = 64;

/// One CA key: a generation of a CA, with its certificate.
#[derive(Debug)]
pub struct CaKey {
    /// Owner.
    pub tenant: TenantId,
    /// The CA.
    pub ca_id: CaId,
    /// The CA's name.
    pub ca_name: String,
    /// The generation (key) of the CA.
    pub generation: u32,
    /// Public id of this key: its primary certificate row's id, the `{ca_id}` of its CRL URLs.
    pub key_id: uuid::Uuid,
    /// Where the key lives.
    pub key_ref: String,
    /// The generation's CA certificate.
    pub certificate: Certificate,
    responder: RwLock<Option<Arc<Responder>>>,
    issuing: tokio::sync::Mutex<()>,
}

impl CaKey {
    /// The current responder if it is valid at `now` and not due for renewal.
    pub fn responder_at(
        &self,
        now: DateTime<Utc>,
        renew_before: Duration,
    ) -> Option<Arc<Responder>> {
        let guard = self.responder.read().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            // At most half its own lifetime before its end: one cut short by its CA's end is
            // not renewed on every use.
            .filter(|r| {
                let c = r.certificate();
                c.not_after() - renew_before.min((c.not_after() - c.not_before()) / 2) > now
            })
            .cloned()
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    by_hash: HashMap<(HashAlgorithm, Vec<u8>, Vec<u8>), Arc<CaKey>>,
    by_key_id: HashMap<uuid::Uuid, Arc<CaKey>>,
    by_generation: HashMap<(TenantId, CaId, u32), Arc<CaKey>>,
    tenants: Vec<TenantId>,
}

/// The directory of CA keys.
#[derive(Debug)]
pub struct Directory {
    store: Store,
    keys: Arc<dyn KeyBackend>,
    clock: SharedClock,
    responder_validity: Duration,
    snapshot: RwLock<Arc<Snapshot>>,
    last_miss_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl Directory {
    /// An empty directory over `store`; call [`Directory::refresh`] to fill it.
    pub fn new(
        store: Store,
        keys: Arc<dyn KeyBackend>,
        clock: SharedClock,
        responder_validity: Duration,
    ) -> Directory {
        Directory {
            store,
            keys,
            clock,
            responder_validity,
            snapshot: RwLock::default(),
            last_miss_refresh: tokio::sync::Mutex::new(None),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the directory from the store. Keys already known keep their responders.
    pub async fn refresh(&self) -> Result<(), RevocationError> {
        let now = self.clock.now();
        let old = self.snapshot();
        let mut next = Snapshot::default();
        for (tenant, _, _) in tenants::list(self.store.conn()).await? {
            next.tenants.push(tenant);
            let (names, rows) = self
                .store
                .in_tenant(tenant, async |tx| {
                    let names: HashMap<CaId, String> = cas::list(tx, tenant)
                        .await?
                        .into_iter()
                        .map(|ca| (ca.id, ca.name))
                        .collect();
                    let rows = ca_certificates::primaries(tx, tenant).await?;
                    Ok::<_, RevocationError>((names, rows))
                })
                .await?;
            for row in rows {
                if row.not_after <= now {
                    continue;
                }
                let key = match old.by_key_id.get(&row.id) {
                    Some(known) => known.clone(),
                    None => {
                        let certificate = match Certificate::from_der(row.certificate_der) {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::error!(ca = %row.ca_id, generation = row.generation, error = %e, "A stored CA certificate does not parse; it is left out of OCSP and CRLs.");
                                continue;
                            }
                        };
                        Arc::new(CaKey {
                            tenant,
                            ca_id: row.ca_id,
                            ca_name: names.get(&row.ca_id).cloned().unwrap_or_default(),
                            generation: row.generation,
                            key_id: row.id,
                            key_ref: row.key_ref,
                            certificate,
                            responder: RwLock::new(None),
                            issuing: tokio::sync::Mutex::new(()),
                        })
                    }
                };
                for h in issuer_hashes(&key.certificate) {
                    next.by_hash
                        .insert((h.hash, h.name_hash, h.key_hash), key.clone());
                }
                next.by_generation
                    .insert((tenant, key.ca_id, key.generation), key.clone());
                next.by_key_id.insert(key.key_id, key);
            }
        }
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Rebuilds after a miss, at most once per [`MISS_REFRESH_INTERVAL`]; true if it did.
    async fn refresh_after_miss(&self) -> bool {
        let mut last = self.last_miss_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < MISS_REFRESH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "Refreshing the CA key directory failed.");
            return false;
        }
        true
    }

    /// The key a CertID names, if known now.
    pub fn by_cert_id(&self, id: &CertId) -> Option<Arc<CaKey>> {
        // The tuple key needs owned bytes; CertIDs are small.
        self.snapshot()
            .by_hash
            .get(&(
                id.hash,
                id.issuer_name_hash.clone(),
                id.issuer_key_hash.clone(),
            ))
            .cloned()
    }

    /// The key a CertID names, rebuilding the directory once on a miss.
    pub async fn find_cert_id(&self, id: &CertId) -> Option<Arc<CaKey>> {
        if let Some(k) = self.by_cert_id(id) {
            return Some(k);
        }
        if self.refresh_after_miss().await {
            return self.by_cert_id(id);
        }
        None
    }

    /// The key with this public id, rebuilding the directory once on a miss.
    pub async fn find_key_id(&self, key_id: uuid::Uuid) -> Option<Arc<CaKey>> {
        if let Some(k) = self.snapshot().by_key_id.get(&key_id).cloned() {
            return Some(k);
        }
        if self.refresh_after_miss().await {
            return self.snapshot().by_key_id.get(&key_id).cloned();
        }
        None
    }

    /// The key of a CA generation, if known.
    pub fn by_generation(&self, tenant: TenantId, ca: CaId, generation: u32) -> Option<Arc<CaKey>> {
        self.snapshot()
            .by_generation
            .get(&(tenant, ca, generation))
            .cloned()
    }

    /// Every known key.
    pub fn keys(&self) -> Vec<Arc<CaKey>> {
        self.snapshot().by_key_id.values().cloned().collect()
    }

    /// Every tenant seen at the last rebuild.
    pub fn tenants(&self) -> Vec<TenantId> {
        self.snapshot().tenants.clone()
    }

    /// When a responder is renewed: at half its lifetime.
    pub fn renew_before(&self) -> Duration {
        self.responder_validity / 2
    }

    /// The key's responder, making one (and recording it) when it has none or its certificate
    /// is past half its lifetime.
    pub async fn responder(&self, key: &CaKey) -> Result<Arc<Responder>, RevocationError> {
        let now = self.clock.now();
        if let Some(r) = key.responder_at(now, self.renew_before()) {
            return Ok(r);
        }
        let _one_at_a_time = key.issuing.lock().await;
        let now = self.clock.now();
        if let Some(r) = key.responder_at(now, self.renew_before()) {
            return Ok(r);
        }
        let responder = Arc::new(self.issue_responder(key, now).await?);
        *key.responder.write().unwrap_or_else(|p| p.into_inner()) = Some(responder.clone());
        Ok(responder)
    }

    async fn issue_responder(
        &self,
        key: &CaKey,
        now: DateTime<Utc>,
    ) -> Result<Responder, RevocationError> {
        let key_ref: KeyRef = key.key_ref.parse()?;
        let signer = self.keys.signer(&key_ref).await?;
        let ca = IssuingCa::new(key.certificate.clone(), signer)?;
        let responder_key = ResponderKey::generate()?;
        let not_after = (now + self.responder_validity).min(key.certificate.not_after());
        let base = key
            .certificate
            .subject_common_name()
            .unwrap_or_else(|| key.ca_name.clone());
        let mut common_name = format!("{base} OCSP Responder");
        if common_name.chars().count() > MAX_CN {
            common_name = common_name.chars().take(MAX_CN).collect();
        }
        let template = ResponderTemplate {
            serial: Serial::random(),
            not_before: now - BACKDATE,
            not_after,
            common_name,
        };
        let cert = ca.issue_ocsp_responder(&responder_key, &template)?;
        let payload = json!({
            "ca_id": key.ca_id.to_string(),
            "generation": key.generation,
            "serial": cert.serial().to_hex(),
            "not_after": cert.not_after(),
            "fingerprint_sha256": cert.fingerprint_sha256(),
        });
        let serial = cert.serial().to_hex();
        self.store
            .in_tenant(key.tenant, async |tx| {
                outbox::append(
                    tx,
                    key.tenant,
                    "ca.ocsp_responder.issued",
                    &serial,
                    payload,
                    now,
                )
                .await
            })
            .await?;
        tracing::info!(ca = %key.ca_id, generation = key.generation, serial = %serial, not_after = %cert.not_after(), "Made a delegated OCSP responder certificate.");
        Ok(Responder::new(responder_key, cert)?)
    }

    /// Makes or renews the responder of every key whose responder is missing or due, so
    /// requests rarely wait for one. Failures (a key offline) are logged.
    pub async fn renew_responders(&self) {
        for key in self.keys() {
            if key
                .responder_at(self.clock.now(), self.renew_before())
                .is_some()
            {
                continue;
            }
            if let Err(e) = self.responder(&key).await {
                tracing::warn!(ca = %key.ca_id, generation = key.generation, error = %e, "Cannot make an OCSP responder for this CA key; its OCSP requests get tryLater.");
            }
        }
    }
}
