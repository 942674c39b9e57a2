//! The CA tree's operations. Each gated one runs in one transaction: the ceremony gate, the
//! RFC 5280 checks (each a named function in `certmesh_crypto::ca_checks`, each with its
//! reason), the new key and certificate, the rows, the ceremony's completion, the events and
//! the audit entry. A key made for an operation that then fails is destroyed.

use std::sync::Arc;

use certmesh_crypto::{
    CryptoError,
    ca_checks::{self, CaCheckError},
    cert::{CaTemplate, Certificate, IssuingCa, NameConstraints, self_signed_root},
    keys::{KeyRef, KeySpec, Signer},
    serial::Serial,
};
use certmesh_proto::ca as pb;
use certmesh_store::{
    CaId, StoreError, TenantId, audit,
    audit::Outcome,
    ca_certificates::{self, NewCross, RELATION_PRIMARY},
    cas::{self, CaRecord, NewCa, Rotation},
    outbox,
};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseTransaction};
use serde_json::json;

use crate::{
    Actor, CaError, Hierarchy,
    ceremony::{Gated, complete},
    params::{Params, Purpose},
};

/// CA certificates start a little in the past, so a relying party whose clock is behind
/// still accepts them.
const BACKDATE: Duration = Duration::minutes(5);
/// `key_spec` recorded for an imported root whose key certmesh cannot open.
pub const EXTERNAL_KEY_SPEC: &str = "external";
/// The deepest chain walked: far beyond any real hierarchy, and a guard against loops.
const MAX_DEPTH: usize = 16;

/// The result of an operation that made or changed a CA.
#[derive(Debug)]
pub struct Operated {
    pub ca: CaRecord,
    /// The requested lifetime ran past the issuer's notAfter and was cut to it.
    pub validity_capped: bool,
    /// The new cross-certificate (cross-signing only).
    pub cross: Option<Certificate>,
}

impl Hierarchy {
    /// Creates a root with a fresh key (`import` unset), or registers an offline root.
    pub async fn create_root(
        &self,
        actor: &Actor,
        ceremony_id: &str,
        raw: &pb::CaParams,
        import: Option<&pb::ImportedRoot>,
    ) -> Result<Operated, CaError> {
        match import {
            Some(imported) => self.import_root(actor, ceremony_id, raw, imported).await,
            None => {
                let params = Params::from_proto(Purpose::CreateRoot, raw)?;
                self.generate_root(actor, ceremony_id, &params).await
            }
        }
    }

