//! Key ceremonies: opened with their parameters fixed and digested, approved by listed
//! custodians who each sign the digest with a key registered on their principal, and consumed
//! by exactly one gated operation once the quorum is met (docs/rfcs/0003, "Ceremonies").
//!
//! Every check that lets an operation through is made again when it runs ([`Hierarchy::gate`]):
//! the digest is recomputed from the stored parameters and each stored approval's signature is
//! verified against it, so a row edited behind certmesh's back counts for nothing.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use certmesh_crypto::ceremony::{ApproverKey, signing_message};
use certmesh_kit::rbac::Role;
use certmesh_proto::ca as pb;
use certmesh_store::{
    CaId, StoreError, TenantId, audit,
    audit::Outcome,
    cas,
    ceremonies::{self, CeremonyApproval, CeremonyRecord, CeremonyStatus, NewCeremony},
    outbox, principal_keys, principals,
};
use chrono::{DateTime, Duration, DurationRound, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::json;

use crate::{
    Actor, CaError, Hierarchy,
    params::{DigestInput, Params, Purpose, digest},
};

/// How long a ceremony stays open unless the request says otherwise.
pub const DEFAULT_EXPIRY: Duration = Duration::hours(24);
/// The longest a ceremony may stay open.
pub const MAX_EXPIRY: Duration = Duration::hours(168);
/// Most custodians one ceremony may list.
pub const MAX_CUSTODIANS: usize = 32;

/// A ceremony with its parameters parsed and principal ids resolved to names.
#[derive(Clone, Debug)]
pub struct CeremonyView {
    pub record: CeremonyRecord,
    pub params: Params,
    /// Custodian names, sorted.
    pub custodians: Vec<String>,
    /// Names of the custodians who approved, oldest approval first.
    pub approved_by: Vec<String>,
    pub created_by: String,
}

/// What an approval did.
#[derive(Clone, Debug)]
pub struct Approval {
    pub ceremony: CeremonyView,
    pub approvals: u32,
    pub threshold: u32,
    /// The custodian had approved before; nothing changed.
    pub already_approved: bool,
}

/// A ceremony the gate let through: the operation may proceed and must then call
/// [`complete`] in the same transaction.
#[derive(Debug)]
pub struct Gated {
    pub id: uuid::Uuid,
}

impl Hierarchy {
    /// Opens a ceremony for `req.purpose` with its parameters validated and fixed.
    pub async fn start_ceremony(
        &self,
        actor: &Actor,
        req: &pb::StartCeremonyRequest,
    ) -> Result<CeremonyView, CaError> {
        let purpose = Purpose::parse(&req.purpose)?;
        let params = Params::from_proto(purpose, &req.params.clone().unwrap_or_default())?;
        let names = custodian_names(&req.custodians)?;
        let threshold = req.threshold;
        if threshold == 0 || threshold as usize > names.len() {
            return Err(CaError::InvalidField {
                field: "threshold",
                problem: format!(
                    "must be between 1 and the number of custodians ({})",
                    names.len()
                ),
            });
        }
        let lifetime = match req.expires_in.trim() {
            "" => DEFAULT_EXPIRY,
            text => {
                certmesh_kit::duration::parse(text).map_err(|problem| CaError::InvalidField {
                    field: "expires_in",
                    problem,
                })?
            }
        };
        if lifetime > MAX_EXPIRY {
            return Err(CaError::InvalidField {
                field: "expires_in",
                problem: "a ceremony stays open at most 168h".into(),
            });
        }
        let now = self.now();
        // The digest covers expires_at to the second; store exactly that.
        let expires_at = (now + lifetime)
            .duration_trunc(Duration::seconds(1))
            .map_err(|e| CaError::Corrupt(format!("expiry time: {e}")))?;
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let mut custodians = Vec::with_capacity(names.len());
        for name in &names {
            let p = principals::by_name(&tx, tenant, name)
                .await?
                .filter(|p| p.disabled_at.is_none())
                .ok_or_else(|| CaError::CustodianInvalid(format!("no principal named {name:?}")))?;
            if !p.roles.iter().any(|r| r == Role::Custodian.as_str()) {
                return Err(CaError::CustodianInvalid(format!(
                    "{name:?} does not hold the custodian role"
                )));
            }
            custodians.push(p.id);
        }
        custodians.sort();
        preconditions(&tx, tenant, &params).await?;

        let id = uuid::Uuid::new_v4();
        let params_json = params.to_json();
        let digest = digest(&DigestInput {
            tenant_id: tenant.0,
            ceremony_id: id,
            purpose,
            params: &params_json,
            threshold,
            custodians: &custodians,
            expires_at,
        });
        let new = NewCeremony {
            id,
            tenant_id: tenant,
            purpose: purpose.as_str().to_owned(),
            params: params_json,
            digest: digest.clone(),
            threshold,
            custodians,
            created_by: actor.principal_id,
            expires_at,
        };
        ceremonies::create(&tx, &new, now).await?;
        let payload = json!({
            "ceremony_id": id.to_string(),
            "purpose": purpose.as_str(),
            "threshold": threshold,
            "custodians": names,
            "digest": digest,
            "params": new.params,
            "expires_at": expires_at.to_rfc3339(),
        });
        outbox::append(
            &tx,
            tenant,
            "ceremony.started",
            &id.to_string(),
            payload.clone(),
            now,
        )
        .await?;
        let entry = actor.audit(
            "ceremonies.start",
            format!("ceremony:{id}"),
            Outcome::Allowed,
            payload,
            now,
        );
        audit::append(&tx, tenant, &[entry]).await?;
        let view = view(&tx, tenant, id, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ceremony = %id, %purpose, threshold, "Ceremony started.");
        Ok(view)
    }

    /// The tenant's ceremony `id` as it stands now.
    pub async fn ceremony(&self, actor: &Actor, id: &str) -> Result<CeremonyView, CaError> {
        let id = ceremony_id(id)?;
        let now = self.now();
        let tenant = actor.tenant;
        self.deps
            .store
            .in_tenant(tenant, async |tx| view(tx, tenant, id, now).await)
            .await
    }

    /// The tenant's ceremonies, oldest first; `status` filters ("" for all).
    pub async fn ceremonies(
        &self,
        actor: &Actor,
        status: &str,
    ) -> Result<Vec<CeremonyView>, CaError> {
        let status = match status.trim() {
            "" => None,
            s => Some(
                CeremonyStatus::parse(s).ok_or_else(|| CaError::InvalidField {
                    field: "status",
                    problem: "must be open, completed or expired".into(),
                })?,
            ),
        };
        let now = self.now();
        let tenant = actor.tenant;
        self.deps
            .store
            .in_tenant(tenant, async |tx| {
                let names = principal_names(tx, tenant).await?;
                let mut out = Vec::new();
                for record in ceremonies::list(tx, tenant, status, now).await? {
                    let approvals = ceremonies::approvals(tx, tenant, record.id).await?;
                    out.push(assemble(record, &approvals, &names)?);
                }
                Ok(out)
            })
            .await
    }

    /// The caller approves ceremony `id` with `signature_b64`, a signature over the
    /// ceremony's signing message by one of the caller's active keys.
    pub async fn approve(
        &self,
        actor: &Actor,
        id: &str,
        signature_b64: &str,
    ) -> Result<Approval, CaError> {
        let id = ceremony_id(id)?;
        let signature = B64
            .decode(signature_b64.trim())
            .map_err(|_| CaError::InvalidField {
                field: "signature",
                problem: "must be base64".into(),
            })?;
        if signature.is_empty() {
            return Err(CaError::InvalidField {
                field: "signature",
                problem: "is empty".into(),
            });
        }
        let now = self.now();
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let record = ceremonies::get(&tx, tenant, id, now)
            .await?
            .ok_or_else(|| not_found(id))?;
        if !record.custodians.contains(&actor.principal_id) {
            return Err(CaError::NotACustodian {
                id: id.to_string(),
                principal: actor.principal.clone(),
            });
        }
        if !actor.custodian {
            return Err(CaError::NotACustodian {
                id: id.to_string(),
                principal: format!("{} (no longer holds the custodian role)", actor.principal),
            });
        }
        usable(&record)?;
        let message = signing_message(&checked_digest(&record)?);
        let mut signed_with = None;
        for key in principal_keys::active_for(&tx, tenant, actor.principal_id).await? {
            let approver = ApproverKey::from_spki_der(&key.public_key_der)
                .map_err(|_| CaError::Corrupt(format!("principal key {}", key.id)))?;
            if approver.verify(&message, &signature).is_ok() {
                signed_with = Some(key);
                break;
            }
        }
        let Some(key) = signed_with else {
            return Err(CaError::CeremonySignatureInvalid {
                principal: actor.principal.clone(),
            });
        };
        let approved =
            ceremonies::approve(&tx, tenant, id, actor.principal_id, key.id, &signature, now).await;
        let outcome = match approved {
            // Completed or expired since it was read above.
            Err(StoreError::Conflict { .. }) => {
                let now_status = ceremonies::get(&tx, tenant, id, now)
                    .await?
                    .ok_or_else(|| not_found(id))?;
                usable(&now_status)?;
                return Err(CaError::CeremonyAlreadyUsed { id: id.to_string() });
            }
            other => other?,
        };
        let details = json!({
            "ceremony_id": id.to_string(),
            "purpose": record.purpose,
            "signature": B64.encode(&signature),
            "key_fingerprint": key.fingerprint,
            "key_algorithm": key.algorithm,
            "approvals": outcome.count,
            "threshold": record.threshold,
            "already_approved": outcome.already,
        });
        if !outcome.already {
            outbox::append(
                &tx,
                tenant,
                "ceremony.approved",
                &id.to_string(),
                json!({
                    "ceremony_id": id.to_string(),
                    "custodian": actor.principal,
                    "key_fingerprint": key.fingerprint,
                    "approvals": outcome.count,
                    "threshold": record.threshold,
                }),
                now,
            )
            .await?;
        }
        let entry = actor.audit(
            "ceremonies.approve",
            format!("ceremony:{id}"),
            Outcome::Allowed,
            details,
            now,
        );
        audit::append(&tx, tenant, &[entry]).await?;
        let ceremony = view(&tx, tenant, id, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ceremony = %id, custodian = %actor.principal, approvals = outcome.count, threshold = record.threshold, "Ceremony approved.");
        Ok(Approval {
            ceremony,
            approvals: outcome.count,
            threshold: record.threshold,
            already_approved: outcome.already,
        })
    }

    /// Lets a gated operation through, inside its transaction, if ceremony `id` is open and
    /// unexpired, is for `purpose`, has its quorum of valid signed approvals and approved
    /// exactly `requested`.
    pub(crate) async fn gate(
        &self,
        tx: &DatabaseTransaction,
        tenant: TenantId,
        id: &str,
        requested: &Params,
        now: DateTime<Utc>,
    ) -> Result<Gated, CaError> {
        let id = ceremony_id(id)?;
        let record = ceremonies::get(tx, tenant, id, now)
            .await?
            .ok_or_else(|| not_found(id))?;
        if record.purpose != requested.purpose.as_str() {
            return Err(CaError::CeremonyParamsMismatch {
                id: id.to_string(),
                detail: format!("it approved {}, not {}", record.purpose, requested.purpose),
            });
        }
        usable(&record)?;
        let message = signing_message(&checked_digest(&record)?);
        let mut valid = 0u32;
        for approval in ceremonies::approvals(tx, tenant, id).await? {
            if approval_verifies(tx, tenant, &approval, &message).await? {
                valid += 1;
            }
        }
        if valid < record.threshold {
            return Err(CaError::QuorumNotMet {
                id: id.to_string(),
                have: valid,
                need: record.threshold,
            });
        }
        let approved = Params::from_json(requested.purpose, &record.params)?;
        if approved != *requested {
            return Err(CaError::CeremonyParamsMismatch {
                id: id.to_string(),
                detail: differences(&approved, requested),
            });
        }
        Ok(Gated { id })
    }
}

/// Completes a gated ceremony in the operation's transaction and emits `ceremony.completed`.
/// A concurrent operation that completed it first makes this one fail with
/// `CEREMONY_ALREADY_USED`, rolling the whole operation back.
pub(crate) async fn complete<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    gated: &Gated,
    result: CaId,
    now: DateTime<Utc>,
) -> Result<(), CaError> {
    match ceremonies::complete(c, tenant, gated.id, Some(result), now).await {
        Err(StoreError::Conflict { .. }) => {
            return Err(CaError::CeremonyAlreadyUsed {
                id: gated.id.to_string(),
            });
        }
        other => other?,
    }
    outbox::append(
        c,
        tenant,
        "ceremony.completed",
        &gated.id.to_string(),
        json!({"ceremony_id": gated.id.to_string(), "ca_id": result.to_string()}),
        now,
    )
    .await?;
    Ok(())
}

