//! The one issuance path.
//!
//! Order matters: a replayed idempotency key is answered before the profile is consulted (the
//! profile may have changed since); the profile is evaluated before anything is signed; and the
//! claim of the key, the evaluation event, the signature, the stored certificate and the
//! `ca.issue` event commit together or not at all. Reads happen before the transaction opens,
//! so every statement inside it writes: on SQLite that takes the write lock at once instead of
//! failing to upgrade a read snapshot.

use std::time::Instant;

use certmesh_crypto::serial::Serial;
use certmesh_kit::auth::AuthContext;
use certmesh_store::{
    TenantId,
    certificates::{self, CertificateRecord},
    idempotency, outbox, profiles,
};
use chrono::Duration;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::{
    Issuance,
    commit::{Committed, Pending, Prepared, SignJob},
    error::IssuanceError,
    issuer::Issuer,
    model::IssueCommand,
    profile::{Denial, Grant, ValidatedProfile},
};

/// Leaves start a minute in the past so a relying party with a slightly slow clock accepts them.
const BACKDATE: Duration = Duration::seconds(60);

/// The result of an Issue call.
#[derive(Debug, Clone)]
pub struct IssueOutcome {
    /// The stored certificate.
    pub record: CertificateRecord,
    /// The requested validity exceeded the profile's maximum and was capped.
    pub capped: bool,
    /// Answered from an earlier request with the same idempotency key.
    pub replayed: bool,
}