    async fn generate_root(
        &self,
        actor: &Actor,
        ceremony_id: &str,
        params: &Params,
    ) -> Result<Operated, CaError> {
        let now = self.now();
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let gated = self.gate(&tx, tenant, ceremony_id, params, now).await?;
        let name = required(&params.name, "params.name")?;
        name_free(&tx, tenant, name).await?;
        let spec = key_spec(params)?;
        let template = template(
            required(&params.subject_cn, "params.subject_cn")?.clone(),
            params.subject_o.clone(),
            now,
            now + days(params),
            params.path_len,
            params,
        );
        let (key_ref, signer) = self.new_key(spec).await?;
        let made = async {
            let cert = self_signed_root(signer, &template)?;
            let new = new_ca(
                tenant,
                name,
                None,
                params.path_len,
                spec,
                &key_ref,
                &cert,
                params,
            );
            let ca = insert(&tx, new, now).await?;
            complete(&tx, tenant, &gated, ca.id, now).await?;
            let payload = ca_payload(&ca, &gated, false);
            self.record(
                &tx,
                actor,
                "ca.root.created",
                "cas.create_root",
                &ca,
                payload,
                now,
            )
            .await?;
            Ok::<_, CaError>(ca)
        }
        .await;
        let ca = self.keep_or_destroy(made, &key_ref).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ca = %ca.id, name = %ca.name, subject = %ca.subject, "Root CA created.");
        Ok(Operated {
            ca,
            validity_capped: false,
            cross: None,
        })
    }

    async fn import_root(
        &self,
        actor: &Actor,
        ceremony_id: &str,
        raw: &pb::CaParams,
        imported: &pb::ImportedRoot,
    ) -> Result<Operated, CaError> {
        let params = Params::from_proto(Purpose::ImportRoot, raw)?;
        let cert = Certificate::from_pem(&imported.certificate_pem).map_err(|e| {
            CaError::InvalidField {
                field: "import.certificate_pem",
                problem: e.to_string(),
            }
        })?;
        let key_ref: KeyRef = required(&params.key_ref, "params.key_ref")?
            .parse()
            .map_err(|e: CryptoError| CaError::InvalidField {
                field: "params.key_ref",
                problem: e.to_string(),
            })?;
        let now = self.now();
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let gated = self.gate(&tx, tenant, ceremony_id, &params, now).await?;
        if params.certificate_sha256.as_deref() != Some(cert.fingerprint_sha256().as_str()) {
            return Err(CaError::CeremonyParamsMismatch {
                id: gated.id.to_string(),
                detail: format!(
                    "the ceremony approved the certificate with SHA-256 {}, this one is {}",
                    params.certificate_sha256.as_deref().unwrap_or_default(),
                    cert.fingerprint_sha256()
                ),
            });
        }
        ca_checks::check_self_signed(&cert).map_err(check)?;
        let Some(bc) = cert.basic_constraints().filter(|bc| bc.ca) else {
            return Err(CaError::InvalidField {
                field: "import.certificate_pem",
                problem: "not a CA certificate (basicConstraints cA is not set)".into(),
            });
        };
        let name = required(&params.name, "params.name")?;
        name_free(&tx, tenant, name).await?;
        // The key may stay offline; when certmesh can open it, it must be the certificate's.
        let (key_offline, spec) = match self.open_key(&key_ref).await {
            Ok(signer) => {
                ca_checks::check_key_match(&cert, signer.public_key_spki_der()).map_err(check)?;
                (false, signer.spec().as_str())
            }
            Err(_) => (true, EXTERNAL_KEY_SPEC),
        };
        let nc = cert.name_constraints();
        let new = NewCa {
            tenant_id: tenant,
            name: name.clone(),
            parent_id: None,
            kind: cas::KIND_ROOT.to_owned(),
            path_len: bc.path_len,
            key_spec: spec.to_owned(),
            permitted_dns: nc.permitted_dns.clone(),
            excluded_dns: nc.excluded_dns.clone(),
            key_offline,
            key_ref: key_ref.to_string(),
            certificate_der: cert.der().to_vec(),
            subject: cert.subject().to_owned(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
        };
        let ca = insert(&tx, new, now).await?;
        complete(&tx, tenant, &gated, ca.id, now).await?;
        let mut payload = ca_payload(&ca, &gated, false);
        payload["imported"] = json!(true);
        self.record(
            &tx,
            actor,
            "ca.root.created",
            "cas.import_root",
            &ca,
            payload,
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ca = %ca.id, name = %ca.name, key_offline, "Root CA imported.");
        Ok(Operated {
            ca,
            validity_capped: false,
            cross: None,
        })
    }

    /// Creates an intermediate under `parent_id` with a fresh key.
    pub async fn create_intermediate(
        &self,
        actor: &Actor,
        parent_id: &str,
        ceremony_id: &str,
        raw: &pb::CaParams,
    ) -> Result<Operated, CaError> {
        let mut raw = raw.clone();
        raw.parent_ca_id = path_id("parent_id", parent_id, &raw.parent_ca_id)?;
        let params = Params::from_proto(Purpose::CreateIntermediate, &raw)?;
        let parent_id = CaId(params.parent_ca_id.ok_or_else(|| missing("parent_id"))?);
        let now = self.now();
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let gated = self.gate(&tx, tenant, ceremony_id, &params, now).await?;
        let parent = active(&tx, tenant, parent_id).await?;
        let parent_cert = Certificate::from_der(parent.certificate_der.clone())?;
        let path_len =
            ca_checks::child_path_len(parent.path_len, params.path_len).map_err(check)?;
        let child = NameConstraints {
            permitted_dns: params.permitted_dns.clone(),
            excluded_dns: params.excluded_dns.clone(),
            other_forms: false,
        };
        ca_checks::check_name_constraints(parent_cert.name_constraints(), &child).map_err(check)?;
        let name = required(&params.name, "params.name")?;
        name_free(&tx, tenant, name).await?;
        let (not_after, capped) = ca_checks::cap_not_after(parent.not_after, now + days(&params));
        let issuer = self.issuer(&parent, parent_cert).await?;
        let spec = key_spec(&params)?;
        let template = template(
            required(&params.subject_cn, "params.subject_cn")?.clone(),
            params.subject_o.clone(),
            now,
            not_after,
            path_len,
            &params,
        );
        let (key_ref, signer) = self.new_key(spec).await?;
        let made = async {
            let cert = issuer.sign_intermediate(signer.public_key_spki_der(), &template)?;
            let new = new_ca(
                tenant,
                name,
                Some(parent.id),
                path_len,
                spec,
                &key_ref,
                &cert,
                &params,
            );
            let ca = insert(&tx, new, now).await?;
            complete(&tx, tenant, &gated, ca.id, now).await?;
            let payload = ca_payload(&ca, &gated, capped);
            self.record(
                &tx,
                actor,
                "ca.intermediate.created",
                "cas.create_intermediate",
                &ca,
                payload,
                now,
            )
            .await?;
            Ok::<_, CaError>(ca)
        }
        .await;
        let ca = self.keep_or_destroy(made, &key_ref).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ca = %ca.id, name = %ca.name, parent = %parent.id, capped, "Intermediate CA created.");
        Ok(Operated {
            ca,
            validity_capped: capped,
            cross: None,
        })
    }

    /// A new key and certificate for CA `id`, same subject and constraints; the previous
    /// generation is superseded in the same transaction. Leaves and children signed by the
    /// previous key keep their chains.
    pub async fn rotate(
        &self,
        actor: &Actor,
        id: &str,
        ceremony_id: &str,
        raw: &pb::CaParams,
    ) -> Result<Operated, CaError> {
        let mut raw = raw.clone();
        raw.ca_id = path_id("id", id, &raw.ca_id)?;
        let params = Params::from_proto(Purpose::Rotate, &raw)?;
        let id = CaId(params.ca_id.ok_or_else(|| missing("id"))?);
        let now = self.now();
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let gated = self.gate(&tx, tenant, ceremony_id, &params, now).await?;
        let ca = active(&tx, tenant, id).await?;
        let current = Certificate::from_der(ca.certificate_der.clone())?;
        let cn = current
            .subject_common_name()
            .ok_or_else(|| CaError::Corrupt(format!("CA {id} certificate has no commonName")))?;
        let requested_end = now + days(&params);
        let (issuer, not_after, capped) = match ca.parent_id {
            None => (None, requested_end, false),
            Some(parent_id) => {
                let parent = active(&tx, tenant, parent_id).await?;
                let (not_after, capped) = ca_checks::cap_not_after(parent.not_after, requested_end);
                let parent_cert = Certificate::from_der(parent.certificate_der.clone())?;
                (
                    Some(self.issuer(&parent, parent_cert).await?),
                    not_after,
                    capped,
                )
            }
        };
        let nc = current.name_constraints();
        let template = CaTemplate {
            common_name: cn,
            organization: current.subject_organization(),
            serial: Serial::random(),
            not_before: now - BACKDATE,
            not_after,
            path_len: ca.path_len,
            permitted_dns: nc.permitted_dns.clone(),
            excluded_dns: nc.excluded_dns.clone(),
        };
        let spec = key_spec(&params)?;
        let (key_ref, signer) = self.new_key(spec).await?;
        let made = async {
            let cert = match &issuer {
                None => self_signed_root(signer, &template)?,
                Some(issuer) => {
                    issuer.sign_intermediate(signer.public_key_spki_der(), &template)?
                }
            };
            let next = Rotation {
                from_generation: ca.generation,
                key_ref: key_ref.to_string(),
                certificate_der: cert.der().to_vec(),
                subject: cert.subject().to_owned(),
                key_spec: spec.as_str().to_owned(),
                not_before: cert.not_before(),
                not_after: cert.not_after(),
            };
            let rotated = match cas::rotate(&tx, tenant, id, next, now).await {
                Err(StoreError::Conflict { .. }) => {
                    return Err(CaError::CaNotActive {
                        id: id.to_string(),
                        why: "it was rotated concurrently; look at it again".into(),
                    });
                }
                other => other?,
            };
            complete(&tx, tenant, &gated, id, now).await?;
            let mut payload = ca_payload(&rotated, &gated, capped);
            payload["previous_generation"] = json!(ca.generation);
            payload["previous_fingerprint_sha256"] = json!(current.fingerprint_sha256());
            self.record(
                &tx,
                actor,
                "ca.rotated",
                "cas.rotate",
                &rotated,
                payload,
                now,
            )
            .await?;
            Ok::<_, CaError>(rotated)
        }
        .await;
        let rotated = self.keep_or_destroy(made, &key_ref).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ca = %id, generation = rotated.generation, "CA rotated.");
        Ok(Operated {
            ca: rotated,
            validity_capped: capped,
            cross: None,
        })
    }

    /// A certificate for CA `id`'s current key issued by `params.issuer_ca_id`, so that paths
    /// through either issuer verify.
    pub async fn cross_sign(
        &self,
        actor: &Actor,
        id: &str,
        ceremony_id: &str,
        raw: &pb::CaParams,
    ) -> Result<Operated, CaError> {
        let mut raw = raw.clone();
        raw.ca_id = path_id("id", id, &raw.ca_id)?;
        let params = Params::from_proto(Purpose::CrossSign, &raw)?;
        let id = CaId(params.ca_id.ok_or_else(|| missing("id"))?);
        let issuer_id = CaId(
            params
                .issuer_ca_id
                .ok_or_else(|| missing("params.issuer_ca_id"))?,
        );
        if issuer_id == id {
            return Err(CaError::InvalidField {
                field: "params.issuer_ca_id",
                problem: "a CA does not cross-sign itself".into(),
            });
        }
        let now = self.now();
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let gated = self.gate(&tx, tenant, ceremony_id, &params, now).await?;
        let subject = active(&tx, tenant, id).await?;
        let issuer_row = active(&tx, tenant, issuer_id).await?;
        if ancestors(&tx, tenant, &issuer_row)
            .await?
            .iter()
            .any(|a| a.id == id)
        {
            return Err(CaError::InvalidField {
                field: "params.issuer_ca_id",
                problem: "the issuer is below the CA in the tree; cross-signing would make a loop"
                    .into(),
            });
        }
        let subject_cert = Certificate::from_der(subject.certificate_der.clone())?;
        let issuer_cert = Certificate::from_der(issuer_row.certificate_der.clone())?;
        // The cross-certificate repeats the CA's own path length and name constraints, so the
        // issuer must allow exactly those.
        let allowed =
            ca_checks::child_path_len(issuer_row.path_len, subject.path_len).map_err(check)?;
        if allowed != subject.path_len {
            return Err(CaError::PathLenExceeded(format!(
                "the CA has no path length constraint and the issuer's is {}",
                issuer_row.path_len.unwrap_or_default()
            )));
        }
        ca_checks::check_name_constraints(
            issuer_cert.name_constraints(),
            subject_cert.name_constraints(),
        )
        .map_err(check)?;
        let (not_after, capped) =
            ca_checks::cap_not_after(issuer_row.not_after, now + days(&params));
        let issuer = self.issuer(&issuer_row, issuer_cert).await?;
        let cross =
            issuer.cross_sign(&subject_cert, Serial::random(), now - BACKDATE, not_after)?;
        ca_certificates::add_cross(
            &tx,
            tenant,
            NewCross {
                ca_id: id,
                issuer_ca_id: issuer_id,
                certificate_der: cross.der().to_vec(),
                not_before: cross.not_before(),
                not_after: cross.not_after(),
            },
            now,
        )
        .await?;
        complete(&tx, tenant, &gated, id, now).await?;
        let mut payload = ca_payload(&subject, &gated, capped);
        payload["issuer_ca_id"] = json!(issuer_id.to_string());
        payload["cross_fingerprint_sha256"] = json!(cross.fingerprint_sha256());
        self.record(
            &tx,
            actor,
            "ca.cross_signed",
            "cas.cross_sign",
            &subject,
            payload,
            now,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ca = %id, issuer = %issuer_id, "CA cross-signed.");
        Ok(Operated {
            ca: subject,
            validity_capped: capped,
            cross: Some(cross),
        })
    }

    /// Drain-first retirement: without `confirm` an active CA becomes retiring (it signs no
    /// new children or leaves); with `confirm` a retiring CA with no active or retiring
    /// children becomes retired. Repeating a step that is done changes nothing.
    pub async fn retire(
        &self,
        actor: &Actor,
        id: &str,
        confirm: bool,
    ) -> Result<CaRecord, CaError> {
        let id = ca_id(id)?;
        let now = self.now();
        let tenant = actor.tenant;
        let tx = self.deps.store.begin_tenant(tenant).await?;
        certmesh_store::write_lock(&tx).await?;
        let ca = cas::get(&tx, tenant, id)
            .await?
            .ok_or_else(|| CaError::CaNotFound { id: id.to_string() })?;
        let (from, to, event, action) = match (confirm, ca.status.as_str()) {
            (false, cas::STATUS_ACTIVE) => (
                cas::STATUS_ACTIVE,
                cas::STATUS_RETIRING,
                "ca.retiring",
                "cas.retire",
            ),
            (false, cas::STATUS_RETIRING | cas::STATUS_RETIRED) | (true, cas::STATUS_RETIRED) => {
                return Ok(ca);
            }
            (false, _) => {
                return Err(CaError::CaNotActive {
                    id: id.to_string(),
                    why: format!("it is {}", ca.status),
                });
            }
            (true, cas::STATUS_RETIRING) => {
                let live = cas::children(&tx, tenant, id)
                    .await?
                    .into_iter()
                    .filter(|c| c.status != cas::STATUS_RETIRED)
                    .count();
                if live > 0 {
                    return Err(CaError::CaHasActiveChildren {
                        id: id.to_string(),
                        count: live,
                    });
                }
                (
                    cas::STATUS_RETIRING,
                    cas::STATUS_RETIRED,
                    "ca.retired",
                    "cas.retire_confirm",
                )
            }
            (true, _) => {
                return Err(CaError::CaNotRetiring {
                    id: id.to_string(),
                    status: ca.status.clone(),
                });
            }
        };
        match cas::set_status(&tx, tenant, id, from, to).await {
            Err(StoreError::Conflict { .. }) => {
                return Err(CaError::CaNotActive {
                    id: id.to_string(),
                    why: "its status changed concurrently; look at it again".into(),
                });
            }
            other => other?,
        }
        let ca = cas::get(&tx, tenant, id)
            .await?
            .ok_or_else(|| CaError::CaNotFound { id: id.to_string() })?;
        let payload = json!({"ca_id": id.to_string(), "name": ca.name, "status": to});
        self.record(&tx, actor, event, action, &ca, payload, now)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(ca = %id, status = to, "CA status changed.");
        Ok(ca)
    }

    /// The tenant's CAs, oldest first.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<CaRecord>, CaError> {
        let tenant = actor.tenant;
        self.deps
            .store
            .in_tenant(tenant, async |tx| Ok(cas::list(tx, tenant).await?))
            .await
    }

    /// The tenant's CA `id`.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<CaRecord, CaError> {
        let id = ca_id(id)?;
        let tenant = actor.tenant;
        self.deps
            .store
            .in_tenant(tenant, async |tx| {
                cas::get(tx, tenant, id)
                    .await?
                    .ok_or_else(|| CaError::CaNotFound { id: id.to_string() })
            })
            .await
    }

    /// CA `id`'s current certificate and its issuers up to and including the root.
    pub async fn chain(&self, actor: &Actor, id: &str) -> Result<Vec<Certificate>, CaError> {
        let id = ca_id(id)?;
        let tenant = actor.tenant;
        self.deps
            .store
            .in_tenant(tenant, async |tx| {
                let ca = cas::get(tx, tenant, id)
                    .await?
                    .ok_or_else(|| CaError::CaNotFound { id: id.to_string() })?;
                chain_of(tx, tenant, &ca).await
            })
            .await
    }

    /// Appends the operation's event and audit entry to its transaction.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        tx: &DatabaseTransaction,
        actor: &Actor,
        event: &str,
        action: &str,
        ca: &CaRecord,
        payload: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), CaError> {
        outbox::append(
            tx,
            actor.tenant,
            event,
            &ca.id.to_string(),
            payload.clone(),
            now,
        )
        .await?;
        let entry = actor.audit(
            action,
            format!("ca:{}", ca.id),
            Outcome::Allowed,
            payload,
            now,
        );
        audit::append(tx, actor.tenant, &[entry]).await?;
        Ok(())
    }

    async fn new_key(&self, spec: KeySpec) -> Result<(KeyRef, Arc<dyn Signer>), CaError> {
        let key_ref = self.deps.keys.generate(spec).await?;
        match self.deps.keys.signer(&key_ref).await {
            Ok(signer) => Ok((key_ref, signer)),
            Err(e) => {
                let _ = self.deps.keys.destroy(&key_ref).await;
                Err(e.into())
            }
        }
    }

    /// Keeps the key when the operation made its rows; destroys it otherwise, so a failed
    /// operation leaves no orphan key behind.
    async fn keep_or_destroy<T>(
        &self,
        made: Result<T, CaError>,
        key_ref: &KeyRef,
    ) -> Result<T, CaError> {
        if made.is_err()
            && let Err(e) = self.deps.keys.destroy(key_ref).await
        {
            tracing::warn!(key = %key_ref, error = %e, "Destroying the key of a failed CA operation failed.");
        }
        made
    }

    async fn open_key(&self, key_ref: &KeyRef) -> Result<Arc<dyn Signer>, CryptoError> {
        if key_ref.backend() != self.deps.keys.name() {
            return Err(CryptoError::KeyNotFound {
                key_ref: key_ref.to_string(),
            });
        }
        self.deps.keys.signer(key_ref).await
    }

    /// The CA ready to sign with its current key; `CA_NOT_ACTIVE` when the key cannot be
    /// opened (an imported root whose key stays offline).
    async fn issuer(&self, ca: &CaRecord, cert: Certificate) -> Result<IssuingCa, CaError> {
        let key_ref: KeyRef = ca.key_ref.parse().map_err(|_| CaError::CaNotActive {
            id: ca.id.to_string(),
            why: "its key reference is not one certmesh can open".into(),
        })?;
        let signer = self
            .open_key(&key_ref)
            .await
            .map_err(|e| CaError::CaNotActive {
                id: ca.id.to_string(),
                why: format!("its key is offline or unreachable ({e})"),
            })?;
        IssuingCa::new(cert, signer).map_err(|e| match e {
            CryptoError::KeyMismatch => CaError::CaKeyMismatch,
            other => other.into(),
        })
    }
}