/// Whether the approval's signature verifies with its key, which must still be active.
async fn approval_verifies<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    approval: &CeremonyApproval,
    message: &[u8],
) -> Result<bool, CaError> {
    let Some(key) = principal_keys::get(c, tenant, approval.key_id).await? else {
        return Ok(false);
    };
    if key.principal_id != approval.principal_id || key.revoked_at.is_some() {
        return Ok(false);
    }
    let Ok(approver) = ApproverKey::from_spki_der(&key.public_key_der) else {
        return Ok(false);
    };
    Ok(approver.verify(message, &approval.signature).is_ok())
}

/// Open, or the reason it is not.
fn usable(record: &CeremonyRecord) -> Result<(), CaError> {
    match record.status {
        CeremonyStatus::Open => Ok(()),
        CeremonyStatus::Completed => Err(CaError::CeremonyAlreadyUsed {
            id: record.id.to_string(),
        }),
        CeremonyStatus::Expired => Err(CaError::CeremonyExpired {
            id: record.id.to_string(),
            expired_at: record.expires_at.to_rfc3339(),
        }),
    }
}

/// The stored digest, after checking it is the digest of the stored ceremony.
fn checked_digest(record: &CeremonyRecord) -> Result<String, CaError> {
    let purpose = Purpose::parse(&record.purpose)
        .map_err(|_| CaError::Corrupt(format!("ceremony {} purpose", record.id)))?;
    let recomputed = digest(&DigestInput {
        tenant_id: record.tenant_id.0,
        ceremony_id: record.id,
        purpose,
        params: &record.params,
        threshold: record.threshold,
        custodians: &record.custodians,
        expires_at: record.expires_at,
    });
    if recomputed != record.digest {
        return Err(CaError::Corrupt(format!(
            "ceremony {}: the stored digest does not match its contents",
            record.id
        )));
    }
    Ok(recomputed)
}