impl Issuance {
    /// Issue a certificate for `cmd` in the caller's tenant.
    pub async fn issue(
        &self,
        auth: &AuthContext,
        cmd: IssueCommand,
    ) -> Result<IssueOutcome, IssuanceError> {
        let started = Instant::now();
        let result = self.issue_inner(auth, &cmd).await;
        let metrics = &self.deps.metrics;
        match &result {
            Ok(o) if o.replayed => {
                metrics.issuance_replayed.inc();
            }
            Ok(_) => {
                metrics.certificates_issued.inc();
                metrics
                    .issue_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            Err(IssuanceError::ProfileDenied { .. }) => {
                metrics.issuance_denied.inc();
            }
            Err(_) => {}
        }
        result
    }

    async fn issue_inner(
        &self,
        auth: &AuthContext,
        cmd: &IssueCommand,
    ) -> Result<IssueOutcome, IssuanceError> {
        let store = &self.deps.store;
        let tenant = auth.tenant_id;
        let hash = cmd.request_hash();
        if let Some(key) = &cmd.idempotency_key
            && let Some(done) = replay(store.conn(), tenant, key, &hash, cmd).await?
        {
            return Ok(done);
        }
        let (version, profile) = self.active_profile(tenant, &cmd.profile).await?;
        let grant = match profile.evaluate(&cmd.csr, cmd.validity) {
            Ok(grant) => grant,
            Err(denial) => {
                return Err(self.record_denial(auth, cmd, version, denial).await);
            }
        };
        self.deps.builtin.ready(tenant).await?;

        let now = self.deps.clock.now();
        let job = SignJob {
            csr: cmd.csr.clone(),
            serial: Serial::random(),
            // The lifetime is exactly the grant: backdating moves the whole window.
            not_before: now - BACKDATE,
            not_after: now - BACKDATE + grant.validity,
            ekus: grant.ekus.clone(),
        };
        let key = cmd.idempotency_key.clone().map(|k| (k, hash.clone()));
        let cert = match key {
            // Signed here, in parallel with other requests.
            None => Prepared::Signed(self.deps.builtin.issue(job.request(tenant)).await?),
            // Signed by the committer only once the key's claim wins.
            Some(_) => Prepared::ToSign(job),
        };
        let pending = Pending {
            tenant,
            key,
            cert,
            profile: cmd.profile.clone(),
            profile_version: version,
            evaluation: evaluation_event(auth, cmd, version, Ok(&grant)),
            principal: auth.principal.clone(),
            request_id: auth.request_id.clone(),
            now,
        };
        match self.committer.commit(pending).await? {
            Committed::Stored(record) => {
                tracing::debug!(serial = %record.serial, ca = %record.issuer_ca_id, profile = %record.profile_name, "Certificate issued.");
                Ok(IssueOutcome {
                    record: *record,
                    capped: grant.capped,
                    replayed: false,
                })
            }
            Committed::KeyTaken => {
                // A concurrent request with this key committed first.
                let key = cmd.idempotency_key.as_deref().unwrap_or_default();
                replay(store.conn(), tenant, key, &hash, cmd)
                    .await?
                    .ok_or_else(|| IssuanceError::IdempotencyKeyInFlight {
                        key: key.to_string(),
                    })
            }
        }
    }

    /// The active (latest) version of a profile: one read of the version pointer, and the
    /// immutable version itself from the cache.
    async fn active_profile(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<(u32, std::sync::Arc<ValidatedProfile>), IssuanceError> {
        let conn = self.deps.store.conn();
        let not_found = || IssuanceError::ProfileNotFound {
            name: name.to_string(),
            version: None,
        };
        let (profile_id, version) = profiles::head(conn, tenant, name)
            .await?
            .ok_or_else(not_found)?;
        if let Some(profile) = self.profiles.get(profile_id, version) {
            return Ok((version, profile));
        }
        let stored = profiles::version(conn, tenant, name, version)
            .await?
            .ok_or_else(not_found)?;
        let profile = std::sync::Arc::new(ValidatedProfile::from_json(&stored.spec)?);
        self.profiles.insert(profile_id, version, profile.clone());
        Ok((version, profile))
    }

    /// Keep the deny event and its audit entry (outside the issuance transaction: nothing
    /// else of the request is kept) and build the error.
    async fn record_denial(
        &self,
        auth: &AuthContext,
        cmd: &IssueCommand,
        version: u32,
        denial: Denial,
    ) -> IssuanceError {
        let now = self.deps.clock.now();
        let payload = evaluation_event(auth, cmd, version, Err(&denial));
        let audit_entry = certmesh_kit::audit::entry(
            auth,
            "certs.issue",
            format!("profile:{}", cmd.profile),
            certmesh_store::audit::Outcome::Denied,
            payload.clone(),
            now,
        );
        let written = async {
            let tx = self.deps.store.begin().await?;
            outbox::append(
                &tx,
                auth.tenant_id,
                "issuance.profile_evaluated",
                &cmd.profile,
                payload,
                now,
            )
            .await?;
            certmesh_store::audit::append(&tx, auth.tenant_id, &[audit_entry]).await?;
            tx.commit().await.map_err(certmesh_store::StoreError::from)
        }
        .await;
        if let Err(e) = written {
            return e.into();
        }
        IssuanceError::ProfileDenied {
            profile: cmd.profile.clone(),
            version,
            rule: denial.rule,
            detail: denial.detail,
        }
    }
}

/// The stored answer for `key`, `None` if the key is unused, or an error if it was used for
/// another request.
async fn replay<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    key: &str,
    hash: &str,
    cmd: &IssueCommand,
) -> Result<Option<IssueOutcome>, IssuanceError> {
    let Some(existing) = idempotency::get(c, tenant, key).await? else {
        return Ok(None);
    };
    if existing.request_hash != hash {
        return Err(IssuanceError::IdempotencyKeyReused {
            key: key.to_string(),
        });
    }
    let serial =
        existing
            .certificate_serial
            .ok_or_else(|| IssuanceError::IdempotencyKeyInFlight {
                key: key.to_string(),
            })?;
    let record = certificates::get(c, tenant, &serial)
        .await?
        .ok_or_else(|| IssuanceError::CertificateNotFound {
            serial: serial.clone(),
        })?;
    let granted = record.not_after - record.not_before;
    let capped = cmd.validity.is_some_and(|v| v > granted);
    Ok(Some(IssueOutcome {
        record,
        capped,
        replayed: true,
    }))
}

fn evaluation_event(
    auth: &AuthContext,
    cmd: &IssueCommand,
    version: u32,
    decision: Result<&Grant, &Denial>,
) -> serde_json::Value {
    let mut event = json!({
        "profile": cmd.profile,
        "profile_version": version,
        "principal": auth.principal,
        "subject": cmd.csr.subject(),
        "dns_names": cmd.csr.dns_names(),
        "key_algorithm": cmd.csr.key().algorithm.as_str(),
        "key_bits": cmd.csr.key().bits,
    });
    match decision {
        Ok(grant) => {
            event["decision"] = json!("allow");
            event["validity_seconds"] = json!(grant.validity.num_seconds());
            event["validity_capped"] = json!(grant.capped);
        }
        Err(denial) => {
            event["decision"] = json!("deny");
            event["rule"] = json!(denial.rule);
            event["detail"] = json!(denial.detail);
        }
    }
    event
}