/// The CA's current certificate, then the certificate of each issuer up to and including the
/// self-signed root. Each issuer's certificate is the one that signed the certificate below
/// it: the parent's current one, or, after the parent rotated, the older generation whose
/// subject and key the child names (RFC 5280 §4.1.2.4, §4.2.1.1), so chains stay valid. The
/// one walk up the tree, shared with the issuance role.
pub async fn chain_of<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: &CaRecord,
) -> Result<Vec<Certificate>, CaError> {
    let mut child = Certificate::from_der(ca.certificate_der.clone())?;
    let mut chain = vec![child.clone()];
    let mut seen = std::collections::HashSet::from([ca.id]);
    let mut parent_id = ca.parent_id;
    while let Some(id) = parent_id {
        if !seen.insert(id) || chain.len() > MAX_DEPTH {
            return Err(CaError::Corrupt(format!(
                "the CAs above {} loop or nest deeper than {MAX_DEPTH}",
                ca.id
            )));
        }
        let parent = cas::get(c, tenant, id)
            .await?
            .ok_or_else(|| CaError::Corrupt(format!("CA {id} above {} is missing", ca.id)))?;
        child = issuer_of(c, tenant, &parent, &child).await?;
        chain.push(child.clone());
        parent_id = parent.parent_id;
    }
    Ok(chain)
}

