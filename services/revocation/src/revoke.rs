//! Revoking: one path for a single certificate and for each certificate of a bulk revocation.
//!
//! A revocation is a row per certificate ([`revocations`]) with an RFC 5280 reason. Revoking a
//! revoked certificate returns the first record unchanged, except that a `certificateHold` may
//! be made permanent with another reason (its revocation date stays). `removeFromCRL` lifts a
//! hold: the row is kept as `lifted`, so a later revocation starts a new record. Each change
//! writes the row, its event and its audit entry in one transaction; after the commit this
//! replica's OCSP answers for the certificate are replaced and the CRL publisher is woken.

use std::collections::HashMap;

use certmesh_crypto::{
    cert::Certificate, ocsp::CertStatus, revocation::RevocationReason, serial::Serial,
};
use certmesh_kit::auth::AuthContext;
use certmesh_store::{
    CaId, TenantId,
    audit::{self, AuditEntry, Outcome},
    ca_certificates, cas,
    certificates::{self, CertificateFilter, CertificateRecord, Cursor},
    outbox,
    revocations::{self, NewRevocation, RevocationRecord, STATUS_REVOKED},
};
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::{Revocations, error::RevocationError};

/// Longest free-text reason kept.
pub const MAX_REASON_TEXT: usize = 1024;
/// Certificates read per page of a bulk revocation.
const BULK_PAGE: u64 = 500;

/// Who acts.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The tenant acted in.
    pub tenant: TenantId,
    /// The principal's name, as audited and recorded as `revoked_by`.
    pub principal: String,
    /// The request id, joining audit entries with logs.
    pub request_id: String,
}

impl Actor {
    /// The caller of an RPC.
    pub fn of(auth: &AuthContext) -> Actor {
        Actor {
            tenant: auth.tenant_id,
            principal: auth.principal.clone(),
            request_id: auth.request_id.clone(),
        }
    }

    fn audit(
        &self,
        action: &str,
        resource: String,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> AuditEntry {
        AuditEntry {
            actor: self.principal.clone(),
            action: action.to_owned(),
            resource,
            request_id: self.request_id.clone(),
            outcome: Outcome::Allowed,
            details,
            at,
        }
    }
}

/// What a revocation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Newly revoked (or a hold made permanent).
    Revoked(RevocationRecord),
    /// It was revoked already; the first record, unchanged.
    AlreadyRevoked(RevocationRecord),
    /// A certificateHold was lifted; the certificate is good again.
    HoldLifted,
}

/// A bulk revocation's filter. At least one of `issuer_ca_id` and `profile` must be set.
#[derive(Clone, Debug, Default)]
pub struct BulkFilter {
    /// Only certificates of this CA (a UUID).
    pub issuer_ca_id: Option<String>,
    /// Only certificates issued under this profile.
    pub profile: Option<String>,
    /// Only certificates issued at or after this time.
    pub issued_after: Option<DateTime<Utc>>,
    /// Only certificates issued before this time.
    pub issued_before: Option<DateTime<Utc>>,
}

/// A bulk revocation's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BulkTotals {
    /// Certificates matching the filter.
    pub matched: u64,
    /// Revoked by this call (or, in a dry run, that would be).
    pub revoked: u64,
    /// Revoked before this call.
    pub already_revoked: u64,
    /// Not revoked: their CA is not one of the tenant's.
    pub skipped_external: u64,
}

/// A certificate's revocation status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusView {
    /// The certificate.
    pub certificate: CertificateRecord,
    /// Its revocation, when revoked (a hold included).
    pub revocation: Option<RevocationRecord>,
    /// Whether notAfter has passed.
    pub expired: bool,
}