/// The referenced CAs exist and are active, and the name is free, so custodians are not asked
/// to approve an operation that cannot run. The operation checks again.
async fn preconditions<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    params: &Params,
) -> Result<(), CaError> {
    for id in [params.parent_ca_id, params.ca_id, params.issuer_ca_id]
        .into_iter()
        .flatten()
    {
        let ca = cas::get(c, tenant, CaId(id))
            .await?
            .ok_or_else(|| CaError::CaNotFound { id: id.to_string() })?;
        if ca.status != cas::STATUS_ACTIVE {
            return Err(CaError::CaNotActive {
                id: id.to_string(),
                why: format!("it is {}", ca.status),
            });
        }
    }
    if let Some(name) = &params.name
        && cas::by_name(c, tenant, name).await?.is_some()
    {
        return Err(CaError::CaExists { name: name.clone() });
    }
    Ok(())
}

fn custodian_names(raw: &[String]) -> Result<Vec<String>, CaError> {
    let mut names: Vec<String> = raw.iter().map(|n| n.trim().to_owned()).collect();
    if names.is_empty() || names.iter().any(String::is_empty) {
        return Err(CaError::InvalidField {
            field: "custodians",
            problem: "name one or more principals, none empty".into(),
        });
    }
    if names.len() > MAX_CUSTODIANS {
        return Err(CaError::InvalidField {
            field: "custodians",
            problem: format!("at most {MAX_CUSTODIANS}"),
        });
    }
    let count = names.len();
    names.sort();
    names.dedup();
    if names.len() != count {
        return Err(CaError::InvalidField {
            field: "custodians",
            problem: "a custodian is listed twice".into(),
        });
    }
    Ok(names)
}