/// The certificate of `parent` that issued `child`: its current one, else the newest older
/// primary certificate that did.
async fn issuer_of<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    parent: &CaRecord,
    child: &Certificate,
) -> Result<Certificate, CaError> {
    let current = Certificate::from_der(parent.certificate_der.clone())?;
    if issued(&current, child) {
        return Ok(current);
    }
    for row in ca_certificates::list(c, tenant, parent.id)
        .await?
        .into_iter()
        .rev()
    {
        if row.relation != RELATION_PRIMARY {
            continue;
        }
        let cert = Certificate::from_der(row.certificate_der)?;
        if issued(&cert, child) {
            return Ok(cert);
        }
    }
    Err(CaError::Corrupt(format!(
        "no certificate of CA {} issued the certificate below it",
        parent.id
    )))
}

/// `child` names `issuer`'s subject as its issuer and, when both carry key identifiers,
/// `issuer`'s key.
fn issued(issuer: &Certificate, child: &Certificate) -> bool {
    child.issuer_der() == issuer.subject_der()
        && match (child.authority_key_id(), issuer.subject_key_id()) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => true,
        }
}

/// The CA's ancestors, parent first.
async fn ancestors<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    ca: &CaRecord,
) -> Result<Vec<CaRecord>, CaError> {
    let mut out = Vec::new();
    let mut next = ca.parent_id;
    while let Some(id) = next {
        if out.len() > MAX_DEPTH {
            return Err(CaError::Corrupt(format!(
                "CA {} is more than {MAX_DEPTH} deep",
                ca.id
            )));
        }
        let parent = cas::get(c, tenant, id)
            .await?
            .ok_or_else(|| CaError::Corrupt(format!("CA {} has a missing parent {id}", ca.id)))?;
        next = parent.parent_id;
        out.push(parent);
    }
    Ok(out)
}

