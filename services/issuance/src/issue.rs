//! The one issuance path.
//!
//! Order matters: a replayed idempotency key is answered before the profile is consulted (the
//! profile may have changed since); the profile is evaluated, and a tree CA it names is checked
//! (active, key online, the request's names within its chain's name constraints), before
//! anything is signed; and the claim of the key, the evaluation event, the signature, the
//! stored certificate and the `ca.issue` event commit together or not at all. Reads happen
//! before the transaction opens, so every statement inside it writes: on SQLite that takes the
//! write lock at once instead of failing to upgrade a read snapshot.
//!
//! [`Issuance::request`] (the Issue RPC) runs the same checks, then either signs or holds the
//! request for approval ([`crate::approval`]); an approval later signs through
//! [`Issuance::issue`].

use std::{sync::Arc, time::Instant};

use certmesh_crypto::serial::Serial;
use certmesh_kit::{auth::AuthContext, rbac::Permission};
use certmesh_store::{
    TenantId,
    approvals::ApprovalRecord,
    cas::{self, CaRecord},
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
    issuer::{Authority, ISSUING_NAME},
    model::IssueCommand,
    profile::{Denial, Grant, ValidatedProfile},
    telemetry::{Answered, IssueObserved, Scope},
    tree::TreeCa,
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

/// What an Issue request became: a certificate, or a request held for a second person.
#[derive(Debug, Clone)]
pub enum RequestOutcome {
    /// Issued (or answered from an earlier request with the same idempotency key).
    Issued(IssueOutcome),
    /// Held until a principal other than the requester approves it.
    PendingApproval(ApprovalRecord),
}

/// A request that passed the checks before signing.
enum Checked {
    /// Answered from an earlier request with the same idempotency key.
    Replayed(IssueOutcome),
    /// The active profile version allows it, and `authority` may sign it.
    Allowed {
        version: u32,
        profile: Arc<ValidatedProfile>,
        grant: Grant,
        authority: Authority,
    },
}

impl Issuance {
    /// What the Issue RPC runs: issue a certificate for `cmd`, or hold it as a pending
    /// approval when the profile requires approval or the caller may request but not issue.
    /// The CSR and the profile are checked first either way: a denied request holds nothing.
    pub async fn request(
        &self,
        auth: &AuthContext,
        cmd: IssueCommand,
    ) -> Result<RequestOutcome, IssuanceError> {
        let started = Instant::now();
        let mut scope = Scope::default();
        let result = match self.check(auth, &cmd, &mut scope).await {
            Ok(Checked::Allowed {
                version,
                profile,
                grant,
                ..
            }) if profile.requires_approval() || !auth.can(Permission::CertsIssue) => self
                .hold(auth, &cmd, version, &grant)
                .await
                .map(RequestOutcome::PendingApproval),
            Ok(Checked::Allowed {
                version,
                grant,
                authority,
                ..
            }) => self
                .sign(auth, &cmd, version, grant, authority)
                .await
                .map(RequestOutcome::Issued),
            Ok(Checked::Replayed(done)) => Ok(RequestOutcome::Issued(done)),
            Err(e) => Err(e),
        };
        let answered = result.as_ref().map(|r| match r {
            RequestOutcome::Issued(done) => answered(done),
            RequestOutcome::PendingApproval(_) => Answered::Held,
        });
        self.observe(&scope, answered, started);
        result
    }

    /// Issue a certificate for `cmd` in `auth`'s tenant, with no approval gate: the signing
    /// path under [`Issuance::request`] and under an approval.
    pub async fn issue(
        &self,
        auth: &AuthContext,
        cmd: IssueCommand,
    ) -> Result<IssueOutcome, IssuanceError> {
        let started = Instant::now();
        let mut scope = Scope::default();
        let result = match self.check(auth, &cmd, &mut scope).await {
            Ok(Checked::Allowed {
                version,
                grant,
                authority,
                ..
            }) => self.sign(auth, &cmd, version, grant, authority).await,
            Ok(Checked::Replayed(done)) => Ok(done),
            Err(e) => Err(e),
        };
        self.observe(&scope, result.as_ref().map(answered), started);
        result
    }

    fn observe(&self, scope: &Scope, result: Result<Answered, &IssuanceError>, started: Instant) {
        IssueObserved {
            scope,
            result,
            elapsed: started.elapsed(),
        }
        .emit(&self.deps.metrics);
    }

    /// Answer a replayed key, or evaluate the active profile and check the tree CA it names
    /// (recording a denial).
    async fn check(
        &self,
        auth: &AuthContext,
        cmd: &IssueCommand,
        scope: &mut Scope,
    ) -> Result<Checked, IssuanceError> {
        let tenant = auth.tenant_id;
        // One read transaction for the replay check, the profile and its tree CA.
        let found = self
            .deps
            .store
            .in_tenant(tenant, async |tx| {
                if let Some(key) = &cmd.idempotency_key
                    && let Some(done) = replay(tx, tenant, key, &cmd.request_hash(), cmd).await?
                {
                    // The signing CA's name, for the metric (an external CA has no row).
                    let ca = cas::get(tx, tenant, done.record.issuer_ca_id).await?;
                    scope.profile = done.record.profile_name.clone();
                    scope.ca = ca.map(|ca| ca.name).unwrap_or_default();
                    return Ok(Err(done));
                }
                let (version, profile) = self.active_profile(tx, tenant, &cmd.profile).await?;
                scope.profile = cmd.profile.clone();
                let ca = match profile.issuer_ca_id() {
                    None => None,
                    Some(id) => Some(TreeCa::read(tx, tenant, id).await?),
                };
                scope.ca = ca.as_ref().map_or(ISSUING_NAME, |ca| &ca.name).to_owned();
                Ok::<_, IssuanceError>(Ok((version, profile, ca)))
            })
            .await?;
        let (version, profile, ca) = match found {
            Ok(active) => active,
            Err(done) => return Ok(Checked::Replayed(done)),
        };
        let grant = match profile.evaluate(&cmd.csr, cmd.validity) {
            Ok(grant) => grant,
            Err(denial) => {
                self.record_denial(auth, cmd, version, &denial).await?;
                return Err(IssuanceError::ProfileDenied {
                    profile: cmd.profile.clone(),
                    version,
                    rule: denial.rule,
                    detail: denial.detail,
                });
            }
        };
        let authority = match ca {
            None => Authority::Builtin,
            Some(ca) => self.tree_authority(auth, cmd, version, &ca).await?,
        };
        Ok(Checked::Allowed {
            version,
            profile,
            grant,
            authority,
        })
    }

    /// Open the profile's tree CA and check the request's names against the name constraints
    /// of its chain; a refusal is recorded as a denial of the profile's `issuer_ca_id` rule.
    async fn tree_authority(
        &self,
        auth: &AuthContext,
        cmd: &IssueCommand,
        version: u32,
        ca: &CaRecord,
    ) -> Result<Authority, IssuanceError> {
        let issuer = self.tree.open(ca).await?;
        let Err(name) = issuer.check_names(&cmd.csr) else {
            return Ok(Authority::Tree(issuer));
        };
        let refused = IssuanceError::NameConstraintExceeded {
            ca_id: issuer.id(),
            name,
        };
        let denial = Denial {
            rule: "issuer_ca_id",
            detail: refused.to_string(),
        };
        self.record_denial(auth, cmd, version, &denial).await?;
        Err(refused)
    }

    /// Sign with `authority` and store an allowed request.
    async fn sign(
        &self,
        auth: &AuthContext,
        cmd: &IssueCommand,
        version: u32,
        grant: Grant,
        authority: Authority,
    ) -> Result<IssueOutcome, IssuanceError> {
        let store = &self.deps.store;
        let tenant = auth.tenant_id;
        let hash = cmd.request_hash();
        let now = self.deps.clock.now();
        if let Authority::Builtin = authority {
            self.deps.builtin.ready(tenant, now).await?;
        }

        let job = SignJob {
            authority,
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
            None => Prepared::Signed(job.sign(&self.deps.builtin, tenant).await?),
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
                store
                    .in_tenant(tenant, async |tx| replay(tx, tenant, key, &hash, cmd).await)
                    .await?
                    .ok_or_else(|| IssuanceError::IdempotencyKeyInFlight {
                        key: key.to_string(),
                    })
            }
        }
    }

    /// The active (latest) version of a profile: one read of the version pointer, and the
    /// immutable version itself from the cache.
    async fn active_profile<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
        name: &str,
    ) -> Result<(u32, Arc<ValidatedProfile>), IssuanceError> {
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
        let profile = Arc::new(ValidatedProfile::from_json(&stored.spec)?);
        self.profiles.insert(profile_id, version, profile.clone());
        Ok((version, profile))
    }

    /// Keep the deny event and its audit entry (outside the issuance transaction: nothing
    /// else of the request is kept).
    async fn record_denial(
        &self,
        auth: &AuthContext,
        cmd: &IssueCommand,
        version: u32,
        denial: &Denial,
    ) -> Result<(), IssuanceError> {
        let now = self.deps.clock.now();
        let payload = evaluation_event(auth, cmd, version, Err(denial));
        let audit_entry = certmesh_kit::audit::entry(
            auth,
            "certs.issue",
            format!("profile:{}", cmd.profile),
            certmesh_store::audit::Outcome::Denied,
            payload.clone(),
            now,
        );
        let tx = self.deps.store.begin_tenant(auth.tenant_id).await?;
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
        tx.commit()
            .await
            .map_err(certmesh_store::StoreError::from)?;
        Ok(())
    }
}

/// What an outcome that came back counts as.
fn answered(done: &IssueOutcome) -> Answered {
    if done.replayed {
        Answered::Replayed
    } else {
        Answered::Issued
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

pub(crate) fn evaluation_event(
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