fn ceremony_id(id: &str) -> Result<uuid::Uuid, CaError> {
    uuid::Uuid::parse_str(id.trim()).map_err(|_| CaError::InvalidField {
        field: "id",
        problem: "must be a ceremony id (UUID)".into(),
    })
}

fn not_found(id: uuid::Uuid) -> CaError {
    CaError::CeremonyNotFound { id: id.to_string() }
}

/// Which approved fields the request changed, for the refusal message.
fn differences(approved: &Params, requested: &Params) -> String {
    let (a, r) = (approved.to_json(), requested.to_json());
    let (Some(a), Some(r)) = (a.as_object(), r.as_object()) else {
        return "the parameters differ".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(r.keys()).collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != r.get(*k))
        .map(|k| {
            format!(
                "{k}: approved {}, requested {}",
                a.get(k).map_or("nothing".into(), ToString::to_string),
                r.get(k).map_or("nothing".into(), ToString::to_string)
            )
        })
        .collect();
    changed.join("; ")
}

async fn principal_names<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
) -> Result<HashMap<uuid::Uuid, String>, CaError> {
    Ok(principals::list(c, tenant)
        .await?
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect())
}

async fn view<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<CeremonyView, CaError> {
    let record = ceremonies::get(c, tenant, id, now)
        .await?
        .ok_or_else(|| not_found(id))?;
    let approvals = ceremonies::approvals(c, tenant, id).await?;
    let names = principal_names(c, tenant).await?;
    assemble(record, &approvals, &names)
}

fn assemble(
    record: CeremonyRecord,
    approvals: &[CeremonyApproval],
    names: &HashMap<uuid::Uuid, String>,
) -> Result<CeremonyView, CaError> {
    let name = |id: &uuid::Uuid| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let purpose = Purpose::parse(&record.purpose)
        .map_err(|_| CaError::Corrupt(format!("ceremony {} purpose", record.id)))?;
    Ok(CeremonyView {
        params: Params::from_json(purpose, &record.params)?,
        custodians: {
            let mut names: Vec<String> = record.custodians.iter().map(name).collect();
            names.sort();
            names
        },
        approved_by: approvals.iter().map(|a| name(&a.principal_id)).collect(),
        created_by: name(&record.created_by),
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custodian_lists_are_trimmed_sorted_and_unique() {
        let got = custodian_names(&[" bob".into(), "alice".into()]).expect("valid");
        assert_eq!(got, ["alice", "bob"]);
        assert!(custodian_names(&[]).is_err());
        assert!(custodian_names(&["a".into(), " a ".into()]).is_err());
        assert!(custodian_names(&["a".into(), "".into()]).is_err());
    }
}