/// The tenant's CA `id`, which must be active: `CA_NOT_FOUND` or `CA_NOT_ACTIVE`.
async fn active<C: ConnectionTrait>(
    c: &C,
    tenant: TenantId,
    id: CaId,
) -> Result<CaRecord, CaError> {
    let ca = cas::get(c, tenant, id)
        .await?
        .ok_or_else(|| CaError::CaNotFound { id: id.to_string() })?;
    if ca.status != cas::STATUS_ACTIVE {
        return Err(CaError::CaNotActive {
            id: id.to_string(),
            why: format!("it is {}", ca.status),
        });
    }
    Ok(ca)
}

async fn name_free<C: ConnectionTrait>(c: &C, tenant: TenantId, name: &str) -> Result<(), CaError> {
    if cas::by_name(c, tenant, name).await?.is_some() {
        return Err(CaError::CaExists {
            name: name.to_owned(),
        });
    }
    Ok(())
}

async fn insert<C: ConnectionTrait>(
    c: &C,
    new: NewCa,
    now: DateTime<Utc>,
) -> Result<CaRecord, CaError> {
    let name = new.name.clone();
    match cas::insert(c, new, now).await {
        Err(StoreError::Conflict { .. }) => Err(CaError::CaExists { name }),
        other => Ok(other?),
    }
}