/// Parses an RFC 5280 reason name; the error lists the valid ones.
pub fn parse_reason(given: &str) -> Result<RevocationReason, RevocationError> {
    RevocationReason::parse(given.trim()).ok_or_else(|| RevocationError::ReasonInvalid {
        given: given.to_owned(),
        valid: RevocationReason::ALL
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The canonical (lowercase hex) form of a serial as given by a caller.
pub fn canonical_serial(given: &str) -> Result<String, RevocationError> {
    let trimmed = given.trim().trim_start_matches("0x");
    Serial::from_hex(trimmed)
        .map(|s| s.to_hex())
        .map_err(|_| RevocationError::SerialInvalid(given.to_owned()))
}

fn check_reason_text(text: &str) -> Result<(), RevocationError> {
    if text.len() > MAX_REASON_TEXT {
        return Err(RevocationError::InvalidField {
            field: "reason_text",
            problem: format!("at most {MAX_REASON_TEXT} bytes"),
        });
    }
    Ok(())
}

/// The OCSP status a stored revocation (or its absence) means.
pub fn cert_status(revocation: Option<&RevocationRecord>) -> CertStatus {
    match revocation {
        Some(r) if r.status == STATUS_REVOKED => CertStatus::Revoked {
            at: r.revoked_at,
            reason: RevocationReason::parse(&r.reason)
                .filter(|reason| *reason != RevocationReason::Unspecified),
        },
        _ => CertStatus::Good,
    }
}

/// The authorityKeyIdentifier of a stored leaf, if it has one.
fn leaf_aki(cert_der: &[u8]) -> Result<Option<Vec<u8>>, RevocationError> {
    let leaf = Certificate::from_der(cert_der.to_vec())
        .map_err(|e| RevocationError::Corrupt(format!("stored certificate: {e}")))?;
    Ok(leaf.authority_key_id().map(<[u8]>::to_vec))
}

/// Which generation (key) of its CA signed the leaf `cert_der`: the primary CA certificate
/// whose subjectKeyIdentifier is the leaf's authorityKeyIdentifier. `None` when no generation
/// matches (the leaf was not signed by this CA).
pub(crate) async fn generation_of<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: CaId,
    cert_der: &[u8],
) -> Result<Option<u32>, RevocationError> {
    match leaf_aki(cert_der)? {
        Some(aki) => generation_by_aki(c, tenant, ca, &aki).await,
        None => Ok(None),
    }
}

/// The generation of CA `ca` whose subjectKeyIdentifier is `aki`.
async fn generation_by_aki<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: CaId,
    aki: &[u8],
) -> Result<Option<u32>, RevocationError> {
    for row in ca_certificates::list(c, tenant, ca).await? {
        if row.relation != ca_certificates::RELATION_PRIMARY {
            continue;
        }
        let ca_cert = Certificate::from_der(row.certificate_der)
            .map_err(|e| RevocationError::Corrupt(format!("stored CA certificate: {e}")))?;
        if ca_cert.subject_key_id() == Some(aki) {
            return Ok(Some(row.generation));
        }
    }
    Ok(None)
}

/// What one revocation changed, for the after-commit work.
struct Change {
    outcome: RevokeOutcome,
    ca: CaId,
    generation: u32,
    status: CertStatus,
}

impl Revocations {
    /// Revokes the tenant's certificate `serial` with `reason` (an RFC 5280 name), or lifts its
    /// hold when `reason` is `removeFromCRL`.
    pub async fn revoke(
        &self,
        actor: &Actor,
        serial: &str,
        reason: &str,
        reason_text: &str,
    ) -> Result<RevokeOutcome, RevocationError> {
        let serial = canonical_serial(serial)?;
        let reason = parse_reason(reason)?;
        check_reason_text(reason_text)?;
        let now = self.now();
        let mut generations = HashMap::new();
        let change = self
            .deps
            .store
            .in_tenant(actor.tenant, async |tx| {
                certmesh_store::write_lock(tx).await?;
                let cert = certificates::get(tx, actor.tenant, &serial)
                    .await?
                    .ok_or_else(|| RevocationError::CertificateNotFound {
                        serial: serial.clone(),
                    })?;
                revoke_in(tx, actor, &cert, reason, reason_text, now, &mut generations).await
            })
            .await?;
        self.after_commit(actor.tenant, &serial, &change).await;
        Ok(change.outcome)
    }

    /// Revokes every certificate matching `filter`, each through the same path as
    /// [`Revocations::revoke`] in a transaction of its own.
    pub async fn bulk_revoke(
        &self,
        actor: &Actor,
        filter: &BulkFilter,
        reason: &str,
        reason_text: &str,
        dry_run: bool,
    ) -> Result<BulkTotals, RevocationError> {
        let reason = parse_reason(reason)?;
        if reason == RevocationReason::RemoveFromCrl {
            return Err(RevocationError::InvalidField {
                field: "reason",
                problem: "removeFromCRL lifts one certificate's hold; it is not a bulk revocation"
                    .to_owned(),
            });
        }
        check_reason_text(reason_text)?;
        let store_filter = self.store_filter(actor.tenant, filter).await?;
        let mut totals = BulkTotals::default();
        let mut generations = HashMap::new();
        let mut after: Option<Cursor> = None;
        loop {
            let (page, next) = self
                .deps
                .store
                .in_tenant(actor.tenant, async |tx| {
                    certificates::list_filtered(
                        tx,
                        actor.tenant,
                        &store_filter,
                        BULK_PAGE,
                        after.as_ref(),
                    )
                    .await
                })
                .await?;
            for cert in &page {
                totals.matched += 1;
                let now = self.now();
                let result = if dry_run {
                    self.classify(actor.tenant, cert, reason).await
                } else {
                    self.deps
                        .store
                        .in_tenant(actor.tenant, async |tx| {
                            revoke_in(tx, actor, cert, reason, reason_text, now, &mut generations)
                                .await
                        })
                        .await
                        .map(|change| {
                            let outcome = change.outcome.clone();
                            (outcome, Some(change))
                        })
                };
                match result {
                    Ok((RevokeOutcome::Revoked(_), change)) => {
                        totals.revoked += 1;
                        if let Some(change) = change {
                            self.after_commit(actor.tenant, &cert.serial, &change).await;
                        }
                    }
                    Ok((RevokeOutcome::AlreadyRevoked(_), _)) => totals.already_revoked += 1,
                    Ok((RevokeOutcome::HoldLifted, _)) => {}
                    Err(RevocationError::ExternalCa { .. }) => totals.skipped_external += 1,
                    Err(e) => return Err(e),
                }
            }
            match next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        if !dry_run {
            let entry = actor.audit(
                "certificates.bulk_revoke",
                "certificates:bulk".to_owned(),
                json!({
                    "issuer_ca_id": filter.issuer_ca_id,
                    "profile": filter.profile,
                    "issued_after": filter.issued_after,
                    "issued_before": filter.issued_before,
                    "reason": reason.as_str(),
                    "reason_text": reason_text,
                    "matched": totals.matched,
                    "revoked": totals.revoked,
                    "already_revoked": totals.already_revoked,
                    "skipped_external": totals.skipped_external,
                }),
                self.now(),
            );
            self.deps
                .store
                .in_tenant(actor.tenant, async |tx| {
                    audit::append(tx, actor.tenant, std::slice::from_ref(&entry)).await
                })
                .await?;
        }
        Ok(totals)
    }

    /// The certificate's revocation status.
    pub async fn status(&self, actor: &Actor, serial: &str) -> Result<StatusView, RevocationError> {
        let serial = canonical_serial(serial)?;
        let now = self.now();
        self.deps
            .store
            .in_tenant(actor.tenant, async |tx| {
                let certificate = certificates::get(tx, actor.tenant, &serial)
                    .await?
                    .ok_or_else(|| RevocationError::CertificateNotFound {
                        serial: serial.clone(),
                    })?;
                let revocation = revocations::get(tx, actor.tenant, &serial)
                    .await?
                    .filter(|r| r.status == STATUS_REVOKED);
                Ok(StatusView {
                    expired: certificate.not_after <= now,
                    certificate,
                    revocation,
                })
            })
            .await
    }

    async fn store_filter(
        &self,
        tenant: TenantId,
        filter: &BulkFilter,
    ) -> Result<CertificateFilter, RevocationError> {
        let issuer = filter.issuer_ca_id.as_deref().filter(|s| !s.is_empty());
        let profile = filter.profile.as_deref().filter(|s| !s.is_empty());
        if issuer.is_none() && profile.is_none() {
            return Err(RevocationError::BulkFilterEmpty);
        }
        if let (Some(after), Some(before)) = (filter.issued_after, filter.issued_before)
            && after >= before
        {
            return Err(RevocationError::InvalidField {
                field: "issued_after",
                problem: "must be before issued_before".to_owned(),
            });
        }
        let issuer_ca_id = match issuer {
            Some(id) => {
                let id = uuid::Uuid::parse_str(id).map_err(|_| RevocationError::InvalidField {
                    field: "issuer_ca_id",
                    problem: format!("{id:?} is not a UUID"),
                })?;
                let found = self
                    .deps
                    .store
                    .in_tenant(tenant, async |tx| cas::get(tx, tenant, CaId(id)).await)
                    .await?;
                if found.is_none() {
                    return Err(RevocationError::CaNotFound { id: id.to_string() });
                }
                Some(CaId(id))
            }
            None => None,
        };
        Ok(CertificateFilter {
            issuer_ca_id,
            profile_name: profile.map(str::to_owned),
            issued_after: filter.issued_after,
            issued_before: filter.issued_before,
        })
    }

    /// What revoking `cert` with `reason` would do, without doing it (bulk dry runs): the
    /// same decisions as [`revoke_in`], read only.
    async fn classify(
        &self,
        tenant: TenantId,
        cert: &CertificateRecord,
        reason: RevocationReason,
    ) -> Result<(RevokeOutcome, Option<Change>), RevocationError> {
        let external = || RevocationError::ExternalCa {
            serial: cert.serial.clone(),
            issuer: cert.issuer_ca_id.to_string(),
        };
        self.deps
            .store
            .in_tenant(tenant, async |tx| {
                if cas::get(tx, tenant, cert.issuer_ca_id).await?.is_none() {
                    return Err(external());
                }
                let hold = RevocationReason::CertificateHold.as_str();
                match revocations::get(tx, tenant, &cert.serial).await? {
                    Some(r)
                        if r.status == STATUS_REVOKED
                            && (r.reason != hold
                                || reason == RevocationReason::CertificateHold) =>
                    {
                        Ok((RevokeOutcome::AlreadyRevoked(r), None))
                    }
                    // A hold made permanent keeps its record (and key generation).
                    Some(r) if r.status == STATUS_REVOKED => Ok((RevokeOutcome::Revoked(r), None)),
                    existing => {
                        let generation =
                            generation_of(tx, tenant, cert.issuer_ca_id, &cert.certificate_der)
                                .await?
                                .ok_or_else(external)?;
                        let would_be = RevocationRecord {
                            tenant_id: tenant,
                            serial: cert.serial.clone(),
                            issuer_ca_id: cert.issuer_ca_id,
                            ca_generation: generation,
                            crl_shard: cert.crl_shard,
                            reason: reason.as_str().to_owned(),
                            reason_text: String::new(),
                            status: STATUS_REVOKED.to_owned(),
                            revoked_at: self.now(),
                            revoked_by: String::new(),
                            cert_not_after: cert.not_after,
                            updated_at: existing.map_or(cert.created_at, |r| r.updated_at),
                        };
                        Ok((RevokeOutcome::Revoked(would_be), None))
                    }
                }
            })
            .await
    }

    /// After a commit: replace this replica's OCSP answers, wake the CRL publisher.
    async fn after_commit(&self, tenant: TenantId, serial: &str, change: &Change) {
        if let Ok(serial) = Serial::from_hex(serial) {
            self.ocsp
                .status_changed(
                    tenant,
                    change.ca,
                    change.generation,
                    serial.as_bytes(),
                    change.status.clone(),
                    self.now(),
                )
                .await;
        }
        self.publisher.kick();
    }
}

/// Revokes (or lifts the hold of) `cert` inside `tx`: the row, the event and the audit entry.
#[allow(clippy::too_many_arguments)]
async fn revoke_in<C: ConnectionTrait>(
    tx: &C,
    actor: &Actor,
    cert: &CertificateRecord,
    reason: RevocationReason,
    reason_text: &str,
    now: DateTime<Utc>,
    generations: &mut HashMap<(CaId, Vec<u8>), u32>,
) -> Result<Change, RevocationError> {
    let tenant = actor.tenant;
    let serial = &cert.serial;
    // Reads come first below; on SQLite take the write lock before them.
    certmesh_store::write_lock(tx).await?;
    if cas::get(tx, tenant, cert.issuer_ca_id).await?.is_none() {
        return Err(RevocationError::ExternalCa {
            serial: serial.clone(),
            issuer: cert.issuer_ca_id.to_string(),
        });
    }
    let existing = revocations::get(tx, tenant, serial).await?;
    let hold = RevocationReason::CertificateHold.as_str();
    if reason == RevocationReason::RemoveFromCrl {
        let on_hold = existing
            .as_ref()
            .is_some_and(|r| r.status == STATUS_REVOKED && r.reason == hold);
        if !on_hold || !revocations::lift_hold(tx, tenant, serial, now).await? {
            let state = match &existing {
                Some(r) if r.status == STATUS_REVOKED => format!("revoked: {}", r.reason),
                _ => "not revoked".to_owned(),
            };
            return Err(RevocationError::NotOnHold {
                serial: serial.clone(),
                state,
            });
        }
        let prior = existing.ok_or_else(|| RevocationError::Corrupt("lifted hold".into()))?;
        let payload = json!({
            "serial": serial,
            "issuer_ca_id": cert.issuer_ca_id.to_string(),
            "lifted_at": now,
            "held_since": prior.revoked_at,
        });
        outbox::append(
            tx,
            tenant,
            "ca.certificate.hold_lifted",
            serial,
            payload.clone(),
            now,
        )
        .await?;
        let entry = actor.audit(
            "certificates.lift_hold",
            format!("certificate:{serial}"),
            json!({"reason": reason.as_str()}),
            now,
        );
        audit::append(tx, tenant, std::slice::from_ref(&entry)).await?;
        return Ok(Change {
            outcome: RevokeOutcome::HoldLifted,
            ca: prior.issuer_ca_id,
            generation: prior.ca_generation,
            status: CertStatus::Good,
        });
    }
    if let Some(r) = &existing
        && r.status == STATUS_REVOKED
    {
        let escalate = r.reason == hold && reason != RevocationReason::CertificateHold;
        if !escalate
            || !revocations::escalate_hold(
                tx,
                tenant,
                serial,
                reason.as_str(),
                reason_text,
                &actor.principal,
                now,
            )
            .await?
        {
            return Ok(Change {
                outcome: RevokeOutcome::AlreadyRevoked(r.clone()),
                ca: r.issuer_ca_id,
                generation: r.ca_generation,
                status: cert_status(Some(r)),
            });
        }
    } else {
        let aki = leaf_aki(&cert.certificate_der)?;
        let key = (cert.issuer_ca_id, aki.clone().unwrap_or_default());
        let generation = match generations.get(&key) {
            Some(g) => *g,
            None => {
                let found = match &aki {
                    Some(aki) => generation_by_aki(tx, tenant, cert.issuer_ca_id, aki).await?,
                    None => None,
                };
                let g = found.ok_or_else(|| RevocationError::ExternalCa {
                    serial: serial.clone(),
                    issuer: format!(
                        "{} (no key of it signed this certificate)",
                        cert.issuer_ca_id
                    ),
                })?;
                generations.insert(key, g);
                g
            }
        };
        let new = NewRevocation {
            tenant_id: tenant,
            serial: serial.clone(),
            issuer_ca_id: cert.issuer_ca_id,
            ca_generation: generation,
            crl_shard: cert.crl_shard,
            reason: reason.as_str().to_owned(),
            reason_text: reason_text.to_owned(),
            revoked_at: now,
            revoked_by: actor.principal.clone(),
            cert_not_after: cert.not_after,
        };
        let written = match &existing {
            None => revocations::insert(tx, &new).await?,
            Some(_) => revocations::re_revoke_lifted(tx, &new).await?,
        };
        if !written {
            // Another request revoked it between our read and write: its record stands.
            let first = revocations::get(tx, tenant, serial)
                .await?
                .ok_or_else(|| RevocationError::Corrupt("revocation vanished".into()))?;
            return Ok(Change {
                status: cert_status(Some(&first)),
                ca: first.issuer_ca_id,
                generation: first.ca_generation,
                outcome: RevokeOutcome::AlreadyRevoked(first),
            });
        }
    }
    let record = revocations::get(tx, tenant, serial)
        .await?
        .ok_or_else(|| RevocationError::Corrupt("revocation not written".into()))?;
    let payload = json!({
        "serial": serial,
        "issuer_ca_id": record.issuer_ca_id.to_string(),
        "ca_generation": record.ca_generation,
        "crl_shard": record.crl_shard,
        "reason": record.reason,
        "reason_code": reason.code(),
        "revoked_at": record.revoked_at,
        "revoked_by": record.revoked_by,
        "hold_made_permanent": existing.as_ref().is_some_and(|r| r.status == STATUS_REVOKED),
    });
    outbox::append(tx, tenant, "ca.certificate.revoked", serial, payload, now).await?;
    let entry = actor.audit(
        "certificates.revoke",
        format!("certificate:{serial}"),
        json!({"reason": reason.as_str(), "reason_text": reason_text}),
        now,
    );
    audit::append(tx, tenant, std::slice::from_ref(&entry)).await?;
    Ok(Change {
        status: cert_status(Some(&record)),
        ca: record.issuer_ca_id,
        generation: record.ca_generation,
        outcome: RevokeOutcome::Revoked(record),
    })
}