#[allow(clippy::too_many_arguments)]
fn new_ca(
    tenant: TenantId,
    name: &str,
    parent: Option<CaId>,
    path_len: Option<u8>,
    spec: KeySpec,
    key_ref: &KeyRef,
    cert: &Certificate,
    params: &Params,
) -> NewCa {
    NewCa {
        tenant_id: tenant,
        name: name.to_owned(),
        parent_id: parent,
        kind: match parent {
            None => cas::KIND_ROOT,
            Some(_) => cas::KIND_INTERMEDIATE,
        }
        .to_owned(),
        path_len,
        key_spec: spec.as_str().to_owned(),
        permitted_dns: params.permitted_dns.clone(),
        excluded_dns: params.excluded_dns.clone(),
        key_offline: false,
        key_ref: key_ref.to_string(),
        certificate_der: cert.der().to_vec(),
        subject: cert.subject().to_owned(),
        not_before: cert.not_before(),
        not_after: cert.not_after(),
    }
}

fn template(
    common_name: String,
    organization: Option<String>,
    now: DateTime<Utc>,
    not_after: DateTime<Utc>,
    path_len: Option<u8>,
    params: &Params,
) -> CaTemplate {
    CaTemplate {
        common_name,
        organization,
        serial: Serial::random(),
        not_before: now - BACKDATE,
        not_after,
        path_len,
        permitted_dns: params.permitted_dns.clone(),
        excluded_dns: params.excluded_dns.clone(),
    }
}

fn ca_payload(ca: &CaRecord, gated: &Gated, capped: bool) -> serde_json::Value {
    json!({
        "ca_id": ca.id.to_string(),
        "name": ca.name,
        "kind": ca.kind,
        "parent_id": ca.parent_id.map(|p| p.to_string()),
        "subject": ca.subject,
        "generation": ca.generation,
        "not_after": ca.not_after.to_rfc3339(),
        "path_len": ca.path_len,
        "permitted_dns": ca.permitted_dns,
        "excluded_dns": ca.excluded_dns,
        "fingerprint_sha256": certmesh_crypto::digest::sha256_hex(&ca.certificate_der),
        "ceremony_id": gated.id.to_string(),
        "validity_capped": capped,
    })
}

fn key_spec(params: &Params) -> Result<KeySpec, CaError> {
    required(&params.key_spec, "params.key_spec")?
        .parse()
        .map_err(|e: CryptoError| CaError::InvalidField {
            field: "params.key_spec",
            problem: e.to_string(),
        })
}

fn days(params: &Params) -> Duration {
    Duration::days(i64::from(params.validity_days.unwrap_or(1)))
}

fn required<'a, T>(v: &'a Option<T>, field: &'static str) -> Result<&'a T, CaError> {
    v.as_ref().ok_or_else(|| missing(field))
}

fn missing(field: &'static str) -> CaError {
    CaError::InvalidField {
        field,
        problem: "is required".into(),
    }
}

fn ca_id(id: &str) -> Result<CaId, CaError> {
    uuid::Uuid::parse_str(id.trim())
        .map(CaId)
        .map_err(|_| CaError::InvalidField {
            field: "id",
            problem: "must be a CA id (UUID)".into(),
        })
}

/// The id named by the path, which the body may repeat but not contradict.
fn path_id(field: &'static str, from_path: &str, in_body: &str) -> Result<String, CaError> {
    match (from_path.trim(), in_body.trim()) {
        ("", body) => Ok(body.to_owned()),
        (path, "") => Ok(path.to_owned()),
        (path, body) if path == body => Ok(path.to_owned()),
        _ => Err(CaError::InvalidField {
            field,
            problem: "differs from the id in the parameters".into(),
        }),
    }
}

/// The CA error of a failed RFC 5280 check.
fn check(e: CaCheckError) -> CaError {
    match e {
        CaCheckError::NotSelfSigned { detail } => CaError::CaNotSelfSigned(detail),
        CaCheckError::KeyMismatch => CaError::CaKeyMismatch,
        CaCheckError::PathLenExceeded { detail } => CaError::PathLenExceeded(detail),
        CaCheckError::NameConstraintExceeded { detail } => CaError::NameConstraintExceeded(detail),
        CaCheckError::LeafNameNotPermitted { name } => {
            CaError::NameConstraintExceeded(format!("{name} is outside the name constraints"))
        }
        CaCheckError::InvalidDnsSubtree { subtree, detail } => CaError::InvalidField {
            field: "params",
            problem: format!("{subtree:?}: {detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids_may_repeat_but_not_contradict() {
        assert_eq!(path_id("id", "a", "").expect("path"), "a");
        assert_eq!(path_id("id", "", "b").expect("body"), "b");
        assert_eq!(path_id("id", "a", "a").expect("same"), "a");
        assert!(path_id("id", "a", "b").is_err());
    }
}
